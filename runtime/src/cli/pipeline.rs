//! The commands a team lives in: `cairn run`, `cairn validate`,
//! `cairn graph` and `cairn init`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use cairn::CacheDir;
use cairn::deploy::DeploySettings;
use cairn::executor::CacheMode;
use cairn::oci::resolve::{ResolveOptions, Update};
use cairn::pipeline::{self, Graph, GraphFormat};
use cairn::report::{JsonReporter, LiveReporter, PlainReporter, Reporter, Style, paint};
use cairn::run::{self, RunSettings};
use cairn::scheduler::Options;
use cairn::secrets::Secrets;

use super::args::{PipelineLocation, RegistryArgs};
use super::history::ExportArgs;
use super::{Status, terminal};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Stages to run, with everything they need (default: all).
    #[arg(value_name = "STAGE")]
    stages: Vec<String>,

    #[command(flatten)]
    location: PipelineLocation,

    #[command(flatten)]
    execution: ExecutionArgs,

    /// Stop at the first failure: start no more stages (running ones finish).
    /// By default stages that do not depend on a failed one still run.
    #[arg(long)]
    fail_fast: bool,

    /// Accepted for scripts written for earlier versions: running
    /// independent stages after a failure is now the default.
    #[arg(long, hide = true, conflicts_with = "fail_fast")]
    keep_going: bool,

    /// Run every stage, reusing nothing from the cache (results are still stored).
    #[arg(long, conflicts_with = "check")]
    no_cache: bool,

    /// Rerun the stages whose result is cached and fail those whose outputs
    /// come out different: nondeterminism is reported, not hidden.
    #[arg(long)]
    check: bool,
}

impl RunArgs {
    pub(crate) fn execute(self, verbose: u8, trust: cairn::Trust) -> anyhow::Result<Status> {
        let file = self.location.path();
        let cache = CacheDir::from_env()?;
        let (prepared, state) = run::prepare_with_state(&file, &self.stages, &cache)?;
        for warning in &prepared.warnings {
            eprint!("{}", prepared.pipeline.file.render(warning));
        }
        let mode = CacheMode {
            read: !self.no_cache,
            check: self.check,
        };
        let settings = self.execution.settings(trust, mode, self.fail_fast)?;
        self.execution.run(prepared, state, settings, cache, verbose)
    }
}

/// How a command that runs stages runs them: shared by `run`, `rollback`
/// and `monitor`.
#[derive(Debug, Args)]
pub(crate) struct ExecutionArgs {
    /// Run at most N stages at once (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,

    /// Print one JSON object per event on stdout instead of the terminal view.
    #[arg(long)]
    pub(crate) json: bool,

    /// Read secret values from FILE (`NAME=value` lines) before the environment.
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,

    /// Approve deployments to ENV up front (repeatable): for automation
    /// that has already decided. Recorded as approved by you with --approve.
    #[arg(long = "approve", value_name = "ENV")]
    approve: Vec<String>,

    /// Fail at once, instead of waiting, when another run is deploying the
    /// same environment.
    #[arg(long)]
    no_wait: bool,

    /// Fail if cairn.lock would change (a component not pinned, or pinned but unused): for CI.
    #[arg(long)]
    locked: bool,

    #[command(flatten)]
    registry: RegistryArgs,

    #[command(flatten)]
    export: ExportArgs,

    #[command(flatten)]
    shared: super::remote::SharedCacheArgs,

    /// Send stages to the worker pool (`cairn worker`) through the shared
    /// cache's server instead of running them here, as `[remote] execute`.
    #[arg(long = "workers", env = "CAIRN_WORKERS")]
    workers: bool,
}

impl ExecutionArgs {
    fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
            .max(1)
    }

    /// The reporter for this terminal (or `--json`).
    pub(crate) fn reporter(&self, verbose: u8) -> Arc<dyn Reporter> {
        if self.json {
            Arc::new(JsonReporter::default())
        } else if std::io::stderr().is_terminal() {
            Arc::new(LiveReporter::new(verbose > 0))
        } else {
            Arc::new(PlainReporter::new(verbose > 0))
        }
    }

    /// The settings of one run (secrets read now).
    pub(crate) fn settings(
        &self,
        trust: cairn::Trust,
        cache: CacheMode,
        fail_fast: bool,
    ) -> anyhow::Result<RunSettings> {
        let secrets = match &self.secrets_file {
            Some(path) => Secrets::from_file(path)?,
            None => Secrets::from_env(),
        };
        Ok(RunSettings {
            options: Options {
                jobs: self.jobs(),
                fail_fast,
            },
            secrets,
            cache,
            remote: ResolveOptions {
                locked: self.locked,
                update: Update::Nothing,
                registry: self.registry.settings(),
            },
            trust,
            exiting: true,
            deploy: DeploySettings {
                approve: self.approve.clone(),
                no_wait: self.no_wait,
                interactive: !self.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            },
            rollback: None,
            monitor: Default::default(),
            always_run: Vec::new(),
            history: Some(cairn::runs::Retention::from_env()?),
            shared: self.shared.request(self.workers),
        })
    }

    /// The async runtime runs go on.
    pub(crate) fn async_runtime(&self) -> anyhow::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.jobs().max(2))
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    }

    /// Runs a prepared pipeline to its exit status.
    pub(crate) fn run(
        &self,
        prepared: run::Prepared,
        state: cairn::state::WorkspaceState,
        settings: RunSettings,
        cache: CacheDir,
        verbose: u8,
    ) -> anyhow::Result<Status> {
        let reporter = self.reporter(verbose);
        let executor = self.async_runtime()?;
        let results = executor.block_on(async {
            let run = run::execute(prepared, state, settings, cache, reporter, ctrl_c());
            anyhow::Ok(tokio::spawn(run).await.context("the run's task failed")??)
        })?;
        // Nothing is left running: no need to wait for each worker to stop.
        executor.shutdown_background();
        if let Some(record) = &results.record {
            self.export.write(record, self.json)?;
        }
        Ok(if results.interrupted {
            Status::Interrupted
        } else if results.succeeded() {
            Status::Success
        } else {
            Status::StageFailed
        })
    }
}

/// Resolves at Ctrl-C; never, if the handler cannot be installed.
pub(crate) async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    location: PipelineLocation,
}

impl ValidateArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let prepared = run::prepare(&self.location.path(), &[])?;
        for warning in &prepared.warnings {
            eprint!("{}", prepared.pipeline.file.render(warning));
        }
        let pipeline = &prepared.pipeline;
        eprintln!(
            "{} {} is valid: pipeline `{}`, {} stages",
            paint("ok:", Style::Success),
            pipeline.file.name.display(),
            pipeline.name,
            pipeline.stages.len()
        );
        Ok(Status::Success)
    }
}

/// How `cairn graph` draws the pipeline.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    /// A Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    location: PipelineLocation,

    /// The drawing format.
    #[arg(long, value_enum, default_value_t = FormatArg::Mermaid)]
    format: FormatArg,
}

impl GraphArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let pipeline = pipeline::load(&self.location.path())?;
        let graph = Graph::new(&pipeline.stages).map_err(|cycle| anyhow::anyhow!("cycle: {}", cycle.join(" → ")))?;
        let format = match self.format {
            FormatArg::Mermaid => GraphFormat::Mermaid,
            FormatArg::Dot => GraphFormat::Dot,
        };
        terminal::print_out(&graph.render(&pipeline.stages, format))?;
        Ok(Status::Success)
    }
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Write cairn.toml in DIR.
    #[arg(short = 'C', long = "directory", value_name = "DIR", default_value = ".")]
    directory: PathBuf,

    /// Replace an existing cairn.toml.
    #[arg(long)]
    force: bool,
}

/// The starter pipeline `cairn init` writes: runnable as is, and a tour of the keys.
const STARTER: &str = include_str!("starter.toml");

impl InitArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let path = self.directory.join(pipeline::PIPELINE_FILE);
        if path.exists() && !self.force {
            bail!(
                "`{}` already exists\nhint: pass --force to replace it, or edit it",
                path.display()
            );
        }
        std::fs::create_dir_all(&self.directory)
            .with_context(|| format!("cannot create `{}`", self.directory.display()))?;
        std::fs::write(&path, STARTER).with_context(|| format!("cannot write `{}`", path.display()))?;
        eprintln!(
            "{} wrote {}; run it with `cairn run{}`",
            paint("ok:", Style::Success),
            path.display(),
            if self.directory == Path::new(".") {
                String::new()
            } else {
                format!(" -C {}", self.directory.display())
            }
        );
        Ok(Status::Success)
    }
}
