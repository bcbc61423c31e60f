//! The shared cache against a real NATS server with JetStream: two
//! checkouts with caches of their own share results, every downloaded byte
//! is checked, read-only runs write nothing, credentials are required and
//! never printed, and the shared cache can be looked at and trimmed.

use crate::support::nats::TestNats;
use crate::support::*;

/// Three stages: a constant, one reading inputs, one reading another's
/// outputs.
pub const PIPELINE: &str = r#"
    [stages.constant]
    uses = "{probe}"
    args = ["write", "/out/result.txt", "always the same"]

    [stages.copy]
    uses = "{probe}"
    inputs = ["a/**"]
    args = ["cat", "/src/a/data.txt"]

    [stages.after-constant]
    uses = "{probe}"
    needs = ["constant"]
    args = ["cat", "/in/constant/result.txt"]
"#;

/// The files [`PIPELINE`] reads.
pub const FILES: &[(&str, &str)] = &[("a/data.txt", "some data")];

/// A checkout of a pipeline on a machine of its own.
pub struct Checkout {
    pub dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Checkout {
    fn new() -> Self {
        Self::with(PIPELINE, FILES)
    }

    /// A checkout of `pipeline` with `files`.
    pub fn with(pipeline: &str, files: &[(&str, &str)]) -> Self {
        Self {
            dir: pipeline_dir(pipeline, files),
            cache: machine_cache(),
        }
    }

    fn of_example(name: &str) -> Self {
        Self {
            dir: copy_example(name),
            cache: machine_cache(),
        }
    }

    /// `cairn` in the checkout, with its cache and no shared cache or
    /// credentials from the test's environment.
    pub fn cairn(&self) -> std::process::Command {
        let mut command = cairn(self.dir.path());
        command.env("CAIRN_CACHE", self.cache.path());
        for variable in [
            "CAIRN_REMOTE",
            "CAIRN_REMOTE_READ_ONLY",
            "CAIRN_WORKERS",
            "CAIRN_NATS_USER",
            "CAIRN_NATS_PASSWORD",
            "CAIRN_NATS_TOKEN",
        ] {
            command.env_remove(variable);
        }
        command
    }

    /// `cairn run --json ARGS` in the checkout.
    pub fn run(&self, args: &[&str]) -> (Finished, Vec<serde_json::Value>) {
        run_json_with(self.cairn(), args)
    }
}

fn all(events: &[serde_json::Value], status: &str) -> bool {
    let statuses = statuses(events);
    statuses.len() == 3 && statuses.values().all(|seen| seen == status)
}

#[test]
fn javascript_and_python_stage_folders_are_built_once_for_every_machine() {
    let server = TestNats::start();
    let first = Checkout::of_example("polyglot");
    let (finished, events) = first.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let ran = statuses(&events);
    assert!(ran.len() >= 4, "{ran:?}");
    assert!(ran.values().all(|status| status != "failed"), "{ran:?}");

    // The same sources elsewhere: the JavaScript and Python components
    // come from the shared cache (built again, they would be other bytes
    // and every stage from them on would miss), and nothing runs.
    let second = Checkout::of_example("polyglot");
    let (finished, events) = second.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let reused = statuses(&events);
    assert_eq!(reused.keys().collect::<Vec<_>>(), ran.keys().collect::<Vec<_>>());
    assert!(reused.values().all(|status| status == "cached"), "{reused:?}");
    let status = status_json(&second, &server);
    assert!(
        bucket(&status, "builds")["entries"].as_u64().unwrap_or(0) >= 3,
        "JavaScript, Python and C: {status:#}"
    );
}

/// `cairn remote status --json`.
pub fn status_json(checkout: &Checkout, server: &TestNats) -> serde_json::Value {
    let finished = finish(
        checkout
            .cairn()
            .args(["remote", "status", "--json", "--remote", &server.url]),
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    serde_json::from_str(&finished.stdout).expect("status is JSON")
}

/// The bucket of `status` that holds `holds`.
pub fn bucket<'a>(status: &'a serde_json::Value, holds: &str) -> &'a serde_json::Value {
    status["buckets"]
        .as_array()
        .and_then(|buckets| buckets.iter().find(|bucket| bucket["holds"] == holds))
        .unwrap_or_else(|| panic!("no {holds} bucket in {status:#}"))
}

#[test]
fn a_second_checkout_with_its_own_cache_runs_nothing() {
    let server = TestNats::start();
    let first = Checkout::new();
    let (finished, events) = first.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "succeeded"), "{events:#?}");
    let status = status_json(&first, &server);
    assert_eq!(bucket(&status, "actions")["entries"], 3, "{status:#}");
    assert!(
        bucket(&status, "blobs")["entries"].as_u64().unwrap_or(0) >= 3,
        "{status:#}"
    );

    // Another checkout, another cache, the server named by the variable.
    let second = Checkout::new();
    let (finished, events) = run_json_with(
        {
            let mut command = second.cairn();
            command.env("CAIRN_REMOTE", &server.url);
            command
        },
        &[],
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "cached"), "{events:#?}");
    assert!(
        events_of(&events, "stage_started").is_empty(),
        "nothing ran: {events:#?}"
    );
    assert_eq!(
        read_tree(&first.dir.path().join("cairn-out")),
        read_tree(&second.dir.path().join("cairn-out")),
        "the same outputs, byte for byte"
    );
    // Replayed logs: what the stage printed on the first machine.
    assert_eq!(stage_stdout(&events, "copy"), ["some data"], "{events:#?}");

    // Nothing new to share: the second run wrote no entry.
    let status = status_json(&second, &server);
    assert_eq!(bucket(&status, "actions")["entries"], 3, "{status:#}");
}

#[test]
fn a_tampered_blob_is_refused_and_the_stage_runs_here() {
    let server = TestNats::start();
    let first = Checkout::new();
    let (finished, _) = first.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");

    // Someone with write access replaces what `constant` wrote.
    let digest = blake3::hash(b"always the same").to_hex().to_string();
    server.with_client(async |jetstream| {
        let blobs = jetstream.get_object_store("cairn-blobs").await.expect("the blob store");
        blobs
            .put(digest.as_str(), &mut b"rm -rf / # poisoned".as_slice())
            .await
            .expect("the tampered object is written");
    });

    let second = Checkout::new();
    let (finished, events) = second.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let statuses = statuses(&events);
    assert_eq!(statuses["constant"], "succeeded", "ran here: {events:#?}");
    assert_eq!(statuses["copy"], "cached", "{events:#?}");
    let warning = events
        .iter()
        .filter(|event| event["event"] == "stage_log" && event["stage"] == "constant")
        .filter_map(|event| event["text"].as_str())
        .find(|text| text.contains("refused"))
        .unwrap_or_else(|| panic!("the refusal is in the stage's log: {events:#?}"));
    assert!(warning.contains(&format!("blob blake3:{digest}")), "{warning}");
    assert!(warning.contains("running the stage here"), "{warning}");
    assert_eq!(
        std::fs::read_to_string(second.dir.path().join("cairn-out/constant/result.txt")).expect("the output"),
        "always the same",
        "the poisoned bytes were never used"
    );
    // The refused object was removed, so the next machine is not refused
    // again: the stage shared after running brought the right bytes back.
    let third = Checkout::new();
    let (finished, events) = third.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "cached"), "{events:#?}");
}

#[test]
fn a_read_only_run_reuses_but_writes_nothing() {
    let server = TestNats::start();
    let reader = Checkout::new();
    let (finished, events) = reader.run(&["--remote", &server.url, "--remote-read-only"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "succeeded"), "{events:#?}");
    let status = status_json(&reader, &server);
    assert_eq!(bucket(&status, "actions")["entries"], 0, "{status:#}");
    assert_eq!(bucket(&status, "blobs")["entries"], 0, "{status:#}");

    let writer = Checkout::new();
    let (finished, _) = writer.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    // `[remote]` in the file: read-only there too, and still reusing.
    let from_file = Checkout::new();
    let text = std::fs::read_to_string(from_file.dir.path().join("cairn.toml")).expect("the pipeline");
    std::fs::write(
        from_file.dir.path().join("cairn.toml"),
        format!("[remote]\nurl = \"{}\"\nread_only = true\n{text}", server.url),
    )
    .expect("the pipeline");
    let (finished, events) = from_file.run(&[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "cached"), "{events:#?}");
}

#[test]
fn credentials_are_required_checked_and_never_printed() {
    let server = TestNats::with_user("ci", "correct-horse");
    let checkout = Checkout::new();

    let (finished, _) = checkout.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished.stderr.contains("refused the credentials"),
        "{}",
        finished.stderr
    );
    assert!(finished.stderr.contains("CAIRN_NATS_USER"), "{}", finished.stderr);

    let mut command = checkout.cairn();
    command
        .env("CAIRN_NATS_USER", "ci")
        .env("CAIRN_NATS_PASSWORD", "wrong-battery");
    let (finished, _) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished.stderr.contains("refused the credentials"),
        "{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains("wrong-battery"), "{}", finished.stderr);
    assert!(!checkout.dir.path().join("cairn-out/constant").exists(), "nothing ran");

    let mut command = checkout.cairn();
    command
        .env("CAIRN_NATS_USER", "ci")
        .env("CAIRN_NATS_PASSWORD", "correct-horse");
    let (finished, events) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "succeeded"), "{events:#?}");
    assert!(!finished.stdout.contains("correct-horse") && !finished.stderr.contains("correct-horse"));

    // In the URL, where a process list would show it: refused before
    // connecting, without repeating it.
    let url = server.url.replace("nats://", "nats://ci:correct-horse@");
    let (finished, _) = checkout.run(&["--remote", &url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("carries credentials"), "{}", finished.stderr);
    assert!(!finished.stderr.contains("correct-horse"), "{}", finished.stderr);
}

#[test]
fn an_unreachable_server_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let checkout = Checkout::new();
    let url = format!("nats://127.0.0.1:{port}");
    let (finished, _) = checkout.run(&["--remote", &url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains(&format!("cannot connect to the shared cache at {url}")),
        "{}",
        finished.stderr
    );
}

#[test]
fn the_shared_cache_is_trimmed_by_size() {
    let server = TestNats::start();
    let checkout = Checkout::new();
    let (finished, _) = checkout.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let finished = finish(
        checkout
            .cairn()
            .args(["cache", "gc", "--remote", &server.url, "--max-size", "0B"]),
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(finished.stdout.contains("from the shared cache"), "{}", finished.stdout);
    let status = status_json(&checkout, &server);
    assert_eq!(bucket(&status, "blobs")["entries"], 0, "{status:#}");

    // Entries whose blobs went are a miss, removed by the first reader.
    let other = Checkout::new();
    let (finished, events) = other.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "succeeded"), "{events:#?}");
    let again = Checkout::new();
    let (finished, events) = again.run(&["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "cached"), "shared again: {events:#?}");
}

#[test]
fn the_results_of_stages_granted_secrets_stay_on_their_machine() {
    let server = TestNats::start();
    let pipeline = r#"
        [stages.public]
        uses = "{probe}"
        args = ["write", "/out/result.txt", "nothing secret"]

        [stages.signed]
        uses = "{probe}"
        secrets = ["TOKEN"]
        args = ["write", "/out/signature.txt", "signed with the token"]
    "#;
    let run = |dir: &std::path::Path, cache: &std::path::Path| {
        let mut command = cairn(dir);
        command.env("CAIRN_CACHE", cache).env("TOKEN", "v3ry-s3cret-value");
        run_json_with(command, &["--remote", &server.url])
    };
    let (first, first_cache) = (pipeline_dir(pipeline, &[]), machine_cache());
    let (finished, events) = run(first.path(), first_cache.path());
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["signed"], "succeeded", "{events:#?}");

    let (second, second_cache) = (pipeline_dir(pipeline, &[]), machine_cache());
    let (finished, events) = run(second.path(), second_cache.path());
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let statuses = statuses(&events);
    assert_eq!(statuses["public"], "cached", "shared: {events:#?}");
    assert_eq!(
        statuses["signed"], "succeeded",
        "never shared, so run here: {events:#?}"
    );
    let checkout = Checkout::new();
    let status = status_json(&checkout, &server);
    assert_eq!(bucket(&status, "actions")["entries"], 1, "only `public`: {status:#}");
}

#[test]
fn a_token_from_the_environment_is_accepted_and_a_wrong_one_refused() {
    let server = TestNats::with_token("t0ken-of-the-ci");
    let checkout = Checkout::new();
    let mut command = checkout.cairn();
    command.env("CAIRN_NATS_TOKEN", "not-the-t0ken");
    let (finished, _) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("CAIRN_NATS_TOKEN"), "{}", finished.stderr);
    assert!(!finished.stderr.contains("not-the-t0ken"), "{}", finished.stderr);

    let mut command = checkout.cairn();
    command.env("CAIRN_NATS_TOKEN", "t0ken-of-the-ci");
    let (finished, events) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "succeeded"), "{events:#?}");
}

#[test]
fn an_nkey_seed_file_is_accepted_and_another_refused() {
    let user = nkeys::KeyPair::new_user();
    let server = TestNats::with_nkey(&user.public_key());
    let checkout = Checkout::new();
    let seeds = tempfile::tempdir().expect("a folder for seeds");
    let stranger = seeds.path().join("stranger.nk");
    let stranger_seed = nkeys::KeyPair::new_user().seed().expect("a seed");
    std::fs::write(&stranger, &stranger_seed).expect("write the seed");
    let mut command = checkout.cairn();
    command.env("CAIRN_NATS_NKEY", &stranger);
    let (finished, _) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("CAIRN_NATS_NKEY"), "{}", finished.stderr);
    assert!(!finished.stderr.contains(&stranger_seed), "{}", finished.stderr);

    let ours = seeds.path().join("user.nk");
    std::fs::write(&ours, user.seed().expect("a seed")).expect("write the seed");
    let mut command = checkout.cairn();
    command.env("CAIRN_NATS_NKEY", &ours);
    let (finished, events) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "succeeded"), "{events:#?}");
}

#[test]
fn a_server_with_a_private_ca_is_trusted_only_when_its_ca_is_named() {
    let ca = http_server::TestCa::new();
    let (certificate, key) = ca.server_files();
    let server = TestNats::with_tls(&certificate, &key);
    let url = server.url.replace("nats://", "tls://");
    let checkout = Checkout::new();
    let (finished, _) = checkout.run(&["--remote", &url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("CAIRN_NATS_CA"), "{}", finished.stderr);

    let mut command = checkout.cairn();
    command.env("CAIRN_NATS_CA", ca.ca_file());
    let (finished, events) = run_json_with(command, &["--remote", &url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(all(&events, "succeeded"), "{events:#?}");
}

#[test]
fn a_credentials_file_of_an_operator_mode_server_is_accepted_and_a_strangers_refused() {
    let folder = tempfile::tempdir().expect("a folder for credentials");
    let (server, ours, stranger) = TestNats::with_operator(folder.path());
    let checkout = Checkout::new();
    let mut command = checkout.cairn();
    command.env("CAIRN_NATS_CREDS", &stranger);
    let (finished, _) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("CAIRN_NATS_CREDS"), "{}", finished.stderr);

    let mut command = checkout.cairn();
    command.env("CAIRN_NATS_CREDS", &ours);
    let (finished, events) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}\n{}", server.log());
    assert!(all(&events, "succeeded"), "{events:#?}");
}
