//! Scratch folders for stages (`/src` snapshots, `/out`, `/tmp`), reused
//! rather than removed and made again.
//!
//! Making a folder is the dearest thing a trivial stage does to the file
//! system: on ext4 that has seen many files created and deleted, each
//! `mkdir` searches the inode allocator's recently deleted entries, and
//! measured 0.5 ms a call. A stage's folders are mostly empty when it ends,
//! so an emptied folder goes back to its [`ScratchSpace`] and the next
//! stage takes it: after the first few stages, a stage makes only the
//! folders its own inputs need.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How many emptied folders a space keeps; beyond it they are removed.
const KEPT: usize = 64;

/// A folder to make scratch folders in, and the emptied ones kept for reuse.
#[derive(Debug)]
pub struct ScratchSpace {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
}

impl ScratchSpace {
    /// Scratch folders in `dir`, which exists.
    pub fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            dir,
            free: Mutex::default(),
        })
    }

    /// Where the folders are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An empty folder: a kept one, or a new one named `PREFIX-XXXXXX`.
    pub fn folder(self: &Arc<Self>, prefix: &str) -> io::Result<ScratchFolder> {
        let kept = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let path = match kept {
            Some(path) => path,
            None => tempfile::Builder::new()
                .prefix(&format!("{prefix}-"))
                .tempdir_in(&self.dir)?
                .keep(),
        };
        Ok(ScratchFolder {
            path,
            space: Some(Arc::clone(self)),
        })
    }

    /// Takes the folder at `path` (a replaced `cairn-out/<stage>/`), emptied,
    /// as a folder to hand out: one rename, where removing it and making the
    /// next stage's folder would be an `rmdir` and a `mkdir`. Removed
    /// instead when it cannot be moved here (another file system) or enough
    /// are kept.
    pub fn adopt(&self, path: &Path) -> io::Result<()> {
        static ADOPTED: AtomicU64 = AtomicU64::new(0);
        let kept = self.free.lock().unwrap_or_else(PoisonError::into_inner).len();
        if kept < KEPT {
            empty(path)?;
            let unique = ADOPTED.fetch_add(1, Ordering::Relaxed);
            let name = self.dir.join(format!("kept-{}-{unique}", std::process::id()));
            if fs::rename(path, &name).is_ok() {
                self.give_back(name);
                return Ok(());
            }
        }
        fs::remove_dir_all(path)
    }

    /// Removes the folders kept for reuse. Dropping the space does it too; a
    /// process that exits without dropping what it holds calls this first.
    pub fn drain(&self) {
        let free = std::mem::take(&mut *self.free.lock().unwrap_or_else(PoisonError::into_inner));
        for path in free {
            let _ = fs::remove_dir(&path);
        }
    }

    /// Keeps the emptied folder `path`, or removes it when enough are kept.
    fn give_back(&self, path: PathBuf) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < KEPT {
            free.push(path);
        } else {
            drop(free);
            let _ = fs::remove_dir(&path);
        }
    }
}

impl Drop for ScratchSpace {
    fn drop(&mut self) {
        self.drain();
    }
}

/// One scratch folder, emptied and given back to its space when dropped
/// (removed if it cannot be emptied). A folder moved elsewhere by rename
/// (published outputs) simply is no longer there to give back.
#[derive(Debug)]
pub struct ScratchFolder {
    path: PathBuf,
    space: Option<Arc<ScratchSpace>>,
}

impl ScratchFolder {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFolder {
    fn drop(&mut self) {
        let Some(space) = self.space.take() else {
            return;
        };
        match empty(&self.path) {
            Ok(()) => space.give_back(std::mem::take(&mut self.path)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(_) => {
                let _ = fs::remove_dir_all(&self.path);
            }
        }
    }
}

/// Removes everything in the folder `dir`, but not `dir` itself.
fn empty(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_folder_is_taken_again_and_removed_when_drained() {
        let root = tempfile::tempdir().expect("tempdir");
        let space = ScratchSpace::new(root.path().to_owned());
        let first = space.folder("out").expect("a folder");
        let path = first.path().to_owned();
        fs::create_dir(path.join("sub")).expect("mkdir");
        fs::write(path.join("sub/file"), b"x").expect("write");
        fs::write(path.join("file"), b"x").expect("write");
        drop(first);
        assert!(path.is_dir(), "kept for reuse");
        let second = space.folder("tmp").expect("a folder");
        assert_eq!(second.path(), path, "the kept folder is taken again");
        assert_eq!(fs::read_dir(&path).expect("list").count(), 0, "and it is empty");
        let third = space.folder("src").expect("a folder");
        assert_ne!(third.path(), path, "a folder in use is not handed out twice");
        drop((second, third));
        space.drain();
        assert_eq!(
            fs::read_dir(root.path()).expect("list").count(),
            0,
            "nothing left behind"
        );
    }

    #[test]
    fn an_adopted_folder_is_emptied_and_handed_out() {
        let root = tempfile::tempdir().expect("tempdir");
        let space = ScratchSpace::new(root.path().join("scratch"));
        fs::create_dir(space.dir()).expect("mkdir");
        let old = root.path().join("old");
        fs::create_dir_all(old.join("sub")).expect("mkdir");
        fs::write(old.join("sub/file"), b"x").expect("write");
        space.adopt(&old).expect("adopted");
        assert!(!old.exists());
        let folder = space.folder("out").expect("a folder");
        assert!(folder.path().starts_with(space.dir()));
        assert_eq!(fs::read_dir(folder.path()).expect("list").count(), 0);
    }

    #[test]
    fn a_folder_moved_away_is_not_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let space = ScratchSpace::new(root.path().join("scratch"));
        fs::create_dir(space.dir()).expect("mkdir");
        let folder = space.folder("out").expect("a folder");
        fs::rename(folder.path(), root.path().join("published")).expect("rename");
        drop(folder);
        let next = space.folder("out").expect("a folder");
        assert!(next.path().is_dir());
        assert!(root.path().join("published").is_dir());
    }
}
