//! Checked pipelines kept in the cache, so that a run whose `cairn.toml` did
//! not change skips parsing and checking it (most of a no-op run's own work
//! for a pipeline of a thousand stages, besides the walk).
//!
//! One entry per workspace, `pipelines-v1/<id>`, replaced when the text
//! changes. An entry is used only for the same text, the same cairn, and the
//! same root as written and as resolved (stage folders and `.wasm` paths are
//! stored resolved against it); local `uses` are checked again on every load,
//! since the files they name can change without the text changing. Anything
//! unexpected (a missing, corrupt or foreign entry) means a full check.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Environment, LoadFailure, Pipeline, Remote, SourceFile, Stage, Uses, check, read, root_of};
use cairn_core::Digest;
use cairn_core::cache_dir::{CacheDir, write_atomically};
use cairn_stage_build::Language;

/// Bumped when the entry's format (or any type in it) changes.
const VERSION: u32 = 9;

/// What an entry holds besides the text it was checked from.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The digest of everything the check depended on: see [`identity`].
    identity: Digest,
    name: String,
    stages: Vec<Stage>,
    environments: BTreeMap<String, Environment>,
    remote: Remote,
}

/// [`super::load`], reusing the checked pipeline cached in `cache` when the
/// file's text is the one it was checked from.
pub fn load_cached(path: &Path, cache: &CacheDir) -> Result<Pipeline, LoadFailure> {
    let text = read(path)?;
    let root = root_of(path);
    let canonical = root.canonicalize().unwrap_or_else(|_| root.clone());
    let identity = identity(path, &canonical, &text);
    let entry_path = entry_path(cache, path, &canonical);
    let cached = std::fs::read(&entry_path)
        .ok()
        .and_then(|bytes| postcard::from_bytes::<Entry>(&bytes).ok())
        .filter(|entry| entry.identity == identity && still_there(&entry.stages));
    if let Some(entry) = cached {
        return Ok(Pipeline {
            name: entry.name,
            root,
            file: SourceFile::new(path, text),
            stages: entry.stages,
            environments: entry.environments,
            remote: entry.remote,
        });
    }
    let pipeline = check(path, text)?;
    let entry = Entry {
        identity,
        name: pipeline.name.clone(),
        stages: pipeline.stages.clone(),
        environments: pipeline.environments.clone(),
        remote: pipeline.remote.clone(),
    };
    let saved = postcard::to_stdvec(&entry)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            if let Some(parent) = entry_path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_atomically(&entry_path, &bytes)
        });
    if let Err(error) = saved {
        tracing::debug!(%error, "cannot keep the checked pipeline; the next run checks it again");
    }
    Ok(pipeline)
}

/// Everything a check's result depends on besides the file system: the
/// entry format, cairn's version, the file and root as written and the
/// root as resolved, and the text.
fn identity(path: &Path, canonical_root: &Path, text: &str) -> Digest {
    let mut hasher = blake3::Hasher::new();
    for part in [
        &VERSION.to_le_bytes()[..],
        env!("CARGO_PKG_VERSION").as_bytes(),
        path.as_os_str().as_encoded_bytes(),
        canonical_root.as_os_str().as_encoded_bytes(),
        text.as_bytes(),
    ] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Digest::from_bytes(*hasher.finalize().as_bytes())
}

/// Where the entry for this pipeline file lives: one per file as written
/// and workspace.
fn entry_path(cache: &CacheDir, path: &Path, canonical_root: &Path) -> PathBuf {
    let mut hasher = blake3::Hasher::new();
    hasher.update(canonical_root.as_os_str().as_encoded_bytes());
    hasher.update(&[0]);
    hasher.update(path.as_os_str().as_encoded_bytes());
    let name = hasher.finalize().to_hex();
    cache.root().join("pipelines-v1").join(&name[..32])
}

/// Whether every local `uses` still names what the check found there
/// (each distinct one looked at once: many stages share a component).
fn still_there(stages: &[Stage]) -> bool {
    let mut seen = HashSet::new();
    stages
        .iter()
        .filter(|stage| seen.insert(&stage.uses))
        .all(|stage| match &stage.uses {
            Uses::File(path) => path.is_file(),
            Uses::SourceFolder(path) => Language::detect(path).is_some(),
            Uses::Standard(_) | Uses::Oci(_) | Uses::Output { .. } => true,
        })
}
