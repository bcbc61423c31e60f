//! The action cache: what a stage produced, by the key of everything it
//! could observe. Entries are small JSON documents naming blobs (the outputs
//! tree and the log), written atomically; a damaged entry reads as a miss.

use std::fs;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use cairn_core::Digest;
use cairn_core::Outcome;
use cairn_core::observer::Annotation;

/// Bumped when the entry format changes, so old entries read as misses.
const VERSION: u32 = 1;

/// What a successful stage run produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEntry {
    /// The format version.
    pub version: u32,
    /// The tree of its `/out`.
    pub outputs: Digest,
    /// Its log (a JSON list of lines), replayed on a hit.
    pub log: Digest,
    /// Whether the log has any line, so a hit with none reads no blob.
    pub has_log: bool,
    /// Its annotations, replayed on a hit.
    pub annotations: Vec<Annotation>,
    /// What it returned.
    pub outcome: Outcome,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

impl ActionEntry {
    /// An entry in the current format.
    pub fn new(
        outputs: Digest,
        log: Digest,
        has_log: bool,
        annotations: Vec<Annotation>,
        outcome: Outcome,
        duration_ms: u64,
    ) -> Self {
        Self {
            version: VERSION,
            outputs,
            log,
            has_log,
            annotations,
            outcome,
            duration_ms,
        }
    }

    /// Whether it is in the format this cairn reads: an entry from an older
    /// or newer cairn (through a shared cache) is a miss, not a misreading.
    pub fn is_current(&self) -> bool {
        self.version == VERSION
    }
}

impl Store {
    /// The entry for `key`, if there is a sound one. Reading it marks it as
    /// recently used, for `cairn cache gc`.
    pub fn get_action(&self, key: &Digest) -> Option<ActionEntry> {
        let path = self.action_path(key);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice::<ActionEntry>(&bytes) {
            Ok(entry) if entry.is_current() => {
                if let Ok(file) = fs::File::options().write(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(entry)
            }
            _ => {
                tracing::warn!(%key, "removing an unreadable action cache entry");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Records what `key` produced.
    pub fn put_action(&self, key: &Digest, entry: &ActionEntry) -> Result<(), StoreError> {
        let path = self.action_path(key);
        let parent = path.parent().unwrap_or(self.actions_dir());
        fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
        let bytes = serde_json::to_vec(entry).map_err(|error| StoreError::Io {
            path: path.clone(),
            source: error.into(),
        })?;
        let mut file = tempfile::Builder::new()
            .prefix("action-")
            .tempfile_in(self.tmp_dir())
            .map_err(StoreError::io(self.tmp_dir()))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(StoreError::io(&path))?;
        file.persist(&path).map_err(|error| StoreError::Io {
            path: path.clone(),
            source: error.error,
        })?;
        Ok(())
    }

    /// Forgets `key`, when what it names turned out to be damaged.
    pub fn remove_action(&self, key: &Digest) {
        let _ = fs::remove_file(self.action_path(key));
    }
}
