//! The content-addressed cache through the real binary: what reruns and what
//! does not, keys that do not depend on where the workspace is, outputs that
//! round-trip byte for byte, and a store that survives corruption, SIGKILL
//! and concurrent runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

/// Every path under `root` (links as links) with what it holds.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let metadata = std::fs::symlink_metadata(&path).expect("metadata");
            let value = if metadata.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).expect("a link").display())
            } else if metadata.is_dir() {
                pending.push(path);
                "dir".to_owned()
            } else {
                format!("file {:?}", std::fs::read(&path).expect("readable"))
            };
            entries.insert(relative, value);
        }
    }
    entries
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(stage, status)| ((*stage).to_owned(), (*status).to_owned()))
        .collect()
}

const GRAPH: &str = r#"
    [stages.constant]
    uses = "{probe}"
    inputs = ["a/**"]
    args = ["write", "/out/result.txt", "always the same"]

    [stages.copy-a]
    uses = "{probe}"
    inputs = ["a/**"]
    args = ["cat", "/src/a/data.txt"]

    [stages.copy-b]
    uses = "{probe}"
    inputs = ["b/**"]
    args = ["cat", "/src/b/data.txt"]

    [stages.after-constant]
    uses = "{probe}"
    needs = ["constant"]
    args = ["cat", "/in/constant/result.txt"]
"#;

#[test]
fn an_unchanged_pipeline_runs_nothing_and_a_change_reruns_exactly_what_it_affects() {
    let dir = pipeline_dir(GRAPH, &[("a/data.txt", "a1"), ("b/data.txt", "b1")]);
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        statuses(&events).values().all(|status| status == "succeeded"),
        "{events:#?}"
    );

    let (_, events) = run_json(dir.path(), &[]);
    assert!(
        statuses(&events).values().all(|status| status == "cached"),
        "{events:#?}"
    );
    let replayed = stage_stdout(&events, "copy-a");
    assert_eq!(replayed, ["a1"], "a hit replays the stage's log");

    // `b` changed: only the stage reading it runs.
    std::fs::write(dir.path().join("b/data.txt"), "b2").expect("write");
    let (_, events) = run_json(dir.path(), &[]);
    assert_eq!(
        statuses(&events),
        expect(&[
            ("constant", "cached"),
            ("copy-a", "cached"),
            ("copy-b", "succeeded"),
            ("after-constant", "cached")
        ])
    );

    // `a` changed: `constant` reruns but produces the same bytes, so what
    // needs it does not (early cutoff).
    std::fs::write(dir.path().join("a/data.txt"), "a2").expect("write");
    let (_, events) = run_json(dir.path(), &[]);
    assert_eq!(
        statuses(&events),
        expect(&[
            ("constant", "succeeded"),
            ("copy-a", "succeeded"),
            ("copy-b", "cached"),
            ("after-constant", "cached")
        ])
    );
    let constant = finished_stage(&events, "constant");
    assert!(constant["key"].as_str().is_some_and(|key| key.starts_with("blake3:")));
    assert!(
        constant["outputs_digest"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("blake3:"))
    );
}

#[test]
fn a_stage_whose_inputs_glob_changed_sees_the_files_of_the_new_glob() {
    // The workspace is walked for the globs of the last run while the
    // pipeline is parsed; a changed glob must not see that stale walk.
    let pipeline = |folder: &str| {
        format!(
            "[stages.show]\nuses = \"{{probe}}\"\ninputs = [\"{folder}/**\"]\nargs = [\"cat\", \"/src/{folder}/data.txt\"]\n"
        )
    };
    let dir = pipeline_dir(&pipeline("a"), &[("a/data.txt", "from a"), ("b/data.txt", "from b")]);
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(stage_stdout(&events, "show"), ["from a"]);

    let text = pipeline("b").replace("{probe}", cairn_test_programs::PROBE_COMPONENT);
    std::fs::write(dir.path().join("cairn.toml"), text).expect("write");
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(stage_stdout(&events, "show"), ["from b"]);

    // Plain output (not a terminal): every cached stage has its line, and
    // the summary comes last.
    let finished = finish(cairn(dir.path()).arg("run"));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let cached = finished
        .stderr
        .find("[show] cached in")
        .expect("a line for the cached stage");
    let summary = finished.stderr.find("pipeline succeeded").expect("a summary");
    assert!(cached < summary, "{}", finished.stderr);
}

#[test]
fn the_checked_pipeline_is_reused_only_while_its_text_and_components_are_unchanged() {
    let dir = pipeline_dir(
        "[stages.one]\nuses = \"./probe.wasm\"\nargs = [\"echo\", \"hi\"]\n",
        &[],
    );
    std::fs::copy(cairn_test_programs::PROBE_COMPONENT, dir.path().join("probe.wasm")).expect("copy");
    let (finished, _) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let entries = cache_for(dir.path()).join("pipelines-v1");
    assert_eq!(std::fs::read_dir(&entries).expect("kept").count(), 1);

    // The text is unchanged, but what `uses` names is gone: the file is
    // checked again and the problem reported at its place.
    std::fs::rename(dir.path().join("probe.wasm"), dir.path().join("moved.wasm")).expect("rename");
    let finished = finish(cairn(dir.path()).arg("run"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("cairn.toml:2:8: error: the component `./probe.wasm` does not exist"),
        "{}",
        finished.stderr
    );

    // A damaged entry is no entry.
    std::fs::rename(dir.path().join("moved.wasm"), dir.path().join("probe.wasm")).expect("rename");
    for entry in std::fs::read_dir(&entries).expect("kept") {
        std::fs::write(entry.expect("entry").path(), b"not an entry").expect("damage");
    }
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(finished_stage(&events, "one")["status"], "cached");
}

#[test]
fn a_component_file_is_read_only_when_a_stage_runs_and_checked_when_it_is() {
    let dir = pipeline_dir(
        "[stages.show]\nuses = \"./probe.wasm\"\ninputs = [\"src/**\"]\nargs = [\"echo\", \"hi\"]\n",
        &[("src/a.txt", "a")],
    );
    std::fs::copy(cairn_test_programs::PROBE_COMPONENT, dir.path().join("probe.wasm")).expect("copy");
    // Old enough for its stamp to be trusted.
    std::thread::sleep(Duration::from_millis(2_100));
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let key = finished_stage(&events, "show")["key"].clone();

    // What is remembered of the file stands for it while its stamp holds:
    // prove it by remembering a wrong digest. The key follows the
    // remembered digest without reading the file...
    let cache = cairn::CacheDir::open(cache_for(dir.path())).expect("cache");
    let mut state = cairn::state::WorkspaceState::load(&cache, dir.path());
    let (path, record) = state
        .components()
        .map(|(path, record)| (PathBuf::from(path), record.clone()))
        .next()
        .expect("the component is remembered");
    let doctored = cairn::state::ComponentRecord {
        digest: cairn::component::Digest::of(b"remembered"),
        ..record
    };
    state.record_component(&path, doctored);
    state.save().expect("saved");
    let (finished, events) = run_json(dir.path(), &[]);
    let show = finished_stage(&events, "show");
    assert_ne!(show["key"], key, "{finished:?}");
    // ...and the file is read once the stage must run: its bytes are not
    // those of the remembered digest, which is an error, not a wrong result.
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(show["status"], "failed");
    assert!(
        finished.stdout.contains("changed during the run; run again"),
        "{}",
        finished.stdout
    );

    // A component file that really changed is read again: its stages rerun.
    std::fs::copy(cairn_test_programs::PROBE_PREVIEW1, dir.path().join("probe.wasm")).expect("copy");
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(finished_stage(&events, "show")["status"], "succeeded");
    assert_ne!(finished_stage(&events, "show")["key"], key);
}

#[test]
fn a_pipeline_in_another_folder_sharing_the_cache_hits_every_stage() {
    let files = [("a/data.txt", "a"), ("b/data.txt", "b")];
    let first = pipeline_dir(GRAPH, &files);
    let second = pipeline_dir(GRAPH, &files);
    let shared = cache_for(first.path());
    let run = |dir: &Path| {
        let finished = finish(cairn(dir).env("CAIRN_CACHE", &shared).args(["run", "--json"]));
        assert_eq!(finished.code, Some(0), "{finished:?}");
        finished
            .stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect::<Vec<serde_json::Value>>()
    };
    let one = run(first.path());
    let two = run(second.path());
    assert!(statuses(&two).values().all(|status| status == "cached"), "{two:#?}");
    for stage in ["constant", "copy-a", "copy-b", "after-constant"] {
        assert_eq!(
            finished_stage(&one, stage)["key"],
            finished_stage(&two, stage)["key"],
            "{stage}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(second.path().join("cairn-out/constant/result.txt")).expect("restored"),
        "always the same"
    );
}

/// Runs the one-stage `pipeline`, removes what stage `stage` published, runs
/// again and checks the stage was restored from the cache as `read` saw it
/// the first time; returns that first reading.
fn restored_after_removal<T: PartialEq + std::fmt::Debug>(pipeline: &str, stage: &str, read: fn(&Path) -> T) -> T {
    let dir = pipeline_dir(pipeline, &[]);
    let (finished, _) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let out = dir.path().join("cairn-out").join(stage);
    let produced = read(&out);

    std::fs::remove_dir_all(&out).expect("remove the published outputs");
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(finished_stage(&events, stage)["status"], "cached");
    assert_eq!(read(&out), produced, "restored from the cache byte for byte");
    produced
}

#[test]
fn outputs_with_awkward_names_links_and_empty_folders_round_trip_byte_for_byte() {
    let produced = restored_after_removal(
        "[stages.awkward]\nuses = \"{probe}\"\nargs = [\"awkward\", \"/out\"]\n",
        "awkward",
        snapshot,
    );
    assert!(
        produced.contains_key("with\nnewline.txt") && produced.contains_key("empty dir"),
        "{produced:#?}"
    );
    assert_eq!(produced["link to space"], "link -> with space.txt");
    assert!(produced.keys().any(|name| name.len() == 200));
}

#[test]
fn twenty_thousand_output_files_round_trip() {
    let produced = restored_after_removal(
        "[stages.many]\nuses = \"{probe}\"\nargs = [\"many\", \"/out\", \"20000\"]\ntimeout = \"5m\"\n",
        "many",
        read_tree,
    );
    assert_eq!(produced.len(), 20_000);
}

/// The blobs of the cache used for `dir` whose contents are `contents`.
fn blobs_holding(dir: &Path, contents: &[u8]) -> Vec<PathBuf> {
    let blobs = cache_for(dir).join("cas-v1/blobs");
    let mut found = Vec::new();
    for shard in std::fs::read_dir(blobs).expect("blobs").flatten() {
        for blob in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            if std::fs::read(blob.path()).is_ok_and(|bytes| bytes == contents) {
                found.push(blob.path());
            }
        }
    }
    found
}

fn flip_first_byte(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("writable");
    let mut bytes = std::fs::read(path).expect("readable");
    bytes[0] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn a_corrupt_blob_is_detected_on_use_dropped_and_the_stage_reruns() {
    let dir = pipeline_dir(
        "[stages.make]\nuses = \"{probe}\"\nargs = [\"write\", \"/out/precious.txt\", \"precious output bytes\"]\n",
        &[],
    );
    let (finished, _) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let blobs = blobs_holding(dir.path(), b"precious output bytes");
    assert_eq!(blobs.len(), 1);
    flip_first_byte(&blobs[0]);

    // Force a restore from the store: the published copy is gone.
    std::fs::remove_dir_all(dir.path().join("cairn-out/make")).expect("remove");
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(
        finished_stage(&events, "make")["status"],
        "succeeded",
        "it ran again: {events:#?}"
    );
    assert!(
        events_of(&events, "stage_log").iter().any(|event| event["text"]
            .as_str()
            .is_some_and(|text| text.contains("could not be restored"))),
        "the damage is reported: {events:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cairn-out/make/precious.txt")).expect("published"),
        "precious output bytes",
        "nothing corrupt was restored"
    );
    let verify = finish(cairn(dir.path()).args(["cache", "verify"]));
    assert_eq!(verify.code, Some(0), "the run replaced the damaged blob: {verify:?}");
}

#[test]
fn cache_verify_finds_and_removes_corrupt_blobs() {
    let dir = pipeline_dir(
        "[stages.make]\nuses = \"{probe}\"\nargs = [\"write\", \"/out/x.txt\", \"verify me\"]\n",
        &[],
    );
    assert_eq!(run_json(dir.path(), &[]).0.code, Some(0));
    let blobs = blobs_holding(dir.path(), b"verify me");
    flip_first_byte(&blobs[0]);
    let verify = finish(cairn(dir.path()).args(["cache", "verify"]));
    assert_eq!(verify.code, Some(1), "{verify:?}");
    assert!(verify.stdout.contains("removed corrupt blob"), "{verify:?}");
    assert!(
        verify.stdout.contains("removed broken result"),
        "the result that needed it goes too: {verify:?}"
    );
    let again = finish(cairn(dir.path()).args(["cache", "verify"]));
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.contains("0 corrupt entries"), "{again:?}");
}

#[test]
fn four_runs_at_once_on_one_cache_all_succeed_and_leave_it_consistent() {
    let pipeline = (0..6)
        .map(|index| {
            format!(
                "[stages.s{index}]\nuses = \"{{probe}}\"\ninputs = [\"in/**\"]\nargs = [\"many\", \"/out\", \"300\"]\n"
            )
        })
        .collect::<String>();
    let workspaces: Vec<_> = (0..4)
        .map(|_| pipeline_dir(&pipeline, &[("in/data.txt", "shared input")]))
        .collect();
    let shared = cache_for(workspaces[0].path());
    let children: Vec<_> = workspaces
        .iter()
        .map(|dir| {
            cairn(dir.path())
                .env("CAIRN_CACHE", &shared)
                .args(["run", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starts")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("exits");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for dir in &workspaces {
        assert_eq!(read_tree(&dir.path().join("cairn-out/s5")).len(), 300);
    }
    let verify = finish(
        cairn(workspaces[0].path())
            .env("CAIRN_CACHE", &shared)
            .args(["cache", "verify"]),
    );
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

#[test]
fn sigkill_at_any_point_leaves_nothing_corrupt_or_half_written() {
    let pipeline = (0..8)
        .map(|index| {
            format!("[stages.s{index}]\nuses = \"{{probe}}\"\nargs = [\"many\", \"/out\", \"800\"]\ncache = false\n")
        })
        .collect::<String>();
    let dir = pipeline_dir(&pipeline, &[]);
    let scratch = cache_for(dir.path()).join("tmp");
    let mut interrupted_writes = 0;
    // Killed once each stage in turn has started: it is then writing its
    // 800 files (the first ones sooner, the later ones while others are
    // stored and published).
    for kill_after in 1..=8 {
        let mut child = cairn(dir.path())
            .args(["run", "-j", "2", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starts");
        let events = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut started = 0;
        for line in std::io::BufRead::lines(events).map_while(Result::ok) {
            if line.contains(r#""event":"stage_started""#) {
                started += 1;
                if started == kill_after {
                    break;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        // What a killed run was writing is left in the scratch folder, for
        // the next run to clean up: proof that the kill landed mid-write.
        let left = std::fs::read_dir(&scratch).map_or(0, |entries| entries.count());
        interrupted_writes += usize::from(left > 0);
    }
    assert!(interrupted_writes > 0, "no kill landed while a stage was writing");
    let verify = finish(cairn(dir.path()).args(["cache", "verify"]));
    assert_eq!(verify.code, Some(0), "{verify:?}");
    assert!(verify.stdout.contains("0 corrupt entries"), "{verify:?}");

    let finished = finish(cairn(dir.path()).arg("run"));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    for index in 0..8 {
        let out = dir.path().join(format!("cairn-out/s{index}"));
        let files = read_tree(&out);
        assert_eq!(files.len(), 800, "s{index}");
        assert_eq!(files["000/7.txt"], b"7");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("cairn-out"))
        .expect("cairn-out")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".cairn-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn explain_says_which_part_of_the_key_changed() {
    let dir = pipeline_dir(
        "[stages.show]\nuses = \"{probe}\"\ninputs = [\"src/**\"]\nenv = { LEVEL = \"1\" }\nargs = [\"env\"]\n",
        &[("src/main.txt", "v1"), ("src/other.txt", "same")],
    );
    let finished = finish(cairn(dir.path()).args(["explain", "show"]));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished.stderr.contains("has not run in this workspace yet"),
        "{finished:?}"
    );

    assert_eq!(run_json(dir.path(), &[]).0.code, Some(0));
    let explained = finish(cairn(dir.path()).args(["explain", "show"]));
    assert!(
        explained.stdout.contains("It had not run before in this workspace"),
        "{explained:?}"
    );

    let toml = std::fs::read_to_string(dir.path().join("cairn.toml")).expect("read");
    std::fs::write(
        dir.path().join("cairn.toml"),
        toml.replace("LEVEL = \"1\"", "LEVEL = \"2\""),
    )
    .expect("write");
    std::fs::write(dir.path().join("src/main.txt"), "v2").expect("write");
    assert_eq!(run_json(dir.path(), &[]).0.code, Some(0));
    let explained = finish(cairn(dir.path()).args(["explain", "show"]));
    assert_eq!(explained.code, Some(0), "{explained:?}");
    assert!(
        explained.stdout.contains("stage `show` ran in the last run"),
        "{explained:?}"
    );
    assert!(
        explained.stdout.contains("env `LEVEL` changed: `1` → `2`"),
        "{explained:?}"
    );
    assert!(
        explained
            .stdout
            .contains("its input files changed\n      ~ src/main.txt\n"),
        "{explained:?}"
    );
    assert!(
        !explained.stdout.contains("other.txt"),
        "only what changed is listed: {explained:?}"
    );

    assert_eq!(run_json(dir.path(), &[]).0.code, Some(0));
    let explained = finish(cairn(dir.path()).args(["explain", "show"]));
    assert!(explained.stdout.contains("was cached in the last run"), "{explained:?}");
}

#[test]
fn check_reruns_cached_stages_and_reports_nondeterminism() {
    let dir = pipeline_dir(
        r#"
        [stages.steady]
        uses = "{probe}"
        args = ["write", "/out/steady.txt", "same every time"]

        [stages.dice]
        uses = "{probe}"
        args = ["random-file", "/out/roll.bin"]
        random = "secure"
        # Impure, so reused only when its author says so: which lets --check
        # show what reusing it would hide.
        cache = true
        "#,
        &[],
    );
    assert_eq!(run_json(dir.path(), &[]).0.code, Some(0));
    let (finished, events) = run_json(dir.path(), &["--check"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(finished_stage(&events, "steady")["status"], "cached");
    let error = stage_error(&events, "dice");
    assert!(error.starts_with("nondeterministic"), "{error}");
    assert!(error.contains("~ roll.bin"), "names the differing file: {error}");
}

#[test]
fn no_cache_and_cache_false_run_every_time_and_failures_are_never_cached() {
    let dir = pipeline_dir(
        r#"
        [stages.cached]
        uses = "{probe}"
        args = ["echo", "x"]
        [stages.deploy]
        uses = "{probe}"
        args = ["echo", "deploying"]
        cache = false
        [stages.broken]
        uses = "{probe}"
        args = ["exit", "1"]
        "#,
        &[],
    );
    let _ = run_json(dir.path(), &[]);
    let (_, events) = run_json(dir.path(), &[]);
    assert_eq!(
        statuses(&events),
        expect(&[("cached", "cached"), ("deploy", "succeeded"), ("broken", "failed")])
    );
    assert_eq!(
        finished_stage(&events, "broken")["attempts"],
        1,
        "a failure is run again, not replayed"
    );
    let (_, events) = run_json(dir.path(), &["--no-cache"]);
    assert_eq!(finished_stage(&events, "cached")["status"], "succeeded");
}

#[test]
fn gc_evicts_least_recently_used_results_and_clear_empties_the_cache() {
    let pipeline = (0..5)
        .map(|index| {
            format!(
                "[stages.s{index}]\nuses = \"{{probe}}\"\nargs = [\"many\", \"/out\", \"{}\"]\n",
                100 + index
            )
        })
        .collect::<String>();
    let dir = pipeline_dir(&pipeline, &[]);
    assert_eq!(run_json(dir.path(), &[]).0.code, Some(0));
    let stats = finish(cairn(dir.path()).args(["cache", "stats"]));
    assert!(stats.stdout.contains("results          5 stages"), "{stats:?}");

    let gc = finish(cairn(dir.path()).args(["cache", "gc", "--max-size", "8KiB"]));
    assert_eq!(gc.code, Some(0), "{gc:?}");
    assert!(gc.stdout.contains("evicted"), "{gc:?}");
    let stats = finish(cairn(dir.path()).args(["cache", "stats"]));
    assert!(
        !stats.stdout.contains("results          5 stages"),
        "some results were evicted: {stats:?}"
    );
    assert_eq!(
        finish(cairn(dir.path()).args(["cache", "verify"])).code,
        Some(0),
        "what is left is whole"
    );

    // Evicted stages run again; what survived is still reused.
    for index in 0..5 {
        std::fs::remove_dir_all(dir.path().join(format!("cairn-out/s{index}"))).expect("remove");
    }
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        statuses(&events).values().any(|status| status == "succeeded"),
        "{events:#?}"
    );

    let clear = finish(cairn(dir.path()).args(["cache", "clear"]));
    assert_eq!(clear.code, Some(0), "{clear:?}");
    let stats = finish(cairn(dir.path()).args(["cache", "stats"]));
    assert!(stats.stdout.contains("results          0 stages"), "{stats:?}");
}

#[test]
fn a_rust_stage_built_in_two_checkouts_has_one_digest_and_the_second_checkout_hits_everything() {
    let parent = tempfile::tempdir().expect("tempdir");
    let first = parent.path().join("one");
    let second = parent.path().join("elsewhere/deeper/two");
    let example = repository().join("examples/site");
    copy_tree(&example, &first);
    copy_tree(&example, &second);
    let shared = cache_for(&first);
    let run = |checkout: &Path| {
        let finished = finish(cairn(checkout).env("CAIRN_CACHE", &shared).args(["run", "--json"]));
        assert_eq!(finished.code, Some(0), "{finished:?}");
        finished
            .stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect::<Vec<serde_json::Value>>()
    };
    let one = run(&first);
    let two = run(&second);
    assert_eq!(statuses(&two).len(), 5);
    assert!(statuses(&two).values().all(|status| status == "cached"), "{two:#?}");
    assert_eq!(
        finished_stage(&one, "render")["key"],
        finished_stage(&two, "render")["key"]
    );
}
