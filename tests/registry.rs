//! Publishing, pulling, pinning, verifying and authenticating against a real
//! OCI registry (Debian's `docker-registry`, started per test on a free
//! loopback port), and against an image-layout folder with no server.

use std::path::Path;

use crate::support::registry::{Http, TestRegistry, hex, sha2_digest, tamper};
use crate::support::{Finished, cairn, finish, finished_stage, pipeline_dir, run_json};
use serde_json::Value;

/// A workspace whose one stage `tool` uses `reference` on `*.txt`.
fn workspace(reference: &str) -> tempfile::TempDir {
    pipeline_dir(
        &format!(
            r#"
            [pipeline]
            name = "published"

            [stages.tool]
            uses = "{reference}"
            inputs = ["*.txt"]
            "#
        ),
        &[("a.txt", "hello registry\n")],
    )
}

/// `cairn publish COMPONENT TARGET` in `dir`; the digest it printed.
fn publish(dir: &Path, component: &str, target: &str) -> String {
    let published = finish(cairn(dir).args(["publish", component, target]));
    assert_eq!(published.code, Some(0), "{published:?}");
    let digest = published.stdout.trim().to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{published:?}");
    digest
}

/// Runs the workspace's pipeline; its outcome and the `tool` stage's summary.
fn run(dir: &Path, args: &[&str]) -> (Finished, Option<String>) {
    let (finished, events) = run_json(dir, args);
    let summary = events
        .iter()
        .find(|event| event["event"] == "stage_finished" && event["stage"] == "tool")
        .and_then(|_| finished_stage(&events, "tool")["summary"].as_str().map(str::to_owned));
    (finished, summary)
}

/// `cairn run --locked` with an empty cache, as on a machine that has never
/// pulled anything.
fn run_on_a_new_machine(dir: &Path) -> Finished {
    let empty = tempfile::tempdir().unwrap();
    finish(cairn(dir).env("CAIRN_CACHE", empty.path()).args(["run", "--locked"]))
}

fn lock_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("cairn.lock")).expect("cairn.lock was written")
}

#[test]
fn a_published_stage_is_pulled_pinned_and_run() {
    let registry = TestRegistry::start();
    let reference = registry.reference("stages/wc:1.0");
    let dir = workspace(&reference);
    let digest = publish(dir.path(), "std:wc", &reference);

    let (finished, summary) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(summary.as_deref(), Some("1 files, 1 lines, 2 words"));
    assert!(
        finished.stderr.contains(&format!("pinned `{reference}` to {digest}")),
        "{finished:?}"
    );

    let lock = lock_of(dir.path());
    assert!(lock.contains(&format!("uses = \"{reference}\"")), "{lock}");
    assert!(lock.contains(&format!("manifest = \"{digest}\"")), "{lock}");

    // The registry serves the manifest under the digest cairn printed.
    let (status, served, _) = Http::default().get(
        &format!("http://{}/v2/stages/wc/manifests/1.0", registry.host),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!((status, served.as_deref()), (200, Some(digest.as_str())));

    // Publishing the same bytes again gives the same digest: builds are reproducible.
    assert_eq!(publish(dir.path(), "std:wc", &reference), digest);
    let (again, _) = run(dir.path(), &["--locked"]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(lock_of(dir.path()), lock);
}

#[test]
fn what_cairn_pushes_follows_the_wasm_artifact_layout() {
    let registry = TestRegistry::start();
    let dir = workspace("std:wc");
    let target = registry.reference("stages/wc:layout-check");
    let digest = publish(dir.path(), "std:wc", &target);
    let http = Http::default();
    let base = format!("http://{}/v2/stages/wc", registry.host);

    let (status, _, manifest_bytes) = http.get(
        &format!("{base}/manifests/{digest}"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(status, 200);
    assert_eq!(format!("sha256:{}", hex(&sha2_digest(&manifest_bytes))), digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("the manifest is JSON");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest:#}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.title"], "wc");
    assert_eq!(
        annotations["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(annotations["org.opencontainers.image.created"], "1970-01-01T00:00:00Z");
    assert_eq!(annotations["dev.cairn.stage.world"], "cairn:stage/stage@0.1.0");

    let (status, _, config_bytes) = http.get(
        &format!("{base}/blobs/{}", manifest["config"]["digest"].as_str().unwrap()),
        "*/*",
    );
    assert_eq!(status, 200);
    assert_eq!(manifest["config"]["size"], config_bytes.len());
    let config: Value = serde_json::from_slice(&config_bytes).expect("the config is JSON");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"], serde_json::json!([layers[0]["digest"]]));
    assert_eq!(config["component"]["target"], "cairn:stage/stage@0.1.0");
    let exports = config["component"]["exports"].as_array().expect("exports");
    assert!(exports.iter().any(|export| export == "run"), "{config:#}");
    let imports = config["component"]["imports"].as_array().expect("imports");
    assert!(
        imports
            .iter()
            .any(|import| import.as_str().unwrap().starts_with("cairn:stage/host@")),
        "{config:#}"
    );
    assert!(config["created"].is_string());

    let (status, _, layer) = http.get(
        &format!("{base}/blobs/{}", layers[0]["digest"].as_str().unwrap()),
        "*/*",
    );
    assert_eq!(status, 200);
    assert_eq!(layer, cairn::standard_stages::get("wc").expect("std:wc"));
    assert_eq!(layers[0]["size"], layer.len());
}

#[test]
fn cairn_runs_a_component_pushed_the_way_wkg_pushes_it() {
    // The shape `wkg oci push` (0.16, through the oci-wasm crate) writes: a
    // config with a nanosecond `created`, a null author and target, the
    // component's imports and exports; the manifest built by oci-client,
    // with the file name on the layer. (Checked against a real `wkg` by hand.)
    let registry = TestRegistry::start();
    let http = Http::default();
    let component = std::fs::read(cairn_test_programs::PROBE_COMPONENT).expect("the probe");
    let layer_digest = http.push_blob(&registry.host, "tools/probe", &component);
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2026-11-27T12:34:56.123456789Z",
        "author": null,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": {
            "exports": ["wasi:cli/run@0.2.0"],
            "imports": ["wasi:cli/environment@0.2.0", "wasi:filesystem/preopens@0.2.0"],
            "target": null
        }
    }))
    .unwrap();
    let config_digest = http.push_blob(&registry.host, "tools/probe", &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.wasm.config.v0+json",
            "digest": config_digest,
            "size": config.len()
        },
        "layers": [{
            "mediaType": "application/wasm",
            "digest": layer_digest,
            "size": component.len(),
            "annotations": { "org.opencontainers.image.title": "probe.wasm" }
        }],
        "annotations": { "org.opencontainers.image.title": "probe" }
    }))
    .unwrap();
    http.push_manifest(&registry.host, "tools/probe", "0.1.0", &manifest);

    let reference = registry.reference("tools/probe:0.1.0");
    let dir = pipeline_dir(
        &format!(
            r#"
            [pipeline]
            name = "interop"

            [stages.greet]
            uses = "{reference}"
            args = ["cat", "/src/a.txt"]
            inputs = ["a.txt"]
            "#
        ),
        &[("a.txt", "pushed by another tool\n")],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(
        crate::support::stage_stdout(&events, "greet"),
        ["pushed by another tool"]
    );
    let pinned = format!("sha256:{}", hex(&sha2_digest(&manifest)));
    assert!(lock_of(dir.path()).contains(&pinned));
}

#[test]
fn a_moved_tag_changes_nothing_until_the_lock_is_updated() {
    let registry = TestRegistry::start();
    let reference = registry.reference("stages/tool:stable");
    let dir = workspace(&reference);
    let first = publish(dir.path(), "std:wc", &reference);
    let (finished, summary) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(summary.as_deref(), Some("1 files, 1 lines, 2 words"));
    let pinned = lock_of(dir.path());

    // The tag moves to a different stage.
    let second = publish(dir.path(), "std:validate", &reference);
    assert_ne!(first, second);

    // A locked run (even rerunning the stage) still runs what was pinned.
    let (finished, summary) = run(dir.path(), &["--locked", "--no-cache"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(summary.as_deref(), Some("1 files, 1 lines, 2 words"));
    assert_eq!(lock_of(dir.path()), pinned);

    // `cairn lock` alone keeps pins; `--update STAGE` moves this one.
    let kept = finish(cairn(dir.path()).arg("lock"));
    assert_eq!(kept.code, Some(0), "{kept:?}");
    assert!(kept.stderr.contains("is up to date"), "{kept:?}");
    let updated = finish(cairn(dir.path()).args(["lock", "--update", "tool"]));
    assert_eq!(updated.code, Some(0), "{updated:?}");
    assert!(
        updated
            .stderr
            .contains(&format!("moved `{reference}` from {first} to {second}")),
        "{updated:?}"
    );
    assert!(lock_of(dir.path()).contains(&second));
    let (finished, summary) = run(dir.path(), &["--locked"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(summary.as_deref(), Some("0 files valid"));
}

#[test]
fn locked_runs_catch_a_pipeline_that_drifted_from_its_lock() {
    let registry = TestRegistry::start();
    let reference = registry.reference("stages/wc:1");
    let dir = workspace(&reference);
    publish(dir.path(), "std:wc", &reference);
    publish(dir.path(), "std:wc", &registry.reference("stages/wc:2"));
    let (finished, _) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let pinned = lock_of(dir.path());

    // The pipeline now names another tag: --locked refuses, naming both changes.
    let edited = std::fs::read_to_string(dir.path().join("cairn.toml"))
        .unwrap()
        .replace("stages/wc:1", "stages/wc:2");
    std::fs::write(dir.path().join("cairn.toml"), edited).unwrap();
    let (refused, _) = run(dir.path(), &["--locked"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("cairn.lock` is out of date and --locked forbids changing it"),
        "{refused:?}"
    );
    assert!(
        refused
            .stderr
            .contains(&format!("`{}` is not pinned", registry.reference("stages/wc:2"))),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains(&format!("unpinned `{reference}`")),
        "{refused:?}"
    );
    assert_eq!(lock_of(dir.path()), pinned, "--locked must not write the lock");
    let check = finish(cairn(dir.path()).args(["lock", "--locked"]));
    assert_eq!(check.code, Some(2), "{check:?}");

    // Without --locked, the run pins the new reference and drops the old one.
    let (finished, _) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let lock = lock_of(dir.path());
    assert!(
        lock.contains("stages/wc:2") && !lock.contains("stages/wc:1\""),
        "{lock}"
    );
}

#[test]
fn a_tampered_blob_is_refused_and_never_run() {
    let registry = TestRegistry::start();
    let reference = registry.reference("stages/wc:1");
    let dir = workspace(&reference);
    publish(dir.path(), "std:wc", &reference);
    let layer = format!(
        "sha256:{}",
        hex(&sha2_digest(cairn::standard_stages::get("wc").unwrap()))
    );
    tamper(&registry.blob_file(&layer));

    let (refused, _) = run(dir.path(), &[]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("does not match its digest"), "{refused:?}");
    assert!(refused.stderr.contains(&layer), "{refused:?}");
    assert!(!refused.stdout.contains("stage_started"), "{refused:?}");
    assert!(
        !dir.path().join("cairn.lock").exists(),
        "nothing is pinned to a tampered component"
    );
}

#[test]
fn a_tampered_manifest_is_refused_by_its_pinned_digest() {
    let registry = TestRegistry::start();
    let reference = registry.reference("stages/wc:1");
    let dir = workspace(&reference);
    let digest = publish(dir.path(), "std:wc", &reference);
    let (finished, _) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");

    tamper(&registry.blob_file(&digest));
    // A fresh machine (empty cache) must fetch by the pinned digest.
    let refused = run_on_a_new_machine(dir.path());
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("does not match its digest"), "{refused:?}");
}

#[test]
fn basic_auth_registries_take_credentials_from_login_or_the_docker_config() {
    let registry = TestRegistry::with_users(&[("ci", "s3cret")]);
    let reference = registry.reference("private/wc:1");
    let dir = workspace(&reference);

    let anonymous = finish(cairn(dir.path()).args(["publish", "std:wc", &reference]));
    assert_eq!(anonymous.code, Some(2), "{anonymous:?}");
    assert!(anonymous.stderr.contains("refused anonymous access"), "{anonymous:?}");
    assert!(
        anonymous
            .stderr
            .contains(&format!("hint: log in with `cairn login {}", registry.host)),
        "{anonymous:?}"
    );

    let wrong = finish(
        cairn(dir.path())
            .args(["login", &registry.host, "--username", "ci", "--password-stdin"])
            .stdin(password_file("guess")),
    );
    assert_eq!(wrong.code, Some(2), "{wrong:?}");
    assert!(
        wrong.stderr.contains("refused the credentials of user `ci`"),
        "{wrong:?}"
    );

    let login = finish(
        cairn(dir.path())
            .args(["login", &registry.host, "--username", "ci", "--password-stdin"])
            .stdin(password_file("s3cret")),
    );
    assert_eq!(login.code, Some(0), "{login:?}");
    let config = crate::support::cache_for(dir.path()).join("docker/config.json");
    let saved: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(saved["auths"][&registry.host]["auth"].is_string(), "{saved:#}");

    publish(dir.path(), "std:wc", &reference);
    let (finished, summary) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(summary.as_deref(), Some("1 files, 1 lines, 2 words"));

    // Credentials written by hand (as CI does) are read the same way; wrong ones are named.
    let encoded = base64_of("ci:wrong");
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{}":{{"auth":"{encoded}"}}}}}}"#, registry.host),
    )
    .unwrap();
    let refused = run_on_a_new_machine(dir.path());
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("refused the credentials of user `ci` from") && refused.stderr.contains("config.json"),
        "{refused:?}"
    );

    let logout = finish(cairn(dir.path()).args(["logout", &registry.host]));
    assert_eq!(logout.code, Some(0), "{logout:?}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(saved["auths"].get(&registry.host).is_none(), "{saved:#}");
}

#[test]
fn a_locked_pipeline_runs_offline_from_the_cache() {
    let mut registry = TestRegistry::start();
    let reference = registry.reference("stages/wc:1");
    let dir = workspace(&reference);
    publish(dir.path(), "std:wc", &reference);
    let (finished, _) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    registry.stop();

    // --no-cache reruns the stage, so the component itself comes from the store.
    let (offline, summary) = run(dir.path(), &["--locked", "--no-cache"]);
    assert_eq!(offline.code, Some(0), "{offline:?}");
    assert_eq!(summary.as_deref(), Some("1 files, 1 lines, 2 words"));

    // A machine without the component says which registry it could not reach.
    let unreachable = run_on_a_new_machine(dir.path());
    assert_eq!(unreachable.code, Some(2), "{unreachable:?}");
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot reach the registry `{}`", registry.host)),
        "{unreachable:?}"
    );
}

#[test]
fn an_image_layout_folder_is_a_registry_without_a_server() {
    let dir = workspace("oci-layout://./oci:render");
    // A stage source folder is built, then published with its package's name and version.
    let example = crate::support::copy_example("site");
    let render = example.path().join("stages/render");
    let published = finish(cairn(dir.path()).args(["publish", render.to_str().unwrap(), "oci-layout://./oci:render"]));
    assert_eq!(published.code, Some(0), "{published:?}");
    let digest = published.stdout.trim();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("oci/blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["annotations"]["org.opencontainers.image.title"], "render");
    assert!(manifest["annotations"]["org.opencontainers.image.version"].is_string());
    let index: Value = serde_json::from_slice(&std::fs::read(dir.path().join("oci/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "render"
    );

    // Republish std:wc under the tag the pipeline uses, run, and check the pin.
    let digest = publish(dir.path(), "std:wc", "oci-layout://./oci:render");
    let (finished, summary) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(summary.as_deref(), Some("1 files, 1 lines, 2 words"));
    assert!(lock_of(dir.path()).contains(&digest));

    // Tampering with the layout is caught like tampering with a registry.
    let layer = hex(&sha2_digest(cairn::standard_stages::get("wc").unwrap()));
    tamper(&dir.path().join("oci/blobs/sha256").join(layer));
    let refused = run_on_a_new_machine(dir.path());
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("does not match its digest"), "{refused:?}");
}

#[test]
fn bad_targets_and_missing_registries_get_clear_errors() {
    let dir = workspace("std:wc");
    for (target, message) in [
        (
            "oci://localhost:1/wc@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "needs a tag",
        ),
        ("oci://localhost:1/Wc:1", "not a repository name"),
        ("docker://localhost/wc:1", "not an OCI reference"),
    ] {
        let refused = finish(cairn(dir.path()).args(["publish", "std:wc", target]));
        assert_eq!(refused.code, Some(2), "{refused:?}");
        assert!(refused.stderr.contains(message), "{target}: {refused:?}");
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = format!("oci://{closed}/wc:1");
    let unreachable = finish(cairn(dir.path()).args(["publish", "std:wc", &target]));
    assert_eq!(unreachable.code, Some(2), "{unreachable:?}");
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot reach the registry `{closed}`")),
        "{unreachable:?}"
    );

    // A pipeline naming a bad reference fails validation, at the place it is written.
    let broken = workspace("oci://ghcr.io/acme/wc:");
    let invalid = finish(cairn(broken.path()).arg("validate"));
    assert_eq!(invalid.code, Some(2), "{invalid:?}");
    assert!(invalid.stderr.contains("cairn.toml:6:20: error:"), "{invalid:?}");
    assert!(invalid.stderr.contains("not a valid tag"), "{invalid:?}");

    // A tag that does not exist is named as such.
    let registry = TestRegistry::start();
    let missing = workspace(&registry.reference("stages/nothing:1"));
    let not_found = finish(cairn(missing.path()).arg("run"));
    assert_eq!(not_found.code, Some(2), "{not_found:?}");
    assert!(
        not_found.stderr.contains("does not exist in the registry"),
        "{not_found:?}"
    );
}

/// A file holding `password` and a newline, for `--password-stdin`.
fn password_file(password: &str) -> std::fs::File {
    let mut file = tempfile::tempfile().unwrap();
    use std::io::{Seek, Write};
    writeln!(file, "{password}").unwrap();
    file.rewind().unwrap();
    file
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn bearer_tokens_from_login_reach_a_token_checking_registry() {
    let registry = TestRegistry::start();
    let publisher = tempfile::tempdir().unwrap();
    publish(publisher.path(), "std:wc", &registry.reference("private/wc:1"));
    let gateway = crate::support::registry::BearerGateway::start(&registry.host, "t0ken");
    let reference = format!("oci://{}/private/wc:1", gateway.host);
    let dir = workspace(&reference);

    let anonymous = finish(cairn(dir.path()).arg("run"));
    assert_eq!(anonymous.code, Some(2), "{anonymous:?}");
    assert!(anonymous.stderr.contains("refused anonymous access"), "{anonymous:?}");

    let wrong = finish(
        cairn(dir.path())
            .args(["login", &gateway.host, "--token-stdin"])
            .stdin(password_file("guess")),
    );
    assert_eq!(wrong.code, Some(2), "{wrong:?}");
    assert!(wrong.stderr.contains("refused the token"), "{wrong:?}");

    let login = finish(
        cairn(dir.path())
            .args(["login", &gateway.host, "--token-stdin"])
            .stdin(password_file("t0ken")),
    );
    assert_eq!(login.code, Some(0), "{login:?}");
    let (finished, summary) = run(dir.path(), &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(summary.as_deref(), Some("1 files, 1 lines, 2 words"));
}
