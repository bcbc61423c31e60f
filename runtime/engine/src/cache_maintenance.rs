//! `cairn cache stats | verify | gc | clear`: looking after the cache folder.
//!
//! `verify`, `gc` and `clear` hold the store's lock exclusively, so they wait
//! for running pipelines and no pipeline starts while they delete.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rayon::prelude::*;

use cairn_cas::{ActionEntry, EntryKind, Store, StoreError, Tree, hash_file};
use cairn_core::Digest;
use cairn_core::cache_dir::CacheDir;
use cairn_core::units::ByteSize;

/// Sizes of the cache's parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Content blobs: count and bytes.
    pub blobs: (u64, u64),
    /// Action cache entries: count and bytes.
    pub actions: (u64, u64),
    /// Compiled components: count and bytes.
    pub compiled: (u64, u64),
    /// Everything else (stage builds, cargo's target folder, workspace state, scratch): bytes.
    pub other: u64,
}

impl Stats {
    /// The whole cache, in bytes.
    pub fn total(&self) -> u64 {
        self.blobs.1 + self.actions.1 + self.compiled.1 + self.other
    }
}

/// What `verify` found and removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs rehashed.
    pub blobs: u64,
    /// Blobs whose contents did not match their name, removed.
    pub corrupt_blobs: Vec<String>,
    /// Action entries read.
    pub actions: u64,
    /// Entries unreadable or naming a missing blob, removed.
    pub broken_actions: Vec<String>,
    /// Compiled components checked.
    pub compiled: u64,
    /// Compiled components with a bad trailer, removed.
    pub corrupt_compiled: Vec<String>,
    /// Half-written files left by interrupted processes, removed.
    pub leftovers: u64,
}

impl VerifyReport {
    /// Whether anything was damaged.
    pub fn clean(&self) -> bool {
        self.corrupt_blobs.is_empty() && self.broken_actions.is_empty() && self.corrupt_compiled.is_empty()
    }
}

/// What `gc` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Size of blobs and actions before.
    pub before: u64,
    /// Size of blobs and actions after.
    pub after: u64,
    /// Action entries and pulled components evicted, least recently used first.
    pub actions: u64,
    /// Blobs deleted.
    pub blobs: u64,
}

/// Measures the cache.
pub fn stats(cache: &CacheDir) -> io::Result<Stats> {
    let root = cache.root();
    let blobs = measure(&root.join("cas-v1/blobs"));
    let actions = measure(&root.join("cas-v1/actions"));
    let compiled = measure(&root.join("compiled-v1"));
    let mut other = 0;
    for name in [
        "stage-builds-v1",
        "cargo-target",
        "workspaces-v1",
        "pipelines-v1",
        "tmp",
        "cas-v1/tmp",
    ] {
        other += measure(&root.join(name)).1;
    }
    Ok(Stats {
        blobs,
        actions,
        compiled,
        other,
    })
}

/// Rehashes every blob and checks every entry, removing what is damaged.
pub fn verify(cache: &CacheDir) -> Result<VerifyReport, StoreError> {
    let store = Store::open_exclusive(cache)?;
    let mut report = VerifyReport {
        leftovers: clear_folder(store.tmp_dir()),
        ..VerifyReport::default()
    };
    let blobs = files_under(store.blobs_dir());
    report.blobs = blobs.len() as u64;
    report.corrupt_blobs = blobs
        .par_iter()
        .filter_map(|path| {
            let name = blob_name(store.blobs_dir(), path)?;
            let intact = hash_file(path).is_ok_and(|digest| digest.to_hex() == name);
            (!intact).then(|| {
                let _ = fs::remove_file(path);
                name
            })
        })
        .collect();
    for path in files_under(store.actions_dir()) {
        report.actions += 1;
        let sound = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ActionEntry>(&bytes).ok())
            .is_some_and(|entry| {
                references(&store, &entry).is_some_and(|blobs| blobs.iter().all(|blob| store.has_blob(blob)))
            });
        if !sound {
            let _ = fs::remove_file(&path);
            report.broken_actions.push(
                path.file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    for (path, digest) in roots(&store) {
        if !store.has_blob(&digest) {
            let _ = fs::remove_file(&path);
            report.broken_actions.push(format!("root {}", digest.to_hex()));
        }
    }
    for path in files_under(&cache.compiled()) {
        let Some(intact) = cairn_sandbox::verify_compiled_entry(&path) else {
            continue;
        };
        report.compiled += 1;
        if !intact {
            report.corrupt_compiled.push(path.display().to_string());
        }
    }
    Ok(report)
}

/// Shrinks the store to at most `max_size`: first blobs no action refers to
/// (input copies, stale outputs), then the least recently used actions and
/// the blobs only they referred to.
pub fn gc(cache: &CacheDir, max_size: ByteSize) -> Result<GcReport, StoreError> {
    let store = Store::open_exclusive(cache)?;
    clear_folder(store.tmp_dir());
    let mut blob_sizes: HashMap<Digest, u64> = HashMap::new();
    for path in files_under(store.blobs_dir()) {
        if let Some(digest) = blob_name(store.blobs_dir(), &path).and_then(|name| format!("blake3:{name}").parse().ok())
        {
            blob_sizes.insert(digest, fs::metadata(&path).map_or(0, |metadata| metadata.len()));
        }
    }
    let mut actions: Vec<(SystemTime, PathBuf, u64, Vec<Digest>)> = Vec::new();
    for path in files_under(store.actions_dir()) {
        let metadata = fs::metadata(&path).ok();
        let entry = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ActionEntry>(&bytes).ok());
        let blobs = entry.as_ref().and_then(|entry| references(&store, entry));
        match (metadata, blobs) {
            (Some(metadata), Some(blobs)) => {
                actions.push((
                    metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    path,
                    metadata.len(),
                    blobs,
                ));
            }
            _ => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    // Roots (pulled components, deployed outputs) compete with actions for
    // space, by last use; a root that is a tree keeps its files too.
    for (path, digest) in roots(&store) {
        let used = fs::metadata(&path).and_then(|metadata| metadata.modified());
        let blobs = tree_blobs(&store, &digest).unwrap_or_else(|| vec![digest]);
        actions.push((used.unwrap_or(SystemTime::UNIX_EPOCH), path, 0, blobs));
    }
    let mut references: HashMap<Digest, usize> = HashMap::new();
    for (_, _, _, blobs) in &actions {
        for blob in blobs {
            *references.entry(*blob).or_default() += 1;
        }
    }
    let size = |blob_sizes: &HashMap<Digest, u64>, actions: &[(SystemTime, PathBuf, u64, Vec<Digest>)]| {
        blob_sizes.values().sum::<u64>() + actions.iter().map(|(_, _, size, _)| size).sum::<u64>()
    };
    let mut report = GcReport {
        before: size(&blob_sizes, &actions),
        ..GcReport::default()
    };
    let remove_blob = |digest: &Digest, blob_sizes: &mut HashMap<Digest, u64>, report: &mut GcReport| {
        if blob_sizes.remove(digest).is_some() {
            let _ = fs::remove_file(store.blob_path(digest));
            report.blobs += 1;
        }
    };
    if report.before > max_size.0 {
        let unreferenced: Vec<Digest> = blob_sizes
            .keys()
            .filter(|digest| !references.contains_key(digest))
            .copied()
            .collect();
        for digest in unreferenced {
            remove_blob(&digest, &mut blob_sizes, &mut report);
        }
    }
    actions.sort_by_key(|(used, ..)| *used);
    let mut evicted = 0;
    while size(&blob_sizes, &actions[evicted..]) > max_size.0 && evicted < actions.len() {
        let (_, path, _, blobs) = &actions[evicted];
        let _ = fs::remove_file(path);
        report.actions += 1;
        for blob in blobs {
            if let Some(count) = references.get_mut(blob) {
                *count -= 1;
                if *count == 0 {
                    references.remove(blob);
                    remove_blob(blob, &mut blob_sizes, &mut report);
                }
            }
        }
        evicted += 1;
    }
    report.after = size(&blob_sizes, &actions[evicted..]);
    Ok(report)
}

/// Removes everything cairn can recompute, except the cache's own marker
/// files; the deployment history is a record, not a cache, and stays.
pub fn clear(cache: &CacheDir) -> Result<u64, StoreError> {
    let before = stats(cache).map_err(StoreError::io(cache.root()))?.total();
    let store = Store::open_exclusive(cache)?;
    for folder in [
        store.blobs_dir(),
        store.actions_dir(),
        store.roots_dir(),
        store.tmp_dir(),
    ] {
        clear_folder(folder);
    }
    for name in [
        "compiled-v1",
        "stage-builds-v1",
        "workspaces-v1",
        "pipelines-v1",
        "cargo-target",
        "tmp",
    ] {
        let path = cache.root().join(name);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(StoreError::io(&path))?;
        }
    }
    Ok(before)
}

/// Every blob an action entry needs: its outputs tree, the files in it, and its log.
fn references(store: &Store, entry: &ActionEntry) -> Option<Vec<Digest>> {
    let mut blobs = tree_blobs(store, &entry.outputs)?;
    if entry.has_log {
        blobs.push(entry.log);
    }
    let unique: HashSet<Digest> = blobs.drain(..).collect();
    Some(unique.into_iter().collect())
}

/// A tree's blob and the blobs of its files; `None` when `digest` is not
/// a tree in the store.
fn tree_blobs(store: &Store, digest: &Digest) -> Option<Vec<Digest>> {
    let tree = Tree::load(store, digest).ok()?;
    let mut blobs: Vec<Digest> = tree
        .entries()
        .iter()
        .filter_map(|entry| match entry.kind {
            EntryKind::File { digest, .. } => Some(digest),
            _ => None,
        })
        .collect();
    blobs.push(*digest);
    Some(blobs)
}

/// Every root and the blob it keeps.
fn roots(store: &Store) -> Vec<(PathBuf, Digest)> {
    files_under(store.roots_dir())
        .into_iter()
        .filter_map(|path| {
            let digest = format!("blake3:{}", path.file_name()?.to_string_lossy()).parse().ok()?;
            Some((path, digest))
        })
        .collect()
}

/// The hex name of a blob file (`ab/cdef...` → `abcdef...`).
fn blob_name(blobs: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(blobs).ok()?;
    let name: String = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect();
    (name.len() == 64).then_some(name)
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    cairn_core::files::regular_files(root)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

fn measure(root: &Path) -> (u64, u64) {
    cairn_core::files::regular_files(root)
        .iter()
        .fold((0, 0), |(count, bytes), (_, size)| (count + 1, bytes + size))
}

/// Empties a folder, returning how many entries it held.
fn clear_folder(folder: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(folder) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if result.is_ok() {
            removed += 1;
        }
    }
    removed
}
