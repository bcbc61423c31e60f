//! What the command line prints: errors with their causes and hints, and a
//! stage's log as it runs.

use std::io::Write;

use cairn::host_tools::ToolsError;
use cairn::observer::{Annotation, Level, LogLine, LogSource, StageObserver};
use cairn::pipeline::LoadFailure;
use cairn::report::{Style, paint};
use cairn::run::RunError;

/// Prints `error: ...`, each cause on its own line, then any `hint:` lines
/// the messages carry, so the problem comes first and what to do last.
pub(crate) fn print_error(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    // An invalid pipeline renders its own diagnostics, compiler style.
    let invalid = error.chain().find_map(|cause| {
        let failure = cause
            .downcast_ref::<LoadFailure>()
            .or_else(|| match cause.downcast_ref::<RunError>() {
                Some(RunError::Pipeline(failure)) => Some(failure),
                _ => None,
            })?;
        matches!(failure, LoadFailure::Invalid { .. }).then_some(failure)
    });
    if let Some(invalid) = invalid {
        let _ = writeln!(stderr, "{invalid}");
        return;
    }
    // So do tools missing from the host, each at its place in the file.
    let missing_tools = error.chain().find_map(|cause| match cause.downcast_ref::<RunError>() {
        Some(RunError::Tools(missing @ ToolsError::NotFound { .. })) => Some(missing),
        _ => None,
    });
    if let Some(missing) = missing_tools {
        let _ = writeln!(stderr, "{missing}");
        return;
    }
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
        let prefix = if index == 0 { "error: " } else { "  caused by: " };
        let _ = writeln!(stderr, "{}{first}", paint(prefix, Style::Error));
        for line in lines {
            let _ = writeln!(stderr, "    {line}");
        }
    }
    for hint in hints {
        let _ = writeln!(stderr, "{}", paint(&hint, Style::Hint));
    }
}

/// Writes `text` to stdout. A reader that went away (`cairn graph | head`)
/// is not an error: the output was wanted up to there, as with any Unix tool.
pub(crate) fn print_out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
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
            // As the program wrote it: a last line without a newline stays so.
            LogSource::Stdout => {
                let ending = if line.unterminated { "" } else { "\n" };
                let _ = write!(std::io::stdout().lock(), "{}{ending}", line.text);
            }
            LogSource::Stderr => {
                let ending = if line.unterminated { "" } else { "\n" };
                let _ = write!(std::io::stderr().lock(), "{}{ending}", line.text);
            }
            LogSource::Host => {
                if !cairn::report::shown(line.source, line.level, self.verbose) {
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
