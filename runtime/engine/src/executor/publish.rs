//! Publishing a fresh result: recorded in the action cache, moved to
//! `cairn-out/<stage>/`, and remembered for the workspace.

use super::*;

impl StageExecutor {
    /// Records a fresh result in the action cache and publishes it.
    pub(super) fn publish(&self, stage: &Stage, prepared: Prepared, ran: Ran, started: Instant) -> StageResult {
        let duration_ms = ran.run.duration.as_millis() as u64;
        let produced = ran.produced;
        if prepared.cacheable() {
            let entry = produced.entry(duration_ms);
            if let Err(error) = self.store.put_action(&prepared.key, &entry) {
                tracing::warn!(%error, "cannot record the stage's result in the cache");
            }
        }
        let folder = self.output_root.to_publish(&stage.name);
        if let Err(error) = output_dir::replace(ran.run.outputs(), &folder, Some(&self.scratch)) {
            return self.fail(stage, error_chain(&error), ran.attempts, started, Some(prepared.key));
        }
        let published = Published::record(&folder, produced.outputs);
        let mut state = self.state_mut();
        if let Ok(published) = published {
            state.record_published(&stage.name, published);
        }
        state.record_run(&stage.name, produced.record(&prepared, Status::Succeeded));
        drop(state);
        produced.into_result(Status::Succeeded, ran.attempts, started, prepared.key)
    }
}
