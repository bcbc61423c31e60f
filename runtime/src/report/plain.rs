//! Plain lines for logs that are not a terminal (CI): every line prefixed
//! with its stage, no escape codes, nothing redrawn.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::style::{Style, elapsed, paint};
use super::summary::Summary;
use super::{Event, Reporter, Status};
use crate::observer::{Level, LogSource};

/// Writes `[stage] ...` lines to stderr.
pub struct PlainReporter {
    verbose: bool,
    summary: Summary,
    stderr: Mutex<()>,
}

impl PlainReporter {
    /// A reporter that shows `debug` and `trace` stage logs when `verbose`.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            summary: Summary::default(),
            stderr: Mutex::new(()),
        }
    }

    fn line(&self, text: &str) {
        let _guard = self.stderr.lock();
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

impl Reporter for PlainReporter {
    fn event(&self, event: &Event) {
        self.summary.record(event);
        match event {
            Event::PipelineStarted { pipeline, stages, jobs } => {
                self.line(&format!(
                    "pipeline `{pipeline}`: {} stages, {jobs} at a time",
                    stages.len()
                ));
            }
            Event::StageStarted { stage, attempt } if *attempt > 1 => {
                self.line(&format!("[{stage}] retrying (attempt {attempt})"));
            }
            Event::StageStarted { stage, .. } => self.line(&format!("[{stage}] started")),
            Event::StageLog {
                stage,
                source,
                level,
                text,
            } => {
                if !super::shown(*source, *level, self.verbose) {
                    return;
                }
                match (source, level) {
                    (LogSource::Host, Level::Warn | Level::Error) => {
                        self.line(&format!("[{stage}] {}: {text}", level.as_str()));
                    }
                    _ => self.line(&format!("[{stage}] {text}")),
                }
            }
            Event::StageProgress { .. } => {}
            Event::StageAnnotation {
                stage,
                path,
                line,
                column,
                severity,
                message,
            } => {
                let place = match (line, column) {
                    (0, _) => path.clone(),
                    (line, None) => format!("{path}:{line}"),
                    (line, Some(column)) => format!("{path}:{line}:{column}"),
                };
                self.line(&format!("[{stage}] {place}: {severity}: {message}"));
            }
            Event::StageFinished {
                stage,
                status,
                duration_ms,
                attempts,
                error,
                reason,
                summary,
                ..
            } => {
                let took = elapsed(Duration::from_millis(*duration_ms));
                let text = match status {
                    Status::Succeeded | Status::Cached => {
                        let detail = summary
                            .as_deref()
                            .map(|summary| format!(": {summary}"))
                            .unwrap_or_default();
                        format!("[{stage}] {} in {took}{detail}", status.as_str())
                    }
                    Status::Failed => {
                        let tries = if *attempts > 1 {
                            format!(" after {attempts} attempts")
                        } else {
                            String::new()
                        };
                        paint(
                            &format!("[{stage}] failed{tries}: {}", error.as_deref().unwrap_or("")),
                            Style::Error,
                        )
                    }
                    Status::Skipped => {
                        format!("[{stage}] skipped: {}", reason.as_deref().unwrap_or(""))
                    }
                };
                self.line(&text);
            }
            Event::PipelineFinished { .. } => self.line(self.summary.render(event).trim_end()),
        }
    }
}
