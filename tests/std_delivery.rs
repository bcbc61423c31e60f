//! The standard stages for packaging a release: `std:archive` (tar.gz and
//! zip whose bytes depend on nothing but the files) and `std:checksum`
//! (SHA256SUMS and B3SUMS, and their check), through `cairn run`, their
//! results read back with the host's own `tar`, `sha256sum` and Python's
//! `zipfile`.

use std::path::Path;
use std::process::Command;

use crate::support::*;

const PIPELINE: &str = r#"
[stages.tgz]
uses = "std:archive"
inputs = ["site/**"]
with = { from = "/src/site", name = "site-1.0.tar.gz", prefix = "site-1.0", executable = "bin/serve.sh" }

[stages.zip]
uses = "std:archive"
inputs = ["site/**"]
with = { from = "/src/site", format = "zip", name = "site.zip" }

[stages.sums]
uses = "std:checksum"
needs = ["tgz"]
"#;

const SITE: &[(&str, &str)] = &[
    ("site/index.html", "<h1>hello</h1>\n"),
    ("site/css/style.css", "h1 { color: teal }\n"),
    ("site/bin/serve.sh", "#!/bin/sh\nexec python3 -m http.server\n"),
];

fn host(command: &mut Command) -> String {
    let output = command.output().expect("the host tool runs");
    assert!(output.status.success(), "{command:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn archives_are_byte_identical_in_two_checkouts_with_sorted_pinned_entries() {
    let first = pipeline_dir(PIPELINE, SITE);
    let second = pipeline_dir(PIPELINE, SITE);
    for checkout in [&first, &second] {
        let mut command = cairn(checkout.path());
        command.env("SOURCE_DATE_EPOCH", "1700000000");
        let (finished, events) = run_json_with(command, &[]);
        assert_eq!(finished.code, Some(0), "{finished:?}");
        assert_eq!(finished_stage(&events, "tgz")["outputs"]["entries"], "3");
    }
    for file in ["tgz/site-1.0.tar.gz", "zip/site.zip", "sums/SHA256SUMS", "sums/B3SUMS"] {
        let read = |checkout: &Path| std::fs::read(checkout.join("cairn-out").join(file)).expect(file);
        assert!(
            read(first.path()) == read(second.path()),
            "{file} differs between checkouts"
        );
    }
    let out = first.path().join("cairn-out");
    let listing = host(
        Command::new("tar")
            .arg("--utc")
            .arg("-tvzf")
            .arg(out.join("tgz/site-1.0.tar.gz")),
    );
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    for (line, (mode, path)) in lines.iter().zip([
        ("-rwxr-xr-x", "site-1.0/bin/serve.sh"),
        ("-rw-r--r--", "site-1.0/css/style.css"),
        ("-rw-r--r--", "site-1.0/index.html"),
    ]) {
        assert!(line.starts_with(mode) && line.ends_with(path), "{line}");
        assert!(line.contains(" 0/0 "), "owned by 0: {line}");
        assert!(line.contains("2023-11-14 22:13"), "stamped SOURCE_DATE_EPOCH: {line}");
    }
    let zip = host(
        Command::new("python3")
            .args(["-m", "zipfile", "-l"])
            .arg(out.join("zip/site.zip")),
    );
    assert!(
        zip.contains("bin/serve.sh") && zip.contains("2023-11-14 22:13"),
        "{zip}"
    );

    // The sums are what sha256sum and b3sum's formats say they are.
    let checked = host(
        Command::new("sha256sum")
            .args(["-c", "../sums/SHA256SUMS"])
            .current_dir(out.join("tgz")),
    );
    assert_eq!(checked.trim(), "site-1.0.tar.gz: OK");
    let b3 = std::fs::read_to_string(out.join("sums/B3SUMS")).expect("B3SUMS");
    let archive = std::fs::read(out.join("tgz/site-1.0.tar.gz")).expect("archive");
    assert_eq!(b3, format!("{}  site-1.0.tar.gz\n", blake3::hash(&archive).to_hex()));
}

#[test]
fn a_checksum_check_names_each_file_that_differs_at_its_line() {
    let dir = pipeline_dir(
        r#"
        [stages.verify]
        uses = "std:checksum"
        inputs = ["release/**", "SHA256SUMS"]
        with = { from = "/src/release", verify = "/src/SHA256SUMS" }
        "#,
        &[
            ("release/a.txt", "a\n"),
            ("release/b.txt", "tampered\n"),
            (
                "SHA256SUMS",
                "87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7  a.txt\n\
                 0263829989b6fd954f72baaf2fc64bc2e2f01d692d4de72986ea808f6e99813f  b.txt\n\
                 0263829989b6fd954f72baaf2fc64bc2e2f01d692d4de72986ea808f6e99813f  c.txt\n",
            ),
        ],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(
        stage_error(&events, "verify"),
        "returned an error: 2 of 3 files do not match /src/SHA256SUMS"
    );
    let annotations: Vec<(u64, String)> = events_of(&events, "stage_annotation")
        .into_iter()
        .map(|event| {
            (
                event["line"].as_u64().expect("a line"),
                event["message"].as_str().expect("a message").to_owned(),
            )
        })
        .collect();
    assert_eq!(annotations.len(), 2, "{annotations:?}");
    assert_eq!(annotations[0], (2, "b.txt: its digest differs".to_owned()));
    assert_eq!(annotations[1].0, 3);
    assert!(annotations[1].1.starts_with("c.txt: cannot read it"), "{annotations:?}");
}

#[test]
fn bad_archive_settings_are_named() {
    let dir = pipeline_dir(
        r#"
        [stages.rar]
        uses = "std:archive"
        with = { format = "rar" }

        [stages.outside]
        uses = "std:archive"
        with = { from = "/etc" }

        [stages.nested]
        uses = "std:archive"
        with = { name = "../escape.tar.gz" }
        "#,
        &[],
    );
    let (_, events) = run_json(dir.path(), &[]);
    assert!(stage_error(&events, "rar").contains("std:archive writes `tar.gz` or `zip`"));
    assert!(stage_error(&events, "outside").contains("pack a folder under /src or /in"));
    assert!(stage_error(&events, "nested").contains("name a file directly under /out"));
}

#[test]
fn secret_scan_names_each_committed_credential_by_kind_and_line_never_by_value() {
    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
    const TOKEN: &str = "h7Gk2pQ9xZ4mW1vB8nR5tY3u";
    let config = format!(
        "region = \"eu\"\naws_key = \"{AWS}\"\npassword = \"correct-horse-battery-staple\"\napi_token = \"{TOKEN}\"\n"
    );
    let dir = pipeline_dir(
        r#"
        [stages.scan]
        uses = "std:secret-scan"
        inputs = ["**/*"]

        [stages.allowed]
        uses = "std:secret-scan"
        inputs = ["**/*"]
        with = { allow = "fixtures/, conf/app.toml" }
        "#,
        &[
            ("conf/app.toml", &config),
            (
                "fixtures/id_ed25519",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
            ),
            (
                "notes.txt",
                "nothing here\nexample: ghp_abcdefghijklmnopqrstuvwxyz0123456789 # cairn:allow-secret\n",
            ),
        ],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let found: Vec<(String, u64, String)> = events_of(&events, "stage_annotation")
        .into_iter()
        .filter(|event| event["stage"] == "scan")
        .map(|event| {
            (
                event["path"].as_str().expect("a path").to_owned(),
                event["line"].as_u64().expect("a line"),
                event["message"].as_str().expect("a message").to_owned(),
            )
        })
        .collect();
    let places: Vec<(&str, u64)> = found.iter().map(|(path, line, _)| (path.as_str(), *line)).collect();
    assert_eq!(
        places,
        [("conf/app.toml", 2), ("conf/app.toml", 4), ("fixtures/id_ed25519", 1)],
        "the memorable password and the allowed line are not findings: {found:?}"
    );
    assert!(
        found[0].2.starts_with("an AWS access key id is committed here"),
        "{found:?}"
    );
    assert!(found[1].2.starts_with("a high-entropy value"), "{found:?}");
    assert!(found[2].2.starts_with("a private key"), "{found:?}");
    assert_eq!(
        stage_error(&events, "scan"),
        "returned an error: 3 committed credentials found (the annotations say where, never what)"
    );
    assert_eq!(statuses(&events)["allowed"], "succeeded");
    // The files themselves are inputs (snapshotted into the store like any
    // input); what the scan reports and publishes holds no value.
    for value in [AWS, TOKEN] {
        assert!(!finished.stdout.contains(value), "{value} is in the events");
        assert!(!finished.stderr.contains(value), "{value} is on stderr");
        assert_eq!(
            files_containing(&dir.path().join("cairn-out"), value.as_bytes()),
            Vec::<String>::new(),
            "{value} was published"
        );
    }
}
