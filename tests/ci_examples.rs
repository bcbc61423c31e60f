//! The three real projects of `examples/ci/` through `cairn run`, as a team
//! moving its CI onto cairn would run them: dependencies fetched by a stage
//! with the network, tests run without it, their JUnit results read, and a
//! package whose bytes are the same in two checkouts that share nothing.

use std::path::Path;

use crate::support::*;

/// Runs the example `name` in two fresh checkouts, each with a cache of its
/// own; checks every stage succeeded in both, and returns the first run's
/// events and both checkouts.
fn run_twice(name: &str) -> (Vec<serde_json::Value>, [tempfile::TempDir; 2]) {
    let checkouts = [copy_example(name), copy_example(name)];
    let mut first_events = Vec::new();
    for (index, checkout) in checkouts.iter().enumerate() {
        let (finished, events) = run_json(checkout.path(), &[]);
        assert_eq!(finished.code, Some(0), "{name}, checkout {index}: {finished:?}");
        for (stage, status) in statuses(&events) {
            assert_eq!(status, "succeeded", "{name}, checkout {index}: `{stage}` did not run");
        }
        if index == 0 {
            first_events = events;
        }
    }
    (first_events, checkouts)
}

/// The bytes of the package a checkout's `package` stage published.
fn package(checkout: &Path, file: &str) -> Vec<u8> {
    std::fs::read(checkout.join("cairn-out/package").join(file)).expect("the package was published")
}

fn assert_reproducible(checkouts: &[tempfile::TempDir; 2], file: &str) {
    let [first, second] = checkouts;
    let bytes = package(first.path(), file);
    assert!(bytes.starts_with(&[0x1f, 0x8b]), "{file} is gzip");
    assert!(
        bytes == package(second.path(), file),
        "{file} differs between two checkouts"
    );
}

fn assert_tests(events: &[serde_json::Value], passed: u64) {
    let test = finished_stage(events, "test");
    assert_eq!(
        test["tests"],
        serde_json::json!({"passed": passed, "failed": 0, "skipped": 0}),
        "{test}"
    );
    assert!(
        test["summary"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("{passed} passed")),
        "{test}"
    );
}

#[test]
fn the_rust_project_fetches_online_then_tests_lints_and_packages_offline() {
    let (events, checkouts) = run_twice("ci/rust");
    assert_tests(&events, 3);
    assert_reproducible(&checkouts, "humanize-0.1.0.tar.gz");
    // The build stages had no network: the crate came from `fetch`.
    let fetch = stage_stdout(&events, "fetch").join("\n") + &stderr_of(&events, "fetch");
    assert!(fetch.contains("Downloaded itoa"), "{fetch}");

    // Nothing changed: nothing runs, not even the fetch.
    let (_, again) = run_json(checkouts[0].path(), &[]);
    for (stage, status) in statuses(&again) {
        assert_eq!(status, "cached", "`{stage}`");
    }
}

#[test]
fn the_node_project_installs_online_then_tests_and_packs_offline() {
    let (events, checkouts) = run_twice("ci/node");
    assert_tests(&events, 4);
    assert_reproducible(&checkouts, "slugify-title-0.1.0.tgz");
}

#[test]
fn the_python_project_runs_pytest_on_cpython_in_wasm() {
    let (events, checkouts) = run_twice("ci/python");
    assert_tests(&events, 5);
    assert_reproducible(&checkouts, "pickver-0.1.0.tar.gz");
    // The interpreter ran as the stage's component (pytest's own summary is
    // in its log), granted no host tool: nothing outside the wasm sandbox.
    assert!(
        stage_stdout(&events, "test")
            .iter()
            .any(|line| line.starts_with("5 passed")),
        "{:?}",
        stage_stdout(&events, "test")
    );
    let pipeline = std::fs::read_to_string(checkouts[0].path().join("cairn.toml")).expect("the pipeline");
    let test_table = &pipeline[pipeline.find("[stages.test]").expect("a test stage")..];
    let test_table = &test_table[..test_table.find("\n[stages.").unwrap_or(test_table.len())];
    assert!(
        test_table.contains("uses = \"in:deps/") && !test_table.contains("tools"),
        "{test_table}"
    );
}

#[test]
fn a_failing_test_is_annotated_where_it_failed() {
    let checkout = copy_example("ci/python");
    let test_file = checkout.path().join("tests/test_pickver.py");
    let text = std::fs::read_to_string(&test_file).expect("read");
    std::fs::write(&test_file, text.replace("== \"1.10.0\"", "== \"1.9.0\"")).expect("break a test");
    let (finished, events) = run_json(checkout.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let test = finished_stage(&events, "test");
    assert_eq!(test["status"], "failed");
    assert_eq!(
        test["tests"],
        serde_json::json!({"passed": 4, "failed": 1, "skipped": 0})
    );
    let annotation = events_of(&events, "stage_annotation")
        .into_iter()
        .find(|event| event["stage"] == "test")
        .expect("the failed test is annotated");
    assert_eq!(annotation["path"], "tests/test_pickver.py");
    assert_eq!(annotation["line"], 5, "the failed assert: {annotation}");
    assert_eq!(statuses(&events)["package"], "skipped");
}

/// What a stage wrote to stderr, joined.
fn stderr_of(events: &[serde_json::Value], stage: &str) -> String {
    events_of(events, "stage_log")
        .into_iter()
        .filter(|event| event["stage"] == stage && event["source"] == "stderr")
        .filter_map(|event| event["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
