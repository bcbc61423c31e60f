//! `--sarif FILE`: every annotation of the run as SARIF 2.1.0, the format
//! GitHub code scanning and most CI systems take. A stage is a rule; paths
//! are repository paths, relative to `%SRCROOT%`.

use serde_json::{Value, json};

use cairn_core::observer::Level;

use crate::record::RunRecord;

/// The SARIF log of `record`.
pub fn render(record: &RunRecord) -> Value {
    let annotated: Vec<&str> = record
        .stages
        .iter()
        .filter(|stage| !stage.annotations.is_empty())
        .map(|stage| stage.name.as_str())
        .collect();
    let rules: Vec<Value> = annotated
        .iter()
        .map(|stage| {
            json!({
                "id": stage,
                "name": stage,
                "shortDescription": { "text": format!("what stage `{stage}` of pipeline `{}` reported", record.pipeline) },
            })
        })
        .collect();
    let mut results = Vec::new();
    for stage in &record.stages {
        let Some(rule) = annotated.iter().position(|name| *name == stage.name) else {
            continue;
        };
        for annotation in &stage.annotations {
            let mut location = json!({
                "artifactLocation": { "uri": annotation.path, "uriBaseId": "%SRCROOT%" },
            });
            if annotation.line > 0 {
                let mut region = json!({ "startLine": annotation.line });
                if let Some(column) = annotation.column {
                    region["startColumn"] = json!(column);
                }
                location["region"] = region;
            }
            results.push(json!({
                "ruleId": stage.name,
                "ruleIndex": rule,
                "level": level(annotation.severity),
                "message": { "text": annotation.message },
                "locations": [{ "physicalLocation": location }],
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "cairn",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "automationDetails": { "id": format!("cairn/{}/{}", record.pipeline, record.id) },
            "results": results,
        }],
    })
}

/// SARIF's level for a severity.
fn level(severity: Level) -> &'static str {
    match severity {
        Level::Error => "error",
        Level::Warn => "warning",
        _ => "note",
    }
}
