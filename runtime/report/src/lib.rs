//! What a pipeline run tells the person (or program) watching it.
//!
//! The scheduler and the stages emit [`Event`]s; a [`Reporter`] turns them
//! into a live terminal view, plain prefixed lines for CI logs, or one JSON
//! object per line for machines. The JSON form is a stable interface: its
//! fields are documented in the README and only ever added to.

pub mod export;
mod json;
mod live;
mod plain;
pub mod record;
mod style;
mod summary;

pub use json::JsonReporter;
pub use live::LiveReporter;
pub use plain::PlainReporter;
pub use style::{Style, color_enabled, elapsed, paint};

pub use cairn_core::events::{Event, Status};
use cairn_core::observer::{Level, LogSource};

/// Whether a stage's log line is shown: everything but `host.log` calls below
/// `info`, which only `-v` shows.
pub fn shown(source: LogSource, level: Level, verbose: bool) -> bool {
    verbose || source != LogSource::Host || level >= Level::Info
}

/// Where an annotation points, as editors and terminals link it:
/// `path`, `path:line` or `path:line:column`.
pub fn place(path: &str, line: u32, column: Option<u32>) -> String {
    match (line, column) {
        (0, _) => path.to_owned(),
        (line, None) => format!("{path}:{line}"),
        (line, Some(column)) => format!("{path}:{line}:{column}"),
    }
}

/// The lines a person reads for a deployment's events (shared by the live
/// view and the plain lines); `None` for other events.
pub fn deployment_lines(event: &Event) -> Option<(String, Style)> {
    match event {
        Event::Deployment {
            environment,
            deployment,
            status,
            message,
        } => {
            let number = deployment.map(|id| format!(" #{id}")).unwrap_or_default();
            let style = match *status {
                "failed" | "rejected" => Style::Error,
                "succeeded" | "rolled_back" => Style::Success,
                _ => Style::Hint,
            };
            Some((format!("[{environment}] deployment{number}: {message}"), style))
        }
        Event::ApprovalRequested {
            environment,
            run,
            changes,
            approve,
            reject,
            timeout_ms,
        } => {
            let mut text = format!("[{environment}] waiting for approval to deploy (run {run}):");
            for change in changes {
                text.push_str(&format!("\n[{environment}]   {change}"));
            }
            text.push_str(&format!(
                "\n[{environment}] approve with `{approve}` or reject with `{reject}` (from any terminal of this \
                 machine); it times out in {}",
                elapsed(std::time::Duration::from_millis(*timeout_ms))
            ));
            Some((text, Style::Hint))
        }
        _ => None,
    }
}

/// Receives the events of a run, in order, from any thread.
pub trait Reporter: Send + Sync {
    /// Handles one event; must return quickly.
    fn event(&self, event: &Event);

    /// Writes out anything held back. The scheduler calls it before it waits
    /// for a running stage, so a reporter may batch the lines of stages that
    /// end at once (a thousand cached stages) into a few writes.
    fn flush(&self) {}
}
