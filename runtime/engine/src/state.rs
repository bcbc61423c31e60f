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

use crate::output_dir::OutputRoot;
use crate::stage_key::KeyParts;
use crate::workspace::{Listing, Stamp, Workspace, WorkspaceError, WorkspaceFile, racy_after};
use cairn_cas::hash_open;
use cairn_component::{BinaryFormat, Digest};
use cairn_core::cache_dir::{CacheDir, write_atomically};
use cairn_core::observer::Annotation;
use cairn_report::Status;
use cairn_sandbox::Outcome;

mod file_table;

use file_table::{FileRecord, FileTable};

/// Bumped when the format changes; an older file is ignored.
const VERSION: u32 = 9;

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
    /// Why its result is not reused (an impure grant, `cache = false`), so
    /// `cairn explain` can say why it ran.
    pub not_reused: Option<String>,
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

/// What is kept about the workspace's files, stages and components. On
/// disk: the format version (`u32`), the length of the encoded [`Records`]
/// (`u64`), the records (postcard), then the file table, which stays where
/// it was read.
#[derive(Default)]
struct StateFile {
    /// The file table is `files[files_start..]`: after a load, the bytes
    /// read (the records before it were decoded); after a change, a new table.
    files: Vec<u8>,
    files_start: usize,
    records: Records,
}

/// The part of the state decoded when it is loaded.
#[derive(Default, Serialize, Deserialize)]
struct Records {
    stages: HashMap<String, StageRecord>,
    /// The digest of each `.wasm` file a stage used, by path.
    components: HashMap<String, ComponentRecord>,
}

/// A component file's digest, remembered with its stamp like a file's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// The file's stamp when it was read.
    pub stamp: Stamp,
    /// Its digest.
    pub digest: Digest,
    /// What its header says it is.
    pub format: BinaryFormat,
}

impl StateFile {
    /// Bytes before the records: the version and the records' length.
    const HEADER: usize = 4 + 8;

    fn decode(bytes: Vec<u8>) -> Option<Self> {
        let (version, rest) = bytes.split_first_chunk::<4>()?;
        let (length, rest) = rest.split_first_chunk::<8>()?;
        if u32::from_le_bytes(*version) != VERSION {
            return None;
        }
        let length = usize::try_from(u64::from_le_bytes(*length)).ok()?;
        let records = postcard::from_bytes(rest.get(..length)?).ok()?;
        Some(Self {
            files_start: Self::HEADER + length,
            files: bytes,
            records,
        })
    }

    fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let records = postcard::to_stdvec(&self.records)?;
        let files = self.files.get(self.files_start..).unwrap_or_default();
        let mut bytes = Vec::with_capacity(Self::HEADER + records.len() + files.len());
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&(records.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&records);
        bytes.extend_from_slice(files);
        Ok(bytes)
    }

    fn table(&self) -> FileTable<'_> {
        FileTable::parse(self.files.get(self.files_start..).unwrap_or_default())
    }
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
            .and_then(StateFile::decode)
            .unwrap_or_default();
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
        let bytes = self.data.encode().map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// The digest of each file of `workspace` whose index is in `wanted`
    /// (sorted, each once), as a list parallel to `workspace.files()`: remembered when
    /// the file's stamp is unchanged, hashed (in parallel) otherwise.
    pub fn digests(&mut self, workspace: &Workspace, wanted: &[usize]) -> Result<Vec<Option<Digest>>, WorkspaceError> {
        let files = workspace.files();
        let table = self.data.table();
        // Both lists are sorted by path: each chunk of wanted files finds
        // its first in the table, then walks on from there.
        let remembered: Vec<Option<Digest>> = wanted
            .par_chunks(2048)
            .flat_map_iter(|chunk| {
                let mut cursor = chunk.first().map_or(0, |&first| table.seek(&files[first].path));
                chunk.iter().map(move |&index| {
                    let file = &files[index];
                    let (at, found) = table.find(cursor, &file.path);
                    cursor = at;
                    found
                        .filter(|record| record.stamp == file.stamp)
                        .map(|record| record.digest)
                })
            })
            .collect();
        let stale: Vec<usize> = wanted
            .iter()
            .zip(&remembered)
            .filter(|(_, digest)| digest.is_none())
            .map(|(&index, _)| index)
            .collect();
        // Usually every file is wanted, and the list is already the answer.
        let mut digests = if wanted.len() == files.len() {
            remembered
        } else {
            let mut digests = vec![None; files.len()];
            for (&index, digest) in wanted.iter().zip(remembered) {
                digests[index] = digest;
            }
            digests
        };
        if stale.is_empty() {
            return Ok(digests);
        }
        let hashed: Vec<(usize, Digest)> = stale
            .par_iter()
            .map(|&index| input_digest(workspace, &files[index]).map(|digest| (index, digest)))
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
            let mut updated: Vec<(&str, FileRecord)> = table
                .iter()
                .map(|(path, record)| (path, remembered.remove(path).unwrap_or(record)))
                .collect();
            updated.extend(remembered);
            updated.sort_unstable_by(|left, right| left.0.cmp(right.0));
            updated.dedup_by(|left, right| left.0 == right.0);
            self.data.files = FileTable::encode(&updated);
            self.data.files_start = 0;
            self.dirty = true;
        }
        Ok(digests)
    }

    /// What is remembered about `stage`.
    pub fn stage(&self, stage: &str) -> Option<&StageRecord> {
        self.data.records.stages.get(stage)
    }

    /// Remembers a run of `stage`: it becomes the last run, and the last
    /// run becomes the previous one when the key changed.
    pub fn record_run(&mut self, stage: &str, run: RunRecord) {
        let record = self.data.records.stages.entry(stage.to_owned()).or_default();
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

    /// Remembers that the last run of `stage` was reused as it stands (its
    /// result was already in `cairn-out/`), as [`record_run`](Self::record_run)
    /// would with a copy of that run marked `cached`, without the copy.
    pub fn record_reused(&mut self, stage: &str) {
        if let Some(last) = self
            .data
            .records
            .stages
            .get_mut(stage)
            .and_then(|record| record.last.as_mut())
            && last.status != Status::Cached.as_str()
        {
            Status::Cached.as_str().clone_into(&mut last.status);
            self.dirty = true;
        }
    }

    /// The remembered digest and format of the component file at `path`,
    /// if its stamp is still `stamp`.
    pub fn component(&self, path: &Path, stamp: &Stamp) -> Option<&ComponentRecord> {
        self.data
            .records
            .components
            .get(path.to_string_lossy().as_ref())
            .filter(|record| record.stamp == *stamp)
    }

    /// Every remembered component file, by path.
    pub fn components(&self) -> impl Iterator<Item = (&str, &ComponentRecord)> {
        self.data
            .records
            .components
            .iter()
            .map(|(path, record)| (path.as_str(), record))
    }

    /// Remembers the digest and format of the component file at `path`,
    /// read when it had `stamp`, unless it changed too recently for its
    /// stamp to tell a later change (see [`racy_after`]).
    pub fn record_component(&mut self, path: &Path, record: ComponentRecord) {
        if !record.stamp.settled(racy_after()) {
            return;
        }
        let path = path.to_string_lossy();
        if self.data.records.components.get(path.as_ref()) != Some(&record) {
            self.data.records.components.insert(path.into_owned(), record);
            self.dirty = true;
        }
    }

    /// Remembers what `cairn-out/<stage>/` now holds.
    pub fn record_published(&mut self, stage: &str, published: Published) {
        let record = self.data.records.stages.entry(stage.to_owned()).or_default();
        if record.published.as_ref() != Some(&published) {
            record.published = Some(published);
            self.dirty = true;
        }
    }
}

/// What stands for an input in its stage's key: a file's contents, or a
/// symbolic link's target text (a link is data, never followed, so what it
/// points at never enters a key or a snapshot).
fn input_digest(workspace: &Workspace, file: &WorkspaceFile) -> Result<Digest, WorkspaceError> {
    let unreadable = |message: String| WorkspaceError::Read {
        path: file.path.clone(),
        message,
    };
    if file.stamp.is_symlink() {
        let target = workspace
            .link_target(file)
            .map_err(|error| unreadable(error.to_string()))?;
        Ok(Digest::of(target.as_bytes()))
    } else {
        workspace
            .open_input(&file.path)
            .and_then(hash_open)
            .map_err(|error| unreadable(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::workspace::RACY_WINDOW;

    /// A cache and an empty workspace beside it, in a folder removed on drop.
    fn cache_and_workspace() -> (tempfile::TempDir, CacheDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(dir.path().join("cache")).expect("cache");
        let root = dir.path().join("workspace");
        std::fs::create_dir_all(&root).expect("mkdir");
        (dir, cache, root)
    }

    #[test]
    fn unchanged_files_are_not_hashed_again_and_the_state_survives_a_save() {
        let (_dir, cache, root) = cache_and_workspace();
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
        let mut records: Vec<(&str, FileRecord)> = reloaded.data.table().iter().collect();
        assert_eq!(records.len(), 1, "remembered");
        records[0].1.digest = Digest::of(b"remembered");
        reloaded.data.files = FileTable::encode(&records);
        reloaded.data.files_start = 0;
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

    #[test]
    fn a_reused_run_is_remembered_as_cached_and_saved() {
        let (_dir, cache, root) = cache_and_workspace();
        let run = RunRecord {
            key: Digest::of(b"key"),
            parts: EncodedParts(Vec::new()),
            status: Status::Succeeded.as_str().to_owned(),
            outputs: Digest::of(b"outputs"),
            outcome: Outcome::default(),
            log: None,
            annotations: Vec::new(),
            not_reused: None,
        };
        let mut state = WorkspaceState::load(&cache, &root);
        state.record_run("build", run.clone());
        state.save().expect("saved");

        let mut state = WorkspaceState::load(&cache, &root);
        state.record_reused("build");
        state.record_reused("never-ran");
        state.save().expect("saved");
        let state = WorkspaceState::load(&cache, &root);
        let last = state.stage("build").and_then(|record| record.last.clone());
        assert_eq!(
            last,
            Some(RunRecord {
                status: Status::Cached.as_str().to_owned(),
                ..run
            })
        );
        assert!(state.stage("never-ran").is_none());
    }

    #[test]
    fn a_damaged_state_file_is_a_fresh_start() {
        let (_dir, cache, root) = cache_and_workspace();
        let mut state = WorkspaceState::load(&cache, &root);
        state.record_published(
            "build",
            Published {
                outputs: Digest::of(b"outputs"),
                stamps: Vec::new(),
            },
        );
        state.save().expect("saved");
        let saved = std::fs::read(&state.path).expect("read");
        for damaged in [&saved[..3], &saved[..saved.len() / 2], &[0xff; 64][..]] {
            std::fs::write(&state.path, damaged).expect("write");
            let state = WorkspaceState::load(&cache, &root);
            assert!(state.stage("build").is_none());
            assert_eq!(state.data.table().len(), 0);
        }
    }

    #[test]
    fn a_component_digest_is_remembered_by_stamp_once_the_stamp_can_be_trusted() {
        let (_dir, cache, root) = cache_and_workspace();
        let path = root.join("stage.wasm");
        let record = |modified: i64| ComponentRecord {
            stamp: Stamp {
                size: 8,
                modified,
                changed: modified,
                inode: 7,
                mode: 0o100644,
            },
            digest: Digest::of(b"stage"),
            format: BinaryFormat::Component,
        };
        let now = racy_after() + RACY_WINDOW.as_nanos() as i64;
        let mut state = WorkspaceState::load(&cache, &root);
        state.record_component(&path, record(now));
        assert!(
            state.component(&path, &record(now).stamp).is_none(),
            "too recent to trust"
        );
        state.record_component(&path, record(1_000));
        state.save().expect("saved");

        let state = WorkspaceState::load(&cache, &root);
        assert_eq!(state.component(&path, &record(1_000).stamp), Some(&record(1_000)));
        assert!(state.component(&path, &record(2_000).stamp).is_none(), "changed since");
        assert!(
            state
                .component(&root.join("other.wasm"), &record(1_000).stamp)
                .is_none()
        );
    }

    proptest::proptest! {
        /// Fuzz target: a state file damaged any way is a fresh start, never
        /// a panic (the file is the cache's, and a disk can flip bits).
        #[test]
        fn fuzz_state_files(edits in cairn_core::mutate::edits()) {
            let (_dir, cache, root) = cache_and_workspace();
            std::fs::write(root.join("a.txt"), "a").expect("write");
            let workspace = Workspace::scan(&root, &["**"]).expect("scan");
            let mut state = WorkspaceState::load(&cache, &root);
            state.digests(&workspace, &[0]).expect("hashed");
            state.record_published("build", Published { outputs: Digest::of(b"outputs"), stamps: Vec::new() });
            state.save().expect("saved");
            let saved = std::fs::read(&state.path).expect("read");
            std::fs::write(&state.path, cairn_core::mutate::mutate(&saved, &edits)).expect("write");
            let mut state = WorkspaceState::load(&cache, &root);
            let _ = state.stage("build");
            let _ = state.digests(&workspace, &[0]);
        }
    }
}
