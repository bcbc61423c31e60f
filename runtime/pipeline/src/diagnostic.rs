//! Problems found in a pipeline file, shown the way compilers show them:
//! `cairn.toml:12:9: error: ...`, the offending line with a caret under the
//! exact spot, and a `hint:` saying what to change.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The pipeline cannot run.
    Error,
    /// Probably a mistake, but the pipeline can run (a glob matching nothing).
    Warning,
}

/// One problem, at a place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, naming the offending value in backticks.
    pub message: String,
    /// Byte range in the file, when the problem has a place.
    pub span: Option<Range<usize>>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Range<usize>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            hint: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(message: impl Into<String>, span: Range<usize>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message, span)
        }
    }

    /// Adds what to do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A pipeline file's text, for placing and quoting diagnostics.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The name to show (`cairn.toml`, or the path given with `-f`).
    pub name: PathBuf,
    /// The whole text.
    pub text: String,
}

impl SourceFile {
    /// A file named `name` with contents `text`.
    pub fn new(name: impl AsRef<Path>, text: impl Into<String>) -> Self {
        Self {
            name: name.as_ref().to_owned(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        (line, self.text[line_start..offset].chars().count() + 1)
    }

    /// `name:line:col: error: message`, the source line, a caret line, and the hint.
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        let severity = match diagnostic.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = String::new();
        let Some(span) = &diagnostic.span else {
            let _ = writeln!(out, "{}: {severity}: {}", self.name.display(), diagnostic.message);
            if let Some(hint) = &diagnostic.hint {
                let _ = writeln!(out, "  = hint: {hint}");
            }
            return out;
        };
        let (line, column) = self.line_column(span.start);
        let _ = writeln!(
            out,
            "{}:{line}:{column}: {severity}: {}",
            self.name.display(),
            diagnostic.message
        );
        let source_line = self.text.lines().nth(line - 1).unwrap_or_default();
        let gutter = " ".repeat(line.to_string().len());
        let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
        let end = floor_char_boundary(&self.text, span.end.min(self.text.len())).max(start);
        let underlined = self.text[start..end]
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .count()
            .max(1);
        let _ = writeln!(out, "{gutter} |");
        let _ = writeln!(out, "{line} | {source_line}");
        let _ = writeln!(out, "{gutter} | {}{}", " ".repeat(column - 1), "^".repeat(underlined));
        if let Some(hint) = &diagnostic.hint {
            let _ = writeln!(out, "{gutter} = hint: {hint}");
        }
        out
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The closest of `candidates` to a misspelled `name`, if one is close enough
/// to be what was meant.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|(left, _), (right, _)| left.total_cmp(right))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_point_at_line_and_column() {
        let file = SourceFile::new("cairn.toml", "[stages.a]\nnedes = [\"b\"]\n");
        let rendered =
            file.render(&Diagnostic::error("unknown key `nedes`", 11..16).with_hint("did you mean `needs`?"));
        assert_eq!(
            rendered,
            "cairn.toml:2:1: error: unknown key `nedes`\n  |\n2 | nedes = [\"b\"]\n  | ^^^^^\n  = hint: did you mean `needs`?\n"
        );
    }

    #[test]
    fn misspellings_find_their_key() {
        let keys = ["uses", "needs", "inputs", "secrets"];
        assert_eq!(did_you_mean("nedes", keys), Some("needs"));
        assert_eq!(did_you_mean("input", keys), Some("inputs"));
        assert_eq!(did_you_mean("colour", keys), None);
    }
}
