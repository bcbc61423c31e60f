//! Plain lines for logs that are not a terminal (CI): every line prefixed
//! with its stage, no escape codes, nothing redrawn.

use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::style::{Style, elapsed, paint};
use super::summary::Summary;
use super::{Event, Reporter, Status};
use cairn_core::observer::{Level, LogSource};

/// Lines held back are written once they reach this size, flush or not.
const HOLD_LIMIT: usize = 32 * 1024;

/// Writes `[stage] ...` lines to stderr.
pub struct PlainReporter {
    verbose: bool,
    summary: Summary,
    /// Lines not written yet, behind the lock that also keeps lines whole:
    /// the ends of cached stages, which come by the thousand in a run where
    /// little changed and go out together at the next flush, or before any
    /// other line.
    held: Mutex<String>,
}

impl PlainReporter {
    /// A reporter that shows `debug` and `trace` stage logs when `verbose`.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            summary: Summary::default(),
            held: Mutex::new(String::new()),
        }
    }

    fn line(&self, text: &str) {
        self.write(text, false);
    }

    /// Adds `text` as a line, and writes everything out unless `hold`.
    fn write(&self, text: &str, hold: bool) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.push_str(text);
        held.push('\n');
        if !hold || held.len() >= HOLD_LIMIT {
            write_out(&mut held);
        }
    }
}

/// Writes `held` to stderr in one call and empties it.
fn write_out(held: &mut String) {
    if !held.is_empty() {
        let _ = std::io::stderr().lock().write_all(held.as_bytes());
        held.clear();
    }
}

impl Drop for PlainReporter {
    fn drop(&mut self) {
        write_out(self.held.get_mut().unwrap_or_else(PoisonError::into_inner));
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
            Event::StageProgress { .. } | Event::StageTests { .. } => {}
            Event::StageAnnotation {
                stage,
                path,
                line,
                column,
                severity,
                message,
            } => {
                let place = super::place(path, *line, *column);
                self.line(&format!("[{stage}] {place}: {severity}: {message}"));
            }
            Event::StageFinished {
                stage,
                status,
                duration_ms,
                attempts,
                error,
                hint,
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
                        let mut text = paint(
                            &format!("[{stage}] failed{tries}: {}", error.as_deref().unwrap_or("")),
                            Style::Error,
                        );
                        if let Some(hint) = hint {
                            text.push_str(&format!("\n{}", paint(&format!("[{stage}] hint: {hint}"), Style::Hint)));
                        }
                        text
                    }
                    Status::Skipped => {
                        format!("[{stage}] skipped: {}", reason.as_deref().unwrap_or(""))
                    }
                };
                self.write(&text, *status == Status::Cached);
            }
            Event::PipelineFinished { .. } => self.line(self.summary.render(event).trim_end()),
            Event::Deployment { .. } | Event::ApprovalRequested { .. } => {
                if let Some((text, style)) = super::deployment_lines(event) {
                    self.line(&paint(&text, style));
                }
            }
        }
    }

    fn flush(&self) {
        write_out(&mut self.held.lock().unwrap_or_else(PoisonError::into_inner));
    }
}
