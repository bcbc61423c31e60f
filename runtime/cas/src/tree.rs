//! Trees: a folder's contents as a sorted list of entries, stored as a blob
//! whose digest names the whole folder.
//!
//! A tree's digest is the digest of its canonical encoding: entries sorted by
//! path, each with its kind, and for files the content digest and executable
//! bit (the only permission that travels). Nothing else enters it (no
//! timestamps, owners or absolute paths), so the same files have the same
//! digest on every machine: that is what makes a stage's inputs and outputs
//! comparable across runs, checkouts and hosts.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Store, StoreError};
use cairn_core::Digest;

const MAGIC: &[u8] = b"cairn-tree-v1\n";

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `/`-separated path relative to the tree's root.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
}

/// What a tree entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A folder (listed so that empty folders survive).
    Directory,
    /// A regular file.
    File {
        /// Its contents' digest.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// Whether its executable bit is set.
        executable: bool,
    },
    /// A symbolic link, kept as a link, never followed.
    Symlink {
        /// Where it points, as written.
        target: String,
    },
}

/// A folder's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: Vec<Entry>,
}

/// A tree that cannot be stored or read back.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A name that is not UTF-8, which cairn does not keep.
    #[error("`{0}` is not a UTF-8 name; cairn keeps only UTF-8 file names")]
    NotUtf8(PathBuf),
    /// A FIFO, socket or device.
    #[error("`{0}` is neither a file, a folder nor a symbolic link")]
    Special(PathBuf),
    /// The encoded tree is damaged.
    #[error("a stored tree is damaged: {0}")]
    Damaged(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a tree is laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Materialize {
    /// Hard links to the read-only blobs: instant, for folders the stage only reads.
    Link,
    /// Writable copies: for folders the user owns (`cairn-out/`).
    Copy,
}

impl Tree {
    /// A tree of `entries`, sorted by path.
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|left, right| left.path.cmp(&right.path));
        entries.dedup_by(|left, right| left.path == right.path);
        Self { entries }
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for entry in &self.entries {
            encode_entry(&mut out, &entry.path, &entry.kind);
        }
        out
    }

    /// The digest of a tree of files and links, given sorted by path,
    /// without building it: what a stage key needs for its inputs on every
    /// run, where building the tree is only needed when the stage runs.
    pub fn digest_of_files<'a>(files: impl IntoIterator<Item = (&'a str, EntryKind)>) -> Digest {
        let mut encoded = MAGIC.to_vec();
        for (path, kind) in files {
            encode_entry(&mut encoded, path, &kind);
        }
        Digest::of(&encoded)
    }

    /// The tree's digest: that of its encoding.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.encode())
    }

    /// Reads back an encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, TreeError> {
        let mut rest = bytes.strip_prefix(MAGIC).ok_or(TreeError::Damaged("no header"))?;
        let mut entries = Vec::new();
        let take = |rest: &mut &[u8], count: usize| -> Result<Vec<u8>, TreeError> {
            if rest.len() < count {
                return Err(TreeError::Damaged("truncated"));
            }
            let (head, tail) = rest.split_at(count);
            *rest = tail;
            Ok(head.to_vec())
        };
        let length = |rest: &mut &[u8]| -> Result<usize, TreeError> {
            let bytes = take(rest, 4)?;
            Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
        };
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| TreeError::Damaged("a name is not UTF-8"));
        while !rest.is_empty() {
            let kind = take(&mut rest, 1)?[0];
            let path_length = length(&mut rest)?;
            let path = text(take(&mut rest, path_length)?)?;
            let kind = match kind {
                0 => EntryKind::Directory,
                1 | 2 => {
                    let digest_bytes: [u8; 32] = take(&mut rest, 32)?
                        .try_into()
                        .map_err(|_| TreeError::Damaged("digest"))?;
                    let size_bytes: [u8; 8] = take(&mut rest, 8)?.try_into().map_err(|_| TreeError::Damaged("size"))?;
                    EntryKind::File {
                        digest: Digest::from_bytes(digest_bytes),
                        size: u64::from_le_bytes(size_bytes),
                        executable: kind == 2,
                    }
                }
                3 => {
                    let target_length = length(&mut rest)?;
                    EntryKind::Symlink {
                        target: text(take(&mut rest, target_length)?)?,
                    }
                }
                _ => return Err(TreeError::Damaged("unknown entry kind")),
            };
            entries.push(Entry { path, kind });
        }
        Ok(Self { entries })
    }

    /// Stores every file under `root` and the tree itself; returns the tree
    /// and its digest. Links are recorded, never followed.
    pub fn ingest(store: &Store, root: &Path) -> Result<(Self, Digest), TreeError> {
        let mut entries = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let dir = root.join(&relative);
            for entry in fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
                let entry = entry.map_err(StoreError::io(&dir))?;
                let path = relative.join(entry.file_name());
                let full = entry.path();
                let name = path
                    .to_str()
                    .ok_or_else(|| TreeError::NotUtf8(path.clone()))?
                    .to_owned();
                let metadata = fs::symlink_metadata(&full).map_err(StoreError::io(&full))?;
                let kind = if metadata.is_dir() {
                    pending.push(path);
                    EntryKind::Directory
                } else if metadata.is_file() {
                    let (digest, size) = store.put_file(&full, None)?;
                    EntryKind::File {
                        digest,
                        size,
                        executable: metadata.permissions().mode() & 0o111 != 0,
                    }
                } else if metadata.is_symlink() {
                    let target = fs::read_link(&full).map_err(StoreError::io(&full))?;
                    let target = target
                        .to_str()
                        .ok_or_else(|| TreeError::NotUtf8(target.clone()))?
                        .to_owned();
                    EntryKind::Symlink { target }
                } else {
                    return Err(TreeError::Special(path));
                };
                entries.push(Entry { path: name, kind });
            }
        }
        let tree = Self::new(entries);
        let digest = store.put_bytes(&tree.encode())?;
        Ok((tree, digest))
    }

    /// Stores the tree itself (its files must already be stored).
    pub fn store(&self, store: &Store) -> Result<Digest, StoreError> {
        store.put_bytes(&self.encode())
    }

    /// Reads the tree stored as `digest`.
    pub fn load(store: &Store, digest: &Digest) -> Result<Self, TreeError> {
        Self::decode(&store.read(digest)?)
    }

    /// Lays the tree out in the empty or absent folder `dest`, checking each
    /// blob against its digest first, so nothing corrupt is ever written.
    pub fn materialize(&self, store: &Store, dest: &Path, how: Materialize) -> Result<(), TreeError> {
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| TreeError::Store(StoreError::Io { path, source })
        };
        // One `mkdir` for `dest`, made or (a scratch folder) already there.
        match fs::create_dir(dest) {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
                fs::create_dir_all(dest).map_err(io_error(dest))?;
            }
            _ => {}
        }
        // Folders made so far: each is made once, not asked for again with
        // every file in it.
        let mut made: HashSet<PathBuf> = HashSet::from([dest.to_owned()]);
        let mut make = |folder: &Path| -> Result<(), TreeError> {
            if !made.contains(folder) {
                fs::create_dir_all(folder).map_err(io_error(folder))?;
                made.insert(folder.to_owned());
            }
            Ok(())
        };
        for entry in &self.entries {
            let path = dest.join(&entry.path);
            match &entry.kind {
                EntryKind::Directory => make(&path)?,
                EntryKind::File { digest, executable, .. } => {
                    store.verify(digest)?;
                    if let Some(parent) = path.parent() {
                        make(parent)?;
                    }
                    let blob = store.blob_path(digest);
                    match how {
                        Materialize::Link => fs::hard_link(&blob, &path).or_else(|_| copy(&blob, &path, false)),
                        Materialize::Copy => copy(&blob, &path, *executable),
                    }
                    .map_err(io_error(&path))?;
                }
                EntryKind::Symlink { target } => {
                    if let Some(parent) = path.parent() {
                        make(parent)?;
                    }
                    std::os::unix::fs::symlink(target, &path).map_err(io_error(&path))?;
                }
            }
        }
        Ok(())
    }

    /// The paths whose entries differ between `self` and `other`, each with
    /// how: `+` only in `other`, `-` only in `self`, `~` changed.
    pub fn diff(&self, other: &Tree) -> Vec<String> {
        let mut changes = Vec::new();
        let (mut left, mut right) = (self.entries.iter().peekable(), other.entries.iter().peekable());
        loop {
            match (left.peek(), right.peek()) {
                (None, None) => break,
                (Some(l), Some(r)) if l.path == r.path => {
                    if l.kind != r.kind {
                        changes.push(format!("~ {}", l.path));
                    }
                    left.next();
                    right.next();
                }
                (Some(l), Some(r)) if l.path < r.path => {
                    changes.push(format!("- {}", l.path));
                    left.next();
                }
                (Some(l), None) => {
                    changes.push(format!("- {}", l.path));
                    left.next();
                }
                (_, Some(r)) => {
                    changes.push(format!("+ {}", r.path));
                    right.next();
                }
            }
        }
        changes
    }
}

/// Appends one entry's canonical encoding.
fn encode_entry(out: &mut Vec<u8>, path: &str, kind: &EntryKind) {
    let code = match kind {
        EntryKind::Directory => 0,
        EntryKind::File { executable: false, .. } => 1,
        EntryKind::File { executable: true, .. } => 2,
        EntryKind::Symlink { .. } => 3,
    };
    out.push(code);
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    match kind {
        EntryKind::Directory => {}
        EntryKind::File { digest, size, .. } => {
            out.extend_from_slice(digest.as_bytes());
            out.extend_from_slice(&size.to_le_bytes());
        }
        EntryKind::Symlink { target } => {
            out.extend_from_slice(&(target.len() as u32).to_le_bytes());
            out.extend_from_slice(target.as_bytes());
        }
    }
}

/// A writable copy of a blob, with the executable bit restored.
fn copy(blob: &Path, path: &Path, executable: bool) -> io::Result<()> {
    fs::copy(blob, path)?;
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::cache_dir::CacheDir;

    #[test]
    fn trees_encode_and_decode_every_kind_of_entry() {
        let tree = Tree::new(vec![
            Entry {
                path: "b/file with\ttab\nand newline".into(),
                kind: EntryKind::File {
                    digest: Digest::of(b"x"),
                    size: 1,
                    executable: true,
                },
            },
            Entry {
                path: "a".into(),
                kind: EntryKind::Directory,
            },
            Entry {
                path: "é/link".into(),
                kind: EntryKind::Symlink { target: "../a".into() },
            },
        ]);
        assert_eq!(tree.entries()[0].path, "a", "sorted");
        let files = Tree::new(vec![
            Entry {
                path: "a".into(),
                kind: EntryKind::File {
                    digest: Digest::of(b"a"),
                    size: 1,
                    executable: false,
                },
            },
            Entry {
                path: "b/c".into(),
                kind: EntryKind::File {
                    digest: Digest::of(b"c"),
                    size: 2,
                    executable: true,
                },
            },
        ]);
        let file = |digest, size, executable| EntryKind::File {
            digest,
            size,
            executable,
        };
        let streamed = Tree::digest_of_files([
            ("a", file(Digest::of(b"a"), 1, false)),
            ("b/c", file(Digest::of(b"c"), 2, true)),
        ]);
        assert_eq!(streamed, files.digest(), "streaming and building agree");
        let decoded = Tree::decode(&tree.encode()).expect("decodes");
        assert_eq!(decoded, tree);
        assert!(Tree::decode(&tree.encode()[..24]).is_err(), "cut inside an entry");
        assert!(Tree::decode(b"not a tree").is_err());
    }

    #[test]
    fn the_digest_ignores_where_and_when_but_not_what() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(dir.path().join("cache")).expect("cache");
        let store = Store::open(&cache).expect("store");
        let make = |name: &str, contents: &str| {
            let root = dir.path().join(name);
            fs::create_dir_all(root.join("sub")).expect("mkdir");
            fs::write(root.join("sub/a.txt"), contents).expect("write");
            root
        };
        let one = make("one", "same");
        let two = make("elsewhere/two", "same");
        let three = make("three", "different");
        let digest = |root: &Path| Tree::ingest(&store, root).expect("ingests").1;
        assert_eq!(digest(&one), digest(&two));
        assert_ne!(digest(&one), digest(&three));
        fs::set_permissions(two.join("sub/a.txt"), fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_ne!(digest(&one), digest(&two), "the executable bit counts");

        let (tree, _) = Tree::ingest(&store, &three).expect("ingests");
        assert_eq!(Tree::new(vec![]).diff(&tree), ["+ sub", "+ sub/a.txt"]);
        let out = dir.path().join("restored");
        tree.materialize(&store, &out, Materialize::Copy).expect("restores");
        assert_eq!(fs::read_to_string(out.join("sub/a.txt")).expect("read"), "different");
    }
}
