//! `cairn stage run` and `cairn stage inspect` as a user runs them: the real
//! binary, its exit codes, what it prints, and where outputs land.

use std::time::Duration;

use crate::support::*;
use cairn_test_programs::{PROBE_COMPONENT, PROBE_PREVIEW1, STAGE_PROBE};

#[test]
fn a_successful_stage_exits_0_and_its_outputs_land_in_cairn_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let finished =
        finish(cairn(dir.path()).args(["stage", "run", PROBE_COMPONENT, "--", "write", "/out/a.txt", "one"]));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(finished.stderr.contains("stage `probe` succeeded"), "{finished:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cairn-out/probe/a.txt")).expect("output"),
        "one"
    );

    // The next successful run replaces the folder cairn owns.
    let finished =
        finish(cairn(dir.path()).args(["stage", "run", PROBE_COMPONENT, "--", "write", "/out/b.txt", "two"]));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(
        read_tree(&dir.path().join("cairn-out/probe"))
            .into_keys()
            .collect::<Vec<_>>(),
        ["b.txt"]
    );

    // A failed run keeps the previous outputs and adds nothing.
    let finished = finish(cairn(dir.path()).args([
        "stage",
        "run",
        PROBE_COMPONENT,
        "--",
        "write",
        "/out/c.txt",
        "3",
        "&&",
        "exit",
        "1",
    ]));
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(
        read_tree(&dir.path().join("cairn-out/probe"))
            .into_keys()
            .collect::<Vec<_>>(),
        ["b.txt"]
    );
}

#[test]
fn an_explicit_out_folder_is_merged_into_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("dist")).expect("mkdir");
    std::fs::write(dir.path().join("dist/mine.txt"), "kept").expect("write");
    let finished = finish(cairn(dir.path()).args([
        "stage",
        "run",
        PROBE_COMPONENT,
        "--out",
        "dist",
        "--",
        "write",
        "/out/new.txt",
        "x",
    ]));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(
        read_tree(&dir.path().join("dist")).into_keys().collect::<Vec<_>>(),
        ["mine.txt", "new.txt"]
    );
    assert!(!dir.path().join("cairn-out").exists());
}

#[test]
fn a_command_s_stdout_is_passed_through_and_its_failure_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let finished = finish(cairn(dir.path()).args(["stage", "run", PROBE_COMPONENT, "--", "echo", "hello"]));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(finished.stdout, "hello\n");
    assert!(finished.stderr.contains("hello (stderr)"));

    let finished = finish(cairn(dir.path()).args(["stage", "run", PROBE_PREVIEW1, "--", "exit", "4"]));
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(
        finished.stderr.contains("error: stage `probe` exited with"),
        "{finished:?}"
    );
}

#[test]
fn a_crossed_bound_names_the_bound_its_value_and_the_flag_to_raise_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let finished =
        finish(cairn(dir.path()).args(["stage", "run", PROBE_COMPONENT, "--timeout", "300ms", "--", "spin"]));
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("error: stage `probe` exceeded its time limit of 300ms"),
        "{finished:?}"
    );
    assert!(finished.stderr.contains("hint: raise `timeout`"), "{finished:?}");

    let finished = finish(cairn(dir.path()).args([
        "stage",
        "run",
        PROBE_COMPONENT,
        "--memory",
        "32MiB",
        "--",
        "alloc",
        "100",
    ]));
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(
        finished.stderr.contains("exceeded its memory limit of 32 MiB"),
        "{finished:?}"
    );
}

#[test]
fn a_stage_component_gets_config_args_and_secrets_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let finished = finish(
        cairn(dir.path())
            .env("DEPLOY_TOKEN", "tok-123456")
            .args([
                "stage",
                "run",
                STAGE_PROBE,
                "--name",
                "deploy",
                "--with",
                "secret=DEPLOY_TOKEN",
            ])
            .args(["--secret", "DEPLOY_TOKEN", "--", "first", "second"]),
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(finished.stderr.contains("output args = first second"), "{finished:?}");
    assert!(
        finished.stderr.contains("output secret.DEPLOY_TOKEN = granted"),
        "{finished:?}"
    );
    assert!(finished.stderr.contains("info: the secret is ***"), "{finished:?}");
    assert!(!finished.stderr.contains("tok-123456") && !finished.stdout.contains("tok-123456"));
    assert!(
        finished.stderr.contains("/src/file.txt:3:7: warn: look here"),
        "annotations are shown: {finished:?}"
    );
    assert!(dir.path().join("cairn-out/deploy/echo.txt").is_file());

    let finished =
        finish(
            cairn(dir.path())
                .env_remove("MISSING")
                .args(["stage", "run", STAGE_PROBE, "--secret", "MISSING"]),
        );
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("no variable `MISSING`"), "{finished:?}");
}

#[test]
fn bad_usage_and_unloadable_components_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("script.sh"), "#!/bin/sh\n").expect("write");
    for (args, expected) in [
        (
            vec!["stage", "run", "missing.wasm"],
            "cannot read the component `missing.wasm`",
        ),
        (vec!["stage", "run", "script.sh"], "not a WebAssembly file"),
        (
            vec!["stage", "run", "std:nope"],
            "hint: the standard stages are std:archive, std:checksum, std:http, std:notify, std:run, std:sbom, std:secret-scan, std:template, std:upload, std:validate, std:wc",
        ),
        (
            vec!["stage", "run", PROBE_COMPONENT, "--memory", "lots"],
            "`lots` is not a size",
        ),
        (
            vec!["stage", "run", PROBE_COMPONENT, "--timeout", "soon"],
            "`soon` is not a duration",
        ),
        (
            vec!["stage", "run", PROBE_COMPONENT, "--src", "nowhere"],
            "`nowhere` is not a folder",
        ),
        (
            vec!["stage", "run", PROBE_COMPONENT, "--in", "oops"],
            "`oops` is not KEY=VALUE",
        ),
        (
            vec!["stage", "run", PROBE_COMPONENT, "--network", "example.com"],
            "a host and port for sockets like `example.com:5432`",
        ),
        (vec!["stage", "frobnicate"], "unrecognized subcommand"),
    ] {
        let finished = finish(cairn(dir.path()).args(&args));
        assert_eq!(finished.code, Some(2), "{args:?}: {finished:?}");
        assert!(finished.stderr.contains(expected), "{args:?}: {finished:?}");
    }
}

#[test]
fn inspect_names_the_kind_imports_and_exports_of_each_kind_of_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (component, kind, export) in [
        (
            PROBE_COMPONENT,
            "command component (wasi:cli/command)",
            "wasi:cli/run@0.2",
        ),
        (PROBE_PREVIEW1, "WASI preview1 module", "wasi:cli/run@0.2"),
        (STAGE_PROBE, "stage component (cairn:stage/stage)", "run: func"),
        ("std:wc", "stage component (cairn:stage/stage)", "run: func"),
    ] {
        let finished = finish(cairn(dir.path()).args(["stage", "inspect", component]));
        assert_eq!(finished.code, Some(0), "{finished:?}");
        assert!(
            finished.stdout.contains(&format!("kind       {kind}")),
            "{component}: {finished:?}"
        );
        assert!(finished.stdout.contains("digest     blake3:"), "{finished:?}");
        let exports = finished.stdout.split("exports").nth(1).expect("an exports section");
        assert!(exports.contains(export), "{component}: {finished:?}");
    }
    let finished = finish(cairn(dir.path()).args(["stage", "inspect", STAGE_PROBE]));
    assert!(finished.stdout.contains("cairn:stage/host@0.1.0"), "{finished:?}");

    let finished = finish(cairn(dir.path()).args(["stage", "inspect", "--wit", STAGE_PROBE]));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        finished
            .stdout
            .contains("export run: func(invocation: invocation) -> result<outcome, string>;"),
        "{finished:?}"
    );
}

#[test]
fn ctrl_c_stops_the_stage_exits_130_and_keeps_no_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = cairn(dir.path())
        .args([
            "stage",
            "run",
            PROBE_COMPONENT,
            "--",
            "write",
            "/out/partial.txt",
            "x",
            "&&",
            "spin",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    // Give it time to start spinning, then interrupt it as a terminal would.
    std::thread::sleep(Duration::from_millis(1500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!dir.path().join("cairn-out").exists(), "nothing half-written is kept");
}

#[test]
fn dir_shows_a_host_folder_read_write_only_when_granted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    let write = |flags: &[String]| {
        finish(
            cairn(dir.path())
                .args(["stage", "run", PROBE_COMPONENT])
                .args(flags)
                .args(["--", "write", "/work/note.txt", "written"]),
        )
    };
    let refused = write(&[]);
    assert_ne!(refused.code, Some(0), "no --dir, no /work: {refused:?}");
    assert!(!work.join("note.txt").exists());

    let granted = write(&["--dir".to_owned(), format!("{}::/work", work.display())]);
    assert_eq!(granted.code, Some(0), "{granted:?}");
    assert_eq!(
        std::fs::read_to_string(work.join("note.txt")).expect("written through the grant"),
        "written"
    );

    let missing = write(&["--dir".to_owned(), "/no/such/folder::/work".to_owned()]);
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("`/no/such/folder` is not a folder"),
        "{missing:?}"
    );
}
