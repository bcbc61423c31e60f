//! Color for terminal output, only when stderr is a terminal and `NO_COLOR`
//! is unset (<https://no-color.org>).

use std::io::IsTerminal;

/// What a piece of text means, which decides its color.
#[derive(Clone, Copy, Debug)]
pub enum Style {
    /// Failures and `error:` prefixes.
    Error,
    /// Warnings.
    Warn,
    /// `hint:` lines.
    Hint,
    /// Success marks.
    Success,
    /// Secondary text: durations, skipped stages.
    Dim,
    /// Stage names.
    Bold,
}

/// Whether stderr gets colors (decided once per process).
pub fn color_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()) && std::io::stderr().is_terminal()
    })
}

/// `text` wrapped in the escape codes of `style`, when colors are enabled.
pub fn paint(text: &str, style: Style) -> String {
    if !color_enabled() {
        return text.to_owned();
    }
    let code = match style {
        Style::Error => "1;31",
        Style::Warn => "33",
        Style::Hint => "36",
        Style::Success => "32",
        Style::Dim => "2",
        Style::Bold => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A duration as people read it: `<1 ms`, `340 ms`, `2.41 s`, `3m 12s`.
pub fn elapsed(duration: std::time::Duration) -> String {
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
