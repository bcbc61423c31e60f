//! `std:checksum`: digests of files, in the formats `sha256sum -c` and
//! `b3sum -c` read, or a check of such a file.
//!
//! Without `with.verify`, it digests every file under `with.from` (default
//! `/src`, or the one `/in/<stage>` when the stage needs exactly one) and
//! writes `/out/SHA256SUMS` and `/out/B3SUMS` (`DIGEST  PATH` lines, paths
//! relative to `from`, sorted). Outputs: `files`, and `sha256sums` (the
//! sha256 of the SHA256SUMS file, to pin a release by).
//!
//! With `with.verify = "/in/release/SHA256SUMS"` (or a `B3SUMS` file: the
//! digest length tells which), it checks each listed file under `from`:
//! every mismatch or missing file is an annotation at its line of the sums
//! file, and fails the stage.

use std::path::Path;

use cairn_sdk::{Annotation, Invocation, Level, Outcome, Stage, annotate, fs};
use sha2::{Digest as _, Sha256};

struct Checksum;

impl Stage for Checksum {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let from = fs::chosen_folder(invocation.config("from"))?;
        match invocation.config("verify") {
            Some(sums) => verify(&from, Path::new(sums)),
            None => write_sums(&from),
        }
    }
}

fn write_sums(from: &Path) -> cairn_sdk::Result<Outcome> {
    let files = fs::files_under(from)?;
    let (mut sha256, mut b3) = (String::new(), String::new());
    for file in &files {
        let contents = std::fs::read(file).map_err(|error| format!("reading {}: {error}", file.display()))?;
        let relative = relative(from, file);
        sha256.push_str(&format!("{}  {relative}\n", hex(&Sha256::digest(&contents))));
        b3.push_str(&format!("{}  {relative}\n", blake3::hash(&contents).to_hex()));
    }
    std::fs::write(fs::out().join("SHA256SUMS"), &sha256)?;
    std::fs::write(fs::out().join("B3SUMS"), &b3)?;
    Ok(Outcome::new()
        .summary(format!(
            "{} file{} digested",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        ))
        .output("files", files.len())
        .output("sha256sums", hex(&Sha256::digest(sha256.as_bytes()))))
}

fn verify(from: &Path, sums: &Path) -> cairn_sdk::Result<Outcome> {
    let text = std::fs::read_to_string(sums)
        .map_err(|error| format!("cannot read the sums file {}: {error}", sums.display()))?;
    let (mut checked, mut bad) = (0, 0);
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index as u32 + 1;
        let problem = match line.split_once("  ") {
            None => Some("is not a `DIGEST  PATH` line".to_owned()),
            Some((expected, path)) => {
                checked += 1;
                match std::fs::read(from.join(path.trim_start_matches('*'))) {
                    Err(error) => Some(format!("{path}: cannot read it ({error})")),
                    Ok(contents) => {
                        let actual = match expected.len() {
                            64 if sums
                                .file_name()
                                .is_some_and(|name| name.to_string_lossy().starts_with("B3")) =>
                            {
                                blake3::hash(&contents).to_hex().to_string()
                            }
                            64 => hex(&Sha256::digest(&contents)),
                            _ => String::new(),
                        };
                        (actual != expected.to_ascii_lowercase()).then(|| format!("{path}: its digest differs"))
                    }
                }
            }
        };
        if let Some(message) = problem {
            bad += 1;
            annotate(Annotation::new(
                Level::Error,
                sums.to_string_lossy(),
                line_number,
                message,
            ));
        }
    }
    if bad > 0 {
        return Err(format!("{bad} of {checked} files do not match {}", sums.display()).into());
    }
    Ok(Outcome::new()
        .summary(format!(
            "{checked} file{} match{}",
            if checked == 1 { "" } else { "s" },
            if checked == 1 { "es" } else { "" }
        ))
        .output("files", checked))
}

fn relative(from: &Path, file: &Path) -> String {
    file.strip_prefix(from).unwrap_or(file).to_string_lossy().into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

cairn_sdk::export!(Checksum);
