//! The continuous-delivery commands: deciding on a waiting deployment
//! (`approve`, `reject`), reading the history (`deployments`,
//! `show-deployment`), going back (`rollback`) and watching production
//! (`monitor`).

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use cairn::CacheDir;
use cairn::deploy::approval::{Approvals, current_user};
use cairn::deploy::history::{Deployment, History};
use cairn::executor::CacheMode;
use cairn::monitor::{self, MonitorRequest, Round};
use cairn::pipeline;
use cairn::report::{Style, paint};
use cairn::run::{self, RollbackRequest};
use cairn::units::HumanDuration;

use super::args::PipelineLocation;
use super::pipeline::{ExecutionArgs, ctrl_c};
use super::{Status, terminal};

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The waiting run's id, as its output prints it.
    run: String,
    /// The environment it waits to deploy.
    environment: String,
    /// Why, for the history.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

impl ApproveArgs {
    pub(crate) fn execute(self, approved: bool) -> anyhow::Result<Status> {
        let cache = CacheDir::from_env()?;
        let by = current_user();
        let request = Approvals::open(&cache).decide(&self.run, &self.environment, approved, &by, self.reason)?;
        eprintln!(
            "{} {} run {}'s deployment of pipeline `{}` to `{}`, as {by}",
            paint("ok:", Style::Success),
            if approved { "approved" } else { "rejected" },
            request.run,
            request.pipeline,
            request.environment
        );
        Ok(Status::Success)
    }
}

/// The history of the pipeline at `location`.
fn history(location: &PipelineLocation) -> anyhow::Result<(History, pipeline::Pipeline)> {
    let cache = CacheDir::from_env()?;
    let pipeline = pipeline::load(&location.path())?;
    Ok((History::open(&cache, &pipeline.name), pipeline))
}

#[derive(Debug, Args)]
pub(crate) struct DeploymentsArgs {
    /// Only this environment's deployments.
    environment: Option<String>,

    #[command(flatten)]
    location: PipelineLocation,

    /// Print the records as a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

impl DeploymentsArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let (history, pipeline) = history(&self.location)?;
        if let Some(environment) = &self.environment
            && !pipeline.environments.contains_key(environment)
        {
            anyhow::bail!(
                "the pipeline `{}` has no environment `{environment}`\nhint: its environments are: {}",
                pipeline.name,
                pipeline.environments.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let deployments = history.list(self.environment.as_deref())?;
        if self.json {
            terminal::print_out(&format!("{}\n", serde_json::to_string_pretty(&deployments)?))?;
            return Ok(Status::Success);
        }
        if deployments.is_empty() {
            eprintln!("no deployments of pipeline `{}` yet", pipeline.name);
            return Ok(Status::Success);
        }
        let mut text = format!(
            "{:>4}  {:<12} {:<11} {:<20} {:<12} {:<10} {}\n",
            "ID", "ENVIRONMENT", "STATUS", "STARTED", "COMMIT", "APPROVED", "ARTIFACTS"
        );
        for deployment in deployments.iter().rev() {
            text.push_str(&format!(
                "{:>4}  {:<12} {:<11} {:<20} {:<12} {:<10} {}\n",
                deployment.id,
                deployment.environment,
                deployment.status.as_str(),
                deployment.started_at,
                deployment
                    .commit
                    .as_deref()
                    .map_or("-", |commit| commit.get(..12).unwrap_or(commit)),
                deployment
                    .approval
                    .as_ref()
                    .filter(|approval| approval.decision == "approved")
                    .map_or("-", |approval| approval.by.as_str()),
                deployment.artifact_summary()
            ));
        }
        terminal::print_out(&text)?;
        Ok(Status::Success)
    }
}

#[derive(Debug, Args)]
pub(crate) struct ShowDeploymentArgs {
    /// The deployment's id, as `cairn deployments` lists it.
    id: u64,

    #[command(flatten)]
    location: PipelineLocation,

    /// Print the record as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl ShowDeploymentArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let (history, _) = history(&self.location)?;
        let deployment = history.get(self.id)?;
        if self.json {
            terminal::print_out(&format!("{}\n", serde_json::to_string_pretty(&deployment)?))?;
        } else {
            terminal::print_out(&describe(&deployment))?;
        }
        Ok(Status::Success)
    }
}

/// A deployment, for a person.
fn describe(deployment: &Deployment) -> String {
    let mut text = format!(
        "deployment #{} to `{}`: {}\n",
        deployment.id,
        deployment.environment,
        deployment.status.as_str()
    );
    let mut line = |label: &str, value: String| text.push_str(&format!("  {label:<10} {value}\n"));
    line("run", deployment.run.clone());
    line(
        "commit",
        match (&deployment.commit, &deployment.branch) {
            (Some(commit), Some(branch)) => format!("{commit} on {branch}"),
            (Some(commit), None) => commit.clone(),
            _ => "-".to_owned(),
        },
    );
    line(
        "time",
        format!(
            "{} to {}",
            deployment.started_at,
            deployment.finished_at.as_deref().unwrap_or("(running)")
        ),
    );
    if let Some(approval) = &deployment.approval {
        line(
            "approval",
            format!(
                "{} by {} at {} ({}){}",
                approval.decision,
                approval.by,
                approval.at,
                approval.how,
                approval
                    .reason
                    .as_ref()
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(to) = deployment.rollback_to {
        line("rollback", format!("redeployed the artifacts of #{to}"));
    }
    if let Some(by) = deployment.rolled_back_by {
        line("replaced", format!("rolled back by #{by}"));
    }
    if let Some(error) = &deployment.error {
        line("error", error.clone());
    }
    for artifact in &deployment.artifacts {
        line("artifact", format!("{} {}", artifact.stage, artifact.digest));
    }
    for stage in &deployment.stages {
        line(
            if stage.verify { "verify" } else { "stage" },
            format!(
                "{} {}{}",
                stage.stage,
                stage.status,
                stage
                    .error
                    .as_ref()
                    .map(|error| format!(": {error}"))
                    .unwrap_or_default()
            ),
        );
    }
    text
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The environment to roll back.
    environment: String,

    /// The deployment whose artifacts go out again (default: the newest
    /// successful one before the newest deployment).
    #[arg(long, value_name = "ID")]
    to: Option<u64>,

    #[command(flatten)]
    location: PipelineLocation,

    #[command(flatten)]
    execution: ExecutionArgs,
}

impl RollbackArgs {
    pub(crate) fn execute(self, verbose: u8, trust: cairn::Trust) -> anyhow::Result<Status> {
        let file = self.location.path();
        let cache = CacheDir::from_env()?;
        let (prepared, state) = run::prepare_with_state(&file, &[], &cache)?;
        let mut settings = self.execution.settings(
            trust,
            CacheMode {
                read: true,
                check: false,
            },
            false,
        )?;
        settings.rollback = Some(RollbackRequest {
            environment: self.environment,
            to: self.to,
        });
        self.execution.run(prepared, state, settings, cache, verbose)
    }
}

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// The check stages to run each round.
    #[arg(value_name = "STAGE", required = true)]
    stages: Vec<String>,

    /// Start a round this often (`30s`, `5m`).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    every: HumanDuration,

    /// Stop after N rounds (default: run until Ctrl-C).
    #[arg(long, value_name = "N")]
    rounds: Option<u64>,

    #[command(flatten)]
    location: PipelineLocation,

    #[command(flatten)]
    execution: ExecutionArgs,
}

impl MonitorArgs {
    pub(crate) fn execute(self, verbose: u8, trust: cairn::Trust) -> anyhow::Result<Status> {
        if self.every.0 < Duration::from_secs(1) {
            anyhow::bail!(
                "--every {} is shorter than a second\nhint: checks against a service every few seconds or minutes",
                self.every
            );
        }
        let file = self.location.path();
        let cache = CacheDir::from_env()?;
        let mode = CacheMode {
            read: true,
            check: false,
        };
        let settings = || {
            self.execution
                .settings(trust.clone(), mode, false)
                .map_err(|error| run::RunError::Selection(format!("{error:#}")))
        };
        // Stage events are for `--json`; a person reads one line a round.
        let reporter = if self.execution.json {
            self.execution.reporter(verbose)
        } else {
            std::sync::Arc::new(Quiet)
        };
        let json = self.execution.json;
        let on_round = |round: &Round| {
            if json {
                if let Ok(line) =
                    serde_json::to_string(&serde_json::json!({ "event": "monitor_round", "round": round }))
                {
                    let _ = terminal::print_out(&format!("{line}\n"));
                }
            } else {
                eprintln!("{}", round_line(round));
            }
        };
        let executor = self.execution.async_runtime()?;
        let request = MonitorRequest {
            file: &file,
            checks: &self.stages,
            every: self.every.0,
            rounds: self.rounds,
        };
        let interrupted = executor
            .block_on(monitor::monitor(
                request,
                &cache,
                settings,
                reporter,
                on_round,
                ctrl_c(),
            ))
            .context("cairn monitor")?;
        executor.shutdown_background();
        Ok(if interrupted {
            Status::Interrupted
        } else {
            Status::Success
        })
    }
}

/// One round, in a line: each check's status, and what changed.
fn round_line(round: &Round) -> String {
    let checks: Vec<String> = round
        .checks
        .iter()
        .map(|check| {
            let text = format!(
                "{} {} ({} ms){}",
                check.stage,
                check.status(),
                check.duration_ms,
                check
                    .error
                    .as_ref()
                    .map(|error| format!(": {error}"))
                    .unwrap_or_default()
            );
            paint(&text, if check.passing { Style::Success } else { Style::Error })
        })
        .collect();
    let mut line = format!("round {} at {}: {}", round.round, round.at, checks.join(" · "));
    if !round.changed.is_empty() {
        line.push_str(&format!(" · changed: {}", round.changed.join(", ")));
    }
    for (handler, succeeded) in &round.handlers {
        line.push_str(&format!(
            " · ran {handler}: {}",
            if *succeeded { "succeeded" } else { "failed" }
        ));
    }
    line
}

/// Drops every event: `cairn monitor` prints its own lines.
struct Quiet;

impl cairn::report::Reporter for Quiet {
    fn event(&self, _: &cairn::report::Event) {}
}
