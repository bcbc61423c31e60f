//! The workspace: the files a pipeline's `inputs` globs choose from, and the
//! read-only snapshot of the chosen ones a stage sees at `/src`.
//!
//! The workspace is walked once per run, honouring the `.gitignore` and
//! `.ignore` files inside it (but not the user's global git settings, which
//! differ between machines and would make a stage see different files on a
//! laptop and in CI). `.git/` and cairn's own `cairn-out/` are never inputs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The folder cairn publishes stage outputs to, inside the workspace.
pub const OUTPUT_FOLDER: &str = "cairn-out";

/// A failure to read the workspace or to build a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The walk hit an unreadable entry.
    #[error("cannot read the workspace at `{path}`: {message}")]
    Walk {
        /// Where.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A glob does not parse (the pipeline checker reports these first).
    #[error("`{glob}` is not a valid glob: {message}")]
    Glob {
        /// The glob.
        glob: String,
        /// What is wrong with it.
        message: String,
    },
    /// A snapshot could not be written.
    #[error("cannot snapshot `{path}` for the stage")]
    Snapshot {
        /// The file being linked or copied.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// The files of a workspace, as `/`-separated paths relative to its root, sorted.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
    files: Vec<String>,
}

impl Workspace {
    /// Walks `root`.
    pub fn scan(root: &Path) -> Result<Self, WorkspaceError> {
        let mut files = Vec::new();
        let walk = ignore::WalkBuilder::new(root)
            .hidden(false)
            .git_ignore(true)
            .git_global(false)
            .git_exclude(false)
            .require_git(false)
            .filter_entry(|entry| {
                let name = entry.file_name();
                name != ".git" && !(entry.depth() == 1 && name == OUTPUT_FOLDER)
            })
            .build();
        for entry in walk {
            let entry = entry.map_err(|error| WorkspaceError::Walk {
                path: root.to_owned(),
                message: error.to_string(),
            })?;
            if entry.file_type().is_some_and(|kind| !kind.is_dir()) {
                let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
                files.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
        files.sort();
        Ok(Self {
            root: root.to_owned(),
            files,
        })
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files `globs` select. `*` stays within a folder and `**` crosses
    /// folders, as in `.gitignore`: `*.toml` is the top level only,
    /// `**/*.toml` is everywhere.
    pub fn select(&self, globs: &[&str]) -> Result<Vec<&str>, WorkspaceError> {
        if globs.is_empty() {
            return Ok(Vec::new());
        }
        let set = glob_set(globs)?;
        Ok(self
            .files
            .iter()
            .map(String::as_str)
            .filter(|file| set.is_match(file))
            .collect())
    }

    /// Whether `glob` selects at least one file.
    pub fn matches_anything(&self, glob: &str) -> Result<bool, WorkspaceError> {
        let matcher = compile(glob)?.compile_matcher();
        Ok(self.files.iter().any(|file| matcher.is_match(file)))
    }

    /// Builds a snapshot of `files` in a new folder under `scratch`: hard
    /// links where the file system allows, copies otherwise. The stage sees
    /// it read-only, so linking cannot let it change the workspace.
    pub fn snapshot(
        &self,
        files: &[&str],
        scratch: &Path,
    ) -> Result<tempfile::TempDir, WorkspaceError> {
        let snapshot = tempfile::Builder::new()
            .prefix("src-")
            .tempdir_in(scratch)
            .map_err(|source| WorkspaceError::Snapshot {
                path: scratch.to_owned(),
                source,
            })?;
        for file in files {
            let from = self.root.join(file);
            let to = snapshot.path().join(file);
            let error = |source| WorkspaceError::Snapshot {
                path: from.clone(),
                source,
            };
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(error)?;
            }
            link_or_copy(&from, &to).map_err(error)?;
        }
        Ok(snapshot)
    }
}

fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    let metadata = fs::symlink_metadata(from)?;
    if metadata.is_symlink() {
        return std::os::unix::fs::symlink(fs::read_link(from)?, to);
    }
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(_) => fs::copy(from, to).map(drop),
    }
}

fn compile(glob: &str) -> Result<Glob, WorkspaceError> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map_err(|error| WorkspaceError::Glob {
            glob: glob.to_owned(),
            message: error.kind().to_string(),
        })
}

fn glob_set(globs: &[&str]) -> Result<GlobSet, WorkspaceError> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(compile(glob)?);
    }
    builder.build().map_err(|error| WorkspaceError::Glob {
        glob: globs.join(", "),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, file).expect("write");
        }
        dir
    }

    #[test]
    fn globs_select_like_gitignore_and_ignored_files_are_invisible() {
        let dir = workspace(&[
            "Cargo.toml",
            "crates/a/Cargo.toml",
            "src/main.rs",
            ".gitignore",
            "target/debug/junk.toml",
            "cairn-out/lint/report.toml",
            ".git/config.toml",
            ".github/ci.toml",
        ]);
        fs::write(dir.path().join(".gitignore"), "target/\n").expect("write");
        let workspace = Workspace::scan(dir.path()).expect("scan");
        assert_eq!(
            workspace.select(&["*.toml"]).expect("valid"),
            ["Cargo.toml"]
        );
        assert_eq!(
            workspace.select(&["**/*.toml"]).expect("valid"),
            [".github/ci.toml", "Cargo.toml", "crates/a/Cargo.toml"]
        );
        assert!(workspace.matches_anything("src/**").expect("valid"));
        assert!(!workspace.matches_anything("docs/**").expect("valid"));
    }

    #[test]
    fn snapshots_hold_exactly_the_selected_files() {
        let dir = workspace(&["a.txt", "sub/b.txt", "c.md"]);
        let workspace = Workspace::scan(dir.path()).expect("scan");
        let scratch = tempfile::tempdir().expect("tempdir");
        let selected = workspace.select(&["**/*.txt"]).expect("valid");
        let snapshot = workspace
            .snapshot(&selected, scratch.path())
            .expect("snapshot");
        assert_eq!(
            fs::read_to_string(snapshot.path().join("sub/b.txt")).expect("read"),
            "sub/b.txt"
        );
        assert!(snapshot.path().join("a.txt").is_file());
        assert!(!snapshot.path().join("c.md").exists());
    }
}
