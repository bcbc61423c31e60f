//! `--junit FILE`: the run as JUnit XML, the test report every CI system
//! shows (GitLab's `artifacts:reports:junit`, Jenkins, GitHub test
//! reporters). One test case per stage, with its error and the tail of its
//! log when it failed, then a suite per stage that reported test cases of
//! its own (`reports.junit`).

use std::fmt::Write as _;

use crate::Status;
use crate::record::{RunRecord, StageRecord};

use super::xml_text;

/// The log lines a failed stage's case carries.
const LOG_TAIL: usize = 50;

/// The JUnit XML of `record`.
pub fn render(record: &RunRecord) -> String {
    let stamp = humantime::format_rfc3339_seconds(record.started()).to_string();
    let pipeline = xml_text(&record.pipeline);
    let mut suites = String::new();
    let (mut tests, mut failures, mut skipped) = (0, 0, 0);
    let mut own = String::new();
    for stage in &record.stages {
        own.push_str(&stage_case(&pipeline, stage));
    }
    let count = |status| record.count(status);
    let stage_failures = count(Status::Failed);
    let stage_skipped = count(Status::Skipped) + record.stages.iter().filter(|stage| stage.status.is_none()).count();
    let _ = write!(
        suites,
        "  <testsuite name=\"{pipeline}\" tests=\"{}\" failures=\"{stage_failures}\" errors=\"0\" skipped=\"{stage_skipped}\" time=\"{}\" timestamp=\"{stamp}\">\n{own}  </testsuite>\n",
        record.stages.len(),
        seconds(record.duration_ms * 1000),
    );
    tests += record.stages.len();
    failures += stage_failures;
    skipped += stage_skipped;
    for stage in record.stages.iter().filter(|stage| !stage.cases.is_empty()) {
        let failed = stage.cases.iter().filter(|case| case.result == "failed").count();
        let skips = stage.cases.iter().filter(|case| case.result == "skipped").count();
        let time: f64 = stage.cases.iter().map(|case| case.time_s).sum();
        let _ = writeln!(
            suites,
            "  <testsuite name=\"{pipeline}/{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"{skips}\" time=\"{time:.3}\" timestamp=\"{stamp}\">",
            xml_text(&stage.name),
            stage.cases.len(),
        );
        for case in &stage.cases {
            let _ = write!(
                suites,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                xml_text(&case.name),
                xml_text(&case.classname),
                case.time_s
            );
            match case.result.as_str() {
                "failed" => {
                    let message = xml_text(case.message.as_deref().unwrap_or("failed"));
                    let _ = writeln!(suites, "><failure message=\"{message}\">{message}</failure></testcase>");
                }
                "skipped" => suites.push_str("><skipped/></testcase>\n"),
                _ => suites.push_str("/>\n"),
            }
        }
        suites.push_str("  </testsuite>\n");
        tests += stage.cases.len();
        failures += failed;
        skipped += skips;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cairn: {pipeline}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\" timestamp=\"{stamp}\">\n{suites}</testsuites>\n",
        seconds(record.duration_ms * 1000),
    )
}

/// The test case of one stage.
fn stage_case(pipeline: &str, stage: &StageRecord) -> String {
    let mut case = format!(
        "    <testcase name=\"{}\" classname=\"{pipeline}\" time=\"{}\"",
        xml_text(&stage.name),
        seconds(stage.duration_us)
    );
    match stage.status {
        Some(Status::Failed) => {
            let message = stage.error.as_deref().unwrap_or("failed");
            let mut body = message.to_owned();
            if let Some(hint) = &stage.hint {
                let _ = write!(body, "\nhint: {hint}");
            }
            let tail = stage.log.len().saturating_sub(LOG_TAIL);
            if !stage.log[tail..].is_empty() {
                body.push_str("\n\nthe end of its log:\n");
                for line in &stage.log[tail..] {
                    let _ = writeln!(body, "{}", line.text);
                }
            }
            let _ = write!(
                case,
                ">\n      <failure message=\"{}\" type=\"stage failed\">{}</failure>\n    </testcase>\n",
                xml_text(message),
                xml_text(&body)
            );
        }
        Some(Status::Skipped) => {
            let _ = write!(
                case,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                xml_text(stage.reason.as_deref().unwrap_or("skipped"))
            );
        }
        None => case.push_str(">\n      <skipped message=\"the run ended before it did\"/>\n    </testcase>\n"),
        Some(status) => {
            let _ = write!(
                case,
                ">\n      <system-out>{}</system-out>\n    </testcase>\n",
                xml_text(&format!(
                    "{}{}",
                    status.as_str(),
                    stage
                        .summary
                        .as_deref()
                        .map(|summary| format!(": {summary}"))
                        .unwrap_or_default()
                ))
            );
        }
    }
    case
}

/// Microseconds as JUnit's seconds.
fn seconds(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1e6)
}
