//! `release`: assembles `RELEASE.md` from what the other stages produced:
//! the changelog (JavaScript), the dependency check (Python) and the
//! checksums (C), found under `/in/<stage>`.

use std::fmt::Write as _;

use cairn_sdk::{Invocation, Outcome, Stage, fs};

struct Release;

impl Stage for Release {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let config = |key: &str| invocation.config.get(key).cloned().unwrap_or_default();
        let version = config("version");
        let changelog = std::fs::read_to_string(fs::input("changelog").join("CHANGELOG.md"))?;
        let dependencies = std::fs::read_to_string(fs::input("lockcheck").join("lockcheck.txt"))?;
        let checksums = std::fs::read_to_string(fs::input("checksum").join("CRC32SUMS"))?;

        let mut notes = format!("# Release {version}\n\n");
        writeln!(
            notes,
            "{} changes, {} files, {} pinned dependencies.\n",
            config("changes"),
            config("files"),
            dependencies.lines().count()
        )?;
        // The changelog's own title gives way to the release's.
        for line in changelog
            .lines()
            .skip_while(|line| line.starts_with("# ") || line.is_empty())
        {
            writeln!(notes, "{line}")?;
        }
        writeln!(notes, "\n## Dependencies\n")?;
        for line in dependencies.lines() {
            writeln!(notes, "- `{}`", line.split_whitespace().last().unwrap_or_default())?;
        }
        writeln!(notes, "\n## Checksums (CRC-32)\n\n```\n{}```", checksums)?;
        std::fs::write(fs::out().join("RELEASE.md"), &notes)?;
        cairn_sdk::info!("release notes for {version}: {} lines", notes.lines().count());
        Ok(Outcome::new()
            .summary(format!("release {version}: {} lines of notes", notes.lines().count()))
            .output("version", version))
    }
}

cairn_sdk::export!(Release);
