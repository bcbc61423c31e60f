//! Argument parsing and dispatch: one clap struct per subcommand, each with
//! an `execute` method (the shape of wasmtime's `src/commands`).

mod args;
mod cache;
mod deploy;
mod history;
mod otel;
mod pipeline;
mod registry;
mod remote;
mod stage;
pub(crate) mod terminal;
mod watch;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// How `cairn` exits. The numbers are part of the interface: scripts and CI
/// read them, and the README documents them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Everything asked for succeeded.
    Success = 0,
    /// A stage ran and failed (returned an error, trapped, exited non-zero,
    /// or crossed a bound).
    StageFailed = 1,
    /// Bad usage, an invalid file, or a component that cannot be loaded:
    /// nothing ran.
    Usage = 2,
    /// Interrupted by Ctrl-C; nothing half-written was kept.
    Interrupted = 130,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(status as u8)
    }
}

/// Hermetic DevOps pipelines whose every stage is a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Show more of what cairn does (-v: debug logs of stages, -vv: cairn's own tracing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Also trust this PEM file's certificate authorities for stages' HTTPS
    /// requests (repeatable; the platform's are always trusted).
    #[arg(
        long = "ca-cert",
        global = true,
        value_name = "FILE",
        env = "CAIRN_CA_CERT",
        value_delimiter = ':'
    )]
    ca_certs: Vec<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline (or the named stages and what they need).
    Run(Box<pipeline::RunArgs>),
    /// Check the pipeline file without running anything.
    Validate(pipeline::ValidateArgs),
    /// Print the pipeline's graph (Mermaid or DOT).
    Graph(pipeline::GraphArgs),
    /// Write a commented starter cairn.toml.
    Init(pipeline::InitArgs),
    /// Run the pipeline, then again whenever its files change, until Ctrl-C.
    Watch(Box<watch::WatchArgs>),
    /// List the recorded runs of the pipeline, newest first.
    Runs(history::RunsArgs),
    /// Show a recorded run, or one of its stages' log, outputs and timings.
    Show(history::ShowArgs),
    /// Write a recorded run as one self-contained HTML page.
    Report(history::ReportArgs),
    /// Say why a stage ran or was cached in the last run.
    Explain(cache::ExplainArgs),
    /// Look into and after the cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Look at the shared cache (`--remote`).
    #[command(subcommand)]
    Remote(remote::RemoteCommand),
    /// Run stages that `cairn run --workers` sends, until Ctrl-C or SIGTERM.
    Worker(worker::WorkerArgs),
    /// Run or inspect a single stage component.
    #[command(subcommand)]
    Stage(stage::StageCommand),
    /// Publish a component to an OCI registry or layout folder; prints its digest.
    Publish(Box<registry::PublishArgs>),
    /// Pin the pipeline's published components in cairn.lock (--update to move the pins).
    Lock(registry::LockArgs),
    /// Save credentials for a registry (in docker's config file).
    Login(registry::LoginArgs),
    /// Forget the credentials for a registry.
    Logout(registry::LogoutArgs),
    /// Approve a deployment that waits for a person (from any terminal of the machine).
    Approve(deploy::ApproveArgs),
    /// Reject a deployment that waits for a person.
    Reject(deploy::ApproveArgs),
    /// List the deployments of the pipeline's environments, newest first.
    Deployments(deploy::DeploymentsArgs),
    /// Show one deployment: what went out, who approved it, how it was verified.
    ShowDeployment(deploy::ShowDeploymentArgs),
    /// Redeploy an earlier deployment's exact outputs to an environment.
    Rollback(Box<deploy::RollbackArgs>),
    /// Run check stages on a schedule, and their `on_change` stages when one changes.
    Monitor(Box<deploy::MonitorArgs>),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let verbose = self.verbose;
        let trust = || {
            anyhow::Context::context(
                cairn::Trust::with_ca_files(&self.ca_certs),
                "--ca-cert (or CAIRN_CA_CERT)",
            )
        };
        match self.command {
            Command::Run(arguments) => arguments.execute(verbose, trust()?),
            Command::Validate(arguments) => arguments.execute(),
            Command::Graph(arguments) => arguments.execute(),
            Command::Init(arguments) => arguments.execute(),
            Command::Watch(arguments) => arguments.execute(verbose, trust()?),
            Command::Runs(arguments) => arguments.execute(),
            Command::Show(arguments) => arguments.execute(),
            Command::Report(arguments) => arguments.execute(),
            Command::Explain(arguments) => arguments.execute(),
            Command::Cache(command) => command.execute(),
            Command::Remote(command) => command.execute(),
            Command::Worker(arguments) => arguments.execute(trust()?),
            Command::Stage(command) => command.execute(verbose, trust),
            Command::Publish(arguments) => arguments.execute(),
            Command::Lock(arguments) => arguments.execute(),
            Command::Login(arguments) => arguments.execute(),
            Command::Logout(arguments) => arguments.execute(),
            Command::Approve(arguments) => arguments.execute(true),
            Command::Reject(arguments) => arguments.execute(false),
            Command::Deployments(arguments) => arguments.execute(),
            Command::ShowDeployment(arguments) => arguments.execute(),
            Command::Rollback(arguments) => arguments.execute(verbose, trust()?),
            Command::Monitor(arguments) => arguments.execute(verbose, trust()?),
        }
    }
}

/// Sends cairn's own tracing (not stage logs) to stderr: warnings (and stage folder builds) by default,
/// everything with `-vv`, or what `CAIRN_LOG` says.
pub(crate) fn init_tracing(verbose: u8) {
    // Warnings, and the note that a stage folder is being built (cargo's
    // output follows it); everything with -vv.
    let default = if verbose >= 2 {
        "debug"
    } else {
        "warn,cairn_stage_build=info,cairn_engine::run=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No timestamps, but still span timings (`without_time` drops both).
        .with_timer(())
        .with_ansi(cairn::report::color_enabled())
        .with_target(false)
        // With -vv, each phase of a run reports how long it took.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
