//! Moving a finished stage's outputs to where the user looks for them.
//!
//! A stage writes into a fresh scratch folder; only when it succeeded are its
//! outputs moved into place, so a failed or interrupted stage never leaves
//! half an output behind. Moves are renames when the scratch folder is on
//! the same file system, copies otherwise.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::workspace::{Stamp, open_folder, stamp_at};
use cairn_core::scratch::ScratchSpace;

/// `cairn-out/`, held open: checking that a thousand published folders are
/// still as cairn left them then resolves each path from there, not from `/`.
pub struct OutputRoot {
    path: PathBuf,
    fd: OwnedFd,
    swept: Once,
}

impl OutputRoot {
    /// Opens the folder at `path`.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        let fd = open_folder(&path)?;
        Ok(Self {
            path,
            fd,
            swept: Once::new(),
        })
    }

    /// A stage's folder in it, about to be replaced (see [`replace`]). What
    /// interrupted publishes left here is removed first ([`remove_stale`]),
    /// once per run: a run that publishes nothing leaves it (hidden, and
    /// ignored by git) to the next run that does, rather than read a folder
    /// of a thousand entries for it every time.
    pub fn to_publish(&self, stage: &str) -> PathBuf {
        self.swept.call_once(|| remove_stale(&self.path));
        self.join(stage)
    }

    /// A stage's folder in it.
    pub fn join(&self, stage: &str) -> PathBuf {
        self.path.join(stage)
    }

    /// The stamp of `relative` (not following a final link).
    pub fn stamp(&self, relative: &str) -> io::Result<Stamp> {
        stamp_at(self.fd.as_fd(), relative)
    }
}

/// A failure to put outputs in place; names the path involved.
#[derive(Debug, thiserror::Error)]
#[error("cannot move outputs to `{path}`")]
pub struct PublishError {
    /// The path being written.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> PublishError + '_ {
    move |source| PublishError {
        path: path.to_owned(),
        source,
    }
}

/// Makes `to` hold exactly what `from` holds, replacing whatever `to` held.
/// For folders cairn owns (`cairn-out/<stage>`).
///
/// On one file system this is two renames (the old tree aside, the new one
/// in) and never leaves a half-written `to`; across file systems the new tree
/// is first copied beside `to`, then renamed in.
///
/// The replaced tree's folder goes to `recycle`, emptied, when given: the
/// next stage's `/out` is then a rename, not a `mkdir`.
pub fn replace(from: &Path, to: &Path, recycle: Option<&ScratchSpace>) -> Result<(), PublishError> {
    let parent = to.parent().unwrap_or(Path::new("."));
    // Another process may publish the same folder at the same moment; when
    // its tree lands between our two renames, move it aside too and retry.
    // The renames are tried first: the parent is made only when one says it
    // is missing (once a run, not once a stage).
    let mut attempts = 0;
    loop {
        attempts += 1;
        let aside = sibling(to, "old");
        let aside = match fs::rename(to, &aside) {
            Ok(()) => Some(aside),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(at(to)(error)),
        };
        let moved = match fs::rename(from, to) {
            Err(error) if error.kind() == io::ErrorKind::NotFound && !parent.is_dir() => {
                fs::create_dir_all(parent).map_err(at(parent))?;
                fs::rename(from, to).map_err(at(to))
            }
            Err(error) if error.kind() == io::ErrorKind::CrossesDevices => {
                let staged = sibling(to, "new");
                copy_tree(from, &staged).and_then(|()| fs::rename(&staged, to).map_err(at(to)))
            }
            other => other.map_err(at(to)),
        };
        match moved {
            Ok(()) => {
                if let Some(aside) = aside {
                    match recycle {
                        Some(space) => space.adopt(&aside),
                        None => fs::remove_dir_all(&aside),
                    }
                    .map_err(at(&aside))?;
                }
                return Ok(());
            }
            Err(error)
                if attempts < 5
                    && matches!(
                        error.source.kind(),
                        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                    ) =>
            {
                if let Some(aside) = aside {
                    let _ = fs::remove_dir_all(&aside);
                }
            }
            Err(error) => {
                // Put the previous outputs back rather than leave nothing.
                if let Some(aside) = &aside {
                    let _ = fs::rename(aside, to);
                }
                return Err(error);
            }
        }
    }
}

/// Removes what interrupted publishes left in `folder`: the `.NAME.cairn-old-*`
/// and `.cairn-new-*` siblings of processes that are no longer running.
fn remove_stale(folder: &Path) {
    let Ok(entries) = fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .split(".cairn-old-")
            .nth(1)
            .or_else(|| name.split(".cairn-new-").nth(1))
        else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !name.starts_with('.') || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// A name beside `path` that no other writer uses: `.NAME.cairn-PURPOSE-PID-N`.
fn sibling(path: &Path, purpose: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |name| name.to_string_lossy().into_owned());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.cairn-{purpose}-{}-{unique}", std::process::id()))
}

/// Moves everything in `from` into `to`, replacing files of the same name and
/// leaving other files of `to` alone. For folders the user named (`--out`),
/// which may hold files cairn did not write.
pub fn merge(from: &Path, to: &Path) -> Result<(), PublishError> {
    fs::create_dir_all(to).map_err(at(to))?;
    for entry in fs::read_dir(from).map_err(at(from))? {
        let entry = entry.map_err(at(from))?;
        let source = entry.path();
        let destination = to.join(entry.file_name());
        if entry.file_type().map_err(at(&source))?.is_dir() {
            merge(&source, &destination)?;
        } else {
            if let Ok(existing) = fs::symlink_metadata(&destination)
                && existing.is_dir()
            {
                return Err(PublishError {
                    path: destination,
                    source: io::Error::new(io::ErrorKind::IsADirectory, "a folder is in the way of an output file"),
                });
            }
            move_tree(&source, &destination)?;
        }
    }
    Ok(())
}

/// Renames `from` to `to`, or copies it (links as links) across file systems.
fn move_tree(from: &Path, to: &Path) -> Result<(), PublishError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::CrossesDevices => copy_tree(from, to),
        Err(error) => Err(at(to)(error)),
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), PublishError> {
    let metadata = fs::symlink_metadata(from).map_err(at(from))?;
    if metadata.is_dir() {
        fs::create_dir_all(to).map_err(at(to))?;
        for entry in fs::read_dir(from).map_err(at(from))? {
            let entry = entry.map_err(at(from))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if metadata.is_symlink() {
        let target = fs::read_link(from).map_err(at(from))?;
        let _ = fs::remove_file(to);
        std::os::unix::fs::symlink(target, to).map_err(at(to))?;
    } else {
        fs::copy(from, to).map_err(at(to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[(&str, &str)]) {
        for (path, contents) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            fs::write(path, contents).expect("write");
        }
    }

    #[test]
    fn replace_swaps_the_whole_folder() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let (from, to) = (scratch.path().join("from"), scratch.path().join("out/stage"));
        tree(&from, &[("a.txt", "new"), ("sub/b.txt", "b")]);
        tree(&to, &[("a.txt", "old"), ("stale.txt", "gone")]);
        replace(&from, &to, None).expect("replace");
        assert_eq!(fs::read_to_string(to.join("a.txt")).expect("read"), "new");
        assert_eq!(fs::read_to_string(to.join("sub/b.txt")).expect("read"), "b");
        assert!(!to.join("stale.txt").exists());
        let leftovers: Vec<_> = fs::read_dir(scratch.path().join("out")).expect("list").collect();
        assert_eq!(leftovers.len(), 1, "no staging folders are left behind");
    }

    #[test]
    fn leftovers_of_dead_publishers_are_swept_once_and_live_ones_kept() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let root = scratch.path().join("cairn-out");
        // No process has a pid this high (`pid_max` is at most 2^22).
        let dead = [".build.cairn-old-99999999-0", ".cairn-new-99999999-1"];
        let live = format!(".build.cairn-old-{}-0", std::process::id());
        for name in dead.iter().copied().chain([live.as_str(), "build"]) {
            fs::create_dir_all(root.join(name).join("sub")).expect("mkdir");
        }
        let output_root = OutputRoot::open(root.clone()).expect("open");
        assert_eq!(output_root.to_publish("build"), root.join("build"));
        let mut names: Vec<String> = fs::read_dir(&root)
            .expect("read")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [live.as_str(), "build"]);

        // Once per run: a leftover appearing later waits for the next run.
        fs::create_dir(root.join(dead[0])).expect("mkdir");
        assert_eq!(output_root.to_publish("build"), root.join("build"));
        assert!(root.join(dead[0]).exists());
    }

    #[test]
    fn merge_keeps_files_it_does_not_replace() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let (from, to) = (scratch.path().join("from"), scratch.path().join("to"));
        tree(&from, &[("a.txt", "new"), ("sub/b.txt", "b")]);
        tree(&to, &[("a.txt", "old"), ("mine.txt", "kept")]);
        merge(&from, &to).expect("merge");
        assert_eq!(fs::read_to_string(to.join("a.txt")).expect("read"), "new");
        assert_eq!(fs::read_to_string(to.join("mine.txt")).expect("read"), "kept");
        assert_eq!(fs::read_to_string(to.join("sub/b.txt")).expect("read"), "b");
    }
}
