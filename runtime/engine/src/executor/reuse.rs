//! Reusing a result instead of running: what `cairn-out/` already holds
//! for the key, or what the action cache restores; its log replayed.

use super::*;

impl StageExecutor {
    /// A result for this key, if one can be reused.
    pub(super) fn lookup(&self, stage: &Stage, prepared: &Prepared) -> Option<Hit> {
        self.published(stage, prepared)
            .or_else(|| self.store.get_action(&prepared.key).map(Hit::Stored))
    }

    /// The last run's result when it had this key and `cairn-out/<stage>/`
    /// still holds exactly what it published. Other stages are checked at
    /// the same time, under the same read lock.
    pub(super) fn published(&self, stage: &Stage, prepared: &Prepared) -> Option<Hit> {
        let state = self.state();
        let record = state.stage(&stage.name)?;
        let last = record.last.as_ref()?;
        let published = record.published.as_ref()?;
        let unchanged = last.key == prepared.key
            && published.outputs == last.outputs
            && published.unchanged(&self.output_root, &stage.name);
        unchanged.then(|| Hit::Published {
            produced: Produced {
                outputs: last.outputs,
                outcome: last.outcome.clone(),
                log: last.log,
                annotations: last.annotations.clone(),
            },
            recorded: last.status == Status::Cached.as_str(),
        })
    }

    /// Lays a stored result out in `cairn-out/<stage>/`, every blob checked.
    pub(super) async fn restore(&self, stage: &Stage, entry: &ActionEntry) -> Result<(), TreeError> {
        let store = Arc::clone(&self.store);
        let outputs = entry.outputs;
        let scratch = Arc::clone(&self.scratch);
        let folder = self.output_root.to_publish(&stage.name);
        let published = tokio::task::spawn_blocking(move || -> Result<Published, TreeError> {
            let tree = Tree::load(&store, &outputs)?;
            let staging = scratch.folder("restore").map_err(StoreError::io(scratch.dir()))?;
            let tree_root = staging.path().join("tree");
            tree.materialize(&store, &tree_root, Materialize::Copy)?;
            output_dir::replace(&tree_root, &folder, Some(&scratch)).map_err(|error| StoreError::Io {
                path: error.path,
                source: error.source,
            })?;
            Published::record(&folder, outputs)
                .map_err(|source| TreeError::Store(StoreError::Io { path: folder, source }))
        })
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
        self.state_mut().record_published(&stage.name, published);
        Ok(())
    }

    /// Reports a reused result, replaying its log and annotations.
    pub(super) fn report_reused(
        &self,
        stage: &Stage,
        prepared: &Prepared,
        hit: Hit,
        observer: &dyn StageObserver,
        started: Instant,
    ) -> StageResult {
        let produced = match hit {
            Hit::Published { produced, recorded } => {
                if !recorded {
                    self.state_mut().record_reused(&stage.name);
                }
                produced
            }
            Hit::Stored(entry) => {
                let produced = Produced::stored(entry);
                self.state_mut()
                    .record_run(&stage.name, produced.record(prepared, Status::Cached));
                produced
            }
        };
        if let Some(log) = produced.log
            && let Ok(bytes) = self.store.read(&log)
            && let Ok(lines) = serde_json::from_slice::<Vec<LogLine>>(&bytes)
        {
            for line in &lines {
                observer.log(line);
            }
        }
        for annotation in &produced.annotations {
            observer.annotate(annotation);
        }
        produced.into_result(Status::Cached, 0, started, prepared.key)
    }
}
