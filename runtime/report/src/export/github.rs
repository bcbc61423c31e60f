//! GitHub Actions: with `GITHUB_ACTIONS=true`, each annotation is also a
//! workflow command (`::error file=...,line=...::message`), which the
//! runner turns into an annotation on the commit and the pull request, and
//! a table of the stages is appended to `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write as _;

use cairn_core::observer::Level;

use crate::record::RunRecord;
use crate::{Status, elapsed};

/// The workflow commands for `record`'s annotations, a line each.
pub fn workflow_commands(record: &RunRecord) -> String {
    let mut text = String::new();
    for stage in &record.stages {
        for annotation in &stage.annotations {
            let command = match annotation.severity {
                Level::Error => "error",
                Level::Warn => "warning",
                _ => "notice",
            };
            let mut properties = format!("file={}", property(&annotation.path));
            if annotation.line > 0 {
                let _ = write!(properties, ",line={}", annotation.line);
                if let Some(column) = annotation.column {
                    let _ = write!(properties, ",col={column}");
                }
            }
            let _ = write!(properties, ",title={}", property(&format!("cairn: {}", stage.name)));
            let _ = writeln!(text, "::{command} {properties}::{}", data(&annotation.message));
        }
    }
    text
}

/// The Markdown summary of `record`, for `$GITHUB_STEP_SUMMARY`.
pub fn step_summary(record: &RunRecord) -> String {
    let mut text = format!(
        "### cairn: pipeline `{}` {}\n\n| stage | status | time | summary |\n| --- | --- | --- | --- |\n",
        record.pipeline, record.status
    );
    for stage in &record.stages {
        let mark = match stage.status {
            Some(Status::Succeeded) => "✅ succeeded",
            Some(Status::Cached) => "♻️ cached",
            Some(Status::Failed) => "❌ failed",
            Some(Status::Skipped) => "⏭️ skipped",
            None => "unfinished",
        };
        let about = stage
            .error
            .as_deref()
            .or(stage.summary.as_deref())
            .or(stage.reason.as_deref())
            .unwrap_or("");
        let _ = writeln!(
            text,
            "| `{}` | {mark} | {} | {} |",
            stage.name,
            elapsed(std::time::Duration::from_micros(stage.duration_us)),
            about.replace('|', "\\|").replace('\n', " ")
        );
    }
    let _ = writeln!(
        text,
        "\n{} stages in {}: run `{}`",
        record.stages.len(),
        elapsed(std::time::Duration::from_millis(record.duration_ms)),
        record.id
    );
    text
}

/// A workflow command's message, escaped as the runner reads it.
fn data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value, escaped as the runner reads it.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_properties_are_escaped_as_the_runner_reads_them() {
        assert_eq!(data("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(property("a,b:c"), "a%2Cb%3Ac");
    }
}
