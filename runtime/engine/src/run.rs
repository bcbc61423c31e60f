//! A whole `cairn run`: load and check the pipeline, walk the workspace once,
//! get every component ready (building stage folders), then schedule.
//!
//! Everything that can be wrong with the request is found before the first
//! stage starts, so a broken pipeline or an unloadable component fails fast
//! (exit 2) instead of halfway through a run.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tracing::Instrument;

use crate::component_source::{ComponentRef, ComponentSources, FileComponentError, SourceError, file_component};
use crate::deploy::approval::Approvals;
use crate::deploy::history::History;
use crate::deploy::{DeploySettings, Deployments, RunInfo, Tracking, rollback_selection};
use crate::executor::{CacheMode, LazyRuntime, StageExecutor};
use crate::output_dir::OutputRoot;
use crate::runs::{Retention, RunHistory};
use crate::scheduler::{self, ConditionContext, Options, RunResults};
use crate::secrets::Secrets;
use crate::state::{WalkHints, WorkspaceState};
use crate::workspace::{OUTPUT_FOLDER, Workspace, WorkspaceError};
use cairn_cas::{Store, StoreError};
use cairn_component::{BinaryFormat, Digest, LoadError};
use cairn_core::cache_dir::CacheDir;
use cairn_core::scratch::ScratchSpace;
use cairn_oci::OciError;
use cairn_oci::resolve::{self, RemoteComponents, ResolveOptions};
use cairn_pipeline::{self as pipeline, Diagnostic, Graph, LoadFailure, Pipeline, Uses};
use cairn_report::record::{Recorder, RunHeader, RunRecord, StageRecord};
use cairn_report::{Event, Reporter, Status};
use cairn_sandbox::Trust;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline file is missing or invalid.
    #[error(transparent)]
    Pipeline(#[from] LoadFailure),
    /// The request names stages the pipeline does not have.
    #[error("{0}")]
    Selection(String),
    /// The workspace cannot be read.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// A stage's component cannot be had (the cause says why).
    #[error("stage `{stage}` has no component to run")]
    Source {
        /// The stage.
        stage: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// A stage's component cannot be loaded.
    #[error("stage `{stage}`: cannot load its component")]
    Load {
        /// The stage.
        stage: String,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The cache cannot be used.
    #[error(transparent)]
    Cache(StoreError),
    /// The pipeline's remote components cannot be pinned.
    #[error(transparent)]
    Remote(OciError),
    /// A stage's host tools cannot be granted.
    #[error(transparent)]
    Tools(#[from] crate::host_tools::ToolsError),
    /// The shared cache cannot be used.
    #[error(transparent)]
    Shared(#[from] crate::shared_cache::SharedCacheError),
    /// A rollback cannot be done (nothing to go back to, outputs gone).
    #[error("cannot roll back: {0}")]
    Rollback(String),
    /// `SOURCE_DATE_EPOCH` is set to something that is not a number.
    #[error("SOURCE_DATE_EPOCH is `{0}`, not a number of seconds since 1970")]
    SourceDateEpoch(String),
}

/// A pipeline checked, its stages selected and its workspace walked: ready
/// to run or to report on.
pub struct Prepared {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Its graph.
    pub graph: Graph,
    /// Which stages this run covers.
    pub selected: Vec<bool>,
    /// The workspace files.
    pub workspace: Arc<Workspace>,
    /// Problems worth a warning that do not stop the run.
    pub warnings: Vec<Diagnostic>,
}

/// Loads `file`, selects `targets` (all stages when empty) and walks the workspace.
pub fn prepare(file: &Path, targets: &[String]) -> Result<Prepared, RunError> {
    let pipeline = tracing::debug_span!("load the pipeline").in_scope(|| pipeline::load(file))?;
    let globs = input_globs(&pipeline);
    let workspace = tracing::debug_span!("walk the workspace")
        .in_scope(|| cairn_core::threads::install(|| Workspace::scan(&pipeline.root, &globs)))?;
    drop(globs);
    select(pipeline, workspace, targets)
}

/// [`prepare`] for a run, with the slow parts overlapped: what cairn
/// remembers of the workspace is read from `cache` on another thread, and
/// the workspace is walked, for the globs its pipeline had last time, while
/// the pipeline is parsed. If the globs changed, it is walked again.
pub fn prepare_with_state(
    file: &Path,
    targets: &[String],
    cache: &CacheDir,
) -> Result<(Prepared, WorkspaceState), RunError> {
    let root = pipeline::root_of(file);
    let hints_file = WalkHints::load(cache, &root);
    let hints = hints_file.hints();
    // The three are tasks of the run's thread pool, which the walk shares.
    let ((state, early), pipeline) = cairn_core::threads::install(|| {
        rayon::join(
            || {
                rayon::join(
                    || tracing::debug_span!("load the workspace state").in_scope(|| WorkspaceState::load(cache, &root)),
                    || {
                        (!hints.globs.is_empty()).then(|| {
                            tracing::debug_span!("walk the workspace")
                                .in_scope(|| Workspace::scan_remembering(&root, &hints.globs, &hints.listings))
                        })
                    },
                )
            },
            || tracing::debug_span!("load the pipeline").in_scope(|| pipeline::load_cached(file, cache)),
        )
    });
    let pipeline = pipeline?;
    let globs = input_globs(&pipeline);
    let (workspace, listed) = match early {
        Some(walked) if hints.globs == globs => walked?,
        _ => tracing::debug_span!("walk the workspace").in_scope(|| {
            cairn_core::threads::install(|| Workspace::scan_remembering(&pipeline.root, &globs, &hints.listings))
        })?,
    };
    if hints.globs != globs || listed.changed(&hints.listings) {
        let saved = hints_file.save(&globs, &listed.merge(&hints.listings));
        if let Err(error) = saved {
            tracing::debug!(%error, "cannot remember what the walk learned; the next run walks in full");
        }
    }
    drop(globs);
    Ok((select(pipeline, workspace, targets)?, state))
}

/// Every stage's `inputs` globs, selected or not (so that warnings about
/// globs that match nothing are the same whatever a run selects), sorted.
fn input_globs(pipeline: &Pipeline) -> Vec<&str> {
    let mut globs: Vec<&str> = pipeline
        .stages
        .iter()
        .flat_map(|stage| stage.inputs.iter().map(|glob| glob.pattern.as_str()))
        .collect();
    globs.sort_unstable();
    globs.dedup();
    globs
}

/// Selects `targets` of a loaded pipeline whose workspace was walked.
fn select(pipeline: Pipeline, workspace: Workspace, targets: &[String]) -> Result<Prepared, RunError> {
    let graph =
        Graph::new(&pipeline.stages).map_err(|cycle| RunError::Selection(format!("cycle: {}", cycle.join(" → "))))?;
    let mut selected = scheduler::select(&pipeline, &graph, targets).map_err(RunError::Selection)?;
    if targets.is_empty() {
        // Stages that answer `cairn monitor`'s changes run when named only.
        let handlers: HashSet<&str> = pipeline
            .stages
            .iter()
            .flat_map(|stage| stage.on_change.iter().map(String::as_str))
            .collect();
        if !handlers.is_empty() {
            for (stage, selected) in pipeline.stages.iter().zip(selected.iter_mut()) {
                if handlers.contains(stage.name.as_str()) {
                    *selected = false;
                }
            }
        }
    }
    let warnings = input_warnings(&pipeline, &workspace);
    Ok(Prepared {
        pipeline: Arc::new(pipeline),
        graph,
        selected,
        workspace: Arc::new(workspace),
        warnings,
    })
}

/// A warning for each `inputs` glob that selects no file (usually a typo,
/// and a stage that sees an empty `/src` where it expected files), for each
/// symbolic link a glob selects that leads out of the workspace (stages see
/// it as a link that leads nowhere), and for each FIFO, socket or device a
/// glob matches (never an input). Each file is named once.
pub fn input_warnings(pipeline: &Pipeline, workspace: &Workspace) -> Vec<Diagnostic> {
    let mut seen = HashSet::new();
    let mut named = HashSet::new();
    let mut warnings = Vec::new();
    for stage in &pipeline.stages {
        for glob in &stage.inputs {
            if !seen.insert(glob.span.clone()) {
                continue;
            }
            if let Ok(false) = workspace.matches_anything(&glob.pattern) {
                warnings.push(
                    Diagnostic::warning(format!("`{}` matches no file in the workspace", glob.pattern), glob.span.clone())
                        .with_hint("globs match paths relative to the pipeline's folder; `*` stays in one folder, `**` crosses folders"),
                );
            }
            for file in workspace.links_matching(&glob.pattern).unwrap_or_default() {
                if !named.insert(file.path.clone()) {
                    continue;
                }
                let Ok(target) = workspace.link_target(file) else {
                    continue;
                };
                if !cairn_core::files::link_stays_inside(Path::new(&file.path), Path::new(&target)) {
                    warnings.push(
                        Diagnostic::warning(
                            format!(
                                "`{}` is a symbolic link to `{target}`, outside the workspace: stages see the link, \
                                 which leads nowhere in their sandbox, and never what it points at",
                                file.path
                            ),
                            glob.span.clone(),
                        )
                        .with_hint(
                            "inputs are the workspace's own files; copy the file in, or leave the link out of `inputs`",
                        ),
                    );
                }
            }
            for path in workspace.special_matches(&glob.pattern).unwrap_or_default() {
                if named.insert(path.to_owned()) {
                    warnings.push(Diagnostic::warning(
                        format!("`{path}` is a FIFO, socket or device, not a file: it is left out of `/src`"),
                        glob.span.clone(),
                    ));
                }
            }
        }
    }
    warnings
}

/// How to run a prepared pipeline.
pub struct RunSettings {
    /// Scheduling options.
    pub options: Options,
    /// Where secret values come from.
    pub secrets: Secrets,
    /// How the cache is used.
    pub cache: CacheMode,
    /// How remote components are pinned and fetched.
    pub remote: ResolveOptions,
    /// The certificate authorities stages' HTTPS requests trust.
    pub trust: Trust,
    /// The process exits when the run ends (a command line does): what the
    /// run built is then left for the operating system to take back, not
    /// freed piece by piece.
    pub exiting: bool,
    /// Approvals given up front, and whether to wait for a busy environment.
    pub deploy: DeploySettings,
    /// `cairn rollback`: redeploy an environment's recorded artifacts
    /// instead of running the pipeline.
    pub rollback: Option<RollbackRequest>,
    /// What `${{ monitor.* }}` reads (`cairn monitor`'s handlers).
    pub monitor: std::collections::BTreeMap<String, String>,
    /// Stages run even when their result could be reused.
    pub always_run: Vec<String>,
    /// Keep the run in the history, trimmed to this (`None`: not kept, as
    /// `cairn monitor`'s rounds, which it records itself).
    pub history: Option<Retention>,
    /// The shared cache asked for on the command line (the pipeline's
    /// `[remote]` otherwise).
    pub shared: crate::shared_cache::SharedCacheRequest,
}

/// `cairn rollback ENV [--to ID]`.
#[derive(Clone, Debug)]
pub struct RollbackRequest {
    /// The environment.
    pub environment: String,
    /// The deployment to go back to; by default the newest successful one
    /// before the newest.
    pub to: Option<u64>,
}

/// Brings `cairn.lock` in line with the pipeline's remote components (the
/// whole pipeline's, whatever stages run), saying what moved.
async fn resolve_remote(
    pipeline: &Pipeline,
    store: &Store,
    options: &ResolveOptions,
) -> Result<RemoteComponents, RunError> {
    let remote = resolve::resolve(&pipeline.oci_references(), &pipeline.lock_path(), store, options)
        .instrument(tracing::debug_span!("resolve remote components"))
        .await
        .map_err(RunError::Remote)?;
    for change in &remote.changes {
        tracing::info!("{}: {change}", pipeline.lock_path().display());
    }
    Ok(remote)
}

/// Gets every selected stage's component and input digests ready (building
/// stage folders, hashing changed files), then runs the stages through the
/// cache. Nothing is compiled unless some stage has to run.
///
/// Run it on a runtime worker (`tokio::spawn`), not in `block_on`: the
/// scheduler then dispatches stages without a thread hand-off each time,
/// which is most of its cost otherwise.
pub async fn execute(
    mut prepared: Prepared,
    mut state: WorkspaceState,
    settings: RunSettings,
    cache: CacheDir,
    reporter: Arc<dyn Reporter>,
    interrupt: impl Future<Output = ()>,
) -> Result<RunResults, RunError> {
    let exiting = settings.exiting;
    let source_date_epoch = source_date_epoch()?;
    let pipeline = Arc::clone(&prepared.pipeline);
    let store = Arc::new(Store::open(&cache).map_err(RunError::Cache)?);
    let scratch = ScratchSpace::new(cache.scratch().map_err(|error| {
        RunError::Cache(StoreError::Io {
            path: cache.root().to_owned(),
            source: std::io::Error::other(error.to_string()),
        })
    })?);
    if let Some(unknown) = settings
        .deploy
        .approve
        .iter()
        .find(|name| !pipeline.environments.contains_key(*name))
    {
        let hint = pipeline::did_you_mean(unknown, pipeline.environments.keys().map(String::as_str))
            .map(|close| format!("; did you mean `{close}`?"))
            .unwrap_or_default();
        return Err(RunError::Selection(format!(
            "--approve names `{unknown}`, which is not an environment of this pipeline{hint}"
        )));
    }
    let making_room = settings.history.map(|retention| {
        let history = RunHistory::open(&cache);
        std::thread::spawn(move || history.make_room(retention))
    });
    let branch = crate::git::current_branch(&pipeline.root);
    let run_id = RunInfo::new_id();
    let commit = crate::git::current_commit(&pipeline.root);
    let recorder = Arc::new(Recorder::new(
        reporter,
        RunHeader {
            id: run_id.clone(),
            command: if settings.rollback.is_some() { "rollback" } else { "run" }.to_owned(),
            file: std::fs::canonicalize(&pipeline.file.name)
                .unwrap_or_else(|_| pipeline.file.name.clone())
                .display()
                .to_string(),
            commit: commit.clone(),
            branch: branch.clone(),
            stages: pipeline
                .stages
                .iter()
                .map(|stage| StageRecord {
                    name: stage.name.clone(),
                    needs: stage.needs.clone(),
                    environment: stage.environment.clone(),
                    ..StageRecord::default()
                })
                .collect(),
        },
    ));
    let reporter: Arc<dyn Reporter> = Arc::clone(&recorder) as Arc<dyn Reporter>;
    let deployments = Arc::new(Deployments::new(
        History::open(&cache, &pipeline.name),
        Approvals::open(&cache),
        Arc::clone(&pipeline),
        RunInfo {
            id: run_id,
            branch: branch.clone(),
            commit,
        },
        settings.deploy.clone(),
        Arc::clone(&reporter),
        Arc::clone(&store),
        scratch.dir().to_owned(),
    ));
    let reporter: Arc<dyn Reporter> = Arc::new(Tracking {
        inner: reporter,
        deployments: Arc::clone(&deployments),
    });
    if let Some(request) = &settings.rollback {
        prepared.selected = plan_rollback(&pipeline, &deployments, request)?;
    }
    let pinned: Vec<bool> = pipeline
        .stages
        .iter()
        .map(|stage| deployments.pinned(&stage.name).is_some())
        .collect();
    // Before anything slow (fetching, building): a tool missing from this
    // host is a mistake to report at once.
    let tools = tracing::debug_span!("find the host tools")
        .in_scope(|| crate::host_tools::resolve(&pipeline, &prepared.selected, &cache))?;
    let opened = settings.shared.open(Some(&pipeline), false).await?;
    let (shared, workers) = match opened {
        Some(opened) => (Some(opened.cache), opened.queue.map(crate::executor::WorkerPool::new)),
        None => (None, None),
    };
    let remote = resolve_remote(&pipeline, &store, &settings.remote).await?;
    let sources = ComponentSources::new(cache.clone())
        .with_remote(remote, Arc::clone(&store))
        .with_shared(shared.clone(), Arc::clone(&store));
    let components = component_refs(&prepared, &pinned, &sources, &mut state).await?;
    let input_digests = tracing::debug_span!("hash the inputs").in_scope(|| hash_inputs(&prepared, &mut state))?;
    let output_root = pipeline.root.join(OUTPUT_FOLDER);
    let output_root = prepare_output_root(&output_root)
        .and_then(|()| OutputRoot::open(output_root.clone()))
        .map_err(|source| {
            RunError::Cache(StoreError::Io {
                path: output_root,
                source,
            })
        })?;
    let state = Arc::new(RwLock::new(state));
    let executor = Arc::new(StageExecutor {
        runtime: LazyRuntime::new(cache.clone(), settings.trust).sharing(Arc::clone(&scratch)),
        pipeline: Arc::clone(&pipeline),
        components,
        workspace: Arc::clone(&prepared.workspace),
        input_digests,
        store: Arc::clone(&store),
        state: Arc::clone(&state),
        scratch,
        output_root,
        secrets: settings.secrets,
        branch: branch.clone(),
        reporter: Arc::clone(&reporter),
        source_date_epoch,
        mode: settings.cache,
        tools,
        deployments: Arc::clone(&deployments),
        monitor: settings.monitor.clone(),
        always_run: settings.always_run.clone(),
        repository_prefix: crate::git::repository_prefix(&pipeline.root).into(),
        shared,
        workers,
    });
    reporter.event(&Event::PipelineStarted {
        pipeline: pipeline.name.clone(),
        stages: pipeline
            .stages
            .iter()
            .zip(&prepared.selected)
            .filter(|(_, selected)| **selected)
            .map(|(stage, _)| stage.name.clone())
            .collect(),
        jobs: settings.options.jobs,
    });
    let context = ConditionContext {
        branch,
        monitor: settings.monitor.clone(),
    };
    let mut interrupt = std::pin::pin!(interrupt);
    deployments.start_pass(&prepared.selected);
    let mut results = scheduler::run(
        &pipeline,
        &prepared.graph,
        &prepared.selected,
        Arc::clone(&executor),
        reporter.as_ref(),
        settings.options,
        &context,
        interrupt.as_mut(),
    )
    .instrument(tracing::debug_span!("run the stages"))
    .await;
    // `rollback = "auto"`: a deployment whose verification failed gives
    // way to the one before it, verified again; the run still fails.
    for (environment, failed) in deployments.auto_rollbacks() {
        if results.interrupted {
            break;
        }
        let target = match deployments.plan_rollback(&environment, None, Some(failed), true) {
            Ok(target) => target,
            Err(error) => {
                deployments.event(
                    &environment,
                    Some(failed),
                    "failed",
                    format!("verification failed and there is no rolling back: {error}"),
                );
                continue;
            }
        };
        deployments.event(
            &environment,
            Some(failed),
            "rolling_back",
            format!("verification failed: rolling back to #{}", target.id),
        );
        let pinned: Vec<String> = target.artifacts.iter().map(|artifact| artifact.stage.clone()).collect();
        let selected = rollback_selection(&pipeline, &environment, &pinned);
        deployments.start_pass(&selected);
        let rollback = scheduler::run(
            &pipeline,
            &prepared.graph,
            &selected,
            Arc::clone(&executor),
            reporter.as_ref(),
            settings.options,
            &context,
            interrupt.as_mut(),
        )
        .instrument(tracing::debug_span!("roll back", environment))
        .await;
        results.duration += rollback.duration;
        results.interrupted |= rollback.interrupted;
    }
    let saved = tracing::debug_span!("save the workspace state")
        .in_scope(|| state.write().unwrap_or_else(PoisonError::into_inner).save());
    if let Err(error) = saved {
        tracing::warn!(%error, "cannot save what cairn remembers of this workspace; the next run will hash again");
    }
    // The record is written while the summary is printed.
    let finished = results.finished_event();
    let record = recorder.finish(&finished).map(|mut record| {
        explain_record(
            &mut record,
            &pipeline,
            &store,
            &state.read().unwrap_or_else(PoisonError::into_inner),
        );
        Arc::new(record)
    });
    if let Some(Err(panic)) = making_room.map(std::thread::JoinHandle::join) {
        std::panic::resume_unwind(panic);
    }
    let keeping = match (settings.history, &record) {
        (Some(retention), Some(record)) => {
            let record = Arc::clone(record);
            let history = RunHistory::open(&cache);
            Some(std::thread::spawn(move || {
                tracing::debug_span!("keep the run in the history").in_scope(|| history.save(&record, retention))
            }))
        }
        _ => None,
    };
    reporter.event(&finished);
    reporter.flush();
    if let Some(Ok(Err(error))) = keeping.map(std::thread::JoinHandle::join) {
        tracing::warn!(%error, "cannot keep this run in the history");
    }
    results.record = record;
    if exiting {
        // Freeing a workspace of many files and a pipeline of many stages
        // takes a millisecond or two of a core the process is about to
        // give back, with everything it holds, as it exits.
        executor.release_scratch();
        std::mem::forget((executor, prepared, pipeline, state));
    }
    Ok(results)
}

/// Says in each stage's record why it ran: what changed since its
/// previous run (as `cairn explain` does); a reused stage's record already
/// says so by its status and key. A reused stage's test cases are read
/// again from the reports it published.
fn explain_record(record: &mut RunRecord, pipeline: &Pipeline, store: &Store, state: &WorkspaceState) {
    // Looked up by name only when some stage reads test reports: a
    // thousand cached stages pay nothing here.
    let reporting: HashMap<&str, &[String]> = pipeline
        .stages
        .iter()
        .filter(|stage| !stage.junit.is_empty())
        .map(|stage| (stage.name.as_str(), stage.junit.as_slice()))
        .collect();
    for stage in &mut record.stages {
        match stage.status {
            Some(Status::Cached) => {
                if let Some(reports) = reporting.get(stage.name.as_str()) {
                    let published = pipeline.root.join(OUTPUT_FOLDER).join(&stage.name);
                    stage.cases = crate::junit::read(&published, reports).cases;
                }
                if stage.key.is_none() {
                    stage.why = Some("reused: the outputs a deployment recorded, restored".to_owned());
                }
            }
            Some(Status::Succeeded) => stage.why = crate::explain::why_it_ran(store, state, &stage.name),
            Some(Status::Failed) if stage.key.is_some() => {
                stage.why = Some("it ran (no result was stored for its key) and failed".to_owned());
            }
            _ => {}
        }
    }
}

/// Plans `cairn rollback`: the environment's stages, with the artifacts
/// the chosen deployment recorded pinned in place of their stages.
fn plan_rollback(
    pipeline: &Pipeline,
    deployments: &Deployments,
    request: &RollbackRequest,
) -> Result<Vec<bool>, RunError> {
    let environment = &request.environment;
    if !pipeline.environments.contains_key(environment) {
        let hint = pipeline::did_you_mean(environment, pipeline.environments.keys().map(String::as_str))
            .map(|close| format!("; did you mean `{close}`?"))
            .unwrap_or_default();
        return Err(RunError::Selection(format!(
            "the pipeline has no environment `{environment}`{hint}"
        )));
    }
    let target = deployments
        .plan_rollback(environment, request.to, None, false)
        .map_err(|error| RunError::Rollback(error.to_string()))?;
    let pinned: Vec<String> = target.artifacts.iter().map(|artifact| artifact.stage.clone()).collect();
    if let Some(missing) = pinned.iter().find(|stage| pipeline.stage(stage).is_none()) {
        return Err(RunError::Rollback(format!(
            "deployment #{} deployed the outputs of `{missing}`, which the pipeline no longer has",
            target.id
        )));
    }
    Ok(rollback_selection(pipeline, environment, &pinned))
}

/// The digest of every workspace file some selected stage reads: remembered
/// for unchanged files, hashed (in parallel) for the others.
fn hash_inputs(prepared: &Prepared, state: &mut WorkspaceState) -> Result<Vec<Option<Digest>>, RunError> {
    let mut globs: Vec<&str> = Vec::new();
    for (stage, selected) in prepared.pipeline.stages.iter().zip(&prepared.selected) {
        if *selected {
            globs.extend(stage.inputs.iter().map(|glob| glob.pattern.as_str()));
        }
    }
    globs.sort_unstable();
    globs.dedup();
    let wanted = prepared.workspace.select_indices(&globs)?;
    Ok(cairn_core::threads::install(|| {
        state.digests(&prepared.workspace, &wanted)
    })?)
}

/// Fetches or builds each distinct component of the selected stages and
/// digests it; compiling waits until a stage has to run. A `.wasm` file
/// whose stamp is unchanged since it was last digested is not even read.
async fn component_refs(
    prepared: &Prepared,
    pinned: &[bool],
    sources: &ComponentSources,
    state: &mut WorkspaceState,
) -> Result<Vec<Option<ComponentRef>>, RunError> {
    let mut known: HashMap<Uses, ComponentRef> = HashMap::new();
    let mut components = Vec::with_capacity(prepared.pipeline.stages.len());
    for ((stage, selected), pinned) in prepared.pipeline.stages.iter().zip(&prepared.selected).zip(pinned) {
        // A rollback's pinned stages are restored, never run.
        if !selected || *pinned {
            components.push(None);
            continue;
        }
        if let Some(component) = known.get(&stage.uses) {
            components.push(Some(component.clone()));
            continue;
        }
        // Written by a needed stage: read once that stage has run.
        if matches!(stage.uses, Uses::Output { .. }) {
            components.push(None);
            continue;
        }
        let component = match &stage.uses {
            Uses::File(path) => {
                let (component, digested) = file_component(path, |stamp| state.component(path, stamp).cloned())
                    .map_err(|error| match error {
                        FileComponentError::Read(source) => RunError::Source {
                            stage: stage.name.clone(),
                            source: SourceError::Read {
                                path: path.clone(),
                                source,
                            },
                        },
                        FileComponentError::NotWasm => RunError::Load {
                            stage: stage.name.clone(),
                            source: LoadError::NotWasm,
                        },
                    })?;
                if let Some(record) = digested {
                    state.record_component(path, record);
                }
                component
            }
            uses => {
                let bytes = sources.bytes(uses).await.map_err(|source| RunError::Source {
                    stage: stage.name.clone(),
                    source,
                })?;
                let Some(format) = BinaryFormat::detect(&bytes) else {
                    return Err(RunError::Load {
                        stage: stage.name.clone(),
                        source: LoadError::NotWasm,
                    });
                };
                ComponentRef::loaded(Arc::clone(&bytes), Digest::of(&bytes), format)
            }
        };
        known.insert(stage.uses.clone(), component.clone());
        components.push(Some(component));
    }
    Ok(components)
}

/// Creates `cairn-out/` with a `.gitignore`, so its contents are never committed.
fn prepare_output_root(output_root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(output_root)?;
    let ignore = output_root.join(".gitignore");
    if !ignore.exists() {
        cairn_core::cache_dir::write_atomically(&ignore, b"*\n")?;
    }
    Ok(())
}

/// What the pinned clock reads: `SOURCE_DATE_EPOCH`, or 0.
pub fn source_date_epoch() -> Result<u64, RunError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.trim().is_empty() => value.trim().parse().map_err(|_| RunError::SourceDateEpoch(value)),
        _ => Ok(0),
    }
}

/// The pipeline file `cairn` uses: `file` when given (relative to `dir`),
/// otherwise `cairn.toml` in `dir`.
pub fn pipeline_file(dir: Option<&Path>, file: Option<&Path>) -> PathBuf {
    let file = file.unwrap_or(Path::new(pipeline::PIPELINE_FILE));
    match dir {
        Some(dir) => dir.join(file),
        None => file.to_owned(),
    }
}
