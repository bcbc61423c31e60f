//! Stages in JavaScript, Python and C next to Rust: the polyglot example
//! pipeline through the real engine, `cairn stage new` scaffolds that build
//! and run untouched, and the errors a missing toolchain or a broken source
//! gives. Needs componentize-js, componentize-py and Debian's clang, lld and
//! wasi-libc (`.ci/run` installs them).

use crate::support::*;

/// CRC-32 (IEEE), as zlib computes it: what the C stage must agree with.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn summary(events: &[serde_json::Value], stage: &str) -> String {
    finished_stage(events, stage)["summary"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn host_logs(events: &[serde_json::Value], stage: &str) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["event"] == "stage_log" && event["stage"] == stage && event["source"] == "host")
        .filter_map(|event| event["text"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_polyglot_example_chains_stages_written_in_four_languages() {
    let copy = copy_example("polyglot");
    let example = copy.path();
    let (finished, events) = run_json(example, &["--no-cache"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");

    // JavaScript: the changelog, grouped by conventional commit type.
    assert_eq!(summary(&events, "changelog"), "2 features, 2 fixes, 2 other");
    assert_eq!(finished_stage(&events, "changelog")["outputs"]["entries"], "6");
    assert_eq!(
        host_logs(&events, "changelog"),
        ["6 changes for 1.4.0: 2 features, 2 fixes"]
    );
    let out = example.join("cairn-out");
    let changelog = std::fs::read_to_string(out.join("changelog/CHANGELOG.md")).unwrap();
    assert!(
        changelog.starts_with("# 1.4.0\n\n## Features\n\n- **cli:** add `cairn stage new`"),
        "{changelog}"
    );
    assert!(
        changelog.contains(
            "## Fixes\n\n- **cache:** keep pulled components alive across gc\n- report the stage that failed to build\n"
        ),
        "{changelog}"
    );

    // Python: every requirement pinned.
    assert_eq!(summary(&events, "lockcheck"), "3 requirements pinned");
    assert_eq!(
        std::fs::read_to_string(out.join("lockcheck/lockcheck.txt")).unwrap(),
        "pinned    requests==2.32.3\npinned    urllib3==2.2.3\npinned    idna==3.10\n"
    );

    // C: the checksums agree with a CRC-32 computed here.
    let expected: String = ["assets/app.css", "assets/fonts/mono.txt", "assets/logo.svg"]
        .iter()
        .map(|path| format!("{:08x}  {path}\n", crc32(&std::fs::read(example.join(path)).unwrap())))
        .collect();
    assert_eq!(
        std::fs::read_to_string(out.join("checksum/CRC32SUMS")).unwrap(),
        expected
    );
    let bytes: usize = ["assets/app.css", "assets/fonts/mono.txt", "assets/logo.svg"]
        .iter()
        .map(|path| std::fs::read(example.join(path)).unwrap().len())
        .sum();
    assert_eq!(summary(&events, "checksum"), format!("3 files, {bytes} bytes"));

    // Rust: the release notes gather all three, through /in and ${{ }} references.
    let notes = std::fs::read_to_string(out.join("release/RELEASE.md")).unwrap();
    assert!(
        notes.starts_with("# Release 1.4.0\n\n6 changes, 3 files, 3 pinned dependencies.\n"),
        "{notes}"
    );
    assert!(
        notes.contains("- `urllib3==2.2.3`") && notes.contains(&expected),
        "{notes}"
    );
    assert_eq!(finished_stage(&events, "release")["outputs"]["version"], "1.4.0");
}

#[test]
fn annotations_from_javascript_and_python_stages_point_at_the_offending_line() {
    let copy = copy_example("polyglot");
    let stages = copy.path().join("stages");
    let dir = pipeline_dir(
        &format!(
            r#"
            [pipeline]
            name = "checks"

            [stages.changelog]
            uses = "{}"
            inputs = ["commits.txt"]

            [stages.lockcheck]
            uses = "{}"
            inputs = ["requirements.txt"]
            "#,
            stages.join("changelog").display(),
            stages.join("lockcheck").display()
        ),
        &[
            ("commits.txt", "feat: one\nwhatever happened here\n"),
            ("requirements.txt", "requests==2.32.3\n# a comment\nflask>=2\n"),
        ],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let annotations = events_of(&events, "stage_annotation");
    let at = |stage: &str| {
        annotations
            .iter()
            .find(|event| event["stage"] == stage)
            .unwrap_or_else(|| panic!("no annotation from {stage}: {events:#?}"))
    };
    assert_eq!(at("changelog")["path"], "commits.txt");
    assert_eq!(at("changelog")["line"], 2);
    assert_eq!(at("changelog")["severity"], "warn");
    assert_eq!(at("lockcheck")["path"], "requirements.txt");
    assert_eq!(at("lockcheck")["line"], 3);
    assert_eq!(at("lockcheck")["severity"], "error");
    assert_eq!(finished_stage(&events, "changelog")["status"], "succeeded");
    assert_eq!(
        stage_error(&events, "lockcheck"),
        "returned an error: 1 of 2 requirements are not pinned"
    );
}

#[test]
fn a_new_stage_in_each_language_builds_and_runs_untouched() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::create_dir(parent.path().join("src")).unwrap();
    std::fs::write(parent.path().join("src/a.txt"), "a\n").unwrap();
    std::fs::write(parent.path().join("src/b.txt"), "b\n").unwrap();
    let languages = [
        ("rust", "2 files in /src"),
        ("js", "2 files in /src"),
        ("python", "2 files in /src"),
        ("c", "2 entries in /src"),
    ];
    for (language, expected) in languages {
        let name = format!("hello-{language}");
        let created = finish(cairn(parent.path()).args(["stage", "new", &name, "--lang", language]));
        assert_eq!(created.code, Some(0), "{created:?}");
        let built = finish(cairn(parent.path()).args(["stage", "build", &name]));
        assert_eq!(built.code, Some(0), "{built:?}");
        let component = parent.path().join(format!("{name}.wasm"));
        assert!(component.is_file(), "{built:?}");
        let ran = finish(cairn(parent.path()).args(["stage", "run", component.to_str().unwrap(), "--src", "src"]));
        assert_eq!(ran.code, Some(0), "{language}: {ran:?}");
        assert!(ran.stderr.contains(expected), "{language}: {ran:?}");
    }

    // The same folders, straight from a pipeline, without a separate build.
    let pipeline: String = languages
        .iter()
        .map(|(language, _)| format!("[stages.{language}]\nuses = \"./hello-{language}\"\ninputs = [\"src/*\"]\n\n"))
        .collect();
    std::fs::write(parent.path().join("cairn.toml"), pipeline).unwrap();
    let (finished, events) = run_json(parent.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    for (language, _) in languages {
        assert_eq!(finished_stage(&events, language)["status"], "succeeded", "{events:#?}");
    }
    assert!(
        !finished.stderr.contains("building the"),
        "the folders were built already: {finished:?}"
    );
}

#[test]
fn a_stage_folder_is_rebuilt_when_a_source_file_changes_or_appears() {
    let parent = tempfile::tempdir().unwrap();
    let created = finish(cairn(parent.path()).args(["stage", "new", "sums", "--lang", "c"]));
    assert_eq!(created.code, Some(0), "{created:?}");
    let build = || finish(cairn(parent.path()).args(["stage", "build", "sums"]));
    let first = build();
    assert!(first.stderr.contains("building the C stage folder"), "{first:?}");
    let unchanged = build();
    assert!(
        unchanged.stderr.contains("unchanged since the last build"),
        "{unchanged:?}"
    );
    std::fs::write(
        parent.path().join("sums/extra.c"),
        "int cairn_extra(void) { return 1; }\n",
    )
    .unwrap();
    let added = build();
    assert!(added.stderr.contains("building the C stage folder"), "{added:?}");

    // A compile error is the compiler's to explain; cairn names the command.
    std::fs::write(parent.path().join("sums/extra.c"), "int broken(void) { return }\n").unwrap();
    let broken = build();
    assert_eq!(broken.code, Some(2), "{broken:?}");
    assert!(
        broken.stderr.contains("extra.c"),
        "clang's own message is shown: {broken:?}"
    );
    assert!(broken.stderr.contains("its errors are printed above"), "{broken:?}");
}

#[test]
fn a_missing_toolchain_is_named_with_the_command_that_installs_it() {
    let parent = tempfile::tempdir().unwrap();
    for (language, variable, install) in [
        (
            "js",
            "CAIRN_COMPONENTIZE_JS",
            "npm install -g @bytecodealliance/componentize-js@0.23.0",
        ),
        ("python", "CAIRN_COMPONENTIZE_PY", "pip install componentize-py==0.25.1"),
        (
            "c",
            "CAIRN_CLANG",
            "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32",
        ),
    ] {
        let name = format!("needs-{language}");
        let created = finish(cairn(parent.path()).args(["stage", "new", &name, "--lang", language]));
        assert_eq!(created.code, Some(0), "{created:?}");
        let missing = finish(
            cairn(parent.path())
                .env(variable, "/nowhere/tool")
                .args(["stage", "build", &name]),
        );
        assert_eq!(missing.code, Some(2), "{missing:?}");
        assert!(missing.stderr.contains("stage needs `"), "{missing:?}");
        assert!(missing.stderr.contains(install), "{language}: {missing:?}");
    }
    let not_a_stage = finish(cairn(parent.path()).args(["stage", "build", "."]));
    assert_eq!(not_a_stage.code, Some(2), "{not_a_stage:?}");
    assert!(not_a_stage.stderr.contains("is not a stage folder"), "{not_a_stage:?}");
    let unknown = finish(cairn(parent.path()).args(["stage", "new", "x", "--lang", "cobol"]));
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
}

#[test]
fn publishing_a_stage_folder_annotates_it_from_its_package_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_example("polyglot");
    let stages = copy.path().join("stages");
    for (stage, description) in [
        (
            "lockcheck",
            "Checks that every Python requirement is pinned to one version",
        ),
        (
            "changelog",
            "Renders a Markdown changelog from conventional commit messages",
        ),
    ] {
        let target = format!("oci-layout://./oci:{stage}");
        let published = finish(cairn(dir.path()).args(["publish", stages.join(stage).to_str().unwrap(), &target]));
        assert_eq!(published.code, Some(0), "{published:?}");
        let digest = published.stdout.trim().trim_start_matches("sha256:").to_owned();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("oci/blobs/sha256").join(digest)).unwrap()).unwrap();
        let annotations = &manifest["annotations"];
        assert_eq!(annotations["org.opencontainers.image.title"], stage);
        assert_eq!(annotations["org.opencontainers.image.version"], "0.1.0");
        assert_eq!(annotations["org.opencontainers.image.description"], description);
        assert_eq!(annotations["dev.cairn.stage.world"], "cairn:stage/stage@0.1.0");
    }
}
