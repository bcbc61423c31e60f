//! Sending a stage to the worker pool (`--workers`) instead of running it
//! here: what it reads is shared first (its component, its `/src` tree,
//! the outputs of the stages it needs), the job is queued under its key,
//! the worker's live events are shown as if it ran here, and its result is
//! restored from the shared cache into `cairn-out/` like a local one.
//!
//! Stages whose results may not leave this machine (granted secrets or
//! credentials, deploying, needing such a stage's outputs), stages granted
//! host tools, and stages whose results are never reused run here, with
//! their log saying why.

use futures_util::{FutureExt, StreamExt};

use super::*;
use crate::worker::job::{Job, LiveEvent};
use cairn_remote::work::{JobResult, WorkQueue, through_outage};

/// The worker pool a run sends stages to.
pub struct WorkerPool {
    queue: Arc<WorkQueue>,
    /// Whether a worker was seen; checked at the first job.
    checked: tokio::sync::OnceCell<bool>,
}

impl WorkerPool {
    /// The pool behind `queue`.
    pub fn new(queue: Arc<WorkQueue>) -> Self {
        Self {
            queue,
            checked: tokio::sync::OnceCell::new(),
        }
    }
}

/// How a job sent to the pool ended, and whether a worker ever started it.
struct Sent {
    result: JobResult,
    started: bool,
}

impl StageExecutor {
    /// Whether the stage may run on a worker; when it may not, its log
    /// says why it runs here.
    pub(super) fn dispatchable(&self, stage: &Stage, prepared: &Prepared, observer: &dyn StageObserver) -> bool {
        let stays_here = |name: &String| {
            self.pipeline
                .stages
                .iter()
                .find(|other| &other.name == name)
                .is_some_and(|other| !shareable(other))
        };
        let reason = if !prepared.cacheable() {
            Some("its result is not reused, and a worker's result reaches this run through the cache".to_owned())
        } else if !shareable(stage) {
            Some("it is granted secrets or credentials, or deploys: it runs where its secrets are".to_owned())
        } else if !self.tools.by_stage[prepared.index].is_empty() {
            Some("it is granted host tools, which are found on this machine".to_owned())
        } else if self.shared.as_ref().is_none_or(|shared| shared.read_only()) {
            Some("the shared cache is read-only here, so its inputs cannot reach a worker".to_owned())
        } else {
            stage
                .needs
                .iter()
                .find(|need| stays_here(need))
                .map(|need| format!("it reads the outputs of `{need}`, which stay on this machine"))
        };
        let Some(reason) = reason else {
            return true;
        };
        observer.log(&host_line(
            Level::Info,
            format!("runs on this machine, not on a worker: {reason}"),
        ));
        false
    }

    /// Sends the stage to a worker and waits for its result.
    pub(super) async fn dispatch(
        &self,
        stage: &Stage,
        component: &ComponentRef,
        prepared: Prepared,
        observer: Arc<dyn StageObserver>,
        clock: &mut PhaseClock,
    ) -> StageResult {
        let started = clock.started();
        let key = prepared.key;
        let sent = match self.send(stage, component, &prepared, observer.as_ref(), clock).await {
            Ok(sent) => sent,
            Err(error) => return self.fail(stage, error, 0, started, Some(key)),
        };
        clock.mark("remote");
        let attempts = if sent.started { sent.result.attempts.max(1) } else { 0 };
        if let Some(failure) = sent.result.failure {
            let error = StageError {
                message: format!("{} (on worker {})", failure.message, sent.result.worker),
                hint: failure.hint,
                tests: None,
            };
            return self.fail(stage, error, attempts, started, Some(key));
        }
        let mut fetched = self.fetch_shared(&prepared, observer.as_ref()).await;
        for _ in 0..3 {
            if fetched.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            fetched = self.fetch_shared(&prepared, observer.as_ref()).await;
        }
        let entry = match fetched {
            Some(entry) => entry,
            None => {
                return self.fail(
                    stage,
                    format!(
                        "worker {} ran it, but its result cannot be taken from the shared cache",
                        sent.result.worker
                    ),
                    attempts,
                    started,
                    Some(key),
                );
            }
        };
        clock.mark("download");
        if let Err(error) = self.restore(stage, &entry).await {
            return self.fail(
                stage,
                format!(
                    "the outputs worker {} made cannot be restored: {error}",
                    sent.result.worker
                ),
                attempts,
                started,
                Some(key),
            );
        }
        clock.mark("restore");
        let produced = Produced::stored(entry);
        self.state_mut()
            .record_run(&stage.name, produced.record(&prepared, Status::Succeeded));
        produced.into_result(Status::Succeeded, attempts, started, key)
    }

    /// Shares what the job reads, queues it and follows it to its result.
    async fn send(
        &self,
        stage: &Stage,
        component: &ComponentRef,
        prepared: &Prepared,
        observer: &dyn StageObserver,
        clock: &mut PhaseClock,
    ) -> Result<Sent, String> {
        let (Some(shared), Some(pool)) = (self.shared.as_ref(), self.workers.as_ref()) else {
            return Err("no worker pool is open".to_owned());
        };
        let queue = &pool.queue;
        let key = prepared.key;
        let inputs = self.stored_inputs(&prepared.inputs).await?;
        let bytes = component.bytes().await.map_err(|error| error.to_string())?;
        let job = Job {
            version: crate::worker::job::JOB_VERSION,
            key,
            parts: prepared.parts.clone(),
            limits: stage.limits.into(),
            retries: stage.retries,
            junit: stage.junit.clone(),
        }
        .encode();
        let mut events = std::pin::pin!(queue.events(&key).await.map_err(|error| error.to_string())?);
        // Everything sent is named by digest and the job by the stage key:
        // sending again after a server was lost (a cluster electing a new
        // leader) repeats nothing.
        let submitted = through_outage(|| async {
            let shared_all = async {
                shared.share_tree(&self.store, inputs).await?;
                shared.share_blob(component.digest, &bytes).await?;
                for outputs in prepared.parts.needs.values() {
                    shared.share_tree(&self.store, *outputs).await?;
                }
                Ok::<_, cairn_remote::SharedError>(())
            };
            let (shared_all, earlier) = tokio::join!(shared_all, queue.result(&key));
            shared_all?;
            // A result already there is an earlier job's failure (a success
            // would have been found in the shared cache): this run tries
            // again.
            let generation = match earlier? {
                Some((_, revision)) => {
                    queue.clear_result(&key).await?;
                    revision
                }
                None => 0,
            };
            Ok::<_, cairn_remote::SharedError>(queue.submit(&key, generation, job.clone()).await?)
        })
        .await
        .map_err(|error| format!("cannot send it to a worker: {}", error_chain(&error)))?;
        clock.mark("upload");
        let say = |level: Level, text: String| observer.log(&host_line(level, text));
        if submitted.duplicate {
            say(
                Level::Info,
                "already queued or running for another run: waiting for that job's result".to_owned(),
            );
        }
        let workers = pool
            .checked
            .get_or_init(|| async { queue.workers().await.is_ok_and(|workers| !workers.is_empty()) })
            .await;
        if !workers {
            say(
                Level::Warn,
                format!(
                    "no worker is connected to {}: the stage waits in the queue until one is (`cairn worker`)",
                    queue.server()
                ),
            );
        }

        let mut follow = Following {
            stage,
            observer,
            reporter: self.reporter.as_ref(),
            started: false,
            attempt: 0,
            delivery: 0,
        };
        // The worker says when its result is published; the queue is also
        // asked now and then, for a result published before this run
        // listened (a rerun) or a notice lost.
        let mut ask = tokio::time::interval(RESULT_POLL);
        let mut unreachable_since: Option<Instant> = None;
        loop {
            let finished = tokio::select! {
                Some(event) = events.next() => {
                    if !follow.started {
                        clock.mark("queue");
                    }
                    follow.show(&event)
                }
                _ = ask.tick() => true,
            };
            if !finished {
                continue;
            }
            match queue.result(&key).await {
                Ok(Some((result, _))) => {
                    // The worker sent its last events before its result, on
                    // one connection: they are here already.
                    while let Some(Some(event)) = events.next().now_or_never() {
                        follow.show(&event);
                    }
                    return Ok(Sent {
                        result,
                        started: follow.started,
                    });
                }
                Ok(None) => unreachable_since = None,
                Err(error) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > cairn_remote::work::OUTAGE {
                        return Err(error.to_string());
                    }
                }
            }
        }
    }
}

/// How often a run waiting for a worker asks for the result itself.
const RESULT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// What a run shows of a stage a worker runs, from its live events.
struct Following<'a> {
    stage: &'a Stage,
    observer: &'a dyn StageObserver,
    reporter: &'a dyn Reporter,
    started: bool,
    attempt: u32,
    delivery: u64,
}

impl Following<'_> {
    /// Shows one event; whether it says the result is published.
    fn show(&mut self, event: &[u8]) -> bool {
        let Ok(event) = serde_json::from_slice::<LiveEvent>(event) else {
            return false;
        };
        match event {
            LiveEvent::Started {
                worker,
                delivery,
                attempt,
            } => {
                if delivery != self.delivery {
                    self.delivery = delivery;
                    self.observer.log(&host_line(
                        Level::Info,
                        match delivery {
                            1 => format!("runs on worker {worker}"),
                            _ => format!(
                                "runs on worker {worker}: handed out again (delivery {delivery}), the worker \
                                 before stopped answering"
                            ),
                        },
                    ));
                }
                if attempt > self.attempt || !self.started {
                    self.attempt = attempt;
                    self.started = true;
                    self.reporter.event(&Event::StageStarted {
                        stage: self.stage.name.clone(),
                        attempt,
                    });
                }
            }
            LiveEvent::Log { line } => self.observer.log(&line),
            LiveEvent::Progress { done, total } => self.observer.progress(done, total),
            LiveEvent::Annotation { annotation } => self.observer.annotate(&annotation),
            LiveEvent::Tests { cases } => self.reporter.event(&Event::StageTests {
                stage: self.stage.name.clone(),
                cases,
            }),
            LiveEvent::Finished => return true,
        }
        false
    }
}
