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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::component_source::ComponentRef;
use crate::output_dir::{self, OutputRoot};
use crate::scheduler::{Executor, StageResult, Upstream};
use crate::secrets::Secrets;
use crate::stage_key::{KeyParts, Placement};
use crate::state::{EncodedParts, Published, RunRecord, WorkspaceState};
use crate::workspace::Workspace;
use cairn_cas::{ActionEntry, Entry, EntryKind, Materialize, Store, StoreError, Tree, TreeError};
use cairn_core::Digest;
use cairn_core::cache_dir::CacheDir;
use cairn_core::observer::{Annotation, Level, LogLine, LogSource, StageObserver};
use cairn_pipeline::{ClockGrant, Pipeline, Reference, Stage, Template};
use cairn_report::{Event, Reporter, Status};
use cairn_sandbox::runtime::{Runtime, RuntimeError};
use cairn_sandbox::{Clock, Outcome, StageRun};

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
    cell: tokio::sync::OnceCell<Arc<Runtime>>,
}

impl LazyRuntime {
    /// A runtime that will keep its state in `cache`.
    pub fn new(cache: CacheDir) -> Self {
        Self {
            cache,
            cell: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self) -> Result<Arc<Runtime>, RuntimeError> {
        self.cell
            .get_or_try_init(|| async { Runtime::new(&self.cache).map(Arc::new) })
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
    /// Where stages' scratch folders are made.
    pub scratch: PathBuf,
    /// `cairn-out/` of the workspace.
    pub output_root: OutputRoot,
    /// Secret values.
    pub secrets: Secrets,
    /// Where events go.
    pub reporter: Arc<dyn Reporter>,
    /// What the pinned clock reads.
    pub source_date_epoch: u64,
    /// How the cache is used.
    pub mode: CacheMode,
}

/// A stage's request, resolved, with its key.
struct Prepared {
    /// The workspace files the stage sees at `/src`, by index.
    inputs: Vec<usize>,
    /// Also the resolved arguments, `with` and env the stage is called with.
    parts: KeyParts,
    key: Digest,
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
struct Produced {
    outputs: Digest,
    outcome: Outcome,
    log: Option<Digest>,
    annotations: Vec<Annotation>,
}

impl Produced {
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
            outputs: Arc::new(self.outcome.outputs),
            summary: self.outcome.summary,
            error: None,
            reason: None,
            attempts,
            duration: started.elapsed(),
            key: Some(key),
            outputs_digest: Some(self.outputs),
        }
    }
}

/// A stage that ran and succeeded.
struct Ran {
    produced: Produced,
    tree: Tree,
    attempts: u32,
    run: StageRun,
}

impl Executor for StageExecutor {
    async fn execute(self: Arc<Self>, index: usize, upstream: Upstream) -> StageResult {
        let started = Instant::now();
        let stage = &self.pipeline.stages[index];
        let observer: Arc<dyn StageObserver> = Arc::new(self.observer(stage));
        let Some(component) = self.components[index].clone() else {
            return self.fail(stage, "the stage's component was not loaded", 0, started, None);
        };
        let prepared = match self.prepare(stage, &component, &upstream) {
            Ok(prepared) => prepared,
            Err(error) => return self.fail(stage, error, 0, started, None),
        };
        let hit = if prepared.cacheable() && self.mode.read {
            self.lookup(stage, &prepared)
        } else {
            None
        };
        let hit = match hit {
            Some(Hit::Stored(entry)) if !self.mode.check => match self.restore(stage, &entry).await {
                Ok(()) => Some(Hit::Stored(entry)),
                Err(error) => {
                    observer.log(&notice(format!(
                        "the cached outputs of this stage could not be restored ({error}); running it again"
                    )));
                    self.store.remove_action(&prepared.key);
                    None
                }
            },
            other => other,
        };
        match hit {
            Some(hit) if !self.mode.check => self.report_reused(stage, &prepared, hit, observer.as_ref(), started),
            Some(hit) => {
                self.check(stage, &component, prepared, upstream, hit, observer, started)
                    .await
            }
            None => match self.run(stage, &component, &prepared, &upstream, observer).await {
                Ok(ran) => self.publish(stage, prepared, ran, started),
                Err((error, attempts)) => self.fail(stage, error, attempts, started, Some(prepared.key)),
            },
        }
    }

    fn reuse(&self, index: usize, upstream: &Upstream) -> Option<StageResult> {
        if !self.mode.read || self.mode.check {
            return None;
        }
        let started = Instant::now();
        let stage = &self.pipeline.stages[index];
        let component = self.components[index].as_ref()?;
        let prepared = self.prepare(stage, component, upstream).ok()?;
        if !prepared.cacheable() {
            return None;
        }
        let hit = self.published(stage, &prepared)?;
        let observer = self.observer(stage);
        Some(self.report_reused(stage, &prepared, hit, &observer, started))
    }
}

impl StageExecutor {
    /// Resolves the stage's references and computes its key.
    fn prepare(&self, stage: &Stage, component: &ComponentRef, upstream: &Upstream) -> Result<Prepared, String> {
        let resolve = |reference: &Reference| match reference {
            Reference::StageOutput { stage, key } => upstream
                .outputs
                .get(stage)
                .and_then(|outputs| outputs.get(key).cloned()),
            _ => None,
        };
        let render = |template: &Template| {
            template.render(&resolve).map_err(|reference| match reference.stage() {
                Some(needed) if upstream.outputs.contains_key(needed) => {
                    format!("`${{{{ {reference} }}}}`: stage `{needed}` returned no output of that name")
                }
                _ => format!("`${{{{ {reference} }}}}` cannot be resolved"),
            })
        };
        let args = stage.args.iter().map(render).collect::<Result<Vec<_>, _>>()?;
        let config = stage
            .with
            .iter()
            .map(|(key, template)| Ok((key.clone(), render(template)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let env = stage
            .env
            .iter()
            .map(|(key, template)| Ok((key.clone(), render(template)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;

        let globs: Vec<&str> = stage.inputs.iter().map(|glob| glob.pattern.as_str()).collect();
        let inputs = self
            .workspace
            .select_indices(&globs)
            .map_err(|error| error.to_string())?;
        let files = self.workspace.files();
        let mut listed = Vec::with_capacity(inputs.len());
        for &index in &inputs {
            let file = &files[index];
            let digest =
                self.input_digests[index].ok_or_else(|| format!("the input `{}` was not hashed", file.path))?;
            listed.push((file.path.as_str(), digest, file.stamp.size, file.stamp.executable()));
        }
        let inputs_digest = Tree::digest_of_files(listed);

        let needs: BTreeMap<String, Digest> = upstream.digests.clone();
        let every_need_succeeded = stage.needs.iter().all(|need| needs.contains_key(need));
        let mut secrets = stage.secrets.clone();
        secrets.sort();
        let mut network = stage.network.clone();
        network.sort();
        let parts = KeyParts {
            stage: stage.name.clone(),
            component: component.digest,
            format: component.format.as_str().to_owned(),
            args,
            config,
            env,
            secrets,
            network,
            clock: match stage.clock {
                ClockGrant::Pinned => Clock::Pinned {
                    source_date_epoch: self.source_date_epoch,
                },
                ClockGrant::Real => Clock::Real,
            },
            random: stage.random,
            inputs: inputs_digest,
            needs,
        };
        let key = parts.key();
        let not_reused = if !every_need_succeeded {
            Some("it runs after a stage it needs did not succeed".to_owned())
        } else {
            match (stage.cache, parts.impurity()) {
                (Some(false), _) => Some("it has side effects (`cache = false`)".to_owned()),
                (None, Some(impurity)) => Some(format!(
                    "{impurity}, so its result is not reused (write `cache = true` in its table to \
                     reuse it while its key holds, as for a fetch keyed by its lockfile)"
                )),
                (Some(true), _) | (None, None) => None,
            }
        };
        Ok(Prepared {
            inputs,
            parts,
            key,
            not_reused,
        })
    }

    /// A result for this key, if one can be reused.
    fn lookup(&self, stage: &Stage, prepared: &Prepared) -> Option<Hit> {
        self.published(stage, prepared)
            .or_else(|| self.store.get_action(&prepared.key).map(Hit::Stored))
    }

    /// The last run's result when it had this key and `cairn-out/<stage>/`
    /// still holds exactly what it published. Other stages are checked at
    /// the same time, under the same read lock.
    fn published(&self, stage: &Stage, prepared: &Prepared) -> Option<Hit> {
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

    /// Where the stage's log lines and annotations go.
    fn observer(&self, stage: &Stage) -> StageEvents {
        StageEvents {
            stage: stage.name.clone(),
            reporter: Arc::clone(&self.reporter),
        }
    }

    /// Lays a stored result out in `cairn-out/<stage>/`, every blob checked.
    async fn restore(&self, stage: &Stage, entry: &ActionEntry) -> Result<(), TreeError> {
        let store = Arc::clone(&self.store);
        let outputs = entry.outputs;
        let scratch = self.scratch.clone();
        let folder = self.output_root.to_publish(&stage.name);
        let published = tokio::task::spawn_blocking(move || -> Result<Published, TreeError> {
            let tree = Tree::load(&store, &outputs)?;
            let staging = tempfile::Builder::new()
                .prefix("restore-")
                .tempdir_in(&scratch)
                .map_err(StoreError::io(&scratch))?;
            let tree_root = staging.path().join("tree");
            tree.materialize(&store, &tree_root, Materialize::Copy)?;
            output_dir::replace(&tree_root, &folder).map_err(|error| StoreError::Io {
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
    fn report_reused(
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

    /// `--check`: runs a stage that hit and compares what it produces now
    /// with what the cache holds.
    #[allow(clippy::too_many_arguments)]
    async fn check(
        &self,
        stage: &Stage,
        component: &ComponentRef,
        prepared: Prepared,
        upstream: Upstream,
        hit: Hit,
        observer: Arc<dyn StageObserver>,
        started: Instant,
    ) -> StageResult {
        let expected = match &hit {
            Hit::Published { produced, .. } => produced.outputs,
            Hit::Stored(entry) => entry.outputs,
        };
        let ran = match self
            .run(stage, component, &prepared, &upstream, Arc::clone(&observer))
            .await
        {
            Ok(ran) => ran,
            Err((error, attempts)) => {
                let error = format!("failed when rerun to check its cached result: {error}");
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

    /// Runs the stage (with its retries) and stores what it produced.
    async fn run(
        &self,
        stage: &Stage,
        component: &ComponentRef,
        prepared: &Prepared,
        upstream: &Upstream,
        observer: Arc<dyn StageObserver>,
    ) -> Result<Ran, (String, u32)> {
        let failed = |error: String| (error, 1);
        if let Some(reason) = &prepared.not_reused {
            observer.log(&LogLine {
                source: LogSource::Host,
                level: Level::Info,
                text: format!("runs every time: {reason}"),
            });
        }
        let snapshot = self
            .snapshot_inputs(&prepared.inputs)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let placement = Placement {
            src: snapshot.as_ref().map(|snapshot| snapshot.path().to_owned()),
            needed: Box::new(|need| {
                let folder = self.output_root.join(need);
                (upstream.outputs.contains_key(need) && folder.is_dir()).then_some(folder)
            }),
            secret: Box::new(|name| self.secrets.get(name)),
            limits: stage.limits,
        };
        let sandbox = prepared.parts.sandbox(&prepared.key, placement).map_err(failed)?;
        let bytes = component.bytes().await.map_err(|error| failed(error.to_string()))?;
        let runtime = self.runtime.get().await.map_err(|error| failed(error.to_string()))?;
        let loaded = runtime
            .load(bytes)
            .await
            .map_err(|error| failed(format!("cannot load its component: {error}")))?;
        for attempt in 1..=stage.retries + 1 {
            self.reporter.event(&Event::StageStarted {
                stage: stage.name.clone(),
                attempt,
            });
            let run = runtime
                .run(&loaded, &sandbox, Arc::clone(&observer))
                .await
                .map_err(|error| (error.to_string(), attempt))?;
            match &run.result {
                Ok(outcome) => {
                    let outcome = outcome.clone();
                    return self
                        .store_outputs(run, outcome, attempt)
                        .await
                        .map_err(|error| (error, attempt));
                }
                Err(failure) if attempt <= stage.retries => {
                    observer.log(&notice(format!("attempt {attempt} {failure}; retrying")));
                }
                Err(failure) => {
                    let mut error = failure.to_string();
                    if let Some(hint) = failure.hint() {
                        error.push_str(&format!("\nhint: {hint}"));
                    }
                    return Err((error, attempt));
                }
            }
        }
        Err(("the stage did not run".to_owned(), 0))
    }

    /// Copies the input files into the store (checking they are still what
    /// was hashed) and links them into a read-only snapshot for `/src`.
    async fn snapshot_inputs(&self, indices: &[usize]) -> Result<Option<tempfile::TempDir>, TreeError> {
        if indices.is_empty() {
            return Ok(None);
        }
        let files = self.workspace.files();
        let inputs = Tree::new(
            indices
                .iter()
                .map(|&index| Entry {
                    path: files[index].path.clone(),
                    kind: EntryKind::File {
                        digest: self.input_digests[index].unwrap_or_else(|| Digest::of(b"")),
                        size: files[index].stamp.size,
                        executable: files[index].stamp.executable(),
                    },
                })
                .collect(),
        );
        let store = Arc::clone(&self.store);
        let root = self.workspace.root().to_owned();
        let scratch = self.scratch.clone();
        tokio::task::spawn_blocking(move || {
            for entry in inputs.entries() {
                if let EntryKind::File { digest, .. } = &entry.kind
                    && !store.has_blob(digest)
                {
                    store.put_file(&root.join(&entry.path), Some(*digest))?;
                }
            }
            inputs.store(&store)?;
            let snapshot = tempfile::Builder::new()
                .prefix("src-")
                .tempdir_in(&scratch)
                .map_err(StoreError::io(&scratch))?;
            inputs.materialize(&store, snapshot.path(), Materialize::Link)?;
            Ok(Some(snapshot))
        })
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    }

    /// Stores a successful run's outputs and log.
    async fn store_outputs(&self, run: StageRun, outcome: Outcome, attempts: u32) -> Result<Ran, String> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let (tree, outputs) = Tree::ingest(&store, run.outputs()).map_err(|error| error.to_string())?;
            let log = if run.log.lines.is_empty() {
                None
            } else {
                let bytes = serde_json::to_vec(&run.log.lines).map_err(|error| error.to_string())?;
                Some(store.put_bytes(&bytes).map_err(|error| error.to_string())?)
            };
            Ok(Ran {
                produced: Produced {
                    outputs,
                    outcome,
                    log,
                    annotations: run.annotations.clone(),
                },
                tree,
                attempts,
                run,
            })
        })
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    }

    /// Records a fresh result in the action cache and publishes it.
    fn publish(&self, stage: &Stage, prepared: Prepared, ran: Ran, started: Instant) -> StageResult {
        let duration_ms = ran.run.duration.as_millis() as u64;
        let produced = ran.produced;
        if prepared.cacheable() {
            let entry = ActionEntry::new(
                produced.outputs,
                produced.log.unwrap_or_else(|| Digest::of(b"")),
                produced.log.is_some(),
                produced.annotations.clone(),
                produced.outcome.clone(),
                duration_ms,
            );
            if let Err(error) = self.store.put_action(&prepared.key, &entry) {
                tracing::warn!(%error, "cannot record the stage's result in the cache");
            }
        }
        let folder = self.output_root.to_publish(&stage.name);
        if let Err(error) = output_dir::replace(ran.run.outputs(), &folder) {
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

    fn fail(
        &self,
        stage: &Stage,
        error: impl Into<String>,
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

/// A line from cairn itself in a stage's log.
fn notice(text: String) -> LogLine {
    LogLine {
        source: LogSource::Host,
        level: Level::Warn,
        text,
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
            path: annotation.path.clone(),
            line: annotation.line,
            column: annotation.column,
            severity: annotation.severity,
            message: annotation.message.clone(),
        });
    }
}
