//! What cairn remembers about one workspace between runs, kept in the cache
//! (not in the workspace): the digest of each input file with the stamp it
//! had when hashed, what each stage's last two runs observed (for
//! `cairn explain`), and what each stage last published to `cairn-out/`.
//!
//! All of it is an optimization or a report: losing the file costs a rehash
//! and a restore from the cache, never a wrong result. It is read once per
//! run and written once, atomically, only when something changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cache_dir::{CacheDir, write_atomically};
use crate::cas::{StoreError, hash_file};
use crate::component::Digest;
use crate::observer::Annotation;
use crate::output_dir::OutputRoot;
use crate::sandbox::Outcome;
use crate::stage_key::KeyParts;
use crate::workspace::{Listing, Stamp, Workspace, racy_after};

/// Bumped when the format changes; an older file is ignored.
const VERSION: u32 = 3;

/// A remembered file digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileRecord {
    stamp: Stamp,
    digest: Digest,
}

/// [`KeyParts`] kept encoded, so loading the state does not rebuild the
/// parts of every stage on every run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedParts(Vec<u8>);

impl EncodedParts {
    /// Encodes `parts`.
    pub fn new(parts: &KeyParts) -> Self {
        Self(postcard::to_stdvec(parts).unwrap_or_default())
    }

    /// The parts, if they decode.
    pub fn decode(&self) -> Option<KeyParts> {
        postcard::from_bytes(&self.0).ok()
    }
}

/// One run of a stage, as remembered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The stage key.
    pub key: Digest,
    /// What went into it, encoded: only `cairn explain` reads it.
    pub parts: EncodedParts,
    /// Whether the stage ran (`succeeded`) or its result was reused (`cached`).
    pub status: String,
    /// Its outputs tree.
    pub outputs: Digest,
    /// What it returned.
    pub outcome: Outcome,
    /// Its log, when it had any line.
    pub log: Option<Digest>,
    /// Its annotations.
    pub annotations: Vec<Annotation>,
}

/// What was last published to `cairn-out/<stage>/`, with the stamp of every
/// path in it (the folder itself first), so an untouched folder is
/// recognized with a `stat` per path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The outputs tree it holds.
    pub outputs: Digest,
    /// `(path relative to the folder, stamp)`; `""` is the folder.
    pub stamps: Vec<(String, Stamp)>,
}

impl Published {
    /// Records what `folder` holds now, as the outputs tree `outputs`.
    pub fn record(folder: &Path, outputs: Digest) -> std::io::Result<Self> {
        let mut stamps = vec![(String::new(), Stamp::of(&folder.symlink_metadata()?))];
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            for entry in std::fs::read_dir(folder.join(&relative))? {
                let entry = entry?;
                let path = relative.join(entry.file_name());
                let metadata = entry.path().symlink_metadata()?;
                if metadata.is_dir() {
                    pending.push(path.clone());
                }
                stamps.push((path.to_string_lossy().into_owned(), Stamp::of(&metadata)));
            }
        }
        Ok(Self { outputs, stamps })
    }

    /// Whether `cairn-out/<stage>/` still holds exactly what was recorded.
    pub fn unchanged(&self, root: &OutputRoot, stage: &str) -> bool {
        let mut path = String::with_capacity(stage.len() + 64);
        self.stamps.iter().all(|(relative, stamp)| {
            path.clear();
            path.push_str(stage);
            if !relative.is_empty() {
                path.push('/');
                path.push_str(relative);
            }
            root.stamp(&path).is_ok_and(|now| now == *stamp)
        })
    }
}

/// What is remembered about one stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Its most recent run.
    pub last: Option<RunRecord>,
    /// The most recent run with a different key, for `cairn explain`.
    pub previous: Option<RunRecord>,
    /// What its folder in `cairn-out/` holds.
    pub published: Option<Published>,
}

/// The remembered file records, decoded one at a time from their encoding
/// (a postcard sequence: a length, then each `(path, record)`); a damaged
/// encoding ends the sequence early, so those files are hashed again.
struct FileRecords<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> FileRecords<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        match postcard::take_from_bytes::<usize>(bytes) {
            Ok((left, rest)) => Self { rest, left },
            Err(_) => Self { rest: &[], left: 0 },
        }
    }
}

impl<'a> Iterator for FileRecords<'a> {
    type Item = (&'a str, FileRecord);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        match postcard::take_from_bytes::<(&'a str, FileRecord)>(self.rest) {
            Ok((record, rest)) => {
                self.rest = rest;
                self.left -= 1;
                Some(record)
            }
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// `Vec<(path, FileRecord)>` sorted by path, like the workspace's file
    /// list it is matched against, kept encoded: it is read with borrowed
    /// paths, so ten thousand records cost no allocation per path.
    files: Vec<u8>,
    stages: HashMap<String, StageRecord>,
}

/// Where something remembered about the workspace at `root` is kept:
/// `workspaces-v1/<id>.<extension>` in the cache, the id derived from the
/// workspace's canonical path.
fn workspace_file(cache: &CacheDir, root: &Path, extension: &str) -> PathBuf {
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let name = Digest::of(canonical.to_string_lossy().as_bytes()).to_hex();
    cache
        .root()
        .join("workspaces-v1")
        .join(format!("{}.{extension}", &name[..32]))
}

/// Bumped when the walk hints' format changes; an older file is ignored.
const HINTS_VERSION: u32 = 2;

/// What the last run's walk of the workspace learned, kept apart from the
/// state so it can be read at once, before anything else.
pub struct WalkHints {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// [`WalkHints`], decoded without copying.
#[derive(Debug, Default, Deserialize)]
pub struct Hints<'a> {
    /// The pipeline's `inputs` globs, sorted: the next run walks the
    /// workspace for them while it parses the pipeline, and walks again
    /// only if the pipeline's globs turn out different.
    #[serde(borrow)]
    pub globs: Vec<&'a str>,
    /// Each walked folder's listing, sorted by folder: a folder whose stamp
    /// is unchanged is not read again.
    #[serde(borrow)]
    pub listings: Vec<Listing<'a>>,
}

impl WalkHints {
    /// The hints remembered for the workspace at `root`, if any.
    pub fn load(cache: &CacheDir, root: &Path) -> Self {
        let path = workspace_file(cache, root, "walk");
        let bytes = std::fs::read(&path).unwrap_or_default();
        Self { path, bytes }
    }

    /// The hints; none when there are none or they do not decode.
    pub fn hints(&self) -> Hints<'_> {
        postcard::from_bytes::<(u32, Hints<'_>)>(&self.bytes)
            .ok()
            .filter(|(version, _)| *version == HINTS_VERSION)
            .map(|(_, hints)| hints)
            .unwrap_or_default()
    }

    /// Remembers what this run's walk learned, for the next run.
    pub fn save(&self, globs: &[&str], listings: &[&Listing<'_>]) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let bytes = postcard::to_stdvec(&(HINTS_VERSION, globs, listings)).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }
}

/// The remembered state of one workspace.
pub struct WorkspaceState {
    path: PathBuf,
    data: StateFile,
    dirty: bool,
}

impl WorkspaceState {
    /// The state of the workspace at `root`, or an empty one.
    pub fn load(cache: &CacheDir, root: &Path) -> Self {
        let path = workspace_file(cache, root, "state");
        let data = std::fs::read(&path)
            .ok()
            .and_then(|bytes| postcard::from_bytes::<StateFile>(&bytes).ok())
            .filter(|data| data.version == VERSION)
            .unwrap_or_else(|| StateFile {
                version: VERSION,
                ..StateFile::default()
            });
        Self {
            path,
            data,
            dirty: false,
        }
    }

    /// Writes the state if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let bytes = postcard::to_stdvec(&self.data).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// The digest of each file of `workspace` whose index is in `wanted`
    /// (sorted), as a list parallel to `workspace.files()`: remembered when
    /// the file's stamp is unchanged, hashed (in parallel) otherwise.
    pub fn digests(&mut self, workspace: &Workspace, wanted: &[usize]) -> Result<Vec<Option<Digest>>, StoreError> {
        let files = workspace.files();
        let mut digests = vec![None; files.len()];
        let mut stale = Vec::new();
        // Both lists are sorted by path: walk them together, decoding the
        // records one at a time rather than into a list of ten thousand.
        let mut cursor = FileRecords::new(&self.data.files).peekable();
        for &index in wanted {
            let file = &files[index];
            while cursor.next_if(|(path, _)| *path < file.path.as_str()).is_some() {}
            match cursor.peek() {
                Some((path, record)) if *path == file.path && record.stamp == file.stamp => {
                    digests[index] = Some(record.digest);
                }
                _ => stale.push(index),
            }
        }
        if stale.is_empty() {
            return Ok(digests);
        }
        let hashed: Vec<(usize, Digest)> = stale
            .par_iter()
            .map(|&index| hash_file(&workspace.root().join(&files[index].path)).map(|digest| (index, digest)))
            .collect::<Result<_, _>>()?;
        let racy_after = racy_after();
        let mut remembered: HashMap<&str, FileRecord> = HashMap::new();
        for (index, digest) in hashed {
            digests[index] = Some(digest);
            let file = &files[index];
            if file.stamp.settled(racy_after) {
                remembered.insert(
                    &file.path,
                    FileRecord {
                        stamp: file.stamp,
                        digest,
                    },
                );
            }
        }
        if !remembered.is_empty() {
            let mut updated: Vec<(String, FileRecord)> = FileRecords::new(&self.data.files)
                .map(|(path, record)| (path.to_owned(), remembered.remove(path).unwrap_or(record)))
                .collect();
            updated.extend(remembered.into_iter().map(|(path, record)| (path.to_owned(), record)));
            updated.sort_by(|left, right| left.0.cmp(&right.0));
            self.data.files = postcard::to_stdvec(&updated).map_err(|error| StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(error),
            })?;
            self.dirty = true;
        }
        Ok(digests)
    }

    /// What is remembered about `stage`.
    pub fn stage(&self, stage: &str) -> Option<&StageRecord> {
        self.data.stages.get(stage)
    }

    /// Remembers a run of `stage`: it becomes the last run, and the last
    /// run becomes the previous one when the key changed.
    pub fn record_run(&mut self, stage: &str, run: RunRecord) {
        let record = self.data.stages.entry(stage.to_owned()).or_default();
        if record.last.as_ref() == Some(&run) {
            return;
        }
        if let Some(last) = record.last.take()
            && last.key != run.key
        {
            record.previous = Some(last);
        }
        record.last = Some(run);
        self.dirty = true;
    }

    /// Remembers what `cairn-out/<stage>/` now holds.
    pub fn record_published(&mut self, stage: &str, published: Published) {
        let record = self.data.stages.entry(stage.to_owned()).or_default();
        if record.published.as_ref() != Some(&published) {
            record.published = Some(published);
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::workspace::RACY_WINDOW;

    #[test]
    fn unchanged_files_are_not_hashed_again_and_the_state_survives_a_save() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(dir.path().join("cache")).expect("cache");
        let root = dir.path().join("workspace");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join("a.txt"), "a").expect("write");
        // Old enough not to be racy.
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(root.join("a.txt"))
            .expect("open")
            .set_modified(old)
            .expect("touch");
        std::thread::sleep(RACY_WINDOW + Duration::from_millis(100));

        let workspace = Workspace::scan(&root, &["**"]).expect("scan");
        let mut state = WorkspaceState::load(&cache, &root);
        assert_eq!(
            state.digests(&workspace, &[0]).expect("hashed")[0],
            Some(Digest::of(b"a"))
        );
        state.save().expect("saved");

        // A remembered digest is trusted while the stamp matches: prove it by
        // remembering a wrong one.
        let mut reloaded = WorkspaceState::load(&cache, &root);
        let mut records: Vec<(String, FileRecord)> = postcard::from_bytes(&reloaded.data.files).expect("decodes");
        assert_eq!(records.len(), 1, "remembered");
        records[0].1.digest = Digest::of(b"remembered");
        reloaded.data.files = postcard::to_stdvec(&records).expect("encodes");
        assert_eq!(
            reloaded.digests(&workspace, &[0]).expect("hashed")[0],
            Some(Digest::of(b"remembered"))
        );

        // A changed file is hashed again.
        std::fs::write(root.join("a.txt"), "changed").expect("write");
        let workspace = Workspace::scan(&root, &["**"]).expect("scan");
        assert_eq!(
            reloaded.digests(&workspace, &[0]).expect("hashed")[0],
            Some(Digest::of(b"changed"))
        );
    }
}
