//! `--json`: one JSON object per line on stdout, for machines.

use std::io::Write;
use std::sync::Mutex;

use super::{Event, Reporter};

/// Writes every event as a line of JSON to stdout.
#[derive(Default)]
pub struct JsonReporter {
    stdout: Mutex<()>,
}

impl Reporter for JsonReporter {
    fn event(&self, event: &Event) {
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        // One lock per line so lines from concurrent stages never interleave.
        let _guard = self.stdout.lock();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}
