//! `std:secret-scan`: finds credentials committed to the files under `/src`
//! (private keys, cloud access keys, well-known token formats, and
//! high-entropy values assigned to names like `password` or `token`). Each
//! finding is an annotation at its file and line naming the kind, never the
//! value; any finding fails the stage.
//!
//! `with` keys:
//! - `allow`: comma-separated paths (relative to `/src`; a trailing `/`
//!   allows a whole folder) whose findings are not reported, for test
//!   fixtures;
//! - a line containing `cairn:allow-secret` is never reported.
//!
//! Outputs: `files` (scanned) and `findings`.

use std::path::Path;

use cairn_sdk::{Annotation, Invocation, Level, Outcome, Stage, annotate, fs};
use regex::Regex;

struct SecretScan;

/// Files larger than this are not credentials files; they are skipped.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// The marker that allows one line.
const ALLOW_LINE: &str = "cairn:allow-secret";

/// What each pattern finds, by the name a finding reports.
const PATTERNS: &[(&str, &str)] = &[
    (
        "a private key",
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
    ),
    ("an AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "a GitHub token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b",
    ),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    ("a Stripe secret key", r"\b(?:sk|rk)_live_[0-9A-Za-z]{16,}\b"),
    ("an npm token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    ("a PyPI token", r"\bpypi-[A-Za-z0-9_-]{50,}\b"),
];

impl Stage for SecretScan {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let patterns: Vec<(&str, Regex)> = PATTERNS
            .iter()
            .map(|(kind, pattern)| Regex::new(pattern).map(|regex| (*kind, regex)))
            .collect::<Result<_, _>>()?;
        let assignment = Regex::new(
            r#"(?i)\b[\w.-]*(?:password|passwd|secret|token|api_?key|access_?key|private_?key|auth)[\w.-]*\s*[:=]\s*["']?([A-Za-z0-9+/=_.~-]{20,})["']?"#,
        )?;
        let allowed = invocation.list("allow");
        let files = fs::files_under(fs::src())?;
        let mut findings = 0;
        for file in &files {
            let relative = file.strip_prefix(fs::src()).unwrap_or(file).to_string_lossy();
            if is_allowed(&relative, &allowed) || std::fs::metadata(file).map_or(true, |m| m.len() > MAX_FILE) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(file) else {
                continue; // binary files hold no text credentials
            };
            for (index, line) in text.lines().enumerate() {
                if line.contains(ALLOW_LINE) {
                    continue;
                }
                let mut kinds: Vec<&str> = patterns
                    .iter()
                    .filter(|(_, regex)| regex.is_match(line))
                    .map(|(kind, _)| *kind)
                    .collect();
                if kinds.is_empty()
                    && assignment
                        .captures_iter(line)
                        .any(|captures| captures.get(1).is_some_and(|value| looks_random(value.as_str())))
                {
                    kinds.push("a high-entropy value assigned to a secret's name");
                }
                for kind in kinds {
                    findings += 1;
                    annotate(Annotation::new(
                        Level::Error,
                        file.to_string_lossy(),
                        index as u32 + 1,
                        format!("{kind} is committed here; remove it, rotate it, and grant it with `secrets` instead"),
                    ));
                }
            }
        }
        let outcome = Outcome::new().output("files", files.len()).output("findings", findings);
        if findings > 0 {
            return Err(format!(
                "{findings} committed credential{} found (the annotations say where, never what)",
                if findings == 1 { "" } else { "s" }
            )
            .into());
        }
        Ok(outcome.summary(format!("{} files scanned, no credentials", files.len())))
    }
}

/// Whether `relative` is one of the allowed paths or under an allowed folder.
fn is_allowed(relative: &str, allowed: &[&str]) -> bool {
    allowed.iter().any(|allow| {
        if allow.ends_with('/') {
            relative.starts_with(allow)
        } else {
            relative == *allow || Path::new(relative).starts_with(allow)
        }
    })
}

/// Whether `value` looks generated rather than written: enough distinct
/// characters (Shannon entropy over 3.5 bits each) and letters and digits
/// mixed, so that `password = "correct-horse-battery"` is not a finding
/// while a pasted token is.
fn looks_random(value: &str) -> bool {
    let has_digit = value.chars().any(|c| c.is_ascii_digit());
    let has_letter = value.chars().any(|c| c.is_ascii_alphabetic());
    if !(has_digit && has_letter) {
        return false;
    }
    let mut counts = std::collections::HashMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0u32) += 1;
    }
    let length = value.chars().count() as f64;
    let entropy: f64 = counts
        .values()
        .map(|&count| {
            let p = f64::from(count) / length;
            -p * p.log2()
        })
        .sum();
    entropy > 3.5
}

cairn_sdk::export!(SecretScan);
