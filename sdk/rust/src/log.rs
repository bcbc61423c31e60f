//! Logs, progress and annotations: what the stage tells the person running
//! the pipeline. Everything goes through the host so it keeps its level, has
//! secrets masked, and is replayed when the stage's result comes from the cache.

use crate::bindings::cairn::stage::host;

/// How much a message matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed diagnostics, hidden unless asked for.
    Trace,
    /// Diagnostics for whoever debugs the stage.
    Debug,
    /// Normal progress messages.
    Info,
    /// Something to look at; the stage still succeeds.
    Warn,
    /// Something went wrong.
    Error,
}

impl From<Level> for host::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        }
    }
}

/// Writes one log line at `level`. The macros [`info!`](crate::info) and
/// friends format and call this.
pub fn log(level: Level, message: &str) {
    host::log(level.into(), message);
}

/// Reports progress in units of the stage's choosing; `total` 0 means unknown.
pub fn progress(done: u64, total: u64) {
    host::progress(done, total);
}

/// A diagnostic on a line of an input file, built fluently and sent with
/// [`annotate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    path: String,
    line: u32,
    column: Option<u32>,
    severity: Level,
    message: String,
}

impl Annotation {
    /// A diagnostic of `severity` on `path` at 1-based `line` (0: the whole file).
    pub fn new(severity: Level, path: impl Into<String>, line: u32, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line,
            column: None,
            severity,
            message: message.into(),
        }
    }

    /// An error on `path:line`.
    pub fn error(path: impl Into<String>, line: u32, message: impl Into<String>) -> Self {
        Self::new(Level::Error, path, line, message)
    }

    /// A warning on `path:line`.
    pub fn warning(path: impl Into<String>, line: u32, message: impl Into<String>) -> Self {
        Self::new(Level::Warn, path, line, message)
    }

    /// Adds the 1-based column.
    pub fn column(mut self, column: u32) -> Self {
        self.column = Some(column);
        self
    }
}

/// Sends an annotation to the host. It does not fail the stage by itself.
pub fn annotate(annotation: Annotation) {
    host::annotate(&host::Annotation {
        path: annotation.path,
        line: annotation.line,
        column: annotation.column,
        severity: annotation.severity.into(),
        message: annotation.message,
    });
}

/// Logs at a level with `format!` arguments: `log_at!(Level::Info, "{n} files")`.
#[macro_export]
macro_rules! log_at {
    ($level:expr, $($argument:tt)+) => {
        $crate::log($level, &::std::format!($($argument)+))
    };
}

/// Logs at `trace` level with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($argument:tt)+) => { $crate::log_at!($crate::Level::Trace, $($argument)+) };
}

/// Logs at `debug` level with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($argument:tt)+) => { $crate::log_at!($crate::Level::Debug, $($argument)+) };
}

/// Logs at `info` level with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($argument:tt)+) => { $crate::log_at!($crate::Level::Info, $($argument)+) };
}

/// Logs at `warn` level with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($argument:tt)+) => { $crate::log_at!($crate::Level::Warn, $($argument)+) };
}

/// Logs at `error` level with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($argument:tt)+) => { $crate::log_at!($crate::Level::Error, $($argument)+) };
}
