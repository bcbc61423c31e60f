//! `wasi:http` through the host: origin grants both ways, HTTPS with a
//! private CA, path prefixes and redirects, credentials the stage never
//! sees, the delivery stages (`std:http`, `std:upload`, `std:notify`)
//! against real HTTP and HTTPS servers on loopback, and `fetch` from a
//! JavaScript stage.

use std::path::Path;

use crate::support::http_server::{TestCa, TestServer, secrets_file};
use crate::support::*;

/// `cairn run --json` in `dir`, with `--ca-cert` when `ca` is given.
fn run_with_ca(dir: &Path, ca: Option<&TestCa>, args: &[&str]) -> (Finished, Vec<serde_json::Value>) {
    let mut command = cairn(dir);
    if let Some(ca) = ca {
        command.arg("--ca-cert").arg(ca.ca_file());
    }
    run_json_with(command, args)
}

fn output<'a>(events: &'a [serde_json::Value], stage: &str, key: &str) -> &'a str {
    finished_stage(events, stage)["outputs"][key]
        .as_str()
        .unwrap_or_else(|| panic!("stage `{stage}` has no output `{key}`: {events:#?}"))
}

/// Every log line of a stage, host notices included.
fn stage_log(events: &[serde_json::Value], stage: &str) -> String {
    events_of(events, "stage_log")
        .into_iter()
        .filter(|event| event["stage"] == stage)
        .filter_map(|event| event["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_origin_is_reachable_only_when_granted() {
    let server = TestServer::http();
    let url = server.url();
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.granted]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/health", expect_json_pointer = "/status", expect_json_equals = "ok" }}

[stages.ungranted]
uses = "std:http"
with = {{ url = "{url}/health" }}
"#
        ),
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(output(&events, "granted", "status"), "200");
    let error = stage_error(&events, "ungranted");
    assert!(error.contains("refused by cairn"), "{error}");
    let log = stage_log(&events, "ungranted");
    assert!(log.contains(&format!("hint: add `network = [\"{url}\"]`")), "{log}");
    // Only the granted stage's request reached the server.
    assert_eq!(server.received().len(), 1, "{:?}", server.received());
}

#[test]
fn https_is_the_hosts_and_a_private_ca_is_trusted_only_when_given() {
    let ca = TestCa::new();
    let server = TestServer::https(&ca);
    let url = server.url();
    let pipeline = format!(
        r#"
[stages.check]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/health" }}
"#
    );
    let dir = pipeline_dir(&pipeline, &[]);
    let (finished, events) = run_with_ca(dir.path(), None, &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(stage_error(&events, "check").contains("TLS failed"), "{events:#?}");
    let log = stage_log(&events, "check");
    assert!(log.contains("--ca-cert"), "{log}");
    assert!(
        server.received().is_empty(),
        "no request was sent over an untrusted connection"
    );

    let (finished, events) = run_with_ca(dir.path(), Some(&ca), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(output(&events, "check", "status"), "200");

    // The environment variable does the same as the flag.
    let mut command = cairn(dir.path());
    command.env("CAIRN_CA_CERT", ca.ca_file());
    let (finished, _) = run_json_with(command, &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");

    // A CA file that is not one is refused before anything runs.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").expect("write");
    let finished = finish(cairn(dir.path()).arg("--ca-cert").arg(&bogus).arg("run"));
    assert_ne!(finished.code, Some(0), "{finished:?}");
    assert!(finished.stderr.contains("bogus.pem"), "{finished:?}");
}

#[test]
fn a_path_prefix_narrows_a_grant_and_redirects_are_checked_again() {
    let inner = TestServer::http();
    let outer = TestServer::http();
    let (inner_url, outer_url) = (inner.url(), outer.url());
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.narrow]
uses = "std:http"
network = ["{inner_url}/status"]
with = {{ url = "{inner_url}/status/204" }}

[stages.outside]
uses = "std:http"
network = ["{inner_url}/status"]
with = {{ url = "{inner_url}/statusx" }}

[stages.redirect-refused]
uses = "std:http"
network = ["{inner_url}"]
with = {{ url = "{inner_url}/redirect?to={outer_url}/health" }}

[stages.redirect-granted]
uses = "std:http"
network = ["{inner_url}", "{outer_url}"]
with = {{ url = "{inner_url}/redirect?to={outer_url}/health" }}
"#
        ),
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(output(&events, "narrow", "status"), "204");
    let log = stage_log(&events, "outside");
    assert!(log.contains("granted for another path only"), "{log}");
    let log = stage_log(&events, "redirect-refused");
    assert!(
        log.contains(&format!("hint: add `network = [\"{outer_url}\"]`")),
        "{log}"
    );
    assert_eq!(output(&events, "redirect-granted", "status"), "200");
    let statuses = statuses(&events);
    assert_eq!(statuses["outside"], "failed");
    assert_eq!(statuses["redirect-refused"], "failed");
    // The outer server was reached once: by the granted redirect.
    assert_eq!(outer.received().len(), 1, "{:?}", outer.received());
}

#[test]
fn a_credential_reaches_its_origin_and_nothing_the_stage_can_see() {
    let token = "s3cr3t-deploy-token-4f2a9c";
    let ca = TestCa::new();
    let deploy = TestServer::https_with_auth(&ca, &format!("Bearer {token}"));
    let other = TestServer::http();
    let (deploy_url, other_url) = (deploy.url(), other.url());
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.check]
uses = "std:http"
network = ["{deploy_url}"]
http_auth = {{ "{deploy_url}" = "Bearer ${{{{ secrets.DEPLOY_TOKEN }}}}" }}
with = {{ url = "{deploy_url}/auth", expect_json_pointer = "/authorized", expect_json_equals = "true" }}

[stages.snoop]
uses = "{probe}"
network = ["{deploy_url}", "{other_url}"]
http_auth = {{ "{deploy_url}" = "Bearer ${{{{ secrets.DEPLOY_TOKEN }}}}" }}
args = ["{deploy_url}/auth", "{other_url}/health", "{deploy_url}/redirect?to={other_url}/status/200"]
with = {{ mode = "fetch", secret = "DEPLOY_TOKEN" }}
"#,
            probe = cairn_test_programs::STAGE_PROBE,
        ),
        &[],
    );
    let secrets = tempfile::tempdir().expect("a folder for the secrets file");
    let secrets = secrets_file(secrets.path(), &[("DEPLOY_TOKEN", token)]);
    let cache = cache_for(dir.path());
    let (finished, events) = run_with_ca(
        dir.path(),
        Some(&ca),
        &["--secrets-file", secrets.to_str().expect("UTF-8")],
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    // The server checked the credential: the stage's request carried it.
    assert_eq!(output(&events, "check", "status"), "200");
    assert_eq!(output(&events, "snoop", "status.0"), "200");
    // The stage cannot ask for it, and it went to no other origin, not
    // even through a redirect from its own.
    assert_eq!(output(&events, "snoop", "secret"), "none");
    let received = other.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(
        received
            .iter()
            .all(|request| !request.headers.contains_key("authorization"))
    );
    assert!(
        deploy
            .received()
            .iter()
            .all(|request| request.headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {token}"))),
        "every request to the origin carries it"
    );
    // And it is nowhere the stage's words reach.
    assert!(!finished.stdout.contains(token), "JSON events");
    assert!(!finished.stderr.contains(token), "stderr");
    assert!(files_containing(&dir.path().join("cairn-out"), token.as_bytes()).is_empty());
    assert!(files_containing(&cache, token.as_bytes()).is_empty(), "the cache");
}

#[test]
fn std_http_fails_clearly_and_retries_until_a_deadline() {
    let server = TestServer::http();
    let url = server.url();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("address")
        // Dropped: nothing listens there any more.
    };
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.down]
uses = "std:http"
network = ["http://{closed}"]
with = {{ url = "http://{closed}/health" }}

[stages.error]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/status/500" }}

[stages.slow]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/slow", timeout = "1s" }}

[stages.not-json]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/not-json", expect_json_pointer = "/status", expect_json_equals = "ok" }}

[stages.deadline]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/flaky/1000/a", deadline = "2s", backoff = "200ms" }}

[stages.recovers]
uses = "std:http"
network = ["{url}"]
with = {{ url = "{url}/flaky/2/b", retries = "3", backoff = "100ms", save_body = "body.json" }}
"#
        ),
        &[],
    );
    let started = std::time::Instant::now();
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(25), "nothing hangs");
    for (stage, words) in [
        ("down", "connection refused"),
        ("error", "answered 500: status 500"),
        ("slow", "did not answer in time"),
        ("not-json", "not JSON"),
        ("deadline", "answered 503"),
    ] {
        let error = stage_error(&events, stage);
        assert!(error.contains(words), "{stage}: {error}");
    }
    assert!(stage_error(&events, "deadline").contains("attempts in"), "{events:#?}");
    assert_eq!(output(&events, "recovers", "attempts"), "3");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cairn-out/recovers/body.json")).expect("saved"),
        r#"{"status":"ok"}"#
    );
}

#[test]
fn responses_count_against_the_output_bound() {
    let server = TestServer::http();
    let url = server.url();
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.big]
uses = "std:http"
network = ["{url}"]
max_output = "16B"
with = {{ url = "{url}/health" }}
"#
        ),
        &[],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(
        stage_log(&events, "big").contains("exceeded its output bound"),
        "{events:#?}"
    );
}

#[test]
fn a_site_is_packaged_uploaded_with_a_credential_checked_and_announced() {
    let token = "upload-token-77c1";
    let ca = TestCa::new();
    let deploy = TestServer::https_with_auth(&ca, &format!("Bearer {token}"));
    let chat = TestServer::http();
    let (deploy_url, chat_url) = (deploy.url(), chat.url());
    let pipeline = format!(
        r#"
[stages.package]
uses = "std:archive"
inputs = ["site/**"]
with = {{ format = "tar.gz", name = "site.tar.gz" }}

[stages.deploy]
uses = "std:upload"
needs = ["package"]
network = ["{deploy_url}/releases"]
http_auth = {{ "{deploy_url}/releases" = "Bearer ${{{{ secrets.DEPLOY_TOKEN }}}}" }}
with = {{ url = "{deploy_url}/releases/1.0" }}

[stages.smoke]
uses = "std:http"
needs = ["deploy"]
network = ["{deploy_url}"]
with = {{ url = "{deploy_url}/flaky/1/smoke", retries = "2", backoff = "100ms" }}

[stages.announce]
uses = "std:notify"
needs = ["smoke"]
network = ["{chat_url}"]
if = "stages.smoke.result == 'failed'"
with = {{ url = "{chat_url}/hooks/deploys", text = "smoke test: ${{{{ stages.smoke.result }}}}" }}
"#
    );
    let dir = pipeline_dir(&pipeline, &[("site/index.html", "<h1>hello</h1>\n")]);
    let secrets = tempfile::tempdir().expect("a folder for the secrets file");
    let secrets = secrets_file(secrets.path(), &[("DEPLOY_TOKEN", token)]);
    let secrets = secrets.to_str().expect("UTF-8").to_owned();
    let (finished, events) = run_with_ca(dir.path(), Some(&ca), &["--secrets-file", &secrets]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let uploads: Vec<_> = deploy
        .received()
        .into_iter()
        .filter(|request| request.method == "PUT")
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].path, "/releases/1.0/site.tar.gz");
    assert_eq!(uploads[0].headers["authorization"], format!("Bearer {token}"));
    let archive = std::fs::read(dir.path().join("cairn-out/package/site.tar.gz")).expect("the package");
    assert_eq!(uploads[0].body, archive, "the archive arrived whole");
    let manifest = std::fs::read_to_string(dir.path().join("cairn-out/deploy/uploaded.json")).expect("manifest");
    assert!(manifest.contains("site.tar.gz"), "{manifest}");
    // The smoke test needed a retry, and passed: no announcement.
    assert_eq!(output(&events, "smoke", "attempts"), "2");
    assert_eq!(statuses(&events)["announce"], "skipped");
    assert!(chat.received().is_empty());
    // The smoke check had no credential: `http_auth` was the deploy's only.
    let smoke = deploy
        .received()
        .into_iter()
        .find(|request| request.path.starts_with("/flaky"));
    assert!(smoke.is_some_and(|request| !request.headers.contains_key("authorization")));

    // When the smoke test fails, the team hears of it.
    let failing = pipeline.replace("/flaky/1/smoke", "/status/503");
    std::fs::write(dir.path().join("cairn.toml"), failing).expect("write");
    let (finished, events) = run_with_ca(dir.path(), Some(&ca), &["--secrets-file", &secrets]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(statuses(&events)["announce"], "succeeded", "{events:#?}");
    let posted = chat.received();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].path, "/hooks/deploys");
    let message: serde_json::Value = serde_json::from_slice(&posted[0].body).expect("JSON");
    assert_eq!(message["text"], "smoke test: failed");
}

#[test]
fn std_upload_and_std_notify_report_a_server_error() {
    let server = TestServer::http();
    let url = server.url();
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.multipart]
uses = "std:upload"
inputs = ["dist/**"]
network = ["{url}"]
with = {{ url = "{url}/upload", mode = "multipart", from = "/src/dist" }}

[stages.rejected]
uses = "std:upload"
inputs = ["dist/**"]
network = ["{url}"]
with = {{ url = "{url}/status/500", from = "/src/dist" }}

[stages.webhook-broken]
uses = "std:notify"
network = ["{url}"]
with = {{ url = "{url}/status/500", status = "failed" }}
"#
        ),
        &[("dist/a.txt", "alpha\n"), ("dist/sub/b.txt", "beta\n")],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert_eq!(output(&events, "multipart", "files"), "2");
    let post = server
        .received()
        .into_iter()
        .find(|request| request.method == "POST")
        .expect("the multipart POST");
    let body = String::from_utf8_lossy(&post.body);
    assert!(post.headers["content-type"].starts_with("multipart/form-data; boundary="));
    assert!(
        body.contains("filename=\"a.txt\"") && body.contains("filename=\"sub/b.txt\""),
        "{body}"
    );
    assert!(body.contains("alpha\n") && body.contains("beta\n"));
    let error = stage_error(&events, "rejected");
    assert!(error.contains("a.txt") && error.contains("500"), "{error}");
    let error = stage_error(&events, "webhook-broken");
    assert!(error.contains("the webhook answered 500"), "{error}");
    let posted = server
        .received()
        .into_iter()
        .find(|request| request.path == "/status/500" && request.method == "POST")
        .expect("the notification");
    let message: serde_json::Value = serde_json::from_slice(&posted.body).expect("JSON");
    assert_eq!(message["text"], "❌ webhook-broken: failed");
}

#[test]
fn a_javascript_stage_fetches_through_the_host() {
    let server = TestServer::http();
    let url = server.url();
    let stage = format!(
        r#"
export const run = async (invocation) => {{
  const response = await fetch("{url}/health");
  const body = await response.json();
  let refused = "no";
  try {{
    await fetch("http://127.0.0.1:9/elsewhere");
  }} catch (error) {{
    refused = "yes";
  }}
  return {{ summary: `fetched ${{response.status}}`, outputs: [["status", String(response.status)], ["version", body.version], ["refused", refused]] }};
}};
"#
    );
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.js]
uses = "stage-js"
network = ["{url}"]
"#
        ),
        &[
            ("stage-js/stage.js", &stage),
            (
                "stage-js/package.json",
                r#"{"name":"stage-js","type":"module","main":"stage.js"}"#,
            ),
        ],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(output(&events, "js", "status"), "200");
    assert_eq!(output(&events, "js", "version"), "1.2.3");
    assert_eq!(output(&events, "js", "refused"), "yes");
}

#[test]
fn a_python_stage_requests_through_the_host() {
    let server = TestServer::http();
    let url = server.url();
    let stage = format!(
        r#"
import cairn_stage as cairn
import wit_world


class WitWorld(wit_world.WitWorld):
    def run(self, invocation):
        response = cairn.request("POST", "{url}/status/201", headers={{"content-type": "text/plain"}}, body=b"from python")
        health = cairn.request("GET", "{url}/health").json()
        try:
            cairn.request("GET", "http://127.0.0.1:9/elsewhere")
            refused = "no"
        except RuntimeError as error:
            refused = "yes" if "refused by cairn" in str(error) else str(error)
        return cairn.outcome("requested", status=response.status, version=health["version"], refused=refused)
"#
    );
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.py]
uses = "stage-py"
network = ["{url}"]
"#
        ),
        &[("stage-py/stage.py", &stage)],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(output(&events, "py", "status"), "201");
    assert_eq!(output(&events, "py", "version"), "1.2.3");
    assert_eq!(output(&events, "py", "refused"), "yes");
    let posted = server.received();
    assert_eq!(posted[0].body, b"from python");
}

#[test]
fn an_artifact_larger_than_the_stages_memory_is_uploaded_streamed() {
    let server = TestServer::http();
    let url = server.url();
    let dir = pipeline_dir(
        &format!(
            r#"
[stages.deploy]
uses = "std:upload"
inputs = ["dist/**"]
network = ["{url}"]
memory = "16MiB"
with = {{ url = "{url}/releases", from = "/src/dist" }}
"#
        ),
        &[],
    );
    let artifact: Vec<u8> = (0..40u32 << 20).map(|index| (index % 251) as u8).collect();
    std::fs::create_dir_all(dir.path().join("dist")).expect("mkdir");
    std::fs::write(dir.path().join("dist/image.bin"), &artifact).expect("write the artifact");
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(output(&events, "deploy", "bytes"), (40u64 << 20).to_string());
    let put = server
        .received()
        .into_iter()
        .find(|request| request.method == "PUT")
        .expect("the upload");
    assert_eq!(put.path, "/releases/image.bin");
    assert!(put.body == artifact, "the artifact arrived whole");
}
