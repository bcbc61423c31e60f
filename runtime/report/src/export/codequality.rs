//! `--codequality FILE`: the run's annotations in GitLab's code quality
//! format (the Code Climate issue list), for `artifacts:reports:codequality`,
//! which GitLab shows in merge requests. GitLab does not read SARIF there.

use serde_json::{Value, json};

use cairn_core::observer::Level;

use crate::record::RunRecord;

/// The code quality report of `record`.
pub fn render(record: &RunRecord) -> Value {
    let mut issues = Vec::new();
    for stage in &record.stages {
        for annotation in &stage.annotations {
            // Stable across runs, so GitLab can tell new findings from old.
            let fingerprint = blake3::hash(
                format!(
                    "{}\0{}\0{}\0{}",
                    stage.name, annotation.path, annotation.line, annotation.message
                )
                .as_bytes(),
            )
            .to_hex()[..32]
                .to_owned();
            issues.push(json!({
                "type": "issue",
                "check_name": format!("cairn/{}", stage.name),
                "description": annotation.message,
                "severity": match annotation.severity {
                    Level::Error => "major",
                    Level::Warn => "minor",
                    _ => "info",
                },
                "fingerprint": fingerprint,
                "location": {
                    "path": annotation.path,
                    "lines": { "begin": annotation.line.max(1) },
                },
            }));
        }
    }
    Value::Array(issues)
}
