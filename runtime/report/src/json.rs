//! `--json`: one JSON object per line on stdout, for machines, each with
//! the time it happened.

use std::io::Write;
use std::sync::Mutex;

use super::{Event, Reporter};

/// Writes every event as a line of JSON to stdout.
#[derive(Default)]
pub struct JsonReporter {
    stdout: Mutex<()>,
}

/// An event with its time (RFC 3339, UTC, milliseconds) as `"time"`.
#[derive(serde::Serialize)]
struct Stamped<'a> {
    #[serde(flatten)]
    event: &'a Event,
    time: String,
}

impl Reporter for JsonReporter {
    fn event(&self, event: &Event) {
        let stamped = Stamped {
            event,
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        };
        let Ok(line) = serde_json::to_string(&stamped) else {
            return;
        };
        // One lock per line so lines from concurrent stages never interleave.
        let _guard = self.stdout.lock();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}
