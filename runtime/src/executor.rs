//! Running one pipeline stage for the scheduler: resolve its references,
//! snapshot its inputs, grant its sandbox, run it (retrying when asked), and
//! publish its outputs to `cairn-out/<stage>/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::observer::{Annotation, LogLine, StageObserver};
use crate::pipeline::{ClockGrant, Pipeline, RandomGrant, Reference, Stage, Template};
use crate::report::{Event, Reporter, Status};
use crate::runtime::{LoadedComponent, Runtime};
use crate::sandbox::{Clock, Invocation, Random, Sandbox};
use crate::scheduler::{Executor, StageResult, Upstream};
use crate::secrets::Secrets;
use crate::workspace::Workspace;
use crate::{output_dir, sandbox};

/// Everything the stages of one run share.
pub struct StageExecutor {
    /// The host.
    pub runtime: Arc<Runtime>,
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The loaded component of each stage (`None` for stages not selected).
    pub components: Vec<Option<Arc<LoadedComponent>>>,
    /// The workspace, walked once for the run.
    pub workspace: Arc<Workspace>,
    /// Where input snapshots are made.
    pub scratch: PathBuf,
    /// `cairn-out/` of the workspace.
    pub output_root: PathBuf,
    /// Secret values.
    pub secrets: Secrets,
    /// Where events go.
    pub reporter: Arc<dyn Reporter>,
    /// What the pinned clock reads.
    pub source_date_epoch: u64,
}

impl Executor for StageExecutor {
    async fn execute(self: Arc<Self>, index: usize, upstream: Upstream) -> StageResult {
        let stage = &self.pipeline.stages[index];
        let Some(component) = self.components[index].clone() else {
            return StageResult::failed("the stage's component was not loaded", 0, Duration::ZERO);
        };
        let (sandbox, _snapshot) = match self.sandbox(stage, &component, &upstream) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.reporter.event(&Event::StageStarted {
                    stage: stage.name.clone(),
                    attempt: 1,
                });
                return StageResult::failed(error, 1, Duration::ZERO);
            }
        };
        let observer: Arc<dyn StageObserver> = Arc::new(StageEvents {
            stage: stage.name.clone(),
            reporter: Arc::clone(&self.reporter),
        });
        let mut elapsed = Duration::ZERO;
        for attempt in 1..=stage.retries + 1 {
            self.reporter.event(&Event::StageStarted {
                stage: stage.name.clone(),
                attempt,
            });
            let run = match self
                .runtime
                .run(&component, &sandbox, Arc::clone(&observer))
                .await
            {
                Ok(run) => run,
                Err(error) => return StageResult::failed(error.to_string(), attempt, elapsed),
            };
            elapsed += run.duration;
            match &run.result {
                Ok(outcome) => {
                    let destination = self.output_root.join(&stage.name);
                    if let Err(error) = output_dir::replace(run.outputs(), &destination) {
                        return StageResult::failed(error_chain(&error), attempt, elapsed);
                    }
                    return StageResult {
                        status: Status::Succeeded,
                        outputs: Arc::new(outcome.outputs.clone()),
                        summary: outcome.summary.clone(),
                        error: None,
                        reason: None,
                        attempts: attempt,
                        duration: elapsed,
                    };
                }
                Err(failure) if attempt <= stage.retries => {
                    observer.log(&LogLine {
                        source: crate::observer::LogSource::Host,
                        level: crate::observer::Level::Warn,
                        text: format!("attempt {attempt} {failure}; retrying"),
                    });
                }
                Err(failure) => {
                    let mut error = failure.to_string();
                    if let Some(hint) = failure.hint() {
                        error.push_str(&format!("\nhint: {hint}"));
                    }
                    return StageResult::failed(error, attempt, elapsed);
                }
            }
        }
        StageResult::failed("the stage did not run", 0, elapsed)
    }
}

impl StageExecutor {
    /// The sandbox a stage runs in, and the input snapshot it mounts (kept
    /// alive for as long as the stage runs).
    fn sandbox(
        &self,
        stage: &Stage,
        component: &LoadedComponent,
        upstream: &Upstream,
    ) -> Result<(Sandbox, Option<tempfile::TempDir>), String> {
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
        let args = stage
            .args
            .iter()
            .map(render)
            .collect::<Result<Vec<_>, _>>()?;
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
        let secrets = stage
            .secrets
            .iter()
            .map(|name| {
                self.secrets.get(name).map(|value| (name.clone(), value)).ok_or_else(|| {
                    format!("the secret `{name}` is not set\nhint: export {name}=... before `cairn run`, or put it in a --secrets-file")
                })
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;

        let snapshot = if stage.inputs.is_empty() {
            None
        } else {
            let globs: Vec<&str> = stage
                .inputs
                .iter()
                .map(|glob| glob.pattern.as_str())
                .collect();
            let files = self
                .workspace
                .select(&globs)
                .map_err(|error| error.to_string())?;
            Some(
                self.workspace
                    .snapshot(&files, &self.scratch)
                    .map_err(|error| error_chain(&error))?,
            )
        };
        let inputs = stage
            .needs
            .iter()
            .filter(|need| upstream.outputs.contains_key(*need))
            .map(|need| (need.clone(), self.output_root.join(need)))
            .filter(|(_, folder)| folder.is_dir())
            .collect();

        let invocation = Invocation {
            stage: stage.name.clone(),
            args,
            config,
        };
        let random = match stage.random {
            RandomGrant::Secure => Random::Secure,
            RandomGrant::Seeded => {
                Random::Seeded(sandbox::seed(component.digest(), &invocation, &env))
            }
        };
        let sandbox = Sandbox {
            invocation,
            env,
            src: snapshot.as_ref().map(|snapshot| snapshot.path().to_owned()),
            inputs,
            secrets,
            network: stage.network.clone(),
            clock: match stage.clock {
                ClockGrant::Real => Clock::Real,
                ClockGrant::Pinned => Clock::Pinned {
                    source_date_epoch: self.source_date_epoch,
                },
            },
            random,
            limits: stage.limits,
        };
        Ok((sandbox, snapshot))
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
