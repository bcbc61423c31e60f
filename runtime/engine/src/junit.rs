//! Test results are data: the JUnit XML files a stage names in
//! `reports.junit` (pytest `--junitxml`, `node --test --test-reporter=junit`,
//! cargo-nextest) read into counts, and each failed case into an annotation
//! at its file and line where the report gives them.
//!
//! A report is what a stage wrote, so nothing in it is trusted: a missing,
//! oversized or malformed file is a warning in the stage's log, never a
//! crash, and the number of annotations is bounded.

use std::path::Path;

use cairn_core::events::{TestCase, TestCounts};
use cairn_core::observer::{Annotation, Level};

/// The largest report read; a bigger one is a warning.
const MAX_REPORT: u64 = 64 * 1024 * 1024;

/// The most failed cases turned into annotations per stage.
const MAX_FAILURE_ANNOTATIONS: usize = 200;

/// The most cases kept, for cairn's own JUnit report (`--junit`).
const MAX_CASES: usize = 10_000;

/// The longest failure message kept in an annotation.
const MAX_MESSAGE: usize = 500;

/// What a stage's reports said.
#[derive(Debug, Default)]
pub struct TestReport {
    /// The cases, by result, over every report.
    pub counts: TestCounts,
    /// One per failed case (up to a bound).
    pub failures: Vec<Annotation>,
    /// Every case (up to a bound), for `--junit`.
    pub cases: Vec<TestCase>,
    /// Reports that could not be read, and why.
    pub warnings: Vec<String>,
}

/// Reads the reports `files` (relative to `outputs`, the stage's `/out`).
pub fn read(outputs: &Path, files: &[String]) -> TestReport {
    let mut report = TestReport::default();
    for file in files {
        let path = outputs.join(file);
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if !metadata.is_file() => {
                report
                    .warnings
                    .push(format!("the test report `/out/{file}` is not a file"));
            }
            Ok(metadata) if metadata.len() > MAX_REPORT => report.warnings.push(format!(
                "the test report `/out/{file}` is {} bytes, more than the {MAX_REPORT} read",
                metadata.len()
            )),
            Ok(_) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    if let Err(error) = read_one(&text, &mut report) {
                        report
                            .warnings
                            .push(format!("the test report `/out/{file}` is not JUnit XML: {error}"));
                    }
                }
                Err(error) => report
                    .warnings
                    .push(format!("cannot read the test report `/out/{file}`: {error}")),
            },
            Err(_) => report.warnings.push(format!(
                "the stage wrote no test report `/out/{file}` (named in `reports.junit`)"
            )),
        }
    }
    report
}

/// Adds one report's cases. `<testsuites>`, a lone `<testsuite>` and nested
/// suites all count, since every `<testcase>` is counted wherever it is.
fn read_one(text: &str, report: &mut TestReport) -> Result<(), String> {
    let document = roxmltree::Document::parse(text).map_err(|error| error.to_string())?;
    let root = document.root_element();
    if !matches!(root.tag_name().name(), "testsuites" | "testsuite") {
        return Err(format!(
            "its root element is `<{}>`, not `<testsuites>` or `<testsuite>`",
            root.tag_name().name()
        ));
    }
    for case in root.descendants().filter(|node| node.has_tag_name("testcase")) {
        let outcome = case.children().find(|child| {
            child.has_tag_name("failure") || child.has_tag_name("error") || child.has_tag_name("skipped")
        });
        let result = match outcome {
            Some(node) if node.has_tag_name("skipped") => {
                report.counts.skipped += 1;
                "skipped"
            }
            Some(node) => {
                report.counts.failed += 1;
                if report.failures.len() < MAX_FAILURE_ANNOTATIONS {
                    report.failures.push(failure_annotation(case, node));
                }
                "failed"
            }
            None => {
                report.counts.passed += 1;
                "passed"
            }
        };
        if report.cases.len() < MAX_CASES {
            report.cases.push(TestCase {
                name: case.attribute("name").unwrap_or("(unnamed)").to_owned(),
                classname: case.attribute("classname").unwrap_or_default().to_owned(),
                time_s: case.attribute("time").and_then(|time| time.parse().ok()).unwrap_or(0.0),
                result: result.to_owned(),
                message: outcome
                    .filter(|node| !node.has_tag_name("skipped"))
                    .map(|node| bounded(node.attribute("message").or(node.text()).unwrap_or_default())),
            });
        }
    }
    Ok(())
}

/// `test NAME failed: MESSAGE` at the case's `file` and `line` (relative
/// paths are the stage's `/src`), or at the report's suite when the report
/// does not say where.
fn failure_annotation(case: roxmltree::Node<'_, '_>, failure: roxmltree::Node<'_, '_>) -> Annotation {
    let name = match (case.attribute("classname"), case.attribute("name")) {
        (Some(class), Some(name)) if !class.is_empty() => format!("{class}.{name}"),
        (_, Some(name)) => name.to_owned(),
        _ => "(unnamed)".to_owned(),
    };
    let message = failure
        .attribute("message")
        .map(str::to_owned)
        .or_else(|| {
            failure
                .text()
                .and_then(|text| text.lines().map(str::trim).find(|line| !line.is_empty()))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| failure.tag_name().name().to_owned());
    let trace = failure.text().unwrap_or_default();
    let (path, line) = match case.attribute("file") {
        Some(file) => {
            let path = if file.starts_with('/') {
                file.to_owned()
            } else {
                format!("/src/{}", file.trim_start_matches("./"))
            };
            // The line that failed, where the trace names one in the case's
            // file, is worth more than where the case starts (which pytest
            // even counts from 0).
            let line = line_in_trace(trace, file)
                .or_else(|| case.attribute("line").and_then(|line| line.parse().ok()))
                .unwrap_or(0);
            (path, line)
        }
        None => place_in_trace(trace).unwrap_or_default(),
    };
    Annotation {
        path,
        line,
        column: None,
        severity: Level::Error,
        message: format!("test {name} failed: {}", bounded(&message)),
    }
}

/// The line of the first `FILE:LINE` in a failure's text.
fn line_in_trace(text: &str, file: &str) -> Option<u32> {
    let file = file.trim_start_matches("./");
    text.match_indices(file).find_map(|(start, _)| {
        let rest = text[start + file.len()..].strip_prefix(':')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// The first `/src/PATH:LINE` in a failure's text (a stack trace's frame in
/// the stage's sources), for reports that do not say where a case is.
fn place_in_trace(text: &str) -> Option<(String, u32)> {
    text.match_indices("/src/").find_map(|(start, _)| {
        let rest = &text[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | ','))
            .unwrap_or(rest.len());
        let mut parts = rest[..end].split(':');
        let path = parts.next()?;
        let line = parts.next()?.parse().ok()?;
        Some((path.to_owned(), line))
    })
}

fn bounded(text: &str) -> String {
    let single_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_line.chars().count() <= MAX_MESSAGE {
        return single_line;
    }
    format!("{}…", single_line.chars().take(MAX_MESSAGE).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(files: &[(&str, &str)]) -> TestReport {
        let folder = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(folder.path().join(name), text).expect("write report");
        }
        let names: Vec<String> = files.iter().map(|(name, _)| (*name).to_owned()).collect();
        read(folder.path(), &names)
    }

    #[test]
    fn cases_are_counted_and_failures_annotated_where_they_are() {
        let report = report_of(&[(
            "junit.xml",
            r#"<?xml version="1.0"?>
            <testsuites><testsuite name="pytest">
              <testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" line="3"/>
              <testcase classname="tests.test_math" name="test_sub" file="tests/test_math.py" line="6">
                <failure message="assert 1 == 2">    def test_sub():
                &gt;       assert 1 == 2
                tests/test_math.py:7: AssertionError</failure>
              </testcase>
              <testcase classname="tests.test_math" name="test_skip"><skipped/></testcase>
              <testcase name="test_error"><error>Traceback
              boom</error></testcase>
            </testsuite></testsuites>"#,
        )]);
        assert_eq!(
            report.counts,
            TestCounts {
                passed: 1,
                failed: 2,
                skipped: 1
            }
        );
        assert_eq!(report.counts.to_string(), "1 passed, 2 failed, 1 skipped");
        let results: Vec<&str> = report.cases.iter().map(|case| case.result.as_str()).collect();
        assert_eq!(results, ["passed", "failed", "skipped", "failed"]);
        assert_eq!(report.cases[1].message.as_deref(), Some("assert 1 == 2"));
        let first = &report.failures[0];
        assert_eq!((first.path.as_str(), first.line), ("/src/tests/test_math.py", 7));
        assert_eq!(first.message, "test tests.test_math.test_sub failed: assert 1 == 2");
        assert_eq!(report.failures[1].message, "test test_error failed: Traceback");
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn a_case_without_a_file_is_placed_by_its_trace() {
        let report = report_of(&[(
            "junit.xml",
            "<testsuites><testcase name=\"fails\" classname=\"test\">\
             <failure message=\"4 !== 5\">at TestContext.&lt;anonymous&gt; (/src/test/double.test.js:6:28)\
             at Test.run (node:internal/test_runner/test:796:25)</failure></testcase></testsuites>",
        )]);
        let failure = &report.failures[0];
        assert_eq!((failure.path.as_str(), failure.line), ("/src/test/double.test.js", 6));
    }

    #[test]
    fn bad_reports_are_warnings() {
        let report = report_of(&[("broken.xml", "<testsuites><testcase>"), ("html.xml", "<html/>")]);
        assert_eq!(report.counts, TestCounts::default());
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        assert!(report.warnings[0].starts_with("the test report `/out/broken.xml` is not JUnit XML"));
        assert!(report.warnings[1].contains("`<html>`"), "{:?}", report.warnings);
        let missing = read(Path::new("/nonexistent"), &["junit.xml".to_owned()]);
        assert_eq!(
            missing.warnings,
            ["the stage wrote no test report `/out/junit.xml` (named in `reports.junit`)"]
        );
    }
}
