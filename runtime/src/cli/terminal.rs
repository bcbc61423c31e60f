//! What the command line prints: errors with their causes and hints, and a
//! stage's log as it runs.

use std::io::{IsTerminal, Write};

use cairn::observer::{Annotation, Level, LogLine, LogSource, StageObserver};

/// Prints `error: ...`, each cause on its own line, then any `hint:` lines
/// the messages carry, so the problem comes first and what to do last.
pub(crate) fn print_error(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let mut hints = Vec::new();
    for (index, cause) in error.chain().enumerate() {
        let message = cause.to_string();
        let mut lines = message.lines().filter(|line| {
            let hint = line.starts_with("hint:");
            if hint {
                hints.push((*line).to_owned());
            }
            !hint
        });
        let first = lines.next().unwrap_or_default();
        let prefix = if index == 0 {
            "error: "
        } else {
            "  caused by: "
        };
        let _ = writeln!(stderr, "{}{first}", paint(prefix, Style::Error));
        for line in lines {
            let _ = writeln!(stderr, "    {line}");
        }
    }
    for hint in hints {
        let _ = writeln!(stderr, "{}", paint(&hint, Style::Hint));
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Style {
    Error,
    Warn,
    Hint,
    Success,
    Dim,
}

/// `text` in color when stderr is a terminal and `NO_COLOR` is unset.
pub(crate) fn paint(text: &str, style: Style) -> String {
    if !color_enabled() {
        return text.to_owned();
    }
    let code = match style {
        Style::Error => "1;31",
        Style::Warn => "33",
        Style::Hint => "36",
        Style::Success => "32",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::io::stderr().is_terminal()
}

/// Shows a single stage's log: its stdout on stdout and everything else on
/// stderr, so `cairn stage run tool.wasm | ...` pipes what the tool printed.
pub(crate) struct StageLogPrinter {
    /// Show `debug` and `trace` lines from `host.log`.
    pub(crate) verbose: bool,
}

impl StageObserver for StageLogPrinter {
    fn log(&self, line: &LogLine) {
        match line.source {
            LogSource::Stdout => {
                let _ = writeln!(std::io::stdout().lock(), "{}", line.text);
            }
            LogSource::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{}", line.text);
            }
            LogSource::Host => {
                if line.level < Level::Info && !self.verbose {
                    return;
                }
                let prefix = format!("{}:", line.level);
                let prefix = match line.level {
                    Level::Error => paint(&prefix, Style::Error),
                    Level::Warn => paint(&prefix, Style::Warn),
                    _ => paint(&prefix, Style::Dim),
                };
                let _ = writeln!(std::io::stderr().lock(), "{prefix} {}", line.text);
            }
        }
    }

    fn annotate(&self, annotation: &Annotation) {
        let _ = writeln!(std::io::stderr().lock(), "{annotation}");
    }
}

/// A stage's run time as people read it: `<1 ms`, `340 ms`, `2.41 s`, `3m 12s`.
pub(crate) fn elapsed(duration: std::time::Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if millis < 1.0 {
        "<1 ms".to_owned()
    } else if millis < 1000.0 {
        format!("{millis:.0} ms")
    } else if millis < 60_000.0 {
        format!("{:.2} s", millis / 1000.0)
    } else {
        humantime::format_duration(std::time::Duration::from_secs(duration.as_secs())).to_string()
    }
}
