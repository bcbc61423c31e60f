//! The one folder cairn keeps machine-local state in.
//!
//! Everything cairn can recompute lives under one root (`$CAIRN_CACHE`, or the
//! platform cache folder): compiled components and the scratch space stages
//! run in. Each kind of entry sits in a versioned bucket (`compiled-v1`), so a
//! change of format starts a new bucket instead of misreading old bytes, and
//! the root carries a `CACHEDIR.TAG` so backup tools skip it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The environment variable that overrides where the cache lives.
pub const CACHE_ENV: &str = "CAIRN_CACHE";

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file marks a cache directory created by cairn (https://github.com/cairn-dev/cairn).\n\
# Everything here can be recomputed; `cairn cache clear` removes it.\n";

/// A failure to find or prepare the cache folder.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// Neither `$CAIRN_CACHE` nor a platform cache folder is known.
    #[error("no cache folder: set `{CACHE_ENV}` to a writable folder")]
    NoLocation,
    /// The folder could not be created or written.
    #[error("cannot prepare the cache folder `{path}`")]
    Io {
        /// The folder or file cairn tried to create.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// The cache root, created and tagged on open.
#[derive(Clone, Debug)]
pub struct CacheDir {
    root: PathBuf,
}

impl CacheDir {
    /// Opens the cache named by `$CAIRN_CACHE`, or the platform default
    /// (`~/.cache/cairn` on Linux).
    pub fn from_env() -> Result<Self, CacheDirError> {
        let root = match std::env::var_os(CACHE_ENV) {
            Some(value) if !value.is_empty() => PathBuf::from(value),
            _ => dirs::cache_dir().ok_or(CacheDirError::NoLocation)?.join("cairn"),
        };
        Self::open(root)
    }

    /// Opens (creating if needed) a cache rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CacheDirError> {
        let root = root.into();
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheDirError::Io { path, source }
        };
        fs::create_dir_all(&root).map_err(io_error(&root))?;
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            // Written through a temporary file so a concurrent reader never
            // sees half a tag; losing the race to another writer is fine.
            write_atomically(&tag, CACHEDIR_TAG.as_bytes()).map_err(io_error(&tag))?;
            let ignore = root.join(".gitignore");
            write_atomically(&ignore, b"*\n").map_err(io_error(&ignore))?;
        }
        let root = fs::canonicalize(&root).map_err(io_error(&root))?;
        Ok(Self { root })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bucket of compiled components (see [`cairn_component`]).
    pub fn compiled(&self) -> PathBuf {
        self.root.join("compiled-v1")
    }

    /// Scratch space for running stages: their `/out` before it is published
    /// and their `/tmp`. Kept inside the cache so that outputs can be moved
    /// into the store by rename instead of copied.
    pub fn scratch(&self) -> Result<PathBuf, CacheDirError> {
        let path = self.root.join("tmp");
        fs::create_dir_all(&path).map_err(|source| CacheDirError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// Writes `bytes` to `path` so that readers see either the old file or the
/// whole new one: a uniquely named temporary file in the same folder,
/// flushed, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new().prefix(".tmp-").tempfile_in(parent)?;
    file.write_all(bytes)?;
    file.as_file().sync_data()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}
