//! The standard stages that read and write a project's manifests:
//! `std:template` (per-environment configuration from `with` and upstream
//! outputs), `std:validate` (parsing, JSON Schema, `--strict`) and
//! `std:sbom` (a CycloneDX bill of materials from lock files).

use crate::support::*;

fn annotations_of<'a>(events: &'a [serde_json::Value], stage: &str) -> Vec<&'a serde_json::Value> {
    events_of(events, "stage_annotation")
        .into_iter()
        .filter(|event| event["stage"] == stage)
        .collect()
}

#[test]
fn templates_render_with_values_and_upstream_outputs_and_name_each_hole() {
    let dir = pipeline_dir(
        r#"
[stages.version]
uses = "std:wc"
inputs = ["VERSION"]

[stages.staging]
uses = "std:template"
inputs = ["deploy/**"]
needs = ["version"]
with = { from = "/src/deploy", suffix = ".tmpl", environment = "staging", replicas = "2", lines = "${{ stages.version.outputs.lines }}" }

[stages.broken]
uses = "std:template"
inputs = ["deploy/**"]
with = { from = "/src/deploy", suffix = ".tmpl", environment = "production" }
"#,
        &[
            ("VERSION", "1.4.2\n"),
            (
                "deploy/app.env.tmpl",
                "ENVIRONMENT={{ environment }}\nREPLICAS={{replicas}}\nLINES={{ lines }}\nKEEP={{ not a name }}\n",
            ),
            ("deploy/README.md", "not a template: {{ untouched }}\n"),
        ],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let rendered = std::fs::read_to_string(dir.path().join("cairn-out/staging/app.env")).expect("rendered");
    assert_eq!(
        rendered,
        "ENVIRONMENT=staging\nREPLICAS=2\nLINES=1\nKEEP={{ not a name }}\n"
    );
    assert!(
        !dir.path().join("cairn-out/staging/README.md").exists(),
        "only .tmpl files"
    );
    let holes = annotations_of(&events, "broken");
    assert_eq!(holes.len(), 2, "{holes:#?}");
    assert_eq!(holes[0]["line"], 2);
    assert_eq!(holes[0]["column"], 10);
    assert!(
        holes[0]["message"]
            .as_str()
            .is_some_and(|text| text.contains("set `with.replicas`"))
    );
    assert!(stage_error(&events, "broken").contains("2 placeholders have no value"));
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["name", "replicas"],
  "properties": {
    "name": { "type": "string" },
    "replicas": { "type": "integer", "minimum": 1 }
  }
}"#;

#[test]
fn validate_checks_a_schema_at_the_offending_line_and_honours_level_and_strict() {
    let dir = pipeline_dir(
        r#"
[stages.schema]
uses = "std:validate"
inputs = ["config/**", "schema.json"]
with = { schema = "/src/schema.json", files = "config/*" }

[stages.lenient]
uses = "std:validate"
inputs = ["config/**", "schema.json"]
with = { schema = "/src/schema.json", files = "config/*", level = "warn" }

[stages.strict]
uses = "std:validate"
inputs = ["config/**", "schema.json"]
args = ["--strict"]
with = { schema = "/src/schema.json", files = "config/*", level = "warn" }

[stages.typo]
uses = "std:validate"
inputs = ["config/**"]
with = { shcema = "/src/schema.json" }
"#,
        &[
            ("schema.json", SCHEMA),
            ("config/good.json", "{\"name\": \"web\", \"replicas\": 3}\n"),
            ("config/bad.toml", "name = \"worker\"\nreplicas = 0\n"),
        ],
    );
    let (finished, events) = run_json(dir.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let statuses = statuses(&events);
    assert_eq!(statuses["schema"], "failed");
    assert_eq!(statuses["lenient"], "succeeded");
    assert_eq!(statuses["strict"], "failed");
    let found = annotations_of(&events, "schema");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["path"], "config/bad.toml");
    assert_eq!(found[0]["line"], 2);
    assert!(
        found[0]["message"]
            .as_str()
            .is_some_and(|text| text.contains("/replicas")),
        "{found:#?}"
    );
    assert_eq!(annotations_of(&events, "lenient")[0]["severity"], "warn");
    assert_eq!(finished_stage(&events, "lenient")["outputs"]["warnings"], "1");
    assert!(stage_error(&events, "strict").contains("--strict"));
    assert!(stage_error(&events, "typo").contains("no `with.shcema`"), "{events:#?}");
}

#[test]
fn an_sbom_lists_every_locked_dependency_with_its_hashes_reproducibly() {
    let files: &[(&str, &str)] = &[
        (
            "Cargo.lock",
            "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.210\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"c8e3592472072e6e22e0a54d5904d9febf8508f65fb8552499a1abc7d1078c3a\"\n",
        ),
        (
            "web/package-lock.json",
            r#"{"name":"web","lockfileVersion":3,"packages":{"":{"name":"web"},"node_modules/@scope/left-pad":{"version":"1.3.0","integrity":"sha512-AAAA"},"node_modules/ms":{"version":"2.1.3","integrity":"sha512-BBBB"}}}"#,
        ),
        (
            "tools/requirements.txt",
            "# pinned\nrequests==2.32.3 \\\n    --hash=sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6\nflask>=2\n",
        ),
    ];
    let pipeline = "[stages.sbom]\nuses = \"std:sbom\"\ninputs = [\"**/Cargo.lock\", \"**/package-lock.json\", \"**/requirements.txt\"]\nwith = { name = \"shop\", version = \"2.0.0\" }\n";
    let first = pipeline_dir(pipeline, files);
    let second = pipeline_dir(pipeline, files);
    let mut boms = Vec::new();
    for checkout in [&first, &second] {
        let (finished, events) = run_json(checkout.path(), &[]);
        assert_eq!(finished.code, Some(0), "{finished:?}");
        assert_eq!(finished_stage(&events, "sbom")["outputs"]["components"], "5");
        let warned = annotations_of(&events, "sbom");
        assert_eq!(warned.len(), 1, "flask is not pinned: {warned:#?}");
        assert_eq!(warned[0]["line"], 4);
        boms.push(std::fs::read(checkout.path().join("cairn-out/sbom/sbom.cdx.json")).expect("the bill"));
    }
    assert_eq!(boms[0], boms[1], "the same lock files give the same bytes");
    let bom: serde_json::Value = serde_json::from_slice(&boms[0]).expect("JSON");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert_eq!(bom["metadata"]["component"]["name"], "shop");
    let purls: Vec<&str> = bom["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|component| component["purl"].as_str().expect("a purl"))
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:cargo/serde@1.0.210",
            "pkg:npm/%40scope/left-pad@1.3.0",
            "pkg:npm/ms@2.1.3",
            "pkg:pypi/flask",
            "pkg:pypi/requests@2.32.3"
        ]
    );
    let serde = &bom["components"][0];
    assert_eq!(serde["hashes"][0]["alg"], "SHA-256");
    assert_eq!(
        serde["hashes"][0]["content"],
        "c8e3592472072e6e22e0a54d5904d9febf8508f65fb8552499a1abc7d1078c3a"
    );
    // npm's base64 integrity, as hex.
    assert_eq!(bom["components"][2]["hashes"][0]["content"], "041041");

    let empty = pipeline_dir(
        "[stages.sbom]\nuses = \"std:sbom\"\ninputs = [\"*.md\"]\n",
        &[("README.md", "hi\n")],
    );
    let (finished, events) = run_json(empty.path(), &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(stage_error(&events, "sbom").contains("no lock file in /src"));
}
