//! The shared cache, for a stage: a result another machine stored is
//! fetched (every blob checked) before running, and a fresh result is
//! shared after. Neither can fail a stage: a shared cache that misbehaves
//! costs a run here, said in the stage's log, never a wrong result.

use super::*;

impl StageExecutor {
    /// The result another machine shared for this key, now in the local
    /// store.
    pub(super) async fn fetch_shared(&self, prepared: &Prepared, observer: &dyn StageObserver) -> Option<ActionEntry> {
        let shared = self.shared.as_ref()?;
        match shared.fetch_action(&self.store, &prepared.key).await {
            Ok(entry) => entry,
            Err(error) => {
                observer.log(&notice(format!("{}; running the stage here", error_chain(&error))));
                None
            }
        }
    }

    /// Shares the result just stored for `key`, unless this run only reads.
    pub(super) async fn share(&self, key: &Digest, observer: &dyn StageObserver) {
        let Some(shared) = self.shared.as_ref().filter(|shared| !shared.read_only()) else {
            return;
        };
        let Some(entry) = self.store.get_action(key) else {
            return;
        };
        match shared.share_action(&self.store, key, &entry).await {
            Ok(shared) => tracing::debug!(?shared, %key, "shared the stage's result"),
            Err(error) => observer.log(&notice(format!(
                "this stage's result could not be shared: {}",
                error_chain(&error)
            ))),
        }
    }
}
