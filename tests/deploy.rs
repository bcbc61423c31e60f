//! Continuous delivery end to end against a real loopback server that keeps
//! what is uploaded and serves it back: promotion from staging to
//! production, approval by `cairn approve` from another process, rejection,
//! timeout and `--approve`, one deployment per environment at a time,
//! rollback to byte-identical content, automatic rollback after a failed
//! verification, the history after a `kill -9`, and the monitor loop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::http_server::TestServer;
use crate::support::*;

/// A site built from `site/` by `std:template`, deployed by `std:upload`
/// and verified by `std:http`, to staging and to a production that
/// requires staging, asks for approval and rolls back on its own.
fn pipeline(url: &str, approval_timeout: &str) -> String {
    format!(
        r#"
[environments.staging]
url = "{url}/staging"

[environments.production]
url = "{url}/production"
requires = ["staging"]
approval = true
approval_timeout = "{approval_timeout}"
rollback = "auto"

[stages.build]
uses = "std:template"
inputs = ["site/**"]
with = {{ from = "/src/site" }}

[stages.deploy-staging]
uses = "std:upload"
environment = "staging"
needs = ["build"]
network = ["{url}"]
with = {{ url = "${{{{ environment.url }}}}/site" }}

[stages.smoke-staging]
uses = "std:http"
environment = "staging"
verify = true
needs = ["deploy-staging"]
network = ["{url}"]
with = {{ url = "${{{{ environment.url }}}}/site/index.html", expect_body_contains = "healthy" }}

[stages.deploy-production]
uses = "std:upload"
environment = "production"
needs = ["build"]
network = ["{url}"]
with = {{ url = "${{{{ environment.url }}}}/site" }}

[stages.smoke-production]
uses = "std:http"
environment = "production"
verify = true
needs = ["deploy-production"]
network = ["{url}"]
with = {{ url = "${{{{ environment.url }}}}/site/index.html", expect_body_contains = "healthy" }}
"#
    )
}

const PRODUCTION_PAGE: &str = "/production/site/index.html";

fn site(dir: &Path, page: &str) {
    std::fs::write(dir.join("site/index.html"), page).expect("write the page");
}

/// `cairn deployments --json`, parsed.
fn deployments(dir: &Path) -> Vec<serde_json::Value> {
    let listed = finish(cairn(dir).args(["deployments", "--json"]));
    assert_eq!(listed.code, Some(0), "{listed:?}");
    serde_json::from_str::<Vec<serde_json::Value>>(&listed.stdout).expect("a JSON array")
}

fn stage_to_staging(dir: &Path) {
    let (finished, events) = run_json(dir, &["smoke-staging"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["smoke-staging"], "succeeded");
}

/// A `cairn run --json` in the background whose events are read as they come.
struct Background {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Background {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut child = cairn(dir)
            .arg("run")
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cairn starts");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str(&line)
                    && sender.send(event).is_err()
                {
                    return;
                }
            }
        });
        Self {
            child,
            events,
            seen: Vec::new(),
        }
    }

    /// Waits (up to a minute) for the first event `wanted` accepts.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            match self.events.recv_timeout(Duration::from_secs(60)) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if wanted(&event) {
                        return event;
                    }
                }
                Err(_) => panic!("no {what} within a minute; events so far: {:#?}", self.seen),
            }
        }
    }

    fn approval_requested(&mut self) -> String {
        let event = self.wait_for("approval request", |event| event["event"] == "approval_requested");
        event["run"].as_str().expect("a run id").to_owned()
    }

    /// The exit code, and every event.
    fn finish(mut self) -> (Option<i32>, Vec<serde_json::Value>) {
        let status = self.child.wait().expect("cairn ends");
        while let Ok(event) = self.events.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(event);
        }
        (status.code(), self.seen)
    }
}

#[test]
fn production_takes_only_what_staging_verified() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url(), "1h"),
        &[("site/index.html", "<p>healthy v1</p>\n")],
    );

    // Nothing reached staging yet: production refuses, before anything runs.
    let (finished, events) = run_json(dir.path(), &["smoke-production", "--approve", "production"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "deploy-production");
    assert!(
        error.contains("`production` requires `staging` first: the outputs of `build` (blake3:")
            && error.contains("were never deployed to `staging` successfully; `staging` has never been deployed"),
        "{error}"
    );
    assert_eq!(
        server.stored(PRODUCTION_PAGE),
        None,
        "nothing was uploaded to production"
    );

    // Verified in staging, the same bytes go to production.
    stage_to_staging(dir.path());
    let (finished, events) = run_json(dir.path(), &["smoke-production", "--approve", "production"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["smoke-production"], "succeeded");
    assert_eq!(
        server.stored(PRODUCTION_PAGE).as_deref(),
        Some(&b"<p>healthy v1</p>\n"[..])
    );

    // A change that staging has not seen is refused again, naming the
    // last staging deployment.
    site(dir.path(), "<p>healthy v2</p>\n");
    let (finished, events) = run_json(dir.path(), &["smoke-production", "--approve", "production"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "deploy-production");
    assert!(
        error.contains("the last deployment to `staging` is #1 (succeeded"),
        "{error}"
    );
    assert_eq!(
        server.stored(PRODUCTION_PAGE).as_deref(),
        Some(&b"<p>healthy v1</p>\n"[..])
    );

    let history = deployments(dir.path());
    let summary: Vec<(u64, &str, &str)> = history
        .iter()
        .map(|deployment| {
            (
                deployment["id"].as_u64().expect("an id"),
                deployment["environment"].as_str().expect("an environment"),
                deployment["status"].as_str().expect("a status"),
            )
        })
        .collect();
    // A refused promotion deployed nothing, and is no deployment.
    assert_eq!(summary, [(1, "staging", "succeeded"), (2, "production", "succeeded")]);
    // Who approved, and how, is in the record; so are the verify stages.
    let approved = &history[1];
    assert_eq!(approved["approval"]["how"], "--approve");
    assert_eq!(approved["approval"]["decision"], "approved");
    let stages: Vec<(&str, bool, &str)> = approved["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|stage| {
            (
                stage["stage"].as_str().expect("a name"),
                stage["verify"].as_bool().expect("verify"),
                stage["status"].as_str().expect("a status"),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("deploy-production", false, "succeeded"),
            ("smoke-production", true, "succeeded")
        ]
    );
    let shown = finish(cairn(dir.path()).args(["show-deployment", "2"]));
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(
        shown.stdout.contains("deployment #2 to `production`: succeeded"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("verify     smoke-production succeeded"),
        "{}",
        shown.stdout
    );
}

#[test]
fn a_person_approves_or_rejects_from_another_process_and_a_wait_times_out() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url(), "1h"),
        &[("site/index.html", "<p>healthy</p>\n")],
    );
    stage_to_staging(dir.path());

    // Approved from another process: the run was waiting, and goes on.
    let mut waiting = Background::start(dir.path(), &["smoke-production"]);
    let run = waiting.approval_requested();
    assert_eq!(
        server.stored(PRODUCTION_PAGE),
        None,
        "nothing goes out before the decision"
    );
    let approved = finish(
        cairn(dir.path())
            .args(["approve", &run, "production", "--reason", "release 1.0"])
            .env("CAIRN_USER", "ana"),
    );
    assert_eq!(approved.code, Some(0), "{approved:?}");
    let (code, events) = waiting.finish();
    assert_eq!(code, Some(0), "{events:#?}");
    assert_eq!(
        server.stored(PRODUCTION_PAGE).as_deref(),
        Some(&b"<p>healthy</p>\n"[..])
    );
    let record = deployments(dir.path()).pop().expect("a deployment");
    assert_eq!(record["approval"]["by"], "ana");
    assert_eq!(record["approval"]["how"], "cairn approve");
    assert_eq!(record["approval"]["reason"], "release 1.0");
    assert_eq!(record["run"].as_str(), Some(run.as_str()));

    // A decision on a run that waits for none is refused, naming what waits.
    let stale = finish(cairn(dir.path()).args(["approve", &run, "production"]));
    assert_eq!(stale.code, Some(2), "{stale:?}");
    assert!(stale.stderr.contains(&format!(
        "no run `{run}` is waiting for approval to deploy `production`"
    )));

    // Rejected: the stage fails, nothing is uploaded, the reason is kept.
    site(dir.path(), "<p>healthy, again</p>\n");
    stage_to_staging(dir.path());
    let mut waiting = Background::start(dir.path(), &["smoke-production"]);
    let run = waiting.approval_requested();
    let rejected = finish(
        cairn(dir.path())
            .args(["reject", &run, "production", "--reason", "change freeze"])
            .env("CAIRN_USER", "bo"),
    );
    assert_eq!(rejected.code, Some(0), "{rejected:?}");
    let (code, events) = waiting.finish();
    assert_eq!(code, Some(1));
    let error = stage_error(&events, "deploy-production");
    assert!(error.contains("was rejected by bo: change freeze"), "{error}");
    assert_eq!(statuses(&events)["smoke-production"], "skipped");
    assert_eq!(
        server.stored(PRODUCTION_PAGE).as_deref(),
        Some(&b"<p>healthy</p>\n"[..])
    );
    let record = deployments(dir.path()).pop().expect("a deployment");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["approval"]["decision"], "rejected");

    // Nobody decides: the wait ends and the deployment fails as not approved.
    std::fs::write(dir.path().join("cairn.toml"), pipeline(&server.url(), "1s")).expect("write the pipeline");
    let (finished, events) = run_json(dir.path(), &["smoke-production"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "deploy-production");
    assert!(
        error.contains("was not approved within 1s (approval_timeout)"),
        "{error}"
    );
    assert_eq!(
        deployments(dir.path()).pop().expect("a deployment")["approval"]["decision"],
        "timed_out"
    );
}

#[test]
fn one_deployment_per_environment_at_a_time() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url(), "1h"),
        &[("site/index.html", "<p>healthy</p>\n")],
    );
    stage_to_staging(dir.path());
    let mut first = Background::start(dir.path(), &["smoke-production"]);
    let run = first.approval_requested();

    // The first run holds production while it waits: --no-wait fails at once.
    let (finished, events) = run_json(
        dir.path(),
        &["smoke-production", "--approve", "production", "--no-wait"],
    );
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "deploy-production");
    assert!(
        error.contains(&format!("`production` is being deployed by run {run}")) && error.contains("--no-wait"),
        "{error}"
    );

    // Without it, a second run waits, says so, and deploys after the first.
    let mut second = Background::start(dir.path(), &["smoke-production", "--approve", "production"]);
    second.wait_for("a wait for the lock", |event| {
        event["event"] == "deployment" && event["status"] == "waiting"
    });
    let approved = finish(cairn(dir.path()).args(["approve", &run, "production"]));
    assert_eq!(approved.code, Some(0), "{approved:?}");
    let (code, events) = first.finish();
    assert_eq!(code, Some(0), "{events:#?}");
    let (code, events) = second.finish();
    assert_eq!(code, Some(0), "{events:#?}");
    let production: Vec<String> = deployments(dir.path())
        .iter()
        .filter(|deployment| deployment["environment"] == "production")
        .map(|deployment| deployment["status"].as_str().expect("a status").to_owned())
        .collect();
    assert_eq!(
        production,
        ["succeeded", "succeeded"],
        "the --no-wait run deployed nothing"
    );
}

#[test]
fn rollback_restores_the_exact_bytes_and_a_failed_verify_rolls_back_on_its_own() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url(), "1h"),
        &[("site/index.html", "<p>healthy v1</p>\n")],
    );
    let deploy = |dir: &Path| {
        stage_to_staging(dir);
        let (finished, events) = run_json(dir, &["smoke-production", "--approve", "production"]);
        (finished, events)
    };
    let (finished, _) = deploy(dir.path());
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let v1 = server.stored(PRODUCTION_PAGE).expect("v1 deployed");
    site(dir.path(), "<p>healthy v2</p>\n");
    let (finished, _) = deploy(dir.path());
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(
        server.stored(PRODUCTION_PAGE).as_deref(),
        Some(&b"<p>healthy v2</p>\n"[..])
    );

    // Rolled back by hand: v1's bytes, from the store, and nothing rebuilt.
    // The site on disk is now something never built.
    site(dir.path(), "<p>work in progress</p>\n");
    let rolled = finish(cairn(dir.path()).args(["rollback", "production", "--approve", "production", "--json"]));
    assert_eq!(rolled.code, Some(0), "{rolled:?}");
    assert_eq!(server.stored(PRODUCTION_PAGE), Some(v1.clone()));
    assert!(
        !rolled.stdout.contains("\"stage\":\"deploy-staging\""),
        "staging is not touched"
    );
    let rollback = deployments(dir.path()).pop().expect("the rollback");
    assert_eq!(rollback["status"], "succeeded");
    let first_production = deployments(dir.path())
        .into_iter()
        .find(|deployment| deployment["environment"] == "production")
        .expect("the first production deployment");
    assert_eq!(rollback["rollback_to"], first_production["id"]);
    assert_eq!(rollback["artifacts"], first_production["artifacts"]);

    // A deployment whose verification fails gives way to the one before.
    site(dir.path(), "<p>broken v3</p>\n");
    let (finished, events) = run_json(dir.path(), &["smoke-staging"]);
    assert_eq!(finished.code, Some(1), "staging's own check fails: {finished:?}");
    assert_eq!(statuses(&events)["smoke-staging"], "failed");
    // Production with auto rollback: promote what staging took anyway, by
    // a pipeline whose production does not require staging.
    let unguarded = pipeline(&server.url(), "1h").replace("requires = [\"staging\"]\n", "");
    std::fs::write(dir.path().join("cairn.toml"), unguarded).expect("write the pipeline");
    let (finished, events) = run_json(dir.path(), &["smoke-production", "--approve", "production"]);
    assert_eq!(finished.code, Some(1), "the run fails: {finished:?}");
    let changes: Vec<(&str, &str)> = events_of(&events, "deployment")
        .iter()
        .map(|event| {
            (
                event["status"].as_str().expect("a status"),
                event["environment"].as_str().expect("an env"),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("started", "production"),
            ("failed", "production"),
            ("rolling_back", "production"),
            ("started", "production"),
            ("succeeded", "production"),
            ("rolled_back", "production"),
        ],
        "{events:#?}"
    );
    assert_eq!(server.stored(PRODUCTION_PAGE), Some(v1), "v1 is back, byte for byte");
    let history = deployments(dir.path());
    let broken = &history[history.len() - 2];
    let restored = &history[history.len() - 1];
    assert_eq!(broken["status"], "rolled_back");
    assert_eq!(broken["rolled_back_by"], restored["id"]);
    assert_eq!(restored["approval"]["how"], "automatic rollback");
}

#[test]
fn a_killed_deployment_is_recorded_as_failed_and_holds_nothing() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url(), "1h"),
        &[("site/index.html", "<p>healthy</p>\n")],
    );
    stage_to_staging(dir.path());
    // Approved up front, the run is killed while its deploy stage waits on
    // a server that takes 30 s to answer.
    let url = server.url();
    let slow = pipeline(&url, "1h").replace(
        "[stages.deploy-production]\nuses = \"std:upload\"\nenvironment = \"production\"\nneeds = [\"build\"]\n\
         network = [\"URL\"]\nwith = { url = \"${{ environment.url }}/site\" }"
            .replace("URL", &url)
            .as_str(),
        &format!(
            "[stages.deploy-production]\nuses = \"std:http\"\nenvironment = \"production\"\nneeds = [\"build\"]\n\
             network = [\"{url}\"]\nwith = {{ url = \"{url}/slow\", timeout = \"60s\" }}"
        ),
    );
    assert!(slow.contains("/slow"), "{slow}");
    std::fs::write(dir.path().join("cairn.toml"), slow).expect("write the pipeline");
    let mut running = Background::start(dir.path(), &["smoke-production", "--approve", "production"]);
    running.wait_for("the deploy stage to start", |event| {
        event["event"] == "stage_started" && event["stage"] == "deploy-production"
    });
    let listed = deployments(dir.path());
    assert_eq!(listed.last().expect("a deployment")["status"], "running");
    running.child.kill().expect("kill -9");
    let _ = running.child.wait();

    let record = deployments(dir.path()).pop().expect("a deployment");
    assert_eq!(record["status"], "failed");
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("interrupted: run ")),
        "{record:#}"
    );
    // Its lock died with it: the next deployment goes ahead.
    std::fs::write(dir.path().join("cairn.toml"), pipeline(&server.url(), "1h")).expect("write the pipeline");
    let (finished, _) = run_json(
        dir.path(),
        &["smoke-production", "--approve", "production", "--no-wait"],
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
}

#[test]
fn the_monitor_runs_checks_every_round_and_its_handlers_on_a_change() {
    let server = TestServer::http();
    let address = server.address.to_string();
    let hook = TestServer::http();
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.health]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/health", timeout = "2s" }}
on_change = ["page"]

[stages.page]
uses = "std:notify"
network = ["{hook}"]
with = {{ url = "{hook}/hook", text = "${{{{ monitor.check }}}} is ${{{{ monitor.status }}}}" }}
"#,
            url = server.url(),
            hook = hook.url()
        ),
        &[],
    );
    // `cairn run` leaves the handler alone.
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(!statuses(&events).contains_key("page"), "{events:#?}");

    let mut monitor = cairn(dir.path())
        .args(["monitor", "health", "--every", "1s", "--rounds", "6", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn monitor starts");
    let stdout = monitor.stdout.take().expect("stdout");
    let (sender, rounds) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["event"] == "monitor_round"
                && sender.send(event["round"].clone()).is_err()
            {
                return;
            }
        }
    });
    let next = || rounds.recv_timeout(Duration::from_secs(60)).expect("a round");
    let first = next();
    assert_eq!(first["checks"][0]["passing"], true, "{first:#}");
    assert_eq!(first["changed"], serde_json::json!([]));
    // Down: the next round sees it fail and pages.
    drop(server);
    let down = next();
    assert_eq!(down["checks"][0]["passing"], false, "{down:#}");
    assert_eq!(down["changed"], serde_json::json!(["health"]));
    assert_eq!(down["handlers"]["page"], true, "{down:#}");
    // Back on the same address: it recovers and pages again.
    let server = TestServer::http_at(&address);
    let mut back = next();
    while back["checks"][0]["passing"] == false {
        back = next();
    }
    assert_eq!(back["changed"], serde_json::json!(["health"]), "{back:#}");
    let status = monitor.wait().expect("cairn monitor ends");
    assert_eq!(status.code(), Some(0));
    let pages: Vec<String> = hook
        .received()
        .iter()
        .map(|request| String::from_utf8_lossy(&request.body).into_owned())
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[0].contains("health is failing"), "{pages:?}");
    assert!(pages[1].contains("health is passing"), "{pages:?}");
    assert!(server.received().iter().all(|request| request.path == "/health"));
    let log = std::fs::read_dir(cache_for(dir.path()).join("deployments-v1"))
        .expect("the history folder")
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("monitor.jsonl"))
        .find(|path| path.is_file())
        .expect("the monitor's log");
    assert_eq!(std::fs::read_to_string(log).expect("read").lines().count(), 6);
}

/// `cairn run` in a pseudo-terminal (util-linux `script`), typing `answer`.
fn run_on_a_terminal(dir: &Path, args: &str, answer: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let command = format!("{} run {args}", env!("CARGO_BIN_EXE_cairn"));
    let cairn = cairn(dir);
    let mut script = std::process::Command::new("script")
        .args(["--quiet", "--flush", "--return", "--command", &command, "/dev/null"])
        .current_dir(dir)
        .envs(
            cairn
                .get_envs()
                .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned()))),
        )
        .env("COLUMNS", "120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    let mut stdin = script.stdin.take().expect("stdin");
    stdin.write_all(answer.as_bytes()).expect("type the answer");
    let output = std::thread::spawn(move || {
        let output = script.wait_with_output().expect("script ends");
        drop(stdin);
        output
    })
    .join()
    .expect("the terminal's thread");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn on_a_terminal_the_run_shows_what_would_go_out_and_asks() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url(), "1h"),
        &[("site/index.html", "<p>healthy v1</p>\n")],
    );
    std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir .git");
    std::fs::write(
        dir.path().join(".git/HEAD"),
        "0123456789abcdef0123456789abcdef01234567\n",
    )
    .expect("HEAD");
    stage_to_staging(dir.path());
    let (code, screen) = run_on_a_terminal(dir.path(), "smoke-production", "y\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("waiting for approval to deploy"), "{screen}");
    assert!(screen.contains("commit 0123456789ab"), "{screen}");
    assert!(
        screen.contains("build blake3:") && screen.contains("(new to `production`)"),
        "{screen}"
    );
    assert!(screen.contains("Deploy to `production`? [y/N]"), "{screen}");
    assert_eq!(
        server.stored(PRODUCTION_PAGE).as_deref(),
        Some(&b"<p>healthy v1</p>\n"[..])
    );
    let record = deployments(dir.path()).pop().expect("a deployment");
    assert_eq!(record["approval"]["how"], "terminal");
    assert_eq!(record["commit"], "0123456789abcdef0123456789abcdef01234567");

    // What differs from what runs there now is shown; no is a rejection.
    site(dir.path(), "<p>healthy v2</p>\n");
    stage_to_staging(dir.path());
    let (code, screen) = run_on_a_terminal(dir.path(), "smoke-production", "n\n");
    assert_eq!(code, Some(1), "{screen}");
    assert!(
        screen.contains("of #2)"),
        "replaces what deployment #2 deployed: {screen}"
    );
    assert_eq!(
        server.stored(PRODUCTION_PAGE).as_deref(),
        Some(&b"<p>healthy v1</p>\n"[..])
    );
    assert_eq!(
        deployments(dir.path()).pop().expect("a deployment")["approval"]["decision"],
        "rejected"
    );
}

/// The example's own server (`examples/deploy/server.py`), on a free port.
struct ExampleServer {
    child: Child,
    address: String,
    root: tempfile::TempDir,
}

impl ExampleServer {
    fn start(script: &Path) -> Self {
        let root = tempfile::tempdir().expect("a folder for uploads");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .args(["--port", "0", "--root"])
            .arg(root.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server says where it listens");
        let address = line
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("not an address: {line}"))
            .to_owned();
        Self { child, address, root }
    }

    fn page(&self, environment: &str) -> Vec<u8> {
        std::fs::read(self.root.path().join(environment).join("site/index.html")).expect("a deployed page")
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_deploy_example_goes_to_production_and_back() {
    let dir = copy_example("deploy");
    let server = ExampleServer::start(&dir.path().join("server.py"));
    let file = dir.path().join("cairn.toml");
    let text = std::fs::read_to_string(&file).expect("the example's pipeline");
    std::fs::write(&file, text.replace("127.0.0.1:8081", &server.address)).expect("point it at the server");

    let (finished, events) = run_json(dir.path(), &["--approve", "production"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        !statuses(&events).contains_key("page"),
        "the monitor's handler waits for the monitor"
    );
    let v1 = server.page("production");
    assert!(String::from_utf8_lossy(&v1).contains("Hello from release 1.0"));
    assert_eq!(server.page("staging"), v1, "production runs what staging verified");

    let release = |version: &str| {
        let text = std::fs::read_to_string(&file).expect("read");
        let text = text.replace("version = \"1.0\"", &format!("version = \"{version}\""));
        std::fs::write(&file, text).expect("write");
    };
    release("2.0");
    let (finished, _) = run_json(dir.path(), &["--approve", "production"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(String::from_utf8_lossy(&server.page("production")).contains("release 2.0"));

    let rolled = finish(cairn(dir.path()).args(["rollback", "production", "--approve", "production"]));
    assert_eq!(rolled.code, Some(0), "{rolled:?}");
    assert_eq!(server.page("production"), v1, "release 1.0 again, byte for byte");
    let listed = finish(cairn(dir.path()).args(["deployments", "production"]));
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let rows: Vec<&str> = listed.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{}", listed.stdout);
    assert!(
        rows[0].contains("production") && rows[0].contains("succeeded"),
        "{}",
        listed.stdout
    );

    // One round of the monitor over the example's health check.
    let monitored = finish(cairn(dir.path()).args(["monitor", "health", "--every", "1s", "--rounds", "1"]));
    assert_eq!(monitored.code, Some(0), "{monitored:?}");
    assert!(
        monitored.stderr.contains("round 1 at ") && monitored.stderr.contains("health passing"),
        "{}",
        monitored.stderr
    );
}

#[test]
fn mistakes_in_delivery_commands_are_named() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url(), "1h"),
        &[("site/index.html", "<p>healthy</p>\n")],
    );
    let typo = finish(cairn(dir.path()).args(["run", "--approve", "prodution"]));
    assert_eq!(typo.code, Some(2), "{typo:?}");
    assert!(
        typo.stderr.contains(
            "--approve names `prodution`, which is not an environment of this pipeline; did you mean `production`?"
        ),
        "{}",
        typo.stderr
    );
    let nothing = finish(cairn(dir.path()).args(["rollback", "production"]));
    assert_eq!(nothing.code, Some(2), "{nothing:?}");
    assert!(
        nothing
            .stderr
            .contains("cannot roll back: `production` has no successful deployment to roll back to"),
        "{}",
        nothing.stderr
    );
    let unknown = finish(cairn(dir.path()).args(["rollback", "qa"]));
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(
        unknown.stderr.contains("the pipeline has no environment `qa`"),
        "{}",
        unknown.stderr
    );
    let missing = finish(cairn(dir.path()).args(["show-deployment", "7"]));
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("there is no deployment #7 of pipeline"),
        "{}",
        missing.stderr
    );
    let listed = finish(cairn(dir.path()).args(["deployments", "qa"]));
    assert_eq!(listed.code, Some(2), "{listed:?}");
    assert!(listed.stderr.contains("has no environment `qa`"), "{}", listed.stderr);
    assert_eq!(server.received().len(), 0, "nothing was sent anywhere");
}
