//! `std:validate`: checks that every `.toml` and `.json` file under `/src`
//! parses, and optionally that each matches a JSON Schema.
//!
//! - `with.schema = "/src/schemas/app.schema.json"`: a JSON Schema (draft 4
//!   to 2020-12; `$ref`s resolve within the schema) the files must match,
//!   TOML files read as the JSON they map to;
//! - `with.files = "config/*.toml"`: which files (globs relative to `/src`,
//!   comma-separated) the schema applies to; default all but the schema;
//! - `with.level = "warn"`: schema violations are warnings instead of
//!   errors; `args = ["--strict"]` fails the stage on warnings too.
//!
//! A parse error always fails. Each finding is an annotation at its file,
//! line and column (for a schema violation, the line of the offending key
//! when it can be found); `/out/validate.txt` lists every file and finding.
//! Outputs: `files` (checked), `invalid` and `warnings`. Any other `args`
//! or `with` key is refused, so a typo never passes silently.

use std::fmt::Write as _;
use std::path::Path;

use cairn_sdk::{Annotation, Invocation, Level, Outcome, Stage, fs};
use globset::{Glob, GlobSet, GlobSetBuilder};

struct Validate;

/// Where a finding is, 1-based, and what it says.
struct ParseError {
    line: u32,
    column: u32,
    message: String,
}

/// What the invocation asks for.
struct Settings {
    schema: Option<(String, jsonschema::Validator)>,
    files: Option<GlobSet>,
    violation: Level,
    strict: bool,
}

const KEYS: &[&str] = &["schema", "files", "level"];

impl Settings {
    fn from(invocation: &Invocation) -> cairn_sdk::Result<Self> {
        let mut strict = false;
        for arg in &invocation.args {
            match arg.as_str() {
                "--strict" => strict = true,
                other => return Err(format!("std:validate takes `--strict` only, not `{other}`").into()),
            }
        }
        if let Some(key) = invocation.config.keys().find(|key| !KEYS.contains(&key.as_str())) {
            return Err(format!("std:validate has no `with.{key}`; its keys are {}", KEYS.join(", ")).into());
        }
        let violation = match invocation.config("level").unwrap_or("error") {
            "error" => Level::Error,
            "warn" => Level::Warn,
            other => return Err(format!("`with.level` is `error` or `warn`, not `{other}`").into()),
        };
        let schema = invocation
            .config("schema")
            .map(|path| -> cairn_sdk::Result<_> {
                let text =
                    std::fs::read_to_string(path).map_err(|error| format!("cannot read the schema {path}: {error}"))?;
                let schema: serde_json::Value =
                    serde_json::from_str(&text).map_err(|error| format!("the schema {path} is not JSON: {error}"))?;
                let validator = jsonschema::validator_for(&schema)
                    .map_err(|error| format!("the schema {path} is not a valid JSON Schema: {error}"))?;
                Ok((path.to_owned(), validator))
            })
            .transpose()?;
        let files = invocation
            .config("files")
            .map(|patterns| -> cairn_sdk::Result<GlobSet> {
                let mut set = GlobSetBuilder::new();
                for pattern in patterns.split(',').map(str::trim).filter(|pattern| !pattern.is_empty()) {
                    set.add(Glob::new(pattern).map_err(|error| format!("`with.files`: {error}"))?);
                }
                Ok(set.build()?)
            })
            .transpose()?;
        Ok(Self {
            schema,
            files,
            violation,
            strict,
        })
    }

    /// Whether the schema applies to `path`.
    fn schema_applies(&self, path: &Path) -> bool {
        let Some((schema, _)) = &self.schema else {
            return false;
        };
        if Path::new(schema) == path {
            return false;
        }
        let relative = path.strip_prefix(fs::src()).unwrap_or(path);
        self.files.as_ref().is_none_or(|files| files.is_match(relative))
    }
}

impl Stage for Validate {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let settings = Settings::from(&invocation)?;
        let files: Vec<_> = fs::files_under(fs::src())?
            .into_iter()
            .filter(|path| format_of(path).is_some())
            .collect();
        let (mut invalid, mut warnings) = (Vec::new(), 0);
        let mut report = String::new();
        for (index, path) in files.iter().enumerate() {
            let text = std::fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))?;
            let findings = match parse(path, &text) {
                Err(error) => vec![(Level::Error, error)],
                Ok(value) if settings.schema_applies(path) => violations(&settings, &text, &value),
                Ok(_) => Vec::new(),
            };
            if findings.is_empty() {
                writeln!(report, "ok      {}", path.display())?;
            }
            for (level, finding) in &findings {
                let word = if *level == Level::Error { "invalid" } else { "warning" };
                writeln!(
                    report,
                    "{word} {}:{}:{}: {}",
                    path.display(),
                    finding.line,
                    finding.column,
                    finding.message
                )?;
                let annotation = match level {
                    Level::Error => Annotation::error(path.to_string_lossy(), finding.line, finding.message.clone()),
                    _ => Annotation::warning(path.to_string_lossy(), finding.line, finding.message.clone()),
                };
                cairn_sdk::annotate(annotation.column(finding.column));
            }
            let failed = findings
                .iter()
                .any(|(level, _)| *level == Level::Error || settings.strict);
            warnings += findings.iter().filter(|(level, _)| *level == Level::Warn).count();
            if failed {
                invalid.push(path.display().to_string());
            }
            cairn_sdk::progress(index as u64 + 1, files.len() as u64);
        }
        std::fs::write(fs::out().join("validate.txt"), report)?;

        if !invalid.is_empty() {
            return Err(format!(
                "{} of {} files are invalid{}: {}",
                invalid.len(),
                files.len(),
                if settings.strict { " (--strict)" } else { "" },
                invalid.join(", ")
            )
            .into());
        }
        let summary = match warnings {
            0 => format!("{} files valid", files.len()),
            count => format!("{} files valid, {count} warnings", files.len()),
        };
        cairn_sdk::info!("{summary}");
        Ok(Outcome::new()
            .summary(summary)
            .output("files", files.len())
            .output("invalid", 0)
            .output("warnings", warnings))
    }
}

/// The schema's complaints about `value`, each at the line of the key it
/// is about when the text shows one.
fn violations(settings: &Settings, text: &str, value: &serde_json::Value) -> Vec<(Level, ParseError)> {
    let Some((_, validator)) = &settings.schema else {
        return Vec::new();
    };
    validator
        .iter_errors(value)
        .map(|error| {
            let pointer = error.instance_path().to_string();
            let (line, column) = key_position(text, &pointer);
            let at = if pointer.is_empty() {
                "the document".to_owned()
            } else {
                format!("`{pointer}`")
            };
            (
                settings.violation,
                ParseError {
                    line,
                    column,
                    message: format!("{at}: {error}"),
                },
            )
        })
        .collect()
}

/// The line and column of the last key of a JSON pointer, found as
/// `"key":` (JSON) or `key =` (TOML); (0, 0) when it cannot be found.
fn key_position(text: &str, pointer: &str) -> (u32, u32) {
    let Some(key) = pointer.rsplit('/').next().filter(|key| !key.is_empty()) else {
        return (0, 0);
    };
    let key = key.replace("~1", "/").replace("~0", "~");
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let json = trimmed.starts_with(&format!("\"{key}\""));
        let toml = trimmed
            .strip_prefix(key.as_str())
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if json || toml {
            let column = line.len() - trimmed.len() + 1;
            return (index as u32 + 1, column as u32);
        }
    }
    (0, 0)
}

/// The format a file is checked as, by its extension.
fn format_of(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "toml" => Some("toml"),
        "json" => Some("json"),
        _ => None,
    }
}

/// The file's contents as JSON (TOML as the JSON it maps to).
fn parse(path: &Path, text: &str) -> Result<serde_json::Value, ParseError> {
    match format_of(path) {
        Some("toml") => text.parse::<toml::Table>().map(toml_to_json).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let (line, column) = line_and_column(text, offset);
            ParseError {
                line,
                column,
                message: error.message().trim().to_owned(),
            }
        }),
        _ => serde_json::from_str::<serde_json::Value>(text).map_err(|error| ParseError {
            line: error.line() as u32,
            column: error.column() as u32,
            message: strip_position(&error.to_string()),
        }),
    }
}

fn toml_to_json(table: toml::Table) -> serde_json::Value {
    fn convert(value: toml::Value) -> serde_json::Value {
        match value {
            toml::Value::String(text) => text.into(),
            toml::Value::Integer(number) => number.into(),
            toml::Value::Float(number) => number.into(),
            toml::Value::Boolean(flag) => flag.into(),
            toml::Value::Datetime(datetime) => datetime.to_string().into(),
            toml::Value::Array(items) => items.into_iter().map(convert).collect(),
            toml::Value::Table(table) => table.into_iter().map(|(key, value)| (key, convert(value))).collect(),
        }
    }
    convert(toml::Value::Table(table))
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
