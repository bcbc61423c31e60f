//! Pipelines run end to end through the real `cairn` binary and real
//! components: the shapes of graphs, matrices, conditions, outputs passed
//! between stages, retries and how failures propagate.

use std::io::Write;
use std::net::TcpListener;

use crate::support::*;

#[test]
fn a_diamond_runs_each_stage_after_what_it_needs_and_passes_outputs_along() {
    let dir = pipeline_dir(
        r#"
        [stages.a]
        uses = "{probe}"
        args = ["write", "/out/a.txt", "from a"]

        [stages.b]
        uses = "{probe}"
        needs = ["a"]
        args = ["cat", "/in/a/a.txt", "&&", "write", "/out/b.txt", "from b"]

        [stages.c]
        uses = "{probe}"
        needs = ["a"]
        args = ["cat", "/in/a/a.txt", "&&", "write", "/out/c.txt", "from c"]

        [stages.d]
        uses = "{probe}"
        needs = ["b", "c"]
        args = ["cat", "/in/b/b.txt", "&&", "cat", "/in/c/c.txt"]
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(stage_stdout(&events, "b"), ["from a"]);
    assert_eq!(stage_stdout(&events, "d"), ["from bfrom c"], "`cat` adds no newline");
    let position = |kind: &str, stage: &str| {
        events
            .iter()
            .position(|event| event["event"] == kind && event["stage"] == stage)
            .unwrap_or_else(|| panic!("no {kind} for {stage}"))
    };
    assert!(position("stage_started", "d") > position("stage_finished", "b"));
    assert!(position("stage_started", "d") > position("stage_finished", "c"));
    assert!(position("stage_started", "b") > position("stage_finished", "a"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cairn-out/c/c.txt")).expect("published"),
        "from c"
    );
}

#[test]
fn a_stage_sees_only_the_stages_it_needs() {
    let dir = pipeline_dir(
        r#"
        [stages.a]
        uses = "{probe}"
        args = ["write", "/out/a.txt", "x"]

        [stages.b]
        uses = "{probe}"
        needs = ["a"]
        args = ["write", "/out/b.txt", "y"]

        [stages.c]
        uses = "{probe}"
        needs = ["b"]
        args = ["read", "/in/a/a.txt"]
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(finished_stage(&events, "c")["status"], "failed");
    assert!(stage_stdout(&events, "c")[0].contains("NotFound"), "{events:#?}");
}

#[test]
fn a_fan_out_runs_at_most_jobs_stages_at_once() {
    let mut pipeline = String::from("[stages.root]\nuses = \"{probe}\"\nargs = [\"write\", \"/out/seed\", \"1\"]\n");
    for index in 0..12 {
        pipeline.push_str(&format!(
            "[stages.leaf{index}]\nuses = \"{{probe}}\"\nneeds = [\"root\"]\nargs = [\"sleep\", \"50\", \"&&\", \"read\", \"/in/root/seed\"]\n"
        ));
    }
    let dir = pipeline_dir(&pipeline, &[]);
    let (finished, events) = run_json(dir.path(), &["-j", "3"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let mut running: i32 = 0;
    let mut most = 0;
    for event in &events {
        match event["event"].as_str() {
            Some("stage_started") => running += 1,
            Some("stage_finished") => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!(most, 3, "12 leaves with -j 3 run three at a time");
    assert_eq!(events.last().expect("events")["succeeded"], 13);
}

#[test]
fn a_matrix_expands_into_one_stage_per_value_and_its_dependents_need_them_all() {
    let dir = pipeline_dir(
        r#"
        [stages.build]
        uses = "{stage_probe}"
        matrix = { target = ["x86", "arm"], profile = ["debug"] }
        args = ["--target=${{ matrix.target }}", "--profile=${{ matrix.profile }}"]
        with = { arch = "${{ matrix.target }}" }

        [stages.package]
        uses = "{stage_probe}"
        needs = ["build"]
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let x86 = finished_stage(&events, "build[target=x86,profile=debug]");
    assert_eq!(x86["outputs"]["args"], "--target=x86 --profile=debug");
    assert_eq!(x86["outputs"]["config.arch"], "x86");
    assert_eq!(
        finished_stage(&events, "build[target=arm,profile=debug]")["outputs"]["config.arch"],
        "arm"
    );
    assert_eq!(
        finished_stage(&events, "package")["outputs"]["inputs"],
        "build[target=arm,profile=debug],build[target=x86,profile=debug]"
    );
    assert!(
        dir.path()
            .join("cairn-out/build[target=arm,profile=debug]/echo.txt")
            .is_file()
    );
}

#[test]
fn outputs_of_a_needed_stage_fill_in_args_with_and_env() {
    let dir = pipeline_dir(
        r#"
        [stages.version]
        uses = "{stage_probe}"
        args = ["1.4.2"]

        [stages.release]
        uses = "{stage_probe}"
        needs = ["version"]
        args = ["v${{ stages.version.outputs.args }}"]
        with = { tag = "release-${{ stages.version.outputs.args }}" }

        [stages.show-env]
        uses = "{probe}"
        needs = ["version"]
        args = ["env"]
        env = { VERSION = "${{ stages.version.outputs.args }}" }
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let release = finished_stage(&events, "release");
    assert_eq!(release["outputs"]["args"], "v1.4.2");
    assert_eq!(release["outputs"]["config.tag"], "release-1.4.2");
    assert_eq!(stage_stdout(&events, "show-env"), ["VERSION=1.4.2"]);
}

#[test]
fn a_reference_to_an_output_the_stage_did_not_return_fails_that_stage() {
    let dir = pipeline_dir(
        r#"
        [stages.version]
        uses = "{stage_probe}"

        [stages.release]
        uses = "{stage_probe}"
        needs = ["version"]
        args = ["${{ stages.version.outputs.nonexistent }}"]
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "release");
    assert!(
        error.contains("stage `version` returned no output of that name"),
        "{error}"
    );
}

#[test]
fn conditions_read_the_environment_the_branch_and_upstream_results() {
    let dir = pipeline_dir(
        r#"
        [stages.check]
        uses = "{stage_probe}"
        args = ["ok"]

        [stages.on-flag]
        uses = "{stage_probe}"
        if = "env.CAIRN_TEST_DEPLOY == 'yes'"

        [stages.on-main]
        uses = "{stage_probe}"
        if = "${{ branch == 'main' }}"

        [stages.on-output]
        uses = "{stage_probe}"
        needs = ["check"]
        if = "stages.check.outputs.args == 'ok' && startsWith(branch, 'ma')"

        [stages.on-other-output]
        uses = "{stage_probe}"
        needs = ["check"]
        if = "stages.check.outputs.args != 'ok'"

        [stages.after-skipped]
        uses = "{stage_probe}"
        needs = ["on-other-output"]
        "#,
        &[(".git/HEAD", "ref: refs/heads/main\n")],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "a skipped stage is not a failure: {finished:?}");
    assert_eq!(finished_stage(&events, "on-flag")["status"], "skipped");
    assert_eq!(
        finished_stage(&events, "on-flag")["reason"],
        "its `if` condition is false"
    );
    assert_eq!(finished_stage(&events, "on-main")["status"], "succeeded");
    assert_eq!(finished_stage(&events, "on-output")["status"], "succeeded");
    assert_eq!(finished_stage(&events, "on-other-output")["status"], "skipped");
    assert_eq!(
        finished_stage(&events, "after-skipped")["reason"],
        "needs `on-other-output`, which was skipped"
    );

    let (_, events) = {
        let finished = finish(
            cairn(dir.path())
                .env("CAIRN_TEST_DEPLOY", "yes")
                .args(["run", "--json", "on-flag"]),
        );
        let events: Vec<serde_json::Value> = finished
            .stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        (finished, events)
    };
    assert_eq!(finished_stage(&events, "on-flag")["status"], "succeeded");
}

#[test]
fn a_condition_on_a_failed_result_runs_a_stage_after_a_failure() {
    let dir = pipeline_dir(
        r#"
        [stages.test]
        uses = "{stage_probe}"
        with = { mode = "fail" }

        [stages.notify]
        uses = "{stage_probe}"
        needs = ["test"]
        if = "stages.test.result == 'failed'"
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(finished_stage(&events, "notify")["status"], "succeeded");
    assert_eq!(
        finished_stage(&events, "notify")["outputs"]["inputs"],
        "",
        "a failed stage's outputs are not shown"
    );
}

/// A loopback server that answers `busy` to the first `busy` connections
/// and `ok` after that, for `probe fetch`.
fn flaky_server(busy: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let address = listener.local_addr().expect("bound").to_string();
    let handle = std::thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate().take(busy + 1) {
            let Ok(mut stream) = stream else { return };
            let _ = stream.write_all(if index < busy { b"busy" } else { b"ok" });
        }
    });
    (address, handle)
}

#[test]
fn retries_rerun_a_flaky_stage_until_it_succeeds() {
    let (address, server) = flaky_server(2);
    let dir = pipeline_dir(
        &format!(
            r#"
            [stages.deploy]
            uses = "{{probe}}"
            args = ["fetch", "{address}"]
            network = ["{address}"]
            retries = 3
            "#
        ),
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let deploy = finished_stage(&events, "deploy");
    assert_eq!(deploy["attempts"], 3);
    let attempts: Vec<&serde_json::Value> = events_of(&events, "stage_started")
        .into_iter()
        .map(|event| &event["attempt"])
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    server.join().expect("the server ends");
}

#[test]
fn without_retries_a_flaky_stage_fails_once() {
    let (address, _server) = flaky_server(1);
    let dir = pipeline_dir(
        &format!(
            r#"
            [stages.deploy]
            uses = "{{probe}}"
            args = ["fetch", "{address}"]
            network = ["{address}"]
            "#
        ),
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(finished_stage(&events, "deploy")["attempts"], 1);
    assert_eq!(
        stage_stdout(&events, "deploy"),
        ["busy", "error: the server answered `busy`"]
    );
}

const FAILING_PIPELINE: &str = r#"
    [stages.broken]
    uses = "{probe}"
    args = ["exit", "1"]

    [stages.independent]
    uses = "{probe}"
    args = ["write", "/out/x", "y"]

    [stages.downstream]
    uses = "{probe}"
    needs = ["broken"]
"#;

#[test]
fn a_failure_runs_independent_stages_unless_fail_fast() {
    let dir = pipeline_dir(FAILING_PIPELINE, &[]);
    let (finished, events) = run_json(dir.path(), &["-j", "1", "--fail-fast"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(finished_stage(&events, "broken")["status"], "failed");
    assert_eq!(
        finished_stage(&events, "broken")["error"],
        "exited with failure (status 1)"
    );
    let independent = finished_stage(&events, "independent");
    assert_eq!(independent["status"], "skipped");
    assert!(
        independent["reason"]
            .as_str()
            .expect("a reason")
            .contains("--fail-fast")
    );
    assert_eq!(finished_stage(&events, "downstream")["status"], "skipped");

    let (finished, events) = run_json(dir.path(), &["-j", "1"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(finished_stage(&events, "independent")["status"], "succeeded");
    assert_eq!(
        finished_stage(&events, "downstream")["reason"],
        "needs `broken`, which failed"
    );
    let summary = events.last().expect("events");
    assert_eq!(
        (
            summary["event"].as_str(),
            summary["status"].as_str(),
            &summary["failed"],
            &summary["skipped"]
        ),
        (
            Some("pipeline_finished"),
            Some("failed"),
            &serde_json::json!(1),
            &serde_json::json!(1)
        )
    );
}

#[test]
fn naming_stages_runs_them_and_what_they_need_only() {
    let dir = pipeline_dir(
        r#"
        [stages.a]
        uses = "{probe}"
        args = ["echo", "a"]
        [stages.build]
        uses = "{probe}"
        needs = ["a"]
        args = ["echo", "b"]
        [stages.c]
        uses = "{probe}"
        args = ["echo", "c"]
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &["build"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(events[0]["stages"], serde_json::json!(["a", "build"]));

    let finished = finish(cairn(dir.path()).args(["run", "biuld"]));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("the pipeline has no stage `biuld`; did you mean `build`?"),
        "{finished:?}"
    );
}

#[test]
fn inputs_globs_choose_what_a_stage_sees_at_src_and_gitignored_files_stay_out() {
    let dir = pipeline_dir(
        r#"
        [stages.list]
        uses = "{stage_probe}"
        [stages.look]
        uses = "{probe}"
        inputs = ["docs/**/*.md", "*.toml"]
        args = ["list", "/src", "&&", "list", "/src/docs", "&&", "read", "/src/docs/secret.md"]
        "#,
        &[
            ("docs/a.md", "a"),
            ("docs/secret.md", "hidden"),
            ("docs/b.txt", "b"),
            ("top.toml", "x = 1"),
            (".gitignore", "docs/secret.md\n"),
        ],
    );
    let (finished, events) = run_json(dir.path(), &["look"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(
        stage_stdout(&events, "look"),
        [
            "cairn.toml",
            "docs",
            "top.toml",
            "a.md",
            "error: NotFound: No such file or directory (os error 44)"
        ]
    );
}

#[test]
fn secrets_reach_the_stage_masked_and_a_missing_one_fails_the_stage() {
    let dir = pipeline_dir(
        r#"
        [stages.deploy]
        uses = "{stage_probe}"
        secrets = ["DEPLOY_TOKEN"]
        with = { secret = "DEPLOY_TOKEN" }
        "#,
        &[("deploy.env", "DEPLOY_TOKEN=from-the-file-123\n")],
    );
    let finished = finish(
        cairn(dir.path())
            .env("DEPLOY_TOKEN", "from-the-env-456")
            .args(["run", "--json"]),
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(finished.stdout.contains("the secret is ***"), "{finished:?}");
    assert!(!finished.stdout.contains("from-the-env-456"));

    let finished = finish(cairn(dir.path()).args(["run", "--json", "--secrets-file", "deploy.env"]));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(!finished.stdout.contains("from-the-file-123"));

    // Only names enter the key: without the value, the cached result stands...
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(finished_stage(&events, "deploy")["status"], "cached");
    // ...but a stage that has to run fails, naming the secret.
    let (finished, events) = run_json(dir.path(), &["--no-cache"]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "deploy");
    assert!(error.starts_with("the secret `DEPLOY_TOKEN` is not set"), "{error}");
}

#[test]
fn a_stage_crossing_a_bound_set_in_the_file_fails_with_that_bound() {
    let dir = pipeline_dir(
        r#"
        [defaults]
        timeout = "300ms"

        [stages.spin]
        uses = "{probe}"
        args = ["spin"]

        [stages.alloc]
        uses = "{probe}"
        args = ["alloc", "100"]
        memory = "32MiB"
        timeout = "1m"

        [stages.entries]
        uses = "{probe}"
        args = ["many", "/out", "300"]
        max_entries = 100
        timeout = "1m"
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let spin = stage_error(&events, "spin");
    assert!(spin.starts_with("exceeded its time limit of 300ms"), "{spin}");
    assert!(!spin.contains("hint"), "the hint is a field of its own: {spin}");
    assert_eq!(
        finished_stage(&events, "spin")["hint"],
        "raise `timeout` for the stage (`--timeout` for `cairn stage run`) if it needs longer"
    );
    let alloc = stage_error(&events, "alloc");
    assert!(alloc.starts_with("exceeded its memory limit of 32 MiB"), "{alloc}");
    let entries = stage_error(&events, "entries");
    assert!(
        entries.starts_with("created more than its entry limit of 100 entries in /out"),
        "{entries}"
    );
}
