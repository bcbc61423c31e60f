//! What keeps a run hermetic and its secrets secret, end to end through the
//! real binary: a granted secret's value reaches nothing a stage hands back,
//! impure stages are not reused unless their author says so, and `/in`
//! lists what a stage was handed.

use crate::support::*;

/// The secret every leak test grants, chosen to be a valid file name too.
const VALUE: &str = "s3cr3t-token-4711";

#[test]
fn a_granted_secret_reaches_nothing_the_stage_hands_back() {
    for place in [
        "error",
        "summary",
        "output",
        "output-name",
        "annotation",
        "file",
        "file-name",
        "link",
    ] {
        // Where the stage returns the value as an output, a stage
        // downstream reads it through a reference.
        let downstream = if place == "output" {
            "[stages.after]\nuses = \"{stage_probe}\"\nneeds = [\"leak\"]\n\
             args = [\"${{ stages.leak.outputs.token }}\"]\n"
        } else {
            ""
        };
        let dir = pipeline_dir(
            &format!(
                r#"
                [stages.leak]
                uses = "{{stage_probe}}"
                secrets = ["TOKEN"]
                with = {{ mode = "leak", secret = "TOKEN", place = "{place}" }}

                {downstream}
                "#
            ),
            &[],
        );
        let finished = finish(cairn(dir.path()).env("TOKEN", VALUE).args(["run", "--json"]));
        assert!(
            !finished.stdout.contains(VALUE),
            "{place}: the value is in the events: {finished:?}"
        );
        assert!(
            !finished.stderr.contains(VALUE),
            "{place}: the value is on stderr: {finished:?}"
        );
        assert_eq!(
            files_containing(&dir.path().join("cairn-out"), VALUE.as_bytes()),
            Vec::<String>::new(),
            "{place}"
        );
        assert_eq!(
            files_containing(&cache_for(dir.path()), VALUE.as_bytes()),
            Vec::<String>::new(),
            "{place}"
        );
        let events: Vec<serde_json::Value> = finished
            .stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        let leak = finished_stage(&events, "leak");
        match place {
            "file" | "file-name" | "link" => {
                assert_eq!(finished.code, Some(1), "{place}: {finished:?}");
                let error = leak["error"].as_str().expect("an error");
                assert!(
                    error.starts_with("left the value of the secret `TOKEN` in `/out/"),
                    "{place}: {error}"
                );
                if place == "file" {
                    assert!(error.contains("`/out/config/app.env`"), "the file is named: {error}");
                }
                assert!(
                    !dir.path().join("cairn-out/leak").exists(),
                    "{place}: nothing is published"
                );
            }
            "error" => {
                assert_eq!(finished.code, Some(1), "{place}: {finished:?}");
                assert_eq!(leak["error"], "returned an error: failed with ***");
            }
            _ => assert_eq!(finished.code, Some(0), "{place}: {finished:?}"),
        }
        match place {
            "summary" => assert_eq!(leak["summary"], "the token is ***"),
            "output" => {
                assert_eq!(leak["outputs"]["token"], "***");
                // Downstream references see the masked value too.
                assert_eq!(finished_stage(&events, "after")["outputs"]["args"], "***");
            }
            "output-name" => assert_eq!(leak["outputs"]["key-***"], "x"),
            "annotation" => {
                let annotation = events_of(&events, "stage_annotation")[0];
                assert_eq!(annotation["message"], "found ***");
            }
            _ => {}
        }
    }
}

#[test]
fn impure_stages_run_every_time_unless_their_author_says_cache_true() {
    let dir = pipeline_dir(
        r#"
        [stages.pure]
        uses = "{probe}"
        args = ["write", "/out/a", "a"]

        [stages.clock]
        uses = "{probe}"
        args = ["clock"]
        clock = "real"

        [stages.random]
        uses = "{probe}"
        args = ["random"]
        random = "secure"

        [stages.network]
        uses = "{probe}"
        args = ["write", "/out/n", "n"]
        network = ["127.0.0.1:9"]

        [stages.fetch]
        uses = "{probe}"
        args = ["write", "/out/f", "f"]
        network = ["127.0.0.1:9"]
        cache = true
        "#,
        &[],
    );
    let (first, _) = run_json(dir.path(), &[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let (second, events) = run_json(dir.path(), &[]);
    assert_eq!(second.code, Some(0), "{second:?}");
    let statuses = statuses(&events);
    assert_eq!(statuses["pure"], "cached");
    assert_eq!(statuses["fetch"], "cached", "`cache = true` reuses an impure stage");
    for (stage, why) in [
        ("clock", "it reads the real clock"),
        ("random", "it reads secure randomness"),
        ("network", "it is granted network access"),
    ] {
        assert_eq!(statuses[stage], "succeeded", "{stage} ran again: {events:#?}");
        let said = events
            .iter()
            .filter(|event| event["event"] == "stage_log" && event["stage"] == stage)
            .filter_map(|event| event["text"].as_str())
            .any(|text| text.starts_with(&format!("runs every time: {why}")) && text.contains("cache = true"));
        assert!(said, "{stage}: the run says why it ran: {events:#?}");
        let explained = finish(cairn(dir.path()).args(["explain", stage]));
        assert!(explained.stdout.contains(why), "{stage}: {explained:?}");
    }
}

#[test]
fn in_lists_one_folder_per_needed_stage() {
    let dir = pipeline_dir(
        r#"
        [stages.build]
        uses = "{probe}"
        args = ["write", "/out/app", "binary"]

        [stages.docs]
        uses = "{probe}"
        args = ["write", "/out/index.html", "docs"]

        [stages.package]
        uses = "{stage_probe}"
        needs = ["build", "docs"]
        with = { mode = "list-in" }

        [stages.package-p1]
        uses = "{preview1}"
        needs = ["build", "docs"]
        args = ["list", "/in", "&&", "read", "/in/build/app"]
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(finished_stage(&events, "package")["outputs"]["listed"], "build,docs");
    assert_eq!(
        stage_stdout(&events, "package-p1"),
        ["build", "docs", "read 6 bytes"],
        "a preview1 program lists /in and reads through it"
    );
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    // Enough stages that the graph outgrows the pipe's buffer.
    let pipeline: String = (0..3000)
        .map(|index| format!("[stages.stage-{index}]\nuses = \"std:wc\"\n"))
        .collect();
    let dir = folder(&[("cairn.toml", pipeline.as_str())]);
    let mut child = cairn(dir.path())
        .arg("graph")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cairn starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("cairn ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn an_outcome_or_error_too_large_to_carry_is_refused_or_cut() {
    let dir = pipeline_dir(
        r#"
        [stages.huge]
        uses = "{stage_probe}"
        with = { mode = "big", size = "2000000" }

        [stages.fits]
        uses = "{stage_probe}"
        with = { mode = "big", size = "1000" }

        [stages.shouts]
        uses = "{stage_probe}"
        with = { mode = "big", size = "5000000", fail = "yes" }
        "#,
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let huge = stage_error(&events, "huge");
    assert!(
        huge.starts_with("returned an outcome of 1.9 MiB (the output `big` is 1.9 MiB), more than the 1 MiB"),
        "{huge}"
    );
    assert_eq!(finished_stage(&events, "fits")["status"], "succeeded");
    let shouts = stage_error(&events, "shouts");
    assert!(shouts.len() < 70_000, "cut to 64 KiB: {} bytes", shouts.len());
    assert!(
        shouts.ends_with("… (4934464 more bytes)"),
        "{}",
        &shouts[shouts.len() - 40..]
    );
}
