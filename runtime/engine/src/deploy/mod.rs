//! Deployments: what a run does around the stages that deploy to an
//! environment.
//!
//! Before the first stage of an environment starts, [`Deployments::enter`]
//! takes the environment's lock (one deployment at a time; waiting, or
//! failing with `--no-wait`), checks promotion (`requires`: only artifacts
//! an environment it requires deployed successfully), asks for approval
//! when the environment wants it, and records the deployment in the
//! [`history`]. Every stage ending passes through [`Tracking`], which
//! records it; when the environment's last stage ends the deployment is
//! recorded succeeded or failed. A rollback is the same deployment run with
//! the recorded artifacts pinned: their stages are not run but restored
//! from the store, byte for byte ([`rollback_selection`]).

pub mod approval;
pub mod history;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use cairn_cas::{Materialize, Store, Tree};
use cairn_pipeline::{Environment, Pipeline, Stage};
use cairn_report::{Event, Reporter, Status};

use crate::scheduler::{StageError, Upstream};
use approval::{Approvals, Request, current_user};
use history::{Approval, Artifact, Deployment, DeploymentStatus, EnvironmentLock, History, StageOutcome, timestamp};

/// How a run treats deployments, from the command line.
#[derive(Clone, Debug, Default)]
pub struct DeploySettings {
    /// Environments approved up front (`--approve ENV`).
    pub approve: Vec<String>,
    /// Fail at once when another run deploys an environment (`--no-wait`).
    pub no_wait: bool,
    /// Ask on the terminal as well as through `cairn approve`.
    pub interactive: bool,
}

/// The run being recorded.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Its id, as `cairn approve` takes it.
    pub id: String,
    /// The branch checked out.
    pub branch: Option<String>,
    /// The commit checked out.
    pub commit: Option<String>,
}

impl RunInfo {
    /// A fresh id for a run starting now: its start time and a few hex
    /// digits of its process and clock, short enough to type.
    pub fn new_id() -> String {
        let now = SystemTime::now();
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        let compact: String = stamp.chars().filter(char::is_ascii_digit).skip(2).take(12).collect();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let salt = cairn_core::Digest::of(format!("{}:{nanos}", std::process::id()).as_bytes()).to_hex();
        // Eight hex digits: runs started in the same second (a CI job's
        // several invocations) must not share an id, nor a trace.
        format!("{compact}-{}", &salt[..8])
    }
}

/// A rollback planned for one environment: the deployment whose artifacts
/// go out again.
#[derive(Clone, Debug)]
pub struct RollbackPlan {
    /// The deployment redeployed.
    pub target: Deployment,
    /// The failed deployment it replaces, for an automatic rollback.
    pub replaces: Option<u64>,
    /// Decided by cairn (`rollback = "auto"`), not a person.
    pub automatic: bool,
}

/// What [`Deployments`] keeps while a run goes.
#[derive(Default)]
struct Books {
    locks: BTreeMap<String, EnvironmentLock>,
    gates: BTreeMap<String, Arc<tokio::sync::OnceCell<Result<u64, StageError>>>>,
    records: BTreeMap<u64, Deployment>,
    remaining: BTreeMap<String, usize>,
    plans: BTreeMap<String, RollbackPlan>,
    pinned: BTreeMap<String, Artifact>,
    pinned_dirs: BTreeMap<String, tempfile::TempDir>,
    ended: Vec<u64>,
}

/// The deployments of one run.
pub struct Deployments {
    history: History,
    approvals: Approvals,
    pipeline: Arc<Pipeline>,
    run: RunInfo,
    settings: DeploySettings,
    reporter: Arc<dyn Reporter>,
    store: Arc<Store>,
    scratch: PathBuf,
    books: Mutex<Books>,
    /// The stages in an environment, by name: the only ones whose end
    /// matters here (a pipeline with none pays nothing per stage).
    deploying: std::collections::HashMap<String, usize>,
    /// Whether a rollback pinned some stage: when not, no stage asks the books.
    pins: std::sync::atomic::AtomicBool,
}

/// Why a rollback cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The history says no.
    #[error(transparent)]
    History(#[from] history::HistoryError),
    /// Nothing to go back to.
    #[error("{0}")]
    Nothing(String),
}

impl Deployments {
    /// The deployments of run `run` of `pipeline`, recorded in `history`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        history: History,
        approvals: Approvals,
        pipeline: Arc<Pipeline>,
        run: RunInfo,
        settings: DeploySettings,
        reporter: Arc<dyn Reporter>,
        store: Arc<Store>,
        scratch: PathBuf,
    ) -> Self {
        let deploying = pipeline
            .stages
            .iter()
            .enumerate()
            .filter(|(_, stage)| stage.environment.is_some())
            .map(|(index, stage)| (stage.name.clone(), index))
            .collect();
        Self {
            history,
            approvals,
            pipeline,
            run,
            settings,
            reporter,
            store,
            scratch,
            books: Mutex::new(Books::default()),
            deploying,
            pins: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The history the run records in.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Readies a pass of the scheduler over `selected`: each environment's
    /// deployment ends when its last selected stage does.
    pub fn start_pass(&self, selected: &[bool]) {
        let mut books = self.books();
        books.remaining.clear();
        for (stage, _) in self
            .pipeline
            .stages
            .iter()
            .zip(selected)
            .filter(|(_, selected)| **selected)
        {
            if let Some(environment) = &stage.environment {
                *books.remaining.entry(environment.clone()).or_default() += 1;
            }
        }
    }

    /// Plans a rollback of `environment` to deployment `to` (by default the
    /// newest successful one before the newest deployment), returning the
    /// deployment whose artifacts will be pinned.
    pub fn plan_rollback(
        &self,
        environment: &str,
        to: Option<u64>,
        replaces: Option<u64>,
        automatic: bool,
    ) -> Result<Deployment, RollbackError> {
        let target = match to {
            Some(id) => {
                let target = self.history.get(id)?;
                if target.environment != environment {
                    return Err(RollbackError::Nothing(format!(
                        "deployment #{id} deployed `{}`, not `{environment}`",
                        target.environment
                    )));
                }
                target
            }
            None => {
                let newest = self.history.list(Some(environment))?.last().map(|newest| newest.id);
                let before = replaces.or(newest);
                self.history.last_succeeded(environment, before)?.ok_or_else(|| {
                    RollbackError::Nothing(format!(
                        "`{environment}` has no successful deployment{} to roll back to",
                        before.map(|id| format!(" before #{id}")).unwrap_or_default()
                    ))
                })?
            }
        };
        for artifact in &target.artifacts {
            if Tree::load(&self.store, &artifact.digest).is_err() {
                return Err(RollbackError::Nothing(format!(
                    "the outputs of `{}` that deployment #{} deployed ({}) are no longer in the cache",
                    artifact.stage, target.id, artifact.digest
                )));
            }
        }
        let mut books = self.books();
        books.gates.remove(environment);
        for artifact in &target.artifacts {
            books.pinned.insert(artifact.stage.clone(), artifact.clone());
        }
        self.pins.store(true, std::sync::atomic::Ordering::Release);
        books.plans.insert(
            environment.to_owned(),
            RollbackPlan {
                target: target.clone(),
                replaces,
                automatic,
            },
        );
        Ok(target)
    }

    /// The recorded artifact standing in for stage `name` in a rollback.
    pub fn pinned(&self, name: &str) -> Option<Artifact> {
        if !self.pins.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.books().pinned.get(name).cloned()
    }

    /// Restores a pinned stage's outputs from the store into a scratch
    /// folder, where stages that need it read them.
    pub fn restore_pinned(&self, name: &str) -> Result<Artifact, String> {
        let Some(artifact) = self.pinned(name) else {
            return Err(format!("`{name}` is not pinned"));
        };
        let folder = tempfile::Builder::new()
            .prefix("pinned-")
            .tempdir_in(&self.scratch)
            .map_err(|error| format!("cannot make a folder for the recorded outputs: {error}"))?;
        let tree = Tree::load(&self.store, &artifact.digest)
            .map_err(|error| format!("the recorded outputs {} cannot be read: {error}", artifact.digest))?;
        tree.materialize(&self.store, folder.path(), Materialize::Copy)
            .map_err(|error| format!("the recorded outputs {} cannot be restored: {error}", artifact.digest))?;
        self.books().pinned_dirs.insert(name.to_owned(), folder);
        Ok(artifact)
    }

    /// Where a pinned stage's outputs were restored.
    pub fn pinned_dir(&self, name: &str) -> Option<PathBuf> {
        if !self.pins.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.books()
            .pinned_dirs
            .get(name)
            .map(|folder| folder.path().to_owned())
    }

    /// Lets the deployment of `stage`'s environment begin, once per
    /// environment and run (lock, promotion, approval, record), and records
    /// what this stage takes from outside the environment.
    pub async fn enter(&self, stage: &Stage, upstream: &Upstream) -> Result<(), StageError> {
        let Some(environment) = self.pipeline.environment_of(stage) else {
            return Ok(());
        };
        let artifacts = self.artifacts_of(stage, upstream);
        let gate = Arc::clone(self.books().gates.entry(environment.name.clone()).or_default());
        let id = gate
            .get_or_init(|| self.open(environment, artifacts.clone()))
            .await
            .clone()?;
        let mut books = self.books();
        let rollback = books.plans.contains_key(&environment.name);
        let Some(record) = books.records.get_mut(&id) else {
            return Ok(());
        };
        let new: Vec<Artifact> = artifacts
            .into_iter()
            .filter(|artifact| !record.artifacts.contains(artifact))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        if !rollback {
            drop(books);
            self.check_promotion(environment, &new)?;
            books = self.books();
        }
        self.keep(&new);
        if let Some(record) = books.records.get_mut(&id) {
            record.artifacts.extend(new);
            self.history.save(record).map_err(history_error)?;
        }
        Ok(())
    }

    /// What `stage` takes from stages outside any environment: the
    /// artifacts it deploys (in a rollback, the pinned ones).
    fn artifacts_of(&self, stage: &Stage, upstream: &Upstream) -> Vec<Artifact> {
        stage
            .needs
            .iter()
            .filter(|need| {
                self.pipeline
                    .stage(need)
                    .is_some_and(|needed| needed.environment.is_none())
            })
            .filter_map(|need| {
                Some(Artifact {
                    stage: need.clone(),
                    digest: *upstream.digests.get(need)?,
                    outputs: upstream
                        .outputs
                        .get(need)
                        .map(|outputs| (**outputs).clone())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Begins a deployment of `environment`: its lock, promotion, approval,
    /// and its record.
    async fn open(&self, environment: &Environment, artifacts: Vec<Artifact>) -> Result<u64, StageError> {
        let name = environment.name.clone();
        self.lock(&name).await?;
        self.history.recover_held(&name).map_err(history_error)?;
        let plan = self.books().plans.get(&name).cloned();
        let artifacts = match &plan {
            Some(plan) => plan.target.artifacts.clone(),
            None => {
                self.check_promotion(environment, &artifacts)?;
                artifacts
            }
        };
        let mut record = Deployment {
            id: 0,
            environment: name.clone(),
            run: self.run.id.clone(),
            commit: self.run.commit.clone(),
            branch: self.run.branch.clone(),
            status: DeploymentStatus::Running,
            started_at: timestamp(SystemTime::now()),
            finished_at: None,
            artifacts,
            approval: None,
            stages: Vec::new(),
            error: None,
            rollback_to: plan.as_ref().map(|plan| plan.target.id),
            rolled_back_by: None,
            pid: std::process::id(),
        };
        if environment.approval {
            let approval = match &plan {
                Some(plan) if plan.automatic => Approval {
                    decision: "approved".to_owned(),
                    by: "cairn".to_owned(),
                    at: timestamp(SystemTime::now()),
                    reason: Some(format!(
                        "automatic rollback after a failed verification (rollback = \"auto\"); deployment #{} \
                         was approved when it went out",
                        plan.target.id
                    )),
                    how: "automatic rollback".to_owned(),
                },
                _ => self.approval(environment, &record).await?,
            };
            let approved = approval.decision == "approved";
            record.approval = Some(approval.clone());
            if !approved {
                let why = match approval.decision.as_str() {
                    "timed_out" => format!(
                        "not approved within {} (approval_timeout)",
                        humantime::format_duration(environment.approval_timeout)
                    ),
                    _ => format!(
                        "rejected by {}{}",
                        approval.by,
                        approval
                            .reason
                            .as_ref()
                            .map(|reason| format!(": {reason}"))
                            .unwrap_or_default()
                    ),
                };
                record.status = DeploymentStatus::Failed;
                record.finished_at = Some(timestamp(SystemTime::now()));
                record.error = Some(why.clone());
                let id = self.history.create(&mut record).map_err(history_error)?;
                self.event(&name, Some(id), "rejected", why.clone());
                return Err(StageError::with_hint(
                    format!("the deployment to `{name}` was {why}"),
                    format!("`cairn deployments {name}` shows who decided; run again to ask again"),
                ));
            }
        }
        let id = self.history.create(&mut record).map_err(history_error)?;
        self.keep(&record.artifacts);
        let what = match &plan {
            Some(plan) => format!(
                "started: rolling back to #{} ({})",
                plan.target.id,
                plan.target.artifact_summary()
            ),
            None => format!("started ({})", record.artifact_summary()),
        };
        self.event(&name, Some(id), "started", what);
        self.books().records.insert(id, record);
        Ok(id)
    }

    /// Roots the deployed outputs in the store, so that `cairn cache gc`
    /// keeps what a rollback would need for as long as it can.
    fn keep(&self, artifacts: &[Artifact]) {
        for artifact in artifacts {
            if let Err(error) = self.store.keep(&artifact.digest) {
                tracing::warn!(%error, "cannot keep the deployed outputs {}", artifact.digest);
            }
        }
    }

    /// Takes the environment's lock for the rest of the run, waiting for
    /// another run's deployment to end unless `--no-wait`.
    async fn lock(&self, environment: &str) -> Result<(), StageError> {
        if self.books().locks.contains_key(environment) {
            return Ok(());
        }
        let mut said = false;
        loop {
            if let Some(lock) = self
                .history
                .lock_for(environment, &self.run.id)
                .map_err(history_error)?
            {
                self.books().locks.insert(environment.to_owned(), lock);
                return Ok(());
            }
            let holder = self
                .history
                .holder(environment)
                .unwrap_or_else(|| "another run".to_owned());
            if self.settings.no_wait {
                return Err(StageError::with_hint(
                    format!("`{environment}` is being deployed by {holder}, and --no-wait does not wait"),
                    "run again when it is done, or without --no-wait to wait for it",
                ));
            }
            if !std::mem::replace(&mut said, true) {
                self.event(
                    environment,
                    None,
                    "waiting",
                    format!("waiting: `{environment}` is being deployed by {holder}"),
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Refuses artifacts that an environment `environment` requires never
    /// deployed successfully.
    fn check_promotion(&self, environment: &Environment, artifacts: &[Artifact]) -> Result<(), StageError> {
        for required in &environment.requires {
            let deployments = self.history.list(Some(required)).map_err(history_error)?;
            let succeeded: Vec<&Deployment> = deployments
                .iter()
                .filter(|deployment| deployment.status == DeploymentStatus::Succeeded)
                .collect();
            for artifact in artifacts {
                let seen = succeeded.iter().any(|deployment| {
                    deployment
                        .artifacts
                        .iter()
                        .any(|deployed| deployed.digest == artifact.digest)
                });
                if seen {
                    continue;
                }
                let last = match deployments.last() {
                    Some(last) => format!(
                        "the last deployment to `{required}` is #{} ({}, run {}: {})",
                        last.id,
                        last.status.as_str(),
                        last.run,
                        last.artifact_summary()
                    ),
                    None => format!("`{required}` has never been deployed"),
                };
                return Err(StageError::with_hint(
                    format!(
                        "`{}` requires `{required}` first: the outputs of `{}` ({}) were never deployed to \
                         `{required}` successfully; {last}",
                        environment.name, artifact.stage, artifact.digest
                    ),
                    format!(
                        "deploy these outputs to `{required}` and let its verify stages pass first, or make \
                         this stage need `{required}`'s stages so one run does both in order"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Asks for approval and waits for it: on the terminal when there is
    /// one, and from `cairn approve` or `cairn reject` anywhere on the machine.
    async fn approval(&self, environment: &Environment, record: &Deployment) -> Result<Approval, StageError> {
        let name = &environment.name;
        let now = || timestamp(SystemTime::now());
        if self.settings.approve.iter().any(|approved| approved == name) {
            return Ok(Approval {
                decision: "approved".to_owned(),
                by: current_user(),
                at: now(),
                reason: None,
                how: "--approve".to_owned(),
            });
        }
        let changes = self.changes(name, record);
        let pending = self
            .approvals
            .request(&Request {
                run: self.run.id.clone(),
                environment: name.clone(),
                pipeline: self.pipeline.name.clone(),
                changes: changes.clone(),
                commit: record.commit.clone(),
                branch: record.branch.clone(),
                since: now(),
            })
            .map_err(|error| StageError::from(error.to_string()))?;
        self.reporter.event(&Event::ApprovalRequested {
            environment: name.clone(),
            run: self.run.id.clone(),
            changes,
            approve: format!("cairn approve {} {name}", self.run.id),
            reject: format!("cairn reject {} {name} --reason TEXT", self.run.id),
            timeout_ms: environment.approval_timeout.as_millis() as u64,
        });
        self.reporter.flush();
        let mut terminal = self.settings.interactive.then(|| {
            let question = format!("Deploy to `{name}`? [y/N] ");
            tokio::task::spawn_blocking(move || ask(&question))
        });
        let deadline = Instant::now() + environment.approval_timeout;
        loop {
            if let Some(decision) = pending.decision() {
                return Ok(decision);
            }
            if let Some(answer) = terminal.as_mut().filter(|task| task.is_finished()) {
                let approved = answer.await.unwrap_or(false);
                return Ok(Approval {
                    decision: if approved { "approved" } else { "rejected" }.to_owned(),
                    by: current_user(),
                    at: now(),
                    reason: None,
                    how: "terminal".to_owned(),
                });
            }
            if Instant::now() >= deadline {
                return Ok(Approval {
                    decision: "timed_out".to_owned(),
                    by: "cairn".to_owned(),
                    at: now(),
                    reason: None,
                    how: "timeout".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What a deployment would change, a line per artifact.
    fn changes(&self, environment: &str, record: &Deployment) -> Vec<String> {
        let current = self.history.last_succeeded(environment, None).ok().flatten();
        let mut lines = vec![match (&record.commit, &record.branch) {
            (Some(commit), Some(branch)) => format!("commit {} on {branch}", short_commit(commit)),
            (Some(commit), None) => format!("commit {}", short_commit(commit)),
            _ => "not a git checkout".to_owned(),
        }];
        for artifact in &record.artifacts {
            let was = current.as_ref().and_then(|current| {
                current
                    .artifacts
                    .iter()
                    .find(|deployed| deployed.stage == artifact.stage)
                    .map(|deployed| (current.id, deployed.digest))
            });
            lines.push(match was {
                Some((id, digest)) if digest == artifact.digest => {
                    format!("{} {} (unchanged since #{id})", artifact.stage, artifact.digest)
                }
                Some((id, digest)) => format!("{} {} (replaces {} of #{id})", artifact.stage, artifact.digest, digest),
                None => format!("{} {} (new to `{environment}`)", artifact.stage, artifact.digest),
            });
        }
        if let Some(plan) = self.books().plans.get(environment) {
            lines.push(format!("a rollback to deployment #{}", plan.target.id));
        }
        lines
    }

    /// Records how a stage ended; when it is its environment's last, the
    /// deployment ends.
    pub fn stage_finished(&self, name: &str, status: Status, error: Option<&str>, reason: Option<&str>) {
        let Some(&index) = self.deploying.get(name) else {
            return;
        };
        let stage = &self.pipeline.stages[index];
        let Some(environment) = &stage.environment else {
            return;
        };
        let mut books = self.books();
        let remaining = books.remaining.entry(environment.clone()).or_default();
        *remaining = remaining.saturating_sub(1);
        let last = *remaining == 0;
        let id = books
            .gates
            .get(environment)
            .and_then(|gate| gate.get().cloned())
            .and_then(Result::ok);
        let Some(id) = id else {
            return;
        };
        let Some(record) = books.records.get_mut(&id) else {
            return;
        };
        record.stages.push(StageOutcome {
            stage: name.to_owned(),
            verify: stage.verify,
            status: status.as_str().to_owned(),
            error: error.or(reason).map(str::to_owned),
        });
        if !last {
            let _ = self.history.save(record);
            return;
        }
        let failed: Vec<&StageOutcome> = record
            .stages
            .iter()
            .filter(|outcome| outcome.status == Status::Failed.as_str())
            .collect();
        record.status = if failed.is_empty() {
            DeploymentStatus::Succeeded
        } else {
            DeploymentStatus::Failed
        };
        record.error = failed
            .first()
            .map(|outcome| format!("`{}` failed: {}", outcome.stage, outcome.error.as_deref().unwrap_or("")));
        record.finished_at = Some(timestamp(SystemTime::now()));
        let saved = self.history.save(record);
        let record = record.clone();
        books.ended.push(id);
        let replaced = books
            .plans
            .get(environment)
            .and_then(|plan| plan.replaces)
            .filter(|_| record.status == DeploymentStatus::Succeeded);
        drop(books);
        if let Err(error) = saved {
            tracing::warn!(%error, "cannot record how deployment #{id} ended");
        }
        let message = match (&record.error, record.rollback_to) {
            (Some(error), _) => format!("failed: {error}"),
            (None, Some(to)) => format!("succeeded: `{environment}` runs deployment #{to}'s artifacts again"),
            (None, None) => "succeeded".to_owned(),
        };
        self.event(environment, Some(id), record.status.as_str(), message);
        if let Some(replaced) = replaced
            && let Ok(mut old) = self.history.get(replaced)
        {
            old.status = DeploymentStatus::RolledBack;
            old.rolled_back_by = Some(id);
            if self.history.save(&old).is_ok() {
                self.event(
                    environment,
                    Some(replaced),
                    "rolled_back",
                    format!("rolled back by #{id}"),
                );
            }
        }
    }

    /// The deployments this run ended whose verification failed in an
    /// environment with `rollback = "auto"`, with what to go back to.
    pub fn auto_rollbacks(&self) -> Vec<(String, u64)> {
        let books = self.books();
        books
            .ended
            .iter()
            .filter_map(|id| books.records.get(id))
            .filter(|record| {
                record.rollback_to.is_none()
                    && record.status == DeploymentStatus::Failed
                    && record
                        .stages
                        .iter()
                        .any(|outcome| outcome.verify && outcome.status == Status::Failed.as_str())
                    && self
                        .pipeline
                        .environments
                        .get(&record.environment)
                        .is_some_and(|environment| environment.auto_rollback)
            })
            .map(|record| (record.environment.clone(), record.id))
            .collect()
    }

    /// Says something about a deployment through the run's reporter.
    pub fn event(&self, environment: &str, deployment: Option<u64>, status: &'static str, message: String) {
        self.reporter.event(&Event::Deployment {
            environment: environment.to_owned(),
            deployment,
            status,
            message,
        });
    }
}

/// A reporter that tells [`Deployments`] how each stage ended before
/// passing every event on.
pub struct Tracking {
    /// Where events go.
    pub inner: Arc<dyn Reporter>,
    /// The run's deployments.
    pub deployments: Arc<Deployments>,
}

impl Reporter for Tracking {
    fn event(&self, event: &Event) {
        self.inner.event(event);
        if let Event::StageFinished {
            stage,
            status,
            error,
            reason,
            ..
        } = event
        {
            self.deployments
                .stage_finished(stage, *status, error.as_deref(), reason.as_deref());
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The stages a rollback of `environment` runs: the environment's own,
/// and the stages whose recorded outputs it deploys (pinned, not run);
/// nothing those need.
pub fn rollback_selection(pipeline: &Pipeline, environment: &str, pinned: &[String]) -> Vec<bool> {
    pipeline
        .stages
        .iter()
        .map(|stage| stage.environment.as_deref() == Some(environment) || pinned.contains(&stage.name))
        .collect()
}

fn history_error(error: history::HistoryError) -> StageError {
    StageError::from(error.to_string())
}

fn short_commit(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Asks a yes-or-no question on the terminal.
fn ask(question: &str) -> bool {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}
