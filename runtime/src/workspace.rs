//! The workspace: the files a pipeline's `inputs` globs choose from.
//!
//! The workspace is walked once per run, honouring the `.gitignore` and
//! `.ignore` files inside it (but not the user's global git settings, which
//! differ between machines and would make a stage see different files on a
//! laptop and in CI). `.git/` and cairn's own `cairn-out/` are never inputs.
//! Each file comes with its [`Stamp`], so a file whose stamp has not changed
//! since it was last hashed is not read again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// The folder cairn publishes stage outputs to, inside the workspace.
pub const OUTPUT_FOLDER: &str = "cairn-out";

/// A failure to read the workspace.
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
}

/// What identifies a file's state without reading it: if none of these
/// changed, neither did its contents (the rule git's index uses). The change
/// time is included because tools can set the modification time back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, in nanoseconds since the epoch.
    pub modified: i64,
    /// Status change time, in nanoseconds since the epoch.
    pub changed: i64,
    /// Inode number.
    pub inode: u64,
    /// Permission bits and file type.
    pub mode: u32,
}

impl Stamp {
    /// The stamp of `metadata`.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            size: metadata.len(),
            modified: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
            changed: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            inode: metadata.ino(),
            mode: metadata.mode(),
        }
    }

    /// Whether the executable bit is set.
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// One workspace file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceFile {
    /// `/`-separated path relative to the workspace root.
    pub path: String,
    /// Its state when the workspace was walked.
    pub stamp: Stamp,
}

/// The files of a workspace, sorted by path.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
    files: Vec<WorkspaceFile>,
}

impl Workspace {
    /// Walks `root`, stating every file once.
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
            if entry.file_type().is_none_or(|kind| kind.is_dir()) {
                continue;
            }
            let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
            // A name that is not UTF-8 cannot be matched by a glob or named
            // in a tree; it is left out (and so invisible to every stage).
            let Some(path) = relative.to_str() else {
                continue;
            };
            let metadata =
                entry
                    .path()
                    .symlink_metadata()
                    .map_err(|error| WorkspaceError::Walk {
                        path: entry.path().to_owned(),
                        message: error.to_string(),
                    })?;
            files.push(WorkspaceFile {
                path: path.to_owned(),
                stamp: Stamp::of(&metadata),
            });
        }
        files.sort_by(|left, right| left.path.cmp(&right.path));
        Ok(Self {
            root: root.to_owned(),
            files,
        })
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every file, sorted by path.
    pub fn files(&self) -> &[WorkspaceFile] {
        &self.files
    }

    /// The files `globs` select, sorted. `*` stays within a folder and `**`
    /// crosses folders, as in `.gitignore`: `*.toml` is the top level only,
    /// `**/*.toml` is everywhere. Each glob only looks at the files under
    /// its literal prefix, so a thousand stages with narrow globs do not
    /// each scan the whole workspace.
    pub fn select(&self, globs: &[&str]) -> Result<Vec<&WorkspaceFile>, WorkspaceError> {
        if globs.is_empty() {
            return Ok(Vec::new());
        }
        let set = glob_set(globs)?;
        let mut selected: Vec<usize> = Vec::new();
        for glob in globs {
            let range = self.range_under(literal_prefix(glob));
            selected.extend(range.filter(|&index| set.is_match(&self.files[index].path)));
        }
        selected.sort_unstable();
        selected.dedup();
        Ok(selected
            .into_iter()
            .map(|index| &self.files[index])
            .collect())
    }

    /// Whether `glob` selects at least one file.
    pub fn matches_anything(&self, glob: &str) -> Result<bool, WorkspaceError> {
        let matcher = compile(glob)?.compile_matcher();
        Ok(self
            .range_under(literal_prefix(glob))
            .any(|index| matcher.is_match(&self.files[index].path)))
    }

    /// The indices of the files whose path starts with `prefix`.
    fn range_under(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = self
            .files
            .partition_point(|file| file.path.as_str() < prefix);
        let end = start + self.files[start..].partition_point(|file| file.path.starts_with(prefix));
        start..end
    }
}

/// The part of a glob before its first wildcard, cut back to a whole folder
/// (`docs/api/*.md` → `docs/api/`, `*.md` → ``).
fn literal_prefix(glob: &str) -> &str {
    let wild = glob.find(['*', '?', '[', '{', '\\']).unwrap_or(glob.len());
    if wild == glob.len() {
        return glob;
    }
    match glob[..wild].rfind('/') {
        Some(slash) => &glob[..=slash],
        None => "",
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
    use std::fs;

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

    fn paths<'a>(files: &[&'a WorkspaceFile]) -> Vec<&'a str> {
        files.iter().map(|file| file.path.as_str()).collect()
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
            paths(&workspace.select(&["*.toml"]).expect("valid")),
            ["Cargo.toml"]
        );
        assert_eq!(
            paths(&workspace.select(&["**/*.toml"]).expect("valid")),
            [".github/ci.toml", "Cargo.toml", "crates/a/Cargo.toml"]
        );
        assert_eq!(
            paths(
                &workspace
                    .select(&["crates/**", "src/main.rs"])
                    .expect("valid")
            ),
            ["crates/a/Cargo.toml", "src/main.rs"]
        );
        assert!(workspace.matches_anything("src/**").expect("valid"));
        assert!(!workspace.matches_anything("docs/**").expect("valid"));
    }

    #[test]
    fn literal_prefixes_stop_at_the_folder_of_the_first_wildcard() {
        assert_eq!(literal_prefix("docs/api/*.md"), "docs/api/");
        assert_eq!(literal_prefix("docs/a*/x.md"), "docs/");
        assert_eq!(literal_prefix("*.md"), "");
        assert_eq!(literal_prefix("**/x"), "");
        assert_eq!(literal_prefix("exact/file.txt"), "exact/file.txt");
        assert_eq!(literal_prefix("src/{a,b}.rs"), "src/");
    }

    #[test]
    fn stamps_change_when_contents_change() {
        let dir = workspace(&["a.txt"]);
        let before = Workspace::scan(dir.path()).expect("scan").files()[0].stamp;
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(dir.path().join("a.txt"), "new contents").expect("write");
        let after = Workspace::scan(dir.path()).expect("scan").files()[0].stamp;
        assert_ne!(before, after);
        assert!(!after.executable());
    }
}
