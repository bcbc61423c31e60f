//! A whole `cairn run`: load and check the pipeline, walk the workspace once,
//! get every component ready (building stage folders), then schedule.
//!
//! Everything that can be wrong with the request is found before the first
//! stage starts, so a broken pipeline or an unloadable component fails fast
//! (exit 2) instead of halfway through a run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache_dir::CacheDir;
use crate::component::LoadError;
use crate::component_source::{ComponentSources, SourceError};
use crate::executor::StageExecutor;
use crate::pipeline::{self, Diagnostic, Graph, LoadFailure, Pipeline};
use crate::report::{Event, Reporter};
use crate::runtime::{LoadedComponent, Runtime};
use crate::scheduler::{self, ConditionContext, Options, RunResults};
use crate::secrets::Secrets;
use crate::workspace::{OUTPUT_FOLDER, Workspace, WorkspaceError};

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
    /// A stage's component cannot be had.
    #[error("stage `{stage}`: {source}")]
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
    let pipeline = pipeline::load(file)?;
    let graph = Graph::new(&pipeline.stages)
        .map_err(|cycle| RunError::Selection(format!("cycle: {}", cycle.join(" → "))))?;
    let selected = scheduler::select(&pipeline, &graph, targets).map_err(RunError::Selection)?;
    let workspace = Workspace::scan(&pipeline.root)?;
    let warnings = input_warnings(&pipeline, &workspace);
    Ok(Prepared {
        pipeline: Arc::new(pipeline),
        graph,
        selected,
        workspace: Arc::new(workspace),
        warnings,
    })
}

/// A warning for each `inputs` glob that selects no file: usually a typo,
/// and a stage that sees an empty `/src` where it expected files.
pub fn input_warnings(pipeline: &Pipeline, workspace: &Workspace) -> Vec<Diagnostic> {
    let mut seen = HashSet::new();
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
}

/// Gets every selected stage's component ready (building stage folders and
/// compiling components), then runs the stages.
///
/// Run it on a runtime worker (`tokio::spawn`), not in `block_on`: the
/// scheduler then dispatches stages without a thread hand-off each time,
/// which is most of its cost otherwise.
pub async fn execute(
    prepared: Prepared,
    settings: RunSettings,
    cache: CacheDir,
    runtime: Arc<Runtime>,
    reporter: Arc<dyn Reporter>,
    interrupt: impl Future<Output = ()>,
) -> Result<RunResults, RunError> {
    let source_date_epoch = source_date_epoch()?;
    let components = load_components(&prepared, &cache, &runtime).await?;
    let pipeline = &prepared.pipeline;
    let output_root = pipeline.root.join(OUTPUT_FOLDER);
    prepare_output_root(&output_root).map_err(|source| {
        RunError::Workspace(WorkspaceError::Snapshot {
            path: output_root.clone(),
            source,
        })
    })?;
    let executor = Arc::new(StageExecutor {
        runtime,
        pipeline: Arc::clone(pipeline),
        components,
        workspace: Arc::clone(&prepared.workspace),
        scratch: cache.scratch().map_err(|error| {
            RunError::Workspace(WorkspaceError::Walk {
                path: cache.root().to_owned(),
                message: error.to_string(),
            })
        })?,
        output_root,
        secrets: settings.secrets,
        reporter: Arc::clone(&reporter),
        source_date_epoch,
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
        branch: crate::git::current_branch(&pipeline.root),
    };
    let results = scheduler::run(
        pipeline,
        &prepared.graph,
        &prepared.selected,
        executor,
        reporter.as_ref(),
        settings.options,
        &context,
        interrupt,
    )
    .await;
    reporter.event(&results.finished_event());
    Ok(results)
}

/// Fetches or builds, then loads, each distinct component of the selected stages.
async fn load_components(
    prepared: &Prepared,
    cache: &CacheDir,
    runtime: &Runtime,
) -> Result<Vec<Option<Arc<LoadedComponent>>>, RunError> {
    let sources = ComponentSources::new(cache.clone());
    let mut components = Vec::with_capacity(prepared.pipeline.stages.len());
    for (stage, selected) in prepared.pipeline.stages.iter().zip(&prepared.selected) {
        if !selected {
            components.push(None);
            continue;
        }
        let bytes = sources
            .bytes(&stage.uses)
            .await
            .map_err(|source| RunError::Source {
                stage: stage.name.clone(),
                source,
            })?;
        let component = runtime.load(bytes).await.map_err(|source| RunError::Load {
            stage: stage.name.clone(),
            source,
        })?;
        components.push(Some(component));
    }
    Ok(components)
}

/// Creates `cairn-out/` with a `.gitignore`, so its contents are never committed.
fn prepare_output_root(output_root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(output_root)?;
    let ignore = output_root.join(".gitignore");
    if !ignore.exists() {
        crate::cache_dir::write_atomically(&ignore, b"*\n")?;
    }
    Ok(())
}

/// What the pinned clock reads: `SOURCE_DATE_EPOCH`, or 0.
pub fn source_date_epoch() -> Result<u64, RunError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|_| RunError::SourceDateEpoch(value)),
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
