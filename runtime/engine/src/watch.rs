//! `cairn watch`: the changes to a workspace's files, as inotify (through
//! the `notify` crate) reports them, gathered until the writes settle.
//!
//! Everything below the workspace is watched but `cairn-out/` and `.git/`
//! (cairn's own writes, and git's, would otherwise wake it): which stages a
//! change reaches is the run's to decide, from their keys, as for any run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::workspace::OUTPUT_FOLDER;

/// Why the workspace cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch `{path}` for changes: {source}")]
pub struct WatchError {
    /// The folder.
    pub path: PathBuf,
    /// What the watcher said.
    #[source]
    pub source: notify::Error,
}

/// The changes under one workspace.
pub struct Changes {
    // Kept alive: dropping it stops the watch.
    _watcher: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<PathBuf>,
}

impl Changes {
    /// Starts watching `root` and everything below it.
    pub fn watch(root: &Path) -> Result<Self, WatchError> {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
        let ignored = [root.join(OUTPUT_FOLDER), root.join(".git")];
        let (sender, events) = mpsc::unbounded_channel();
        let error = |source| WatchError {
            path: root.clone(),
            source,
        };
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            for path in event.paths {
                if !ignored.iter().any(|folder| path.starts_with(folder)) {
                    let _ = sender.send(path);
                }
            }
        })
        .map_err(error)?;
        watcher.watch(&root, RecursiveMode::Recursive).map_err(error)?;
        Ok(Self {
            _watcher: watcher,
            events,
        })
    }

    /// The paths changed from now until no change came for `settle`: waits
    /// for a first change, then for the writes to stop.
    pub async fn next(&mut self, settle: Duration) -> Vec<PathBuf> {
        // What arrived while the last round ran counts as a first change.
        let mut changed = Vec::new();
        while let Ok(path) = self.events.try_recv() {
            changed.push(path);
        }
        if changed.is_empty() {
            match self.events.recv().await {
                Some(path) => changed.push(path),
                None => return changed,
            }
        }
        while let Ok(Some(path)) = tokio::time::timeout(settle, self.events.recv()).await {
            changed.push(path);
        }
        changed.sort();
        changed.dedup();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_gathered_until_they_settle_and_outputs_are_ignored() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::create_dir(folder.path().join(OUTPUT_FOLDER)).unwrap();
        let mut changes = Changes::watch(folder.path()).unwrap();
        std::fs::write(folder.path().join(OUTPUT_FOLDER).join("ignored.txt"), "x").unwrap();
        std::fs::write(folder.path().join("a.txt"), "a").unwrap();
        std::fs::write(folder.path().join("b.txt"), "b").unwrap();
        let changed = changes.next(Duration::from_millis(100)).await;
        let names: Vec<String> = changed
            .iter()
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert!(
            names.contains(&"a.txt".to_owned()) && names.contains(&"b.txt".to_owned()),
            "{names:?}"
        );
        assert!(!names.contains(&"ignored.txt".to_owned()), "{names:?}");
    }
}
