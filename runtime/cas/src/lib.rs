//! The content-addressed store: blobs named by their blake3 digest, trees of
//! them (a stage's inputs or outputs), and the action cache that maps a stage
//! key to the outputs it produced.
//!
//! Layout, under `$CAIRN_CACHE/cas-v1/`:
//! - `blobs/ab/cdef...`: file contents, read-only, named by digest;
//! - `actions/ab/cdef...json`: stage key → [`ActionEntry`];
//! - `roots/<hex>`: blobs kept alive outside the action cache (components
//!   pulled from registries); a root's modification time is its last use,
//!   and `cairn cache gc` evicts roots and actions alike, least recently used first;
//! - `tmp/`: where every entry is written before being renamed into place,
//!   so a reader (or a process killed mid-write) never sees half an entry;
//! - `lock`: runs hold it shared, `cairn cache gc|verify|clear` exclusively,
//!   so nothing is deleted under a running stage.
//!
//! The store never trusts what it reads: a blob is hashed before its bytes
//! are restored anywhere, and a blob whose digest does not match is deleted
//! and reported as missing, so the stage that needs it runs again.

mod action;
mod tree;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

pub use action::ActionEntry;
pub use tree::{Entry, EntryKind, Materialize, Tree, TreeError};

use cairn_core::Digest;
use cairn_core::cache_dir::CacheDir;

/// Files larger than this are hashed with memory mapping and all cores.
const LARGE_FILE: u64 = 1 << 20;

/// A failure of the store itself (not a cache miss).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or folder of the store could not be used.
    #[error("cannot use the cache at `{path}`")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A blob the store was asked for is absent, or was corrupt and dropped.
    #[error("the cache has no intact blob {digest}{}", if *.corrupt { " (it was corrupt and has been removed)" } else { "" })]
    Missing {
        /// The blob.
        digest: Digest,
        /// Whether it was there but did not match its digest.
        corrupt: bool,
    },
    /// A file changed while it was being copied into the store.
    #[error("`{path}` changed while cairn was reading it; run again")]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

impl StoreError {
    /// Wraps an I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The content-addressed store of one cache folder.
pub struct Store {
    blobs: PathBuf,
    actions: PathBuf,
    roots: PathBuf,
    tmp: PathBuf,
    verified: Mutex<HashSet<Digest>>,
    _lock: File,
}

impl Store {
    /// Opens the store for a run: a shared lock, held until the store is dropped.
    pub fn open(cache: &CacheDir) -> Result<Self, StoreError> {
        Self::open_with(cache, false)
    }

    /// Opens the store alone (for gc, verify and clear): waits for runs to end.
    pub fn open_exclusive(cache: &CacheDir) -> Result<Self, StoreError> {
        Self::open_with(cache, true)
    }

    fn open_with(cache: &CacheDir, exclusive: bool) -> Result<Self, StoreError> {
        let root = cache.root().join("cas-v1");
        let (blobs, actions, roots, tmp) = (
            root.join("blobs"),
            root.join("actions"),
            root.join("roots"),
            root.join("tmp"),
        );
        for dir in [&blobs, &actions, &roots, &tmp] {
            fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io(&lock_path))?;
        if exclusive { lock.lock() } else { lock.lock_shared() }.map_err(StoreError::io(&lock_path))?;
        Ok(Self {
            blobs,
            actions,
            roots,
            tmp,
            verified: Mutex::new(HashSet::new()),
            _lock: lock,
        })
    }

    /// Where the blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.blobs.join(&hex[..2]).join(&hex[2..])
    }

    /// Whether a blob is present (not whether it is intact).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores `bytes` and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let mut file = self.temp_file()?;
            file.write_all(bytes).map_err(StoreError::io(&self.tmp))?;
            self.commit_blob(file, &digest)?;
        }
        self.mark_verified(digest);
        Ok(digest)
    }

    /// Stores the contents of the file at `path` and returns their digest and
    /// size. When `expected` is given, a file that no longer has that digest
    /// is an error (it changed after it was hashed).
    pub fn put_file(&self, path: &Path, expected: Option<Digest>) -> Result<(Digest, u64), StoreError> {
        self.put_opened(|| open_regular(path), path, expected)
    }

    /// [`put_file`](Self::put_file) of what `open` opens (each time it is
    /// called): for a caller that opens files its own way, such as beneath
    /// a workspace root. `path` names the file in errors.
    pub fn put_opened(
        &self,
        open: impl Fn() -> io::Result<File>,
        path: &Path,
        expected: Option<Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        let first = open().map_err(StoreError::io(path))?;
        let size = first.metadata().map_err(StoreError::io(path))?.len();
        if let Some(digest) = expected
            && self.is_verified(&digest)
        {
            return Ok((digest, size));
        }
        // Hash first: most files are already stored (inputs seen before,
        // outputs identical to an earlier run's) and need no copy.
        let digest = hash_open(first).map_err(StoreError::io(path))?;
        if expected.is_some_and(|expected| expected != digest) {
            return Err(StoreError::Changed { path: path.to_owned() });
        }
        if !self.has_blob(&digest) {
            let mut file = self.temp_file()?;
            let mut source = open().map_err(StoreError::io(path))?;
            let mut hasher = blake3::Hasher::new();
            let mut buffer = vec![0; 256 * 1024];
            loop {
                let read = source.read(&mut buffer).map_err(StoreError::io(path))?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                file.write_all(&buffer[..read]).map_err(StoreError::io(&self.tmp))?;
            }
            // What was copied must be what was hashed.
            if Digest::from_hasher(&hasher) != digest {
                return Err(StoreError::Changed { path: path.to_owned() });
            }
            self.commit_blob(file, &digest)?;
        }
        self.mark_verified(digest);
        Ok((digest, size))
    }

    /// Keeps the blob `digest` alive outside the action cache, and marks it
    /// used now: `cairn cache gc` evicts it only as the least recently used.
    pub fn keep(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.roots.join(digest.to_hex());
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        file.set_modified(std::time::SystemTime::now())
            .map_err(StoreError::io(&path))
    }

    /// The bytes of a blob, checked against its digest.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|_| StoreError::Missing {
            digest: *digest,
            corrupt: false,
        })?;
        if Digest::of(&bytes) != *digest {
            self.drop_corrupt(digest);
            return Err(StoreError::Missing {
                digest: *digest,
                corrupt: true,
            });
        }
        self.mark_verified(*digest);
        Ok(bytes)
    }

    /// Checks a blob against its digest (once per process); a corrupt blob
    /// is removed.
    pub fn verify(&self, digest: &Digest) -> Result<(), StoreError> {
        if self.is_verified(digest) {
            return Ok(());
        }
        let path = self.blob_path(digest);
        if !path.is_file() {
            return Err(StoreError::Missing {
                digest: *digest,
                corrupt: false,
            });
        }
        match hash_file(&path) {
            Ok(actual) if actual == *digest => {
                self.mark_verified(*digest);
                Ok(())
            }
            _ => {
                self.drop_corrupt(digest);
                Err(StoreError::Missing {
                    digest: *digest,
                    corrupt: true,
                })
            }
        }
    }

    fn drop_corrupt(&self, digest: &Digest) {
        tracing::warn!(%digest, "removing a corrupt blob from the cache");
        let _ = fs::remove_file(self.blob_path(digest));
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
    }

    fn is_verified(&self, digest: &Digest) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(digest)
    }

    fn mark_verified(&self, digest: Digest) {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest);
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .map_err(StoreError::io(&self.tmp))
    }

    /// Makes a fully written temporary file the blob `digest`: read-only,
    /// then renamed into place (a concurrent writer of the same blob wins
    /// the same bytes).
    fn commit_blob(&self, file: tempfile::NamedTempFile, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
        }
        let mut permissions = file.as_file().metadata().map_err(StoreError::io(&path))?.permissions();
        permissions.set_readonly(true);
        file.as_file()
            .set_permissions(permissions)
            .map_err(StoreError::io(&path))?;
        file.persist(&path).map_err(|error| StoreError::Io {
            path: path.clone(),
            source: error.error,
        })?;
        Ok(())
    }

    fn action_path(&self, key: &Digest) -> PathBuf {
        let hex = key.to_hex();
        self.actions.join(&hex[..2]).join(format!("{}.json", &hex[2..]))
    }

    /// The folder of blobs, for `cairn cache` maintenance.
    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// The folder of action entries, for `cairn cache` maintenance.
    pub fn actions_dir(&self) -> &Path {
        &self.actions
    }

    /// The folder of roots, for `cairn cache` maintenance.
    pub fn roots_dir(&self) -> &Path {
        &self.roots
    }

    /// The folder of temporary files, for `cairn cache` maintenance.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }
}

/// Opens a workspace file for reading only if it is a regular file: never
/// through a symbolic link, and without waiting on a FIFO (which would
/// block until a writer came), whatever the path turned into since the walk.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::other("not a regular file"))
    }
}

/// The blake3 digest of a file's contents, memory-mapped and on all cores
/// for large files.
pub fn hash_file(path: &Path) -> Result<Digest, StoreError> {
    open_regular(path).and_then(hash_open).map_err(StoreError::io(path))
}

/// [`hash_file`] of a file already opened. A large file is mapped through
/// `/proc/self/fd`, which names the open file itself: whatever its path has
/// turned into since, it is never resolved again.
pub fn hash_open(mut file: File) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    let size = file.metadata()?.len();
    if size >= LARGE_FILE {
        use std::os::fd::AsRawFd;
        let by_descriptor = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if hasher.update_mmap_rayon(&by_descriptor).is_err() {
            // No /proc (some containers): read the open file instead.
            hasher = blake3::Hasher::new();
            hasher.update_reader(&mut file)?;
        }
    } else {
        let mut buffer = Vec::with_capacity(size as usize);
        file.read_to_end(&mut buffer)?;
        hasher.update(&buffer);
    }
    Ok(Digest::from_hasher(&hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(dir.path()).expect("cache");
        let store = Store::open(&cache).expect("store");
        (dir, store)
    }

    #[test]
    fn blobs_round_trip_and_are_read_only() {
        let (_dir, store) = store();
        let digest = store.put_bytes(b"hello").expect("stored");
        assert_eq!(digest, Digest::of(b"hello"));
        assert_eq!(store.read(&digest).expect("intact"), b"hello");
        let permissions = fs::metadata(store.blob_path(&digest)).expect("exists").permissions();
        assert!(permissions.readonly());
    }

    #[test]
    fn a_corrupt_blob_is_dropped_and_reported_missing() {
        let (_dir, store) = store();
        let digest = store.put_bytes(b"precious bytes").expect("stored");
        let path = store.blob_path(&digest);
        let mut permissions = fs::metadata(&path).expect("exists").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        fs::set_permissions(&path, permissions).expect("writable");
        fs::write(&path, b"precious bytez").expect("flip");
        let fresh = Store {
            verified: Mutex::new(HashSet::new()),
            ..store
        };
        assert!(matches!(
            fresh.read(&digest),
            Err(StoreError::Missing { corrupt: true, .. })
        ));
        assert!(!path.exists(), "the corrupt blob is gone");
    }

    #[test]
    fn a_file_that_changed_since_it_was_hashed_is_refused() {
        let (dir, store) = store();
        let file = dir.path().join("input.txt");
        fs::write(&file, "version 2").expect("write");
        let error = store
            .put_file(&file, Some(Digest::of(b"version 1")))
            .expect_err("changed");
        assert!(matches!(error, StoreError::Changed { .. }));
        let (digest, size) = store.put_file(&file, None).expect("stored");
        assert_eq!((digest, size), (Digest::of(b"version 2"), 9));
    }
}
