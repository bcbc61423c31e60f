//! Where things are inside the sandbox, and deterministic ways to walk them.
//!
//! A stage's result must not depend on the order a directory happens to be
//! listed in, so every walk here returns paths sorted.

use std::io;
use std::path::{Path, PathBuf};

/// The stage's declared inputs, read-only.
pub const SRC: &str = "/src";
/// The stage's artifact: whatever is written here is its output.
pub const OUT: &str = "/out";
/// The parent of the read-only outputs of the stages this stage `needs`.
pub const INPUTS: &str = "/in";

/// `/src`.
pub fn src() -> &'static Path {
    Path::new(SRC)
}

/// `/out`.
pub fn out() -> &'static Path {
    Path::new(OUT)
}

/// `/in/<stage>`: the outputs of an upstream stage.
pub fn input(stage: &str) -> PathBuf {
    Path::new(INPUTS).join(stage)
}

/// Every upstream stage whose outputs this stage can read, as
/// `(stage name, /in/<stage>)`, sorted by name.
pub fn inputs() -> Vec<(String, PathBuf)> {
    let prefix = format!("{INPUTS}/");
    let mut inputs: Vec<(String, PathBuf)> = crate::bindings::wasi::filesystem::preopens::get_directories()
        .into_iter()
        .filter_map(|(_descriptor, path)| {
            let name = path.strip_prefix(&prefix)?.to_owned();
            Some((name, PathBuf::from(path)))
        })
        .collect();
    inputs.sort();
    inputs
}

/// Every regular file under `dir`, recursively, sorted. Symbolic links are
/// listed as they are, never followed. A missing `dir` yields no files, so a
/// stage without `inputs` sees an empty `/src` rather than an error.
pub fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound && current == dir => {
                return Ok(files);
            }
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The folder a stage that works on "the files it was given" reads: `from`
/// (a `with` value) when set, else the one `/in/<stage>` when the stage
/// needs exactly one stage, else `/src`. An unseen `from` is an error that
/// says how to show it.
pub fn chosen_folder(from: Option<&str>) -> io::Result<PathBuf> {
    if let Some(from) = from {
        let path = PathBuf::from(from);
        if !path.is_dir() {
            return Err(io::Error::other(format!(
                "`with.from` is `{from}`, which the stage cannot see: is it in `inputs` or `needs`?"
            )));
        }
        return Ok(path);
    }
    Ok(match inputs().as_slice() {
        [(_, only)] => only.clone(),
        _ => src().to_path_buf(),
    })
}
