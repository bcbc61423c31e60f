//! The pipeline commands as a user meets them: `cairn init`, `validate`,
//! `graph`, the example pipeline, what `run` prints in CI and as JSON, and
//! Ctrl-C.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

#[test]
fn the_example_pipeline_builds_its_stage_and_runs_green_outside_the_repository() {
    // A copy in a folder of its own, as a newcomer starts their pipeline:
    // its Rust stage builds with the SDK cairn embeds.
    let copy = copy_example("site");
    let example = copy.path();
    let finished = finish(cairn(example).args(["run", "--no-cache"]));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        finished.stderr.contains("pipeline succeeded: 5 succeeded"),
        "{finished:?}"
    );
    let out = example.join("cairn-out");
    let pages = std::fs::read_to_string(out.join("render/welcome.html")).expect("rendered");
    assert!(pages.contains("<h1>Welcome</h1>"), "{pages}");
    assert_eq!(
        std::fs::read_to_string(out.join("announce[locale=fr]/announcement.txt")).expect("announced"),
        "2 pages publiées\n"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats/wc.json")).expect("counted")).expect("JSON");
    assert_eq!(stats["files"].as_array().map(Vec::len), Some(3));

    // The stage folder was built once; an unchanged folder is not rebuilt,
    // and an unchanged pipeline runs nothing.
    let again = finish(cairn(example).arg("run"));
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(!again.stderr.contains("building the Rust stage folder"), "{again:?}");
    assert!(
        again.stderr.contains("pipeline succeeded: 0 succeeded, 5 cached"),
        "{again:?}"
    );
}

#[test]
fn a_stage_folder_is_rebuilt_when_and_only_when_its_sources_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stage = dir.path().join("stages/hello");
    std::fs::create_dir_all(stage.join("src")).expect("mkdir");
    std::fs::write(
        stage.join("Cargo.toml"),
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\ncairn-sdk = \"0.1\"\n\n[workspace]\n",
    )
    .expect("write");
    // Reuse the example's lock file so the build resolves offline to the same versions.
    std::fs::copy(
        repository().join("examples/site/stages/render/Cargo.lock"),
        stage.join("Cargo.lock"),
    )
    .expect("copy");
    let source = |greeting: &str| {
        format!(
            "use cairn_sdk::{{Invocation, Outcome, Stage}};\nstruct Hello;\nimpl Stage for Hello {{\n    \
             fn run(_: Invocation) -> cairn_sdk::Result<Outcome> {{ Ok(Outcome::new().summary({greeting:?})) }}\n}}\n\
             cairn_sdk::export!(Hello);\n"
        )
    };
    std::fs::write(stage.join("src/lib.rs"), source("hello")).expect("write");
    std::fs::write(
        dir.path().join("cairn.toml"),
        "[stages.hello]\nuses = \"./stages/hello\"\n",
    )
    .expect("write");

    let first = finish(cairn(dir.path()).args(["run"]));
    assert_eq!(first.code, Some(0), "{first:?}");
    assert!(first.stderr.contains("building the Rust stage folder"), "{first:?}");
    assert!(
        first.stderr.contains("succeeded in") && first.stderr.contains("hello"),
        "{first:?}"
    );

    let unchanged = finish(cairn(dir.path()).args(["run"]));
    assert!(
        !unchanged.stderr.contains("building the Rust stage folder"),
        "{unchanged:?}"
    );

    std::fs::write(stage.join("src/lib.rs"), source("bonjour")).expect("write");
    let changed = finish(cairn(dir.path()).args(["run"]));
    assert_eq!(changed.code, Some(0), "{changed:?}");
    assert!(changed.stderr.contains("building the Rust stage folder"), "{changed:?}");
    assert!(changed.stderr.contains("bonjour"), "{changed:?}");
}

#[test]
fn a_stage_folder_that_does_not_compile_stops_the_run_before_any_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stage = dir.path().join("broken");
    std::fs::create_dir_all(stage.join("src")).expect("mkdir");
    std::fs::write(
        stage.join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[lib]\ncrate-type = [\"cdylib\"]\n[workspace]\n",
    )
    .expect("write");
    std::fs::write(stage.join("src/lib.rs"), "this is not rust").expect("write");
    std::fs::write(dir.path().join("cairn.toml"), "[stages.broken]\nuses = \"./broken\"\n").expect("write");
    let finished = finish(cairn(dir.path()).args(["run"]));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    // One clear error: the stage, then the folder, then cargo's verdict
    // naming the manifest; each said once, and no unused-patch noise.
    let ours: Vec<&str> = finished
        .stderr
        .lines()
        .skip_while(|line| !line.starts_with("error: stage"))
        .collect();
    assert_eq!(ours[0], "error: stage `broken` has no component to run", "{finished:?}");
    assert_eq!(
        ours[1], "  caused by: cannot build the stage folder `./broken`",
        "{finished:?}"
    );
    assert!(
        ours[2].starts_with("  caused by: `cargo build` of `")
            && ours[2].contains("broken/Cargo.toml` for wasm32-wasip2 failed"),
        "{finished:?}"
    );
    assert_eq!(
        finished.stderr.matches("cannot build the stage folder").count(),
        1,
        "{finished:?}"
    );
    assert!(
        !finished.stderr.contains("was not used in the crate graph"),
        "{finished:?}"
    );
    assert!(
        !finished.stderr.contains("pipeline `"),
        "no stage started: {finished:?}"
    );
}

#[test]
fn init_writes_a_starter_that_runs_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("README.md"), "# My project\n\nHello.\n").expect("write");
    std::fs::write(dir.path().join("settings.json"), "{\"debug\": false}").expect("write");

    let finished = finish(cairn(dir.path()).arg("init"));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let starter = std::fs::read_to_string(dir.path().join("cairn.toml")).expect("written");
    assert!(
        starter.contains("[stages.validate]") && starter.contains("# "),
        "commented: {starter}"
    );

    let run = finish(cairn(dir.path()).arg("run"));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("pipeline succeeded: 2 succeeded"), "{run:?}");

    let again = finish(cairn(dir.path()).arg("init"));
    assert_eq!(again.code, Some(2), "{again:?}");
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("--force"),
        "{again:?}"
    );
}

#[test]
fn validate_and_graph_describe_the_pipeline_without_running_it() {
    let dir = pipeline_dir(
        r#"
        [pipeline]
        name = "demo"
        [stages.lint]
        uses = "std:validate"
        [stages.test]
        uses = "std:wc"
        matrix = { os = ["linux", "mac"] }
        needs = ["lint"]
        [stages.ship]
        uses = "std:wc"
        needs = ["test"]
        "#,
        &[],
    );
    let finished = finish(cairn(dir.path()).arg("validate"));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("cairn.toml is valid: pipeline `demo`, 4 stages"),
        "{finished:?}"
    );
    assert!(!dir.path().join("cairn-out").exists(), "nothing ran");

    let mermaid = finish(cairn(dir.path()).arg("graph"));
    assert_eq!(
        mermaid.stdout,
        "flowchart LR\n    s0[\"lint\"]\n    s1[\"test[os=linux]\"]\n    s2[\"test[os=mac]\"]\n    s3[\"ship\"]\n    \
         s0 --> s1\n    s0 --> s2\n    s1 --> s3\n    s2 --> s3\n"
    );
    let dot = finish(cairn(dir.path()).args(["graph", "--format", "dot"]));
    assert!(dot.stdout.starts_with("digraph pipeline {"), "{dot:?}");
    assert!(dot.stdout.contains("    \"test[os=mac]\" -> \"ship\";\n"), "{dot:?}");
}

#[test]
fn without_a_terminal_run_prints_plain_prefixed_lines_and_a_summary() {
    let dir = pipeline_dir(
        r#"
        [stages.hello]
        uses = "{probe}"
        args = ["echo", "hello world"]
        [stages.count]
        uses = "std:wc"
        needs = ["hello"]
        "#,
        &[],
    );
    let finished = finish(cairn(dir.path()).env_remove("NO_COLOR").arg("run"));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(!finished.stderr.contains('\x1b'), "no escape codes: {finished:?}");
    assert!(
        finished.stderr.contains("[hello] started\n[hello] hello world\n"),
        "{finished:?}"
    );
    assert!(
        finished.stderr.contains("[hello] hello world (stderr)\n"),
        "{finished:?}"
    );
    assert!(finished.stderr.contains("[count] succeeded in"), "{finished:?}");
    let table = finished.stderr.split("\nstage ").nth(1).expect("a summary table");
    assert!(
        table.contains("hello  succeeded") && table.contains("count  succeeded"),
        "{finished:?}"
    );
    let last = finished.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("pipeline succeeded: 2 succeeded in "), "{finished:?}");
}

#[test]
fn json_events_follow_the_documented_schema() {
    let dir = pipeline_dir(
        r#"
        [stages.probe]
        uses = "{stage_probe}"
        args = ["a"]
        [stages.skipped]
        uses = "{stage_probe}"
        if = "false"
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        finished.stderr.is_empty() || !finished.stderr.contains("[probe]"),
        "JSON mode prints no lines: {finished:?}"
    );
    let kinds: Vec<&str> = events.iter().filter_map(|event| event["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"pipeline_started"));
    assert_eq!(kinds.last(), Some(&"pipeline_finished"));
    for kind in [
        "stage_started",
        "stage_log",
        "stage_progress",
        "stage_annotation",
        "stage_finished",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let started = &events[0];
    assert_eq!(
        started["pipeline"],
        dir.path().file_name().expect("name").to_string_lossy().as_ref()
    );
    assert_eq!(started["stages"], serde_json::json!(["probe", "skipped"]));
    assert!(started["jobs"].as_u64().is_some_and(|jobs| jobs >= 1));

    let probe = finished_stage(&events, "probe");
    assert_eq!(probe["status"], "succeeded");
    assert!(probe["duration_ms"].is_u64());
    assert_eq!(probe["attempts"], 1);
    assert_eq!(probe["summary"], "echoed 1 args");
    assert_eq!(probe["outputs"]["args"], "a");
    assert!(probe.get("error").is_none());

    let skipped = finished_stage(&events, "skipped");
    assert_eq!(
        (skipped["status"].as_str(), skipped["duration_ms"].as_u64()),
        (Some("skipped"), Some(0))
    );

    let log = events
        .iter()
        .find(|event| event["event"] == "stage_log")
        .expect("a log line");
    for field in ["stage", "source", "level", "text"] {
        assert!(log.get(field).is_some(), "{field} in {log}");
    }
    let annotation = events
        .iter()
        .find(|event| event["event"] == "stage_annotation")
        .expect("an annotation");
    assert_eq!(
        (
            &annotation["path"],
            &annotation["line"],
            &annotation["column"],
            &annotation["severity"]
        ),
        (
            &serde_json::json!("file.txt"),
            &serde_json::json!(3),
            &serde_json::json!(7),
            &serde_json::json!("warn")
        )
    );
    let summary = events.last().expect("events");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(
        (
            summary["succeeded"].as_u64(),
            summary["skipped"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
}

#[test]
fn an_invalid_pipeline_or_a_missing_file_exits_2_before_running_anything() {
    let dir = pipeline_dir("[stages.a]\nuses = \"std:wc\"\nneeds = [\"b\"]\n", &[]);
    let finished = finish(cairn(dir.path()).arg("run"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished.stderr.starts_with("cairn.toml:3:10: error: `needs` names `b`"),
        "{finished:?}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let finished = finish(cairn(empty.path()).arg("run"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished.stderr.contains("cannot read the pipeline file `cairn.toml`"),
        "{finished:?}"
    );

    let finished =
        finish(cairn(empty.path()).args(["run", "-C", dir.path().to_str().expect("utf-8"), "-f", "other.toml"]));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("other.toml"), "{finished:?}");
}

#[test]
fn ctrl_c_stops_running_stages_exits_130_and_publishes_nothing_half_written() {
    let dir = pipeline_dir(
        r#"
        [stages.quick]
        uses = "{probe}"
        args = ["write", "/out/done.txt", "yes"]
        [stages.slow]
        uses = "{probe}"
        needs = ["quick"]
        args = ["write", "/out/partial.txt", "x", "&&", "spin"]
        [stages.after]
        uses = "{probe}"
        needs = ["slow"]
        args = ["echo", "never"]
        "#,
        &[],
    );
    let child = cairn(dir.path())
        .args(["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    wait_for(&dir.path().join("cairn-out/quick/done.txt"));
    std::thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("exits");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(130), "{stdout}");
    assert!(
        dir.path().join("cairn-out/quick/done.txt").is_file(),
        "finished stages keep their outputs"
    );
    assert!(
        !dir.path().join("cairn-out/slow").exists(),
        "the interrupted stage published nothing"
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(finished_stage(&events, "slow")["error"], "interrupted");
    assert_eq!(finished_stage(&events, "after")["status"], "skipped");
    assert_eq!(events.last().expect("events")["status"], "interrupted");
}

fn wait_for(path: &Path) {
    for _ in 0..600 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never appeared", path.display());
}
