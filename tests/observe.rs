//! Seeing what happened: every run recorded and listed (`cairn runs`),
//! looked into (`cairn show`), drawn as an HTML page that a real headless
//! Chromium loads without a console error, and written for other tools as
//! it ends: a Chrome trace, JUnit XML, SARIF, and GitHub Actions' workflow
//! commands and step summary. Annotations name repository paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A stage that logs and annotates `/src/file.txt:3:7`, one that fails, and
/// one that needs the failed one (skipped).
const PIPELINE: &str = r#"
[stages.probe]
uses = "{stage_probe}"
inputs = ["file.txt"]

[stages.broken]
uses = "{stage_probe}"
with = { mode = "fail" }

[stages.after]
uses = "{stage_probe}"
needs = ["broken"]
"#;

fn json_of(finished: &Finished) -> serde_json::Value {
    serde_json::from_str(&finished.stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {finished:?}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn every_run_is_recorded_listed_shown_and_exported() {
    let dir = pipeline_dir(PIPELINE, &[("file.txt", "one\ntwo\nthree\n")]);
    let out = tempfile::tempdir().expect("a folder for the exports");
    let summary = out.path().join("summary.md");
    let mut command = cairn(dir.path());
    command
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary);
    let trace = out.path().join("trace.json");
    let junit = out.path().join("junit.xml");
    let sarif = out.path().join("run.sarif");
    let quality = out.path().join("codequality.json");
    let (finished, events) = run_json_with(
        command,
        &[
            "--trace",
            trace.to_str().expect("utf-8"),
            "--junit",
            junit.to_str().expect("utf-8"),
            "--sarif",
            sarif.to_str().expect("utf-8"),
            "--codequality",
            quality.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(finished.code, Some(1), "{finished:?}");

    // Every event carries its time; annotations name the workspace path.
    for event in &events {
        let time = event["time"].as_str().unwrap_or_else(|| panic!("no time in {event}"));
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        humantime::parse_rfc3339(time).unwrap_or_else(|error| panic!("{time}: {error}"));
    }
    let annotation = events_of(&events, "stage_annotation")[0];
    assert_eq!(annotation["path"], "file.txt", "{annotation}");

    // `cairn runs`: the run, with its counts.
    let runs = json_of(&finish(cairn(dir.path()).args(["runs", "--json"])));
    let run = &runs[0];
    assert_eq!(
        (
            run["status"].as_str(),
            run["succeeded"].as_u64(),
            run["failed"].as_u64(),
            run["skipped"].as_u64()
        ),
        (Some("failed"), Some(1), Some(1), Some(1)),
        "{runs:#}"
    );
    let id = run["id"].as_str().expect("an id").to_owned();

    // `cairn show RUN STAGE`: log, annotations, outputs, key and timings.
    let probe = json_of(&finish(cairn(dir.path()).args(["show", &id, "probe", "--json"])));
    assert_eq!(probe["status"], "succeeded");
    assert!(
        probe["key"].as_str().is_some_and(|key| key.starts_with("blake3:")),
        "{probe:#}"
    );
    assert!(probe["log"].as_array().is_some_and(|log| !log.is_empty()), "{probe:#}");
    let place = &probe["annotations"][0];
    assert_eq!(
        (&place["path"], &place["line"], &place["column"]),
        (&"file.txt".into(), &3.into(), &7.into())
    );
    let phases: Vec<&str> = probe["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|phase| phase["name"].as_str())
        .collect();
    for phase in ["key", "compile", "instantiate", "run", "store", "publish"] {
        assert!(phases.contains(&phase), "{phase} in {phases:?}");
    }
    assert!(
        probe["why"]
            .as_str()
            .is_some_and(|why| why.contains("had not run before")),
        "{probe:#}"
    );
    let shown = finish(cairn(dir.path()).args(["show", &id]));
    assert!(
        shown.code == Some(0) && shown.stdout.contains("broken") && shown.stdout.contains("asked to fail"),
        "{shown:?}"
    );
    let unknown = finish(cairn(dir.path()).args(["show", "no-such-run"]));
    assert!(
        unknown.code == Some(2) && unknown.stderr.contains("no recorded run `no-such-run`"),
        "{unknown:?}"
    );
    let misspelled = finish(cairn(dir.path()).args(["show", &id, "brokn"]));
    assert!(misspelled.stderr.contains("did you mean `broken`?"), "{misspelled:?}");

    // The Chrome trace: a span per stage that ran, its phases inside.
    let trace: serde_json::Value = serde_json::from_str(&read(&trace)).expect("the trace is JSON");
    let spans = trace["traceEvents"].as_array().expect("trace events");
    let span = |name: &str, category: &str| {
        spans
            .iter()
            .find(|span| span["name"] == name && span["cat"] == category && span["ph"] == "X")
            .unwrap_or_else(|| panic!("no {category} span `{name}` in {trace:#}"))
    };
    let stage = span("probe", "stage");
    let run_phase = span("run", "phase");
    assert_eq!(run_phase["tid"], stage["tid"]);
    assert!(run_phase["ts"].as_u64() >= stage["ts"].as_u64());
    assert_eq!(span("broken", "stage")["args"]["status"], "failed");
    assert!(
        spans
            .iter()
            .any(|span| span["ph"] == "M" && span["name"] == "thread_name")
    );

    // JUnit: a case per stage, the failure with its message.
    let junit = read(&junit);
    let document = roxmltree::Document::parse(&junit).expect("JUnit XML parses");
    let suites = document.root_element();
    assert_eq!(
        (
            suites.attribute("tests"),
            suites.attribute("failures"),
            suites.attribute("skipped")
        ),
        (Some("3"), Some("1"), Some("1")),
        "{junit}"
    );
    let broken = document
        .descendants()
        .find(|node| node.has_tag_name("testcase") && node.attribute("name") == Some("broken"))
        .expect("a case for `broken`");
    let failure = broken
        .children()
        .find(|node| node.has_tag_name("failure"))
        .expect("a failure");
    assert!(
        failure
            .attribute("message")
            .is_some_and(|message| message.contains("asked to fail")),
        "{junit}"
    );

    // SARIF: the annotation at its repository path.
    let sarif: serde_json::Value = serde_json::from_str(&read(&sarif)).expect("SARIF is JSON");
    assert_eq!(sarif["version"], "2.1.0");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(
        (&result["ruleId"], &result["level"]),
        (&"probe".into(), &"warning".into()),
        "{sarif:#}"
    );
    let location = &result["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "file.txt");
    assert_eq!(
        (&location["region"]["startLine"], &location["region"]["startColumn"]),
        (&3.into(), &7.into())
    );

    // GitLab's code quality report: the same finding.
    let quality: serde_json::Value = serde_json::from_str(&read(&quality)).expect("code quality is JSON");
    let issue = &quality[0];
    assert_eq!(
        (
            &issue["location"]["path"],
            &issue["location"]["lines"]["begin"],
            &issue["severity"]
        ),
        (&"file.txt".into(), &3.into(), &"minor".into()),
        "{quality:#}"
    );
    assert_eq!(issue["fingerprint"].as_str().map(str::len), Some(32));

    // GitHub Actions: workflow commands (on stderr beside --json) and the summary.
    assert!(
        finished
            .stderr
            .contains("::warning file=file.txt,line=3,col=7,title=cairn%3A probe::look here"),
        "{finished:?}"
    );
    let summary = read(&summary);
    assert!(
        summary.contains("| `broken` | ❌ failed |") && summary.contains("| `probe` | ✅ succeeded |"),
        "{summary}"
    );

    // The next run reuses `probe`: the trace marks it cached, and the
    // history lists both, newest first, until it is told to keep one.
    let second = out.path().join("second.json");
    let (_, _) = run_json(dir.path(), &["--trace", second.to_str().expect("utf-8")]);
    let trace: serde_json::Value = serde_json::from_str(&read(&second)).expect("the trace is JSON");
    let cached = trace["traceEvents"]
        .as_array()
        .expect("events")
        .iter()
        .find(|span| span["name"] == "probe" && span["ph"] == "X")
        .expect("a span for probe")
        .clone();
    assert_eq!(
        (&cached["cat"], &cached["args"]["cached"]),
        (&"stage,cached".into(), &true.into())
    );
    let runs = json_of(&finish(cairn(dir.path()).args(["runs", "--json"])));
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
    assert_eq!(runs[1]["id"], id.as_str(), "newest first: {runs:#}");
    let mut keep_one = cairn(dir.path());
    keep_one.env("CAIRN_KEEP_RUNS", "1");
    run_json_with(keep_one, &[]);
    let runs = json_of(&finish(cairn(dir.path()).args(["runs", "--json"])));
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs:#}");
    let listed = finish(cairn(dir.path()).arg("runs"));
    assert!(listed.stderr.contains("1 run kept in"), "{listed:?}");
}

#[test]
fn annotations_name_the_path_in_the_repository() {
    let repository = folder(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        ("services/api/file.txt", "one\ntwo\nthree\n"),
    ]);
    let workspace = repository.path().join("services/api");
    std::fs::write(
        workspace.join("cairn.toml"),
        PIPELINE.replace("{stage_probe}", cairn_test_programs::STAGE_PROBE),
    )
    .expect("write the pipeline");
    let (_, events) = run_json(&workspace, &["probe"]);
    let annotation = events_of(&events, "stage_annotation")[0];
    assert_eq!(annotation["path"], "services/api/file.txt", "{annotation}");
    let runs = json_of(&finish(cairn(&workspace).args(["runs", "--json"])));
    assert_eq!(runs[0]["branch"], "main", "{runs:#}");
}

/// Loads `page` in headless Chromium: the DOM after its scripts ran, the
/// console lines it logged, and a screenshot in `screenshot`.
fn chromium(page: &Path, screenshot: &Path) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().expect("a Chromium profile");
    let url = format!("file://{}", page.display());
    let common = |command: &mut Command| {
        command
            .arg("--headless")
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--enable-logging=stderr")
            .arg("--v=0");
    };
    let mut dump = Command::new("chromium");
    common(&mut dump);
    let output = dump
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs (`cargo xtask setup` installs Debian's `chromium`)");
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    let mut shot = Command::new("chromium");
    common(&mut shot);
    let status = shot
        .arg("--hide-scrollbars")
        .arg("--window-size=1280,1000")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    (String::from_utf8_lossy(&output.stdout).into_owned(), console)
}

#[test]
fn the_html_report_loads_in_headless_chromium() {
    let dir = pipeline_dir(PIPELINE, &[("file.txt", "one\ntwo\nthree\n")]);
    let (finished, _) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-test");
    std::fs::create_dir_all(&folder).expect("the test's output folder");
    let page = folder.join("report.html");
    let written = finish(cairn(dir.path()).args(["report", "-o"]).arg(&page));
    assert_eq!(written.code, Some(0), "{written:?}");
    let html = read(&page);
    assert!(
        !html.contains("<link") && !html.contains("src=\"http"),
        "self-contained"
    );

    let screenshot = folder.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let (dom, console) = chromium(&page, &screenshot);
    assert!(console.is_empty(), "the page logged: {console:#?}");
    for text in ["probe", "broken", "after", "asked to fail", "slot 1", "file.txt:3:7"] {
        assert!(dom.contains(text), "`{text}` in the rendered page:\n{dom}");
    }
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|metadata| metadata.len() > 10_000),
        "a screenshot in {}",
        screenshot.display()
    );

    // The harness sees a broken page: a script error is a console line.
    let broken = folder.join("broken.html");
    std::fs::write(
        &broken,
        html.replacen("\"use strict\";", "\"use strict\"; null.boom;", 1),
    )
    .expect("write");
    let (_, console) = chromium(&broken, &folder.join("broken.png"));
    assert!(
        console.iter().any(|line| line.contains("Uncaught TypeError")),
        "{console:#?}"
    );
}

#[test]
fn spans_reach_an_opentelemetry_collector_over_otlp_http() {
    let collector = http_server::TestServer::http();
    let dir = pipeline_dir(PIPELINE, &[("file.txt", "one\ntwo\nthree\n")]);
    let with_collector = |endpoint: &str| {
        let mut command = cairn(dir.path());
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20s3cret-t0ken")
            .env("OTEL_SERVICE_NAME", "ci");
        command
    };
    let (finished, _) = run_json_with(with_collector(&collector.url()), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let (_, _) = run_json_with(with_collector(&collector.url()), &["probe"]);
    let exports: Vec<_> = collector
        .received()
        .into_iter()
        .filter(|request| request.method == "POST" && request.path == "/v1/traces")
        .collect();
    assert_eq!(exports.len(), 2, "one export per run: {exports:#?}");
    assert_eq!(
        exports[0].headers.get("authorization").map(String::as_str),
        Some("Bearer s3cret-t0ken")
    );
    assert_eq!(
        exports[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );

    let attribute = |span: &serde_json::Value, key: &str| {
        span["attributes"]
            .as_array()
            .and_then(|attributes| attributes.iter().find(|attribute| attribute["key"] == key))
            .map(|attribute| attribute["value"].clone())
            .unwrap_or_else(|| panic!("no attribute {key} in {span:#}"))
    };
    let spans_of = |body: &[u8]| -> (serde_json::Value, Vec<serde_json::Value>) {
        let request: serde_json::Value = serde_json::from_slice(body).expect("OTLP JSON");
        let resource = request["resourceSpans"][0]["resource"].clone();
        let spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .expect("spans")
            .clone();
        (resource, spans)
    };
    let (resource, spans) = spans_of(&exports[0].body);
    assert_eq!(attribute(&resource, "service.name")["stringValue"], "ci");
    let root = &spans[0];
    let trace = root["traceId"].as_str().expect("a trace id");
    assert_eq!(trace.len(), 32);
    let stage = |name: &str| {
        spans
            .iter()
            .find(|span| span["name"] == name && span["parentSpanId"] == root["spanId"])
            .unwrap_or_else(|| panic!("a span for `{name}` under the run's: {spans:#?}"))
    };
    assert!(spans.iter().all(|span| span["traceId"] == trace), "one trace per run");
    assert_eq!(attribute(stage("probe"), "cairn.cached")["boolValue"], false);
    assert!(
        attribute(stage("probe"), "cairn.key")["stringValue"]
            .as_str()
            .is_some_and(|key| key.starts_with("blake3:"))
    );
    assert_eq!(stage("broken")["status"]["code"], 2);
    assert!(
        stage("broken")["status"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("asked to fail"))
    );
    let (_, second) = spans_of(&exports[1].body);
    assert_ne!(
        second[0]["traceId"],
        trace,
        "a trace per run: runs {} and {}",
        attribute(root, "cairn.run"),
        attribute(&second[0], "cairn.run")
    );
    let reused = second
        .iter()
        .find(|span| span["name"] == "probe")
        .expect("probe's span");
    assert_eq!(attribute(reused, "cairn.cached")["boolValue"], true);

    // A collector that is not there is a warning that names it, not a
    // failed run, and never shows the headers' token.
    let (finished, _) = run_json_with(with_collector("http://127.0.0.1:9"), &["probe"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        finished.stderr.contains("cannot export run") && finished.stderr.contains("http://127.0.0.1:9/v1/traces"),
        "{finished:?}"
    );
    assert!(!finished.stderr.contains("s3cret-t0ken"), "{finished:?}");
}
