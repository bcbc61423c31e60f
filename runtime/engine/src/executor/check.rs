//! `--check`: rerun a stage whose result is cached and compare.

use super::*;

impl StageExecutor {
    /// `--check`: runs a stage that hit and compares what it produces now
    /// with what the cache holds.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn check(
        &self,
        stage: &Stage,
        component: &ComponentRef,
        prepared: Prepared,
        upstream: Upstream,
        hit: Hit,
        observer: Arc<dyn StageObserver>,
        clock: &mut PhaseClock,
    ) -> StageResult {
        let started = clock.started();
        let expected = match &hit {
            Hit::Published { produced, .. } => produced.outputs,
            Hit::Stored(entry) => entry.outputs,
        };
        let ran = match self
            .run(stage, component, &prepared, &upstream, Arc::clone(&observer), clock)
            .await
        {
            Ok(ran) => ran,
            Err((mut error, attempts)) => {
                error.message = format!("failed when rerun to check its cached result: {}", error.message);
                return self.fail(stage, error, attempts, started, Some(prepared.key));
            }
        };
        if ran.produced.outputs == expected {
            return self.report_reused(stage, &prepared, hit, observer.as_ref(), started);
        }
        let differences = match Tree::load(&self.store, &expected) {
            Ok(cached) => cached.diff(&ran.tree),
            Err(_) => vec!["(the cached file list is no longer in the cache)".to_owned()],
        };
        let error = format!(
            "nondeterministic: rerun with the same key, it produced different outputs than the cached run\n{}",
            differences
                .iter()
                .map(|line| format!("  {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let mut result = self.fail(stage, error, ran.attempts, started, Some(prepared.key));
        result.outputs_digest = Some(ran.produced.outputs);
        result
    }
}
