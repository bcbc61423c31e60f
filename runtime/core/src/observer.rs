//! What a running stage tells the outside world while it runs.
//!
//! The sandbox never prints anything itself: it hands every log line,
//! progress report and annotation to a [`StageObserver`], which the caller
//! turns into terminal output, JSON events or a report. Keeping the sandbox
//! ignorant of presentation is what lets the same run be shown live on a
//! laptop, as plain lines in CI, or replayed from the cache.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How much a log line or an annotation matters, mirroring `cairn:stage/host.level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed diagnostics, hidden unless asked for.
    Trace,
    /// Diagnostics for whoever debugs the stage.
    Debug,
    /// Normal progress messages.
    Info,
    /// Something the user should look at; the stage still succeeds.
    Warn,
    /// Something went wrong.
    Error,
}

impl Level {
    /// The lower-case name used in terminal prefixes and JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Where a log line came from: the guest's stdout or stderr, or a call to
/// `cairn:stage/host.log`. Kept so a replay can send each line where it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The guest wrote to its standard output.
    Stdout,
    /// The guest wrote to its standard error.
    Stderr,
    /// The guest called `host.log` with this level.
    Host,
}

/// One line of a stage's log, with secrets already masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Where the line was written.
    pub source: LogSource,
    /// The level: the one given to `host.log`, `info` for stdout, `warn` for stderr.
    pub level: Level,
    /// The text, without its line terminator.
    pub text: String,
    /// The stage ended without writing a line terminator after this text
    /// (the last line of its stdout or stderr), so a tool's output can be
    /// reproduced byte for byte.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unterminated: bool,
}

/// A diagnostic a stage attached to one of its input files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// The file as the stage saw it (`/src/config.toml`).
    pub path: String,
    /// 1-based line, 0 when it concerns the whole file.
    pub line: u32,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// How serious the finding is.
    pub severity: Level,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Annotation {
    /// `path:line:column: severity: message`, the form editors and CI log
    /// parsers turn into clickable links; `severity: message` when it is
    /// about no file.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return write!(formatter, "{}: {}", self.severity, self.message);
        }
        write!(formatter, "{}", self.path)?;
        if self.line > 0 {
            write!(formatter, ":{}", self.line)?;
            if let Some(column) = self.column {
                write!(formatter, ":{column}")?;
            }
        }
        write!(formatter, ": {}: {}", self.severity, self.message)
    }
}

/// Receives what a stage reports while it runs.
///
/// Calls arrive in the order the stage made them, from the thread running the
/// stage; implementations should return quickly (print, queue, or count).
pub trait StageObserver: Send + Sync {
    /// A complete log line, after masking, within the log bound.
    fn log(&self, line: &LogLine);
    /// The stage reported progress; `total` is 0 when unknown.
    fn progress(&self, done: u64, total: u64) {
        let _ = (done, total);
    }
    /// The stage attached a diagnostic to an input file.
    fn annotate(&self, annotation: &Annotation) {
        let _ = annotation;
    }
}

/// An observer that drops everything, for callers that only want the result.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl StageObserver for Silent {
    fn log(&self, _line: &LogLine) {}
}
