//! `cairn monitor`: the operations loop. Runs named check stages (health
//! checks against production, say) every interval, never from the cache,
//! and when a check goes from passing to failing or back, runs the stages
//! its `on_change` names with `${{ monitor.check|status|error }}` filled
//! in. Every round is appended to the deployment history's monitor log.
//! Only the named stages run: what they need is not rebuilt each round.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_core::cache_dir::CacheDir;
use cairn_report::{Reporter, Status};

use crate::deploy::history::{History, timestamp};
use crate::run::{self, RunError, RunSettings};

/// A run of the stages `names` names, and not of what they need: a
/// check reads the running service, and must not redeploy it every round.
fn only(
    (mut prepared, state): (run::Prepared, crate::state::WorkspaceState),
    names: &[String],
) -> (run::Prepared, crate::state::WorkspaceState) {
    for (stage, selected) in prepared.pipeline.stages.iter().zip(prepared.selected.iter_mut()) {
        *selected = names.iter().any(|name| *name == stage.name || *name == stage.base_name);
    }
    (prepared, state)
}

/// How a check stood after a round.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckState {
    /// The check stage.
    pub stage: String,
    /// Whether it succeeded.
    pub passing: bool,
    /// Why it failed (or why it was skipped).
    pub error: Option<String>,
    /// Wall time, in milliseconds.
    pub duration_ms: u64,
}

impl CheckState {
    /// `passing` or `failing`, as `${{ monitor.status }}` reads.
    pub fn status(&self) -> &'static str {
        if self.passing { "passing" } else { "failing" }
    }
}

/// One round: every check, and the changes it saw.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Round {
    /// 1 for the first.
    pub round: u64,
    /// When it started, RFC 3339.
    pub at: String,
    /// Each check, in the order asked.
    pub checks: Vec<CheckState>,
    /// The checks whose status changed since the round before (a first
    /// failure counts: checks start out as passing).
    pub changed: Vec<String>,
    /// The `on_change` stages run, and whether each succeeded.
    pub handlers: BTreeMap<String, bool>,
}

/// What the loop is asked to do.
pub struct MonitorRequest<'a> {
    /// The pipeline file.
    pub file: &'a Path,
    /// The check stages, as named on the command line.
    pub checks: &'a [String],
    /// The interval between the starts of two rounds.
    pub every: Duration,
    /// Stop after this many rounds (for scripts and tests); never, by default.
    pub rounds: Option<u64>,
}

/// Runs the loop until `rounds` are done or `interrupt` fires, calling
/// `on_round` after each round; returns whether it was interrupted.
/// `settings` makes each round's run settings (secrets are read again).
pub async fn monitor(
    request: MonitorRequest<'_>,
    cache: &CacheDir,
    settings: impl Fn() -> Result<RunSettings, RunError>,
    reporter: Arc<dyn Reporter>,
    mut on_round: impl FnMut(&Round),
    interrupt: impl Future<Output = ()>,
) -> Result<bool, RunError> {
    let mut interrupt = std::pin::pin!(interrupt);
    let mut previous: BTreeMap<String, bool> = BTreeMap::new();
    let mut round = 0;
    loop {
        round += 1;
        let started = tokio::time::Instant::now();
        let at = timestamp(SystemTime::now());
        let (prepared, state) = only(
            run::prepare_with_state(request.file, request.checks, cache)?,
            request.checks,
        );
        let history = History::open(cache, &prepared.pipeline.name);
        let pipeline = Arc::clone(&prepared.pipeline);
        let check_names: Vec<String> = pipeline
            .stages
            .iter()
            .zip(&prepared.selected)
            .filter(|(_, selected)| **selected)
            .map(|(stage, _)| stage.name.clone())
            .collect();
        let mut round_settings = settings()?;
        round_settings.always_run = check_names.clone();
        // The rounds are recorded in the monitor's own history, not as runs.
        round_settings.history = None;
        let results = run::execute(
            prepared,
            state,
            round_settings,
            cache.clone(),
            Arc::clone(&reporter),
            interrupt.as_mut(),
        )
        .await?;
        if results.interrupted {
            return Ok(true);
        }
        let checks: Vec<CheckState> = check_names
            .iter()
            .filter_map(|name| {
                let index = pipeline.stages.iter().position(|stage| stage.name == *name)?;
                let result = results.stages[index].as_ref()?;
                Some(CheckState {
                    stage: name.clone(),
                    passing: result.status.is_success(),
                    error: result.error.clone().or_else(|| {
                        (result.status == Status::Skipped)
                            .then(|| result.reason.clone())
                            .flatten()
                    }),
                    duration_ms: result.duration.as_millis() as u64,
                })
            })
            .collect();
        let mut changed = Vec::new();
        let mut handlers = BTreeMap::new();
        for check in &checks {
            let before = previous.insert(check.stage.clone(), check.passing).unwrap_or(true);
            if before == check.passing {
                continue;
            }
            changed.push(check.stage.clone());
            let Some(stage) = pipeline.stage(&check.stage) else {
                continue;
            };
            if stage.on_change.is_empty() {
                continue;
            }
            let (prepared, state) = only(
                run::prepare_with_state(request.file, &stage.on_change, cache)?,
                &stage.on_change,
            );
            let mut handler_settings = settings()?;
            handler_settings.history = None;
            handler_settings.monitor = BTreeMap::from([
                ("check".to_owned(), check.stage.clone()),
                ("status".to_owned(), check.status().to_owned()),
                ("error".to_owned(), check.error.clone().unwrap_or_default()),
            ]);
            let ran = run::execute(
                prepared,
                state,
                handler_settings,
                cache.clone(),
                Arc::clone(&reporter),
                interrupt.as_mut(),
            )
            .await?;
            if ran.interrupted {
                return Ok(true);
            }
            for handler in &stage.on_change {
                if let Some(result) = pipeline
                    .stages
                    .iter()
                    .position(|stage| stage.name == *handler)
                    .and_then(|index| ran.stages[index].as_ref())
                {
                    handlers.insert(handler.clone(), result.status.is_success());
                }
            }
        }
        let record = Round {
            round,
            at,
            checks,
            changed,
            handlers,
        };
        if let Ok(line) = serde_json::to_value(&record)
            && let Err(error) = history.append_monitor(&line)
        {
            tracing::warn!(%error, "cannot record the monitor's round");
        }
        on_round(&record);
        if request.rounds.is_some_and(|rounds| round >= rounds) {
            return Ok(false);
        }
        tokio::select! {
            () = tokio::time::sleep_until(started + request.every) => {}
            () = &mut interrupt => return Ok(true),
        }
    }
}
