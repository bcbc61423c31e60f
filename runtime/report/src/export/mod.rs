//! What a recorded run becomes for other tools: a Chrome trace for
//! Perfetto, JUnit XML and SARIF for CI systems, GitHub Actions workflow
//! commands and a step summary. Each is a plain function of a
//! [`RunRecord`](crate::record::RunRecord), so a past run exports the same
//! as the one that just ended.

pub mod codequality;
pub mod github;
pub mod html;
pub mod junit;
pub mod otlp;
pub mod sarif;
pub mod trace;

/// `text` with what XML 1.0 cannot hold dropped (control characters, as in
/// a log's colour codes) and its five special characters escaped.
pub(crate) fn xml_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_text_escapes_markup_and_drops_control_characters() {
        assert_eq!(
            super::xml_text("a<b> & \"c\" \u{1b}[31mred\u{1b}[0m\n"),
            "a&lt;b&gt; &amp; &quot;c&quot; [31mred[0m\n"
        );
    }
}
