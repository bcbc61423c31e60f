//! Deployment environments (`[environments.NAME]`, `environment = "NAME"`):
//! stages that deploy always run, read `${{ environment.url }}`, are the only
//! ones that may be granted their environment's secrets, and start only from
//! the branches the environment allows. A real `std:upload` deploys to a
//! real loopback server.

use crate::support::http_server::{TestServer, secrets_file};
use crate::support::*;

fn pipeline(url: &str) -> String {
    format!(
        r#"
[environments.staging]
url = "{url}/staging"
secrets = ["STAGING_TOKEN"]

[environments.production]
url = "{url}/production"
secrets = ["PROD_TOKEN"]
branches = ["main", "release/*"]

[stages.package]
uses = "std:archive"
inputs = ["site/**"]
with = {{ name = "site.tar.gz" }}

[stages.deploy-staging]
uses = "std:upload"
environment = "staging"
needs = ["package"]
network = ["{url}"]
http_auth = {{ "{url}" = "Bearer ${{{{ secrets.STAGING_TOKEN }}}}" }}
with = {{ url = "${{{{ environment.url }}}}/${{{{ environment.name }}}}-upload" }}

[stages.deploy-production]
uses = "std:upload"
environment = "production"
needs = ["deploy-staging", "package"]
network = ["{url}"]
with = {{ url = "${{{{ environment.url }}}}/upload", from = "/in/package" }}
"#
    )
}

#[test]
fn stages_in_an_environment_always_run_and_start_only_from_allowed_branches() {
    let server = TestServer::http();
    let dir = pipeline_dir(
        &pipeline(&server.url()),
        &[
            ("site/index.html", "<h1>hi</h1>\n"),
            (".git/HEAD", "ref: refs/heads/feature/x\n"),
        ],
    );
    let secrets = tempfile::tempdir().expect("a folder for secrets");
    let secrets = secrets_file(
        secrets.path(),
        &[("STAGING_TOKEN", "staging-token-1"), ("PROD_TOKEN", "prod-token-2")],
    );
    let secrets = secrets.to_str().expect("UTF-8").to_owned();
    let (finished, events) = run_json(dir.path(), &["--secrets-file", &secrets]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let first = statuses(&events);
    assert_eq!(first["deploy-staging"], "succeeded");
    assert_eq!(first["deploy-production"], "failed");
    let error = stage_error(&events, "deploy-production");
    assert!(
        error.contains(
            "environment `production` is deployed to from main, release/* only; this run is from the branch `feature/x`"
        ),
        "{error}"
    );
    let puts: Vec<String> = server
        .received()
        .into_iter()
        .filter(|request| request.method == "PUT")
        .map(|request| request.path)
        .collect();
    assert_eq!(
        puts,
        ["/staging/staging-upload/site.tar.gz"],
        "nothing reached production"
    );

    // On an allowed branch it deploys; and a second run deploys again,
    // where the package is reused from the cache.
    std::fs::write(dir.path().join(".git/HEAD"), "ref: refs/heads/release/2.0\n").expect("write");
    for _ in 0..2 {
        let (finished, events) = run_json(dir.path(), &["--secrets-file", &secrets]);
        assert_eq!(finished.code, Some(0), "{finished:?}");
        let ended = statuses(&events);
        assert_eq!(ended["deploy-production"], "succeeded");
        assert_eq!(ended["deploy-staging"], "succeeded", "never from the cache");
    }
    let production = server
        .received()
        .into_iter()
        .filter(|request| request.path == "/production/upload/site.tar.gz")
        .count();
    assert_eq!(production, 2);
}

#[test]
fn environment_secrets_are_refused_to_stages_outside_it() {
    let dir = pipeline_dir(
        r#"
[environments.production]
url = "https://example.com"
secrets = ["PROD_TOKEN"]

[stages.sneaky]
uses = "std:http"
secrets = ["PROD_TOKEN"]
network = ["https://example.com"]
http_auth = { "https://example.com" = "Bearer ${{ secrets.PROD_TOKEN }}" }
with = { url = "${{ environment.url }}" }
"#,
        &[],
    );
    let finished = finish(cairn(dir.path()).arg("validate"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert_eq!(
        finished
            .stderr
            .matches("the secret `PROD_TOKEN` belongs to environment `production`, and stage `sneaky` is not in it")
            .count(),
        2,
        "{}",
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .contains("`environment.url` is read by stage `sneaky`, which has no `environment`")
    );
}
