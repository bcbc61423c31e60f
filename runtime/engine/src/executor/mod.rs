//! Running one pipeline stage for the scheduler, through the cache.
//!
//! For each stage: resolve its references, compute its key from everything
//! it can observe, and then
//! - when `cairn-out/<stage>/` already holds the outputs for that key,
//!   report it cached without touching anything;
//! - when the action cache knows the key, restore the outputs (every blob
//!   checked) and replay the log;
//! - otherwise snapshot its inputs from the store, run it in its sandbox
//!   (retrying when asked), store its outputs and log, and publish.
//!
//! A file per job: [`key`] (references resolved, the key, why a result
//! would not be reused), [`reuse`] (published or stored results), [`run`]
//! (the sandbox and the attempts), [`check`] (`--check`) and [`publish`].

mod check;
mod dispatch;
mod key;
mod publish;
mod reuse;
mod run;
mod shared;

pub use dispatch::WorkerPool;
pub(crate) use run::{Attempts, store_outputs};

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::component_source::{ComponentRef, FileComponentError, file_component};
use crate::deploy::Deployments;
use crate::host_tools::StageTools;
use crate::output_dir::{self, OutputRoot};
use crate::scheduler::{Executor, StageError, StageResult, Upstream};
use crate::secrets::Secrets;
use crate::stage_key::{KeyParts, Placement};
use crate::state::{EncodedParts, Published, RunRecord, WorkspaceState};
use crate::workspace::Workspace;
use cairn_cas::{ActionEntry, Entry, EntryKind, Materialize, Store, StoreError, Tree, TreeError};
use cairn_component::LoadError;
use cairn_core::Digest;
use cairn_core::cache_dir::CacheDir;
use cairn_core::events::{PhaseClock, TestCounts};
use cairn_core::observer::{Annotation, Level, LogLine, LogSource, StageObserver};
use cairn_core::scratch::{ScratchFolder, ScratchSpace};
use cairn_pipeline::{ClockGrant, Pipeline, Reference, Stage, Template, Uses};
use cairn_report::{Event, Reporter, Status};
use cairn_sandbox::runtime::{LoadedComponent, Runtime, RuntimeError};
use cairn_sandbox::{Clock, Outcome, Sandbox, StageRun, Trust};

/// How a run uses the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMode {
    /// Reuse results (false with `--no-cache`; results are still stored).
    pub read: bool,
    /// Rerun stages that hit and compare their outputs (`--check`).
    pub check: bool,
}

/// The wasmtime host, created the first time a stage actually has to run:
/// a run where everything is cached never starts an engine.
pub struct LazyRuntime {
    cache: CacheDir,
    trust: Trust,
    scratch: Option<Arc<ScratchSpace>>,
    cell: tokio::sync::OnceCell<Arc<Runtime>>,
}

impl LazyRuntime {
    /// A runtime that will keep its state in `cache` and whose HTTPS
    /// requests trust `trust`.
    pub fn new(cache: CacheDir, trust: Trust) -> Self {
        Self {
            cache,
            trust,
            scratch: None,
            cell: tokio::sync::OnceCell::new(),
        }
    }

    /// The runtime's stages take their `/out` and `/tmp` from `scratch`, as
    /// the run's `/src` snapshots do: a folder one use gave back, the next
    /// takes, whichever it is.
    pub fn sharing(mut self, scratch: Arc<ScratchSpace>) -> Self {
        self.scratch = Some(scratch);
        self
    }

    pub(crate) async fn get(&self) -> Result<Arc<Runtime>, RuntimeError> {
        self.cell
            .get_or_try_init(|| async {
                let runtime = Runtime::with_trust(&self.cache, self.trust.clone())?;
                Ok(Arc::new(match &self.scratch {
                    Some(scratch) => runtime.sharing_scratch(Arc::clone(scratch)),
                    None => runtime,
                }))
            })
            .await
            .cloned()
    }
}

/// Everything the stages of one run share.
pub struct StageExecutor {
    /// The host, started on first need.
    pub runtime: LazyRuntime,
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Each stage's component (`None` for stages not selected).
    pub components: Vec<Option<ComponentRef>>,
    /// The workspace, walked once for the run.
    pub workspace: Arc<Workspace>,
    /// The digest of every input file some selected stage reads, parallel
    /// to the workspace's file list.
    pub input_digests: Vec<Option<Digest>>,
    /// The content-addressed store.
    pub store: Arc<Store>,
    /// What is remembered about this workspace.
    pub state: Arc<RwLock<WorkspaceState>>,
    /// Where stages' `/src` snapshots are made (and kept for reuse).
    pub scratch: Arc<ScratchSpace>,
    /// `cairn-out/` of the workspace.
    pub output_root: OutputRoot,
    /// Secret values.
    pub secrets: Secrets,
    /// The checked-out git branch, for environments' `branches`.
    pub branch: Option<String>,
    /// Where events go.
    pub reporter: Arc<dyn Reporter>,
    /// What the pinned clock reads.
    pub source_date_epoch: u64,
    /// How the cache is used.
    pub mode: CacheMode,
    /// The host tools each stage is granted, found and identified.
    pub tools: StageTools,
    /// The run's deployments: environments entered, recorded, rolled back.
    pub deployments: Arc<Deployments>,
    /// What `${{ monitor.* }}` reads, when `cairn monitor` runs a stage
    /// because a check changed.
    pub monitor: BTreeMap<String, String>,
    /// Stages that run even when their result could be reused (`cairn
    /// monitor`'s checks).
    pub always_run: Vec<String>,
    /// Where the workspace is in its repository, for the paths annotations
    /// name (`services/api/` or empty).
    pub repository_prefix: Arc<str>,
    /// The shared cache (`--remote`), when the run has one.
    pub shared: Option<Arc<cairn_remote::SharedCache>>,
    /// The worker pool, when stages are sent to workers (`--workers`).
    pub workers: Option<WorkerPool>,
}

/// A stage's request, resolved, with its key.
struct Prepared {
    /// The workspace files the stage sees at `/src`, by index.
    inputs: Vec<usize>,
    /// Also the resolved arguments, `with` and env the stage is called with.
    parts: KeyParts,
    key: Digest,
    /// The stage's index in the pipeline (its tools are found by it).
    index: usize,
    /// Why the stage's result is neither reused nor stored, when it is not:
    /// `cache = false`, an impure grant without `cache = true`, or a run
    /// despite a failed need.
    not_reused: Option<String>,
}

impl Prepared {
    fn cacheable(&self) -> bool {
        self.not_reused.is_none()
    }
}

/// A result reused instead of running.
enum Hit {
    /// `cairn-out/<stage>/` already holds the last run's result.
    Published {
        produced: Produced,
        /// Whether the last run is already remembered as reused.
        recorded: bool,
    },
    /// The action cache has it.
    Stored(ActionEntry),
}

/// What a successful stage produced, whether it ran now or its result is
/// reused: what its result, its remembered run and its replayed log are
/// made of, and no more (a hit copies only this out of the state).
pub(crate) struct Produced {
    outputs: Digest,
    outcome: Outcome,
    log: Option<Digest>,
    annotations: Vec<Annotation>,
}

impl Produced {
    /// The action cache entry of this result, for a stage that ran
    /// `duration_ms`.
    pub(crate) fn entry(&self, duration_ms: u64) -> ActionEntry {
        ActionEntry::new(
            self.outputs,
            self.log.unwrap_or_else(|| Digest::of(b"")),
            self.log.is_some(),
            self.annotations.clone(),
            self.outcome.clone(),
            duration_ms,
        )
    }

    /// What an action cache entry holds.
    fn stored(entry: ActionEntry) -> Self {
        Self {
            outputs: entry.outputs,
            outcome: entry.outcome,
            log: entry.has_log.then_some(entry.log),
            annotations: entry.annotations,
        }
    }

    /// The run to remember for the stage.
    fn record(&self, prepared: &Prepared, status: Status) -> RunRecord {
        RunRecord {
            key: prepared.key,
            parts: EncodedParts::new(&prepared.parts),
            status: status.as_str().to_owned(),
            outputs: self.outputs,
            outcome: self.outcome.clone(),
            log: self.log,
            annotations: self.annotations.clone(),
            not_reused: prepared.not_reused.clone(),
        }
    }

    /// The stage's result.
    fn into_result(self, status: Status, attempts: u32, started: Instant, key: Digest) -> StageResult {
        StageResult {
            status,
            tests: TestCounts::from_outputs(&self.outcome.outputs),
            phases: Vec::new(),
            outputs: Arc::new(self.outcome.outputs),
            summary: self.outcome.summary,
            error: None,
            hint: None,
            reason: None,
            attempts,
            duration: started.elapsed(),
            key: Some(key),
            outputs_digest: Some(self.outputs),
        }
    }
}

/// A stage that ran and succeeded.
pub(crate) struct Ran {
    pub(crate) produced: Produced,
    tree: Tree,
    attempts: u32,
    run: StageRun,
}

impl Executor for StageExecutor {
    async fn execute(self: Arc<Self>, index: usize, upstream: Upstream) -> StageResult {
        let mut clock = PhaseClock::new(Instant::now());
        let mut result = self.execute_measured(index, upstream, &mut clock).await;
        result.phases = clock.finish();
        result
    }

    fn reuse(&self, index: usize, upstream: &Upstream) -> Option<StageResult> {
        if !self.mode.read || self.mode.check {
            return None;
        }
        let started = Instant::now();
        let stage = &self.pipeline.stages[index];
        if self.deployments.pinned(&stage.name).is_some() {
            return None;
        }
        let component = self.component(index, upstream).ok()?;
        let prepared = self.prepare(index, &component, upstream).ok()?;
        if !prepared.cacheable() {
            return None;
        }
        let hit = self.published(stage, &prepared)?;
        let observer = self.observer(stage);
        Some(self.report_reused(stage, &prepared, hit, &observer, started))
    }
}

impl StageExecutor {
    /// Removes the scratch folders kept for the next stage (the runtime
    /// shares them, see [`LazyRuntime::sharing`]): a run that exits without
    /// dropping calls this first.
    pub fn release_scratch(&self) {
        self.scratch.drain();
    }

    /// Runs or reuses one stage, marking its phases on `clock`.
    async fn execute_measured(&self, index: usize, upstream: Upstream, clock: &mut PhaseClock) -> StageResult {
        let started = clock.started();
        let stage = &self.pipeline.stages[index];
        if self.deployments.pinned(&stage.name).is_some() {
            return self.restore_pinned(stage, started);
        }
        if let Err(error) = self.check_branch(stage) {
            return self.fail(stage, error, 0, started, None);
        }
        if let Err(error) = self.deployments.enter(stage, &upstream).await {
            return self.fail(stage, error, 0, started, None);
        }
        if stage.environment.is_some() {
            clock.mark("deployment");
        }
        let observer: Arc<dyn StageObserver> = Arc::new(self.observer(stage));
        let component = match self.component(index, &upstream) {
            Ok(component) => component,
            Err(error) => return self.fail(stage, error, 0, started, None),
        };
        let prepared = match self.prepare(index, &component, &upstream) {
            Ok(prepared) => prepared,
            Err(error) => return self.fail(stage, error, 0, started, None),
        };
        let hit = if prepared.cacheable() && self.mode.read {
            self.lookup(stage, &prepared)
        } else {
            None
        };
        clock.mark("key");
        let hit = match hit {
            None if prepared.cacheable() && self.mode.read && !self.mode.check && self.shared.is_some() => {
                let fetched = self.fetch_shared(&prepared, observer.as_ref()).await;
                clock.mark("download");
                fetched.map(Hit::Stored)
            }
            other => other,
        };
        let hit = match hit {
            Some(Hit::Stored(entry)) if !self.mode.check => {
                match self.restore(stage, &entry).await.inspect(|()| clock.mark("restore")) {
                    Ok(()) => Some(Hit::Stored(entry)),
                    Err(error) => {
                        observer.log(&notice(format!(
                            "the cached outputs of this stage could not be restored ({error}); running it again"
                        )));
                        self.store.remove_action(&prepared.key);
                        None
                    }
                }
            }
            other => other,
        };
        match hit {
            Some(hit) if !self.mode.check => self.report_reused(stage, &prepared, hit, observer.as_ref(), started),
            Some(hit) => {
                self.check(stage, &component, prepared, upstream, hit, observer, clock)
                    .await
            }
            None if self.workers.is_some() && self.dispatchable(stage, &prepared, observer.as_ref()) => {
                self.dispatch(stage, &component, prepared, observer, clock).await
            }
            None => match self
                .run(stage, &component, &prepared, &upstream, Arc::clone(&observer), clock)
                .await
            {
                Ok(ran) => {
                    let (key, cacheable) = (prepared.key, prepared.cacheable());
                    let result = self.publish(stage, prepared, ran, started);
                    clock.mark("publish");
                    if cacheable && result.status == Status::Succeeded && self.shared.is_some() && shareable(stage) {
                        self.share(&key, observer.as_ref()).await;
                        clock.mark("upload");
                    }
                    result
                }
                Err((error, attempts)) => self.fail(stage, error, attempts, started, Some(prepared.key)),
            },
        }
    }

    /// The stage's component: resolved when the run was planned, or, for
    /// `in:STAGE/PATH`, the file that stage published, digested by stamp
    /// like a `.wasm` file of the workspace.
    fn component(&self, index: usize, upstream: &Upstream) -> Result<ComponentRef, String> {
        if let Some(component) = &self.components[index] {
            return Ok(component.clone());
        }
        let stage = &self.pipeline.stages[index];
        let Uses::Output { stage: producer, path } = &stage.uses else {
            return Err("the stage's component was not loaded".to_owned());
        };
        if !upstream.outputs.contains_key(producer) {
            return Err(format!(
                "its component is written by `{producer}`, which did not succeed"
            ));
        }
        let file = self.output_root.join(producer).join(path);
        let (component, digested) = file_component(&file, |stamp| self.state().component(&file, stamp).cloned())
            .map_err(|error| match error {
                FileComponentError::Read(error) => {
                    format!("cannot read its component `in:{producer}/{path}`: {error}")
                }
                FileComponentError::NotWasm => format!("its component `in:{producer}/{path}` is not WebAssembly"),
            })?;
        if let Some(record) = digested {
            self.state_mut().record_component(&file, record);
        }
        Ok(component)
    }

    /// Where the stage's log lines and annotations go.
    fn observer(&self, stage: &Stage) -> StageEvents {
        StageEvents {
            stage: stage.name.clone(),
            reporter: Arc::clone(&self.reporter),
            prefix: Arc::clone(&self.repository_prefix),
        }
    }

    /// A rollback's stand-in for a stage whose outputs a deployment
    /// recorded: those outputs, restored from the store, not a run.
    fn restore_pinned(&self, stage: &Stage, started: Instant) -> StageResult {
        match self.deployments.restore_pinned(&stage.name) {
            Ok(artifact) => StageResult {
                status: Status::Cached,
                outputs: Arc::new(artifact.outputs),
                summary: Some(format!("the recorded outputs {}, restored", artifact.digest)),
                error: None,
                hint: None,
                reason: None,
                attempts: 0,
                duration: started.elapsed(),
                key: None,
                outputs_digest: Some(artifact.digest),
                tests: None,
                phases: Vec::new(),
            },
            Err(error) => self.fail(stage, error, 0, started, None),
        }
    }

    /// A stage in an environment starts only from a branch the
    /// environment allows, as GitHub Actions' deployment branch rules.
    fn check_branch(&self, stage: &Stage) -> Result<(), StageError> {
        let Some(environment) = self.pipeline.environment_of(stage) else {
            return Ok(());
        };
        if environment.allows_branch(self.branch.as_deref()) {
            return Ok(());
        }
        let here = match &self.branch {
            Some(branch) => format!("from the branch `{branch}`"),
            None => "from a checkout on no branch".to_owned(),
        };
        Err(StageError::with_hint(
            format!(
                "environment `{}` is deployed to from {} only; this run is {here}",
                environment.name,
                environment.branches.join(", ")
            ),
            format!(
                "deploy from an allowed branch, or add it to `branches` in [environments.{}]",
                environment.name
            ),
        ))
    }

    fn fail(
        &self,
        stage: &Stage,
        error: impl Into<StageError>,
        attempts: u32,
        started: Instant,
        key: Option<Digest>,
    ) -> StageResult {
        if attempts == 0 {
            // It never started: say so, so the failure has a start.
            self.reporter.event(&Event::StageStarted {
                stage: stage.name.clone(),
                attempt: 1,
            });
        }
        let mut result = StageResult::failed(error, attempts.max(1), started.elapsed());
        result.key = key;
        result
    }

    fn state(&self) -> RwLockReadGuard<'_, WorkspaceState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, WorkspaceState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a stage's results may leave this machine: not those of a stage
/// granted a secret or credentials, or deploying to an environment (which
/// may grant its own), whose outputs could hold what a secret revealed.
/// They stay in the local cache, and such stages run where their secrets
/// are.
fn shareable(stage: &Stage) -> bool {
    stage.secrets.is_empty() && stage.http_auth.is_empty() && stage.environment.is_none()
}

/// A line from cairn itself in a stage's log.
fn notice(text: String) -> LogLine {
    host_line(Level::Warn, text)
}

/// A line from cairn itself in a stage's log, at `level`.
fn host_line(level: Level, text: String) -> LogLine {
    LogLine {
        source: LogSource::Host,
        level,
        text,
        unterminated: false,
    }
}

/// `error: cause: cause`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Forwards what one stage reports to the run's reporter, tagged with its name.
struct StageEvents {
    stage: String,
    reporter: Arc<dyn Reporter>,
    /// Where the workspace is in its repository (`repository_path`).
    prefix: Arc<str>,
}

/// The path a person finds a file at, for a path a stage saw: `/src/x` is
/// the workspace's `x` (below `prefix` in the repository), `/in/STAGE/x`
/// what `STAGE` published to `cairn-out/STAGE/x`; anything else as seen.
fn repository_path(prefix: &str, seen: &str) -> String {
    if let Some(path) = seen.strip_prefix("/src/") {
        format!("{prefix}{path}")
    } else if let Some(path) = seen.strip_prefix("/in/") {
        format!("{prefix}{}/{path}", crate::workspace::OUTPUT_FOLDER)
    } else {
        seen.to_owned()
    }
}

impl StageObserver for StageEvents {
    fn log(&self, line: &LogLine) {
        self.reporter.event(&Event::StageLog {
            stage: self.stage.clone(),
            source: line.source,
            level: line.level,
            text: line.text.clone(),
        });
    }

    fn progress(&self, done: u64, total: u64) {
        self.reporter.event(&Event::StageProgress {
            stage: self.stage.clone(),
            done,
            total,
        });
    }

    fn annotate(&self, annotation: &Annotation) {
        self.reporter.event(&Event::StageAnnotation {
            stage: self.stage.clone(),
            path: repository_path(&self.prefix, &annotation.path),
            line: annotation.line,
            column: annotation.column,
            severity: annotation.severity,
            message: annotation.message.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn annotations_name_the_paths_a_person_opens() {
        assert_eq!(super::repository_path("", "/src/config/site.toml"), "config/site.toml");
        assert_eq!(
            super::repository_path("services/api/", "/src/a.txt"),
            "services/api/a.txt"
        );
        assert_eq!(
            super::repository_path("", "/in/build/page.html"),
            "cairn-out/build/page.html"
        );
        assert_eq!(super::repository_path("", "/tmp/scratch.txt"), "/tmp/scratch.txt");
    }
}
