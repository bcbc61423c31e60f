//! `std:template`: renders text files with values from `with` (which may
//! carry upstream outputs: `version = "${{ stages.build.outputs.version }}"`),
//! the per-environment configuration of a deploy.
//!
//! Every file under `with.from` (default `/src`, or the one `/in/<stage>`
//! when the stage needs exactly one) is written to the same relative path
//! under `/out`, each `{{ name }}` replaced by `with.name`. With
//! `with.suffix = ".tmpl"` only files ending in it are rendered, the suffix
//! dropped; `with.files` (globs relative to `from`, comma-separated)
//! narrows the files further. A placeholder with no value is an error at its
//! file, line and column: a template never renders an empty hole.
//! `from`, `suffix` and `files` are settings, every other key a value.
//!
//! Outputs: `files` (rendered).

use std::collections::BTreeMap;

use cairn_sdk::{Annotation, Invocation, Outcome, Stage, fs};
use globset::{Glob, GlobSetBuilder};

struct Template;

const SETTINGS: &[&str] = &["from", "suffix", "files"];

impl Stage for Template {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let from = fs::chosen_folder(invocation.config("from"))?;
        let suffix = invocation.config("suffix").unwrap_or_default();
        let mut patterns = GlobSetBuilder::new();
        for pattern in invocation
            .config("files")
            .unwrap_or("**")
            .split(',')
            .map(str::trim)
            .filter(|pattern| !pattern.is_empty())
        {
            patterns.add(Glob::new(pattern).map_err(|error| format!("`with.files`: {error}"))?);
        }
        let patterns = patterns.build()?;
        let values: BTreeMap<&str, &str> = invocation
            .config
            .iter()
            .filter(|(key, _)| !SETTINGS.contains(&key.as_str()))
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let (mut rendered, mut holes) = (0, 0);
        for path in fs::files_under(&from)? {
            let relative = path.strip_prefix(&from).unwrap_or(&path).to_string_lossy().into_owned();
            let Some(target) = relative.strip_suffix(suffix) else {
                continue;
            };
            if target.is_empty() || !patterns.is_match(&relative) {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|error| format!("{} is not a text file: {error}", path.display()))?;
            let (output, missing) = render(&text, &values);
            for (line, column, name) in &missing {
                cairn_sdk::annotate(
                    Annotation::error(
                        path.to_string_lossy(),
                        *line,
                        format!("`{{{{ {name} }}}}` has no value: set `with.{name}`"),
                    )
                    .column(*column),
                );
            }
            holes += missing.len();
            let destination = fs::out().join(target);
            if let Some(parent) = destination.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&destination, output)?;
            rendered += 1;
        }
        if holes > 0 {
            return Err(format!("{holes} placeholders have no value (see the annotations)").into());
        }
        if rendered == 0 {
            return Err(format!("no file to render in {}{}", from.display(), describe_filter(suffix)).into());
        }
        Ok(Outcome::new()
            .summary(format!(
                "{rendered} file{} rendered",
                if rendered == 1 { "" } else { "s" }
            ))
            .output("files", rendered))
    }
}

fn describe_filter(suffix: &str) -> String {
    if suffix.is_empty() {
        String::new()
    } else {
        format!(" ending in `{suffix}`")
    }
}

/// `text` with each `{{ name }}` replaced, and the placeholders that had no
/// value (line, column, name). Braces around anything but a name stay.
fn render(text: &str, values: &BTreeMap<&str, &str>) -> (String, Vec<(u32, u32, String)>) {
    let mut output = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let placeholder = after.find("}}").map(|end| (after[..end].trim(), end));
        match placeholder {
            Some((name, end)) if is_name(name) => {
                output.push_str(&rest[..start]);
                match values.get(name) {
                    Some(value) => output.push_str(value),
                    None => {
                        let (line, column) = position(text, consumed + start);
                        missing.push((line, column, name.to_owned()));
                    }
                }
                let skip = start + 2 + end + 2;
                consumed += skip;
                rest = &rest[skip..];
            }
            _ => {
                output.push_str(&rest[..start + 2]);
                consumed += start + 2;
                rest = &rest[start + 2..];
            }
        }
    }
    output.push_str(rest);
    (output, missing)
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
    (line as u32, column as u32)
}

cairn_sdk::export!(Template);
