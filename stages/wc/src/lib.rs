//! `std:wc`: counts lines, words and bytes of every file the stage can see
//! (its `/src` inputs and the outputs of the stages it needs), writes a table
//! to `/out/wc.txt` and the same figures to `/out/wc.json`, and returns the
//! totals as outputs (`files`, `lines`, `words`, `bytes`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cairn_sdk::{Invocation, Outcome, Stage, fs};

struct Wc;

/// The counts of one file, or of all of them.
#[derive(Clone, Copy, Default)]
struct Counts {
    lines: u64,
    words: u64,
    bytes: u64,
}

impl Counts {
    fn of(contents: &[u8]) -> Self {
        Counts {
            lines: contents.iter().filter(|&&byte| byte == b'\n').count() as u64,
            words: contents
                .split(u8::is_ascii_whitespace)
                .filter(|word| !word.is_empty())
                .count() as u64,
            bytes: contents.len() as u64,
        }
    }

    fn add(&mut self, other: Counts) {
        self.lines += other.lines;
        self.words += other.words;
        self.bytes += other.bytes;
    }
}

impl Stage for Wc {
    fn run(_invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let mut roots: Vec<PathBuf> = vec![fs::src().to_path_buf()];
        roots.extend(fs::inputs().into_iter().map(|(_, path)| path));
        let mut files = Vec::new();
        for root in &roots {
            files.extend(fs::files_under(root)?);
        }

        let mut table = String::new();
        let mut json_files = Vec::new();
        let mut total = Counts::default();
        for (index, path) in files.iter().enumerate() {
            let contents = std::fs::read(path).map_err(|error| format!("reading {}: {error}", path.display()))?;
            let counts = Counts::of(&contents);
            total.add(counts);
            writeln!(
                table,
                "{:>8} {:>8} {:>10} {}",
                counts.lines,
                counts.words,
                counts.bytes,
                path.display()
            )?;
            json_files.push(serde_json::json!({
                "path": display(path),
                "lines": counts.lines,
                "words": counts.words,
                "bytes": counts.bytes,
            }));
            cairn_sdk::progress(index as u64 + 1, files.len() as u64);
        }
        writeln!(table, "{:>8} {:>8} {:>10} total", total.lines, total.words, total.bytes)?;

        std::fs::write(fs::out().join("wc.txt"), table)?;
        let report = serde_json::json!({
            "files": json_files,
            "total": { "lines": total.lines, "words": total.words, "bytes": total.bytes },
        });
        std::fs::write(fs::out().join("wc.json"), serde_json::to_vec_pretty(&report)?)?;

        cairn_sdk::info!(
            "{} files, {} lines, {} words, {} bytes",
            files.len(),
            total.lines,
            total.words,
            total.bytes
        );
        Ok(Outcome::new()
            .summary(format!(
                "{} files, {} lines, {} words",
                files.len(),
                total.lines,
                total.words
            ))
            .output("files", files.len())
            .output("lines", total.lines)
            .output("words", total.words)
            .output("bytes", total.bytes))
    }
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

cairn_sdk::export!(Wc);
