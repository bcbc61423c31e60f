//! Walking folders without following links, for the places that need every
//! regular file under a folder and nothing more (measuring, maintenance).

use std::fs;
use std::path::{Path, PathBuf};

/// Every regular file under `root` with its size. Links are not followed and
/// unreadable folders are skipped: callers use this to measure or clean up,
/// where a partial answer beats none.
pub fn regular_files(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    let size = entry.metadata().map_or(0, |metadata| metadata.len());
                    files.push((entry.path(), size));
                }
                _ => {}
            }
        }
    }
    files
}
