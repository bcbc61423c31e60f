//! `std:validate`: checks that every `.toml` and `.json` file under `/src`
//! parses. Each error becomes an annotation at its file, line and column; the
//! stage fails when any file is invalid, and lists the checked files in
//! `/out/validate.txt`. Outputs: `files` (checked) and `invalid`.

use std::fmt::Write as _;
use std::path::Path;

use cairn_sdk::{Annotation, Invocation, Outcome, Stage, fs};

struct Validate;

/// Where a parse error is, 1-based, and what it says.
struct ParseError {
    line: u32,
    column: u32,
    message: String,
}

impl Stage for Validate {
    fn run(_invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let files: Vec<_> = fs::files_under(fs::src())?
            .into_iter()
            .filter(|path| format_of(path).is_some())
            .collect();
        let mut invalid = Vec::new();
        let mut report = String::new();
        for (index, path) in files.iter().enumerate() {
            let text = std::fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))?;
            match check(path, &text) {
                Ok(()) => writeln!(report, "ok      {}", path.display())?,
                Err(error) => {
                    writeln!(
                        report,
                        "invalid {}:{}:{}: {}",
                        path.display(),
                        error.line,
                        error.column,
                        error.message
                    )?;
                    cairn_sdk::annotate(
                        Annotation::error(path.to_string_lossy(), error.line, error.message).column(error.column),
                    );
                    invalid.push(path.display().to_string());
                }
            }
            cairn_sdk::progress(index as u64 + 1, files.len() as u64);
        }
        std::fs::write(fs::out().join("validate.txt"), report)?;

        if !invalid.is_empty() {
            return Err(format!(
                "{} of {} files are invalid: {}",
                invalid.len(),
                files.len(),
                invalid.join(", ")
            )
            .into());
        }
        cairn_sdk::info!("{} files valid", files.len());
        Ok(Outcome::new()
            .summary(format!("{} files valid", files.len()))
            .output("files", files.len())
            .output("invalid", 0))
    }
}

/// The format a file is checked as, by its extension.
fn format_of(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "toml" => Some("toml"),
        "json" => Some("json"),
        _ => None,
    }
}

fn check(path: &Path, text: &str) -> Result<(), ParseError> {
    match format_of(path) {
        Some("toml") => text.parse::<toml::Table>().map(drop).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let (line, column) = line_and_column(text, offset);
            ParseError {
                line,
                column,
                message: error.message().trim().to_owned(),
            }
        }),
        _ => serde_json::from_str::<serde_json::Value>(text)
            .map(drop)
            .map_err(|error| ParseError {
                line: error.line() as u32,
                column: error.column() as u32,
                message: strip_position(&error.to_string()),
            }),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
    (line as u32, column as u32)
}

/// serde_json appends " at line L column C"; the annotation carries those already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

cairn_sdk::export!(Validate);
