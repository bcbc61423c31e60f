//! `cairn worker`: runs stages other machines send, in the same sandbox
//! with the same bounds as a local run.
//!
//! A worker pulls one job per free slot from the shared queue, fetches what
//! the job names by digest from the shared cache (its component, its
//! `/src` tree, the outputs of the stages it needs; every byte checked),
//! runs it, shares its outputs, and publishes its result first-writer-wins.
//! While a stage runs the worker tells the queue it is still at it; if the
//! worker dies or stops, the queue hands the job to another after the ack
//! wait, and whichever finishes first is kept. A job handed out more than
//! `max_deliveries` times without a result is failed by the worker that
//! receives it once more, with what each delivery came to.
//!
//! A worker never sees a secret: stages granted one run where the run is.

pub mod job;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::executor::{Attempts, LazyRuntime, store_outputs};
use crate::stage_key::Placement;
use cairn_cas::{Materialize, Store, StoreError};
use cairn_component::LoadError;
use cairn_core::Digest;
use cairn_core::cache_dir::CacheDir;
use cairn_core::events::PhaseClock;
use cairn_core::observer::{Annotation, LogLine, StageObserver};
use cairn_remote::work::{Delivery, JobFailure, JobResult, WORKER_TTL, WorkQueue, WorkerInfo, through_outage};
use cairn_remote::{RemoteError, SharedCache, Written};
use cairn_report::{Event, Reporter};
use cairn_sandbox::Trust;
use job::{Job, LiveEvent};

/// How a worker works.
pub struct WorkerSettings {
    /// Its name in results and `cairn remote status`.
    pub name: String,
    /// How many stages it runs at once.
    pub jobs: usize,
    /// Its own cache (store, compiled components, scratch).
    pub cache: CacheDir,
    /// The certificates its stages' HTTPS requests trust.
    pub trust: Trust,
    /// How long the queue waits for a silent worker before handing its job
    /// to another (set when the queue's consumer is first created).
    pub ack_wait: Duration,
    /// How many times a job is handed out before it is failed.
    pub max_deliveries: u64,
    /// Where the worker says what it does, a line at a time.
    pub say: Arc<dyn Fn(String) + Send + Sync>,
}

/// A worker that cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The server failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Its cache cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Its scratch folder cannot be made.
    #[error("cannot make the worker's scratch folder: {0}")]
    Scratch(String),
}

/// What a worker did before it stopped.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerSummary {
    /// Jobs that ended with a result this worker published.
    pub finished: usize,
}

struct Worker {
    settings: WorkerSettings,
    shared: Arc<SharedCache>,
    queue: Arc<WorkQueue>,
    store: Arc<Store>,
    runtime: LazyRuntime,
    scratch: PathBuf,
    running: AtomicUsize,
    finished: AtomicUsize,
}

/// Runs jobs until `stop` completes, then lets the running ones finish.
pub async fn serve(
    settings: WorkerSettings,
    shared: Arc<SharedCache>,
    queue: Arc<WorkQueue>,
    stop: impl Future<Output = ()>,
) -> Result<WorkerSummary, WorkerError> {
    let store = Arc::new(Store::open(&settings.cache)?);
    let scratch = settings
        .cache
        .scratch()
        .map_err(|error| WorkerError::Scratch(error.to_string()))?;
    let consumer = queue.consumer(settings.ack_wait).await?;
    let worker = Arc::new(Worker {
        runtime: LazyRuntime::new(settings.cache.clone(), settings.trust.clone()),
        settings,
        shared,
        queue,
        store,
        scratch,
        running: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
    });
    worker.queue.announce(&worker.info()).await?;
    let heartbeat = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move {
            loop {
                tokio::time::sleep(WORKER_TTL / 3).await;
                if let Err(error) = worker.queue.announce(&worker.info()).await {
                    tracing::warn!(%error, "cannot renew the worker's announcement");
                }
            }
        }
    });
    worker.say(format!(
        "worker {} takes jobs from {} ({} at a time)",
        worker.settings.name,
        worker.queue.server(),
        worker.settings.jobs
    ));
    let slots = Arc::new(Semaphore::new(worker.settings.jobs.max(1)));
    let mut running = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let next = tokio::select! {
            () = &mut stop => break,
            next = consumer.next(Duration::from_secs(5)) => next,
        };
        match next {
            Ok(Some(delivery)) => {
                let worker = Arc::clone(&worker);
                running.spawn(async move {
                    worker.handle(delivery).await;
                    drop(slot);
                });
            }
            Ok(None) => {}
            Err(error) => {
                worker.say(format!("{error}; trying again"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        while running.try_join_next().is_some() {}
    }
    if !running.is_empty() {
        worker.say(format!("stopping: finishing {} running stage(s)", running.len()));
    }
    while running.join_next().await.is_some() {}
    heartbeat.abort();
    worker.queue.withdraw(&worker.settings.name).await;
    worker.say(format!("worker {} stopped", worker.settings.name));
    Ok(WorkerSummary {
        finished: worker.finished.load(Ordering::Relaxed),
    })
}

impl Worker {
    fn say(&self, line: String) {
        (self.settings.say)(line);
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            name: self.settings.name.clone(),
            jobs: self.settings.jobs,
            running: self.running.load(Ordering::Relaxed),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Takes one delivery to its end: a result published and the job
    /// done, or the job given back with what went wrong recorded.
    async fn handle(self: Arc<Self>, delivery: Delivery) {
        let Some(key) = delivery.key else {
            self.say("dropped a message that is not a cairn job".to_owned());
            let _ = delivery.drop_job().await;
            return;
        };
        let number = delivery.delivered;
        let name = &self.settings.name;
        if number > self.settings.max_deliveries {
            self.give_up(&delivery, &key).await;
            return;
        }
        if let Ok(Some((result, _))) = self.queue.result(&key).await {
            self.say(format!("{}: already finished by {}", key.short(), result.worker));
            let _ = delivery.done().await;
            return;
        }
        let job = match Job::decode(delivery.payload()) {
            Ok(job) => job,
            Err(error) => {
                self.give_back(&delivery, &key, &error).await;
                return;
            }
        };
        let stage = job.parts.stage.clone();
        self.say(format!("{stage} ({}): started, delivery {number}", key.short()));
        if let Err(error) = self
            .queue
            .record_delivery(
                &key,
                number,
                &format!("delivery {number}: worker {name} took it and did not answer again"),
            )
            .await
        {
            self.say(format!("{stage}: {error}"));
        }
        self.running.fetch_add(1, Ordering::Relaxed);
        let delivery = Arc::new(delivery);
        let progress = tokio::spawn({
            let delivery = Arc::clone(&delivery);
            let every = (self.settings.ack_wait / 3).max(Duration::from_millis(100));
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(error) = delivery.progress().await {
                        tracing::warn!(%error, "cannot report progress");
                    }
                }
            }
        });
        let ran = self.execute(&job, number).await;
        progress.abort();
        self.running.fetch_sub(1, Ordering::Relaxed);
        let result = match ran {
            Ok(result) => result,
            Err(error) => {
                self.give_back(&delivery, &key, &error).await;
                return;
            }
        };
        let ended = match &result.failure {
            None => "succeeded".to_owned(),
            Some(failure) => format!("failed: {}", failure.message),
        };
        let published = through_outage(|| self.queue.publish_result(&key, &result)).await;
        if published.is_ok() {
            self.queue.emit(&key, LiveEvent::Finished.encode()).await;
        }
        match published {
            Ok(Written::Stored) => {
                self.finished.fetch_add(1, Ordering::Relaxed);
                self.say(format!("{stage} ({}): {ended}", key.short()));
            }
            Ok(Written::AlreadyThere) => self.say(format!(
                "{stage} ({}): {ended}, late: another worker's result was published first and stands",
                key.short()
            )),
            Err(error) => {
                self.give_back(&delivery, &key, &error.to_string()).await;
                return;
            }
        }
        if let Err(error) = delivery.done().await {
            self.say(format!("{stage}: {error}"));
        }
    }

    /// Records why this delivery failed and hands the job back for another
    /// delivery.
    async fn give_back(&self, delivery: &Delivery, key: &Digest, error: &str) {
        let number = delivery.delivered;
        self.say(format!("{} delivery {number}: {error}; given back", key.short()));
        let text = format!("delivery {number}: worker {}: {error}", self.settings.name);
        if let Err(error) = self.queue.record_delivery(key, number, &text).await {
            tracing::warn!(%error, "cannot record a failed delivery");
        }
        if let Err(error) = delivery.give_back(Duration::from_millis(500)).await {
            tracing::warn!(%error, "cannot give a job back");
        }
    }

    /// Fails a job handed out once too often, with what each delivery
    /// came to, and takes it out of the queue.
    async fn give_up(&self, delivery: &Delivery, key: &Digest) {
        let handed = delivery.delivered - 1;
        let deliveries = self.queue.deliveries(key, handed).await.unwrap_or_default();
        let said: Vec<String> = deliveries.into_iter().map(|(_, text)| text).collect();
        let failure = JobFailure {
            message: format!(
                "no worker finished the stage in {handed} deliveries ({})",
                if said.is_empty() {
                    "none recorded what happened".to_owned()
                } else {
                    said.join("; ")
                }
            ),
            hint: Some(
                "a stage that kills or stalls its worker (memory of the machine, a crash) is handed out \
                 at most --max-deliveries times; look at the workers' logs"
                    .to_owned(),
            ),
        };
        self.say(format!("{}: {}", key.short(), failure.message));
        let result = JobResult {
            worker: self.settings.name.clone(),
            attempts: 0,
            duration_ms: 0,
            failure: Some(failure),
        };
        if let Err(error) = self.queue.publish_result(key, &result).await {
            tracing::warn!(%error, "cannot publish a failure");
            return;
        }
        self.queue.emit(key, LiveEvent::Finished.encode()).await;
        let _ = delivery.drop_job().await;
    }

    /// Fetches, runs and shares one stage. `Ok` with the result to publish
    /// (the stage succeeded or failed); `Err` when this worker could not
    /// take it to an end (the job goes back to the queue).
    async fn execute(&self, job: &Job, delivery: u64) -> Result<JobResult, String> {
        let started = Instant::now();
        let key = job.key;
        let parts = &job.parts;
        let runtime = self.runtime.get().await.map_err(|error| error.to_string())?;
        // The component is fetched only when this machine has not compiled
        // it yet: a 14-18 MB JavaScript or Python component once a worker.
        let fetch = async {
            self.shared
                .fetch_checked(&self.store, parts.component)
                .await
                .map(Arc::from)
                .map_err(|error| LoadError::Source(format!("cannot fetch its component: {error}")))
        };
        let loaded = runtime.load_known(parts.component, fetch).await;
        let folder = tempfile::Builder::new()
            .prefix("job-")
            .tempdir_in(&self.scratch)
            .map_err(|error| format!("cannot make a scratch folder: {error}"))?;
        let src = self
            .lay_out(parts.inputs, folder.path().join("src"), "its inputs")
            .await?;
        let mut needed = std::collections::BTreeMap::new();
        for (name, outputs) in &parts.needs {
            let at = folder.path().join("in").join(name);
            // A stage that published nothing still has its (empty)
            // folder, as `cairn-out/<name>/` is here.
            let laid = match self
                .lay_out(*outputs, at.clone(), &format!("the outputs of `{name}`"))
                .await?
            {
                Some(laid) => laid,
                None => {
                    std::fs::create_dir_all(&at).map_err(|error| format!("cannot make `{}`: {error}", at.display()))?;
                    at
                }
            };
            needed.insert(name.clone(), laid);
        }
        let placement = Placement {
            src,
            needed: Box::new(move |name| needed.get(name).cloned()),
            secret: Box::new(|_| None),
            tool: Box::new(|_| None),
            limits: job.limits.into(),
        };
        let failed = |message: String, hint: Option<String>, attempts: u32| JobResult {
            worker: self.settings.name.clone(),
            attempts,
            duration_ms: started.elapsed().as_millis() as u64,
            failure: Some(JobFailure { message, hint }),
        };
        let sandbox = match parts.sandbox(&key, placement) {
            Ok(sandbox) => sandbox,
            Err(error) => return Ok(failed(error.message, error.hint, 1)),
        };
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(LoadError::Source(message)) => return Err(message),
            Err(error) => return Ok(failed(format!("cannot load its component: {error}"), None, 1)),
        };
        let live = Arc::new(LiveStream::start(
            Arc::clone(&self.queue),
            key,
            self.settings.name.clone(),
            delivery,
        ));
        let attempts = Attempts {
            stage: &parts.stage,
            retries: job.retries,
            junit: &job.junit,
            reporter: live.as_ref(),
        };
        let mut clock = PhaseClock::new(Instant::now());
        let ran = attempts
            .run(
                &runtime,
                &loaded,
                &sandbox,
                Arc::clone(&live) as Arc<dyn StageObserver>,
                &mut clock,
            )
            .await;
        live.flush().await;
        let (run, outcome, attempt) = match ran {
            Ok(ran) => ran,
            Err((error, attempts)) => return Ok(failed(error.message, error.hint, attempts)),
        };
        let duration_ms = run.duration.as_millis() as u64;
        let ran = store_outputs(Arc::clone(&self.store), run, outcome, attempt).await?;
        let entry = ran.produced.entry(duration_ms);
        self.store
            .put_action(&key, &entry)
            .map_err(|error| format!("cannot store its result: {error}"))?;
        through_outage(|| self.shared.share_new_action(&self.store, &key, &entry))
            .await
            .map_err(|error| format!("cannot share its result: {error}"))?;
        Ok(JobResult {
            worker: self.settings.name.clone(),
            attempts: attempt,
            duration_ms: started.elapsed().as_millis() as u64,
            failure: None,
        })
    }

    /// Brings the tree `digest` from the shared cache and links it at `at`
    /// (read-only, from the store); `None` for an empty tree, which a
    /// local run does not lay out either.
    async fn lay_out(&self, digest: Digest, at: PathBuf, what: &str) -> Result<Option<PathBuf>, String> {
        let tree = self
            .shared
            .fetch_tree(&self.store, digest)
            .await
            .map_err(|error| format!("cannot fetch {what}: {error}"))?;
        if tree.entries().is_empty() {
            return Ok(None);
        }
        let store = Arc::clone(&self.store);
        let what = what.to_owned();
        tokio::task::spawn_blocking(move || {
            tree.materialize(&store, &at, Materialize::Link)
                .map(|()| Some(at))
                .map_err(|error| format!("cannot lay out {what}: {error}"))
        })
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    }
}

/// Sends what a running stage reports to the requester, in order.
struct LiveStream {
    worker: String,
    delivery: u64,
    sender: mpsc::UnboundedSender<Live>,
}

enum Live {
    Event(Vec<u8>),
    /// Answered once every event before it is sent.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl LiveStream {
    fn start(queue: Arc<WorkQueue>, key: Digest, worker: String, delivery: u64) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Live>();
        tokio::spawn(async move {
            while let Some(live) = receiver.recv().await {
                match live {
                    Live::Event(event) => queue.emit(&key, event).await,
                    Live::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self {
            worker,
            delivery,
            sender,
        }
    }

    fn send(&self, event: LiveEvent) {
        let _ = self.sender.send(Live::Event(event.encode()));
    }

    /// Waits until everything reported so far has been sent.
    async fn flush(&self) {
        let (done, sent) = tokio::sync::oneshot::channel();
        if self.sender.send(Live::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }
}

impl Reporter for LiveStream {
    fn event(&self, event: &Event) {
        match event {
            Event::StageStarted { attempt, .. } => self.send(LiveEvent::Started {
                worker: self.worker.clone(),
                delivery: self.delivery,
                attempt: *attempt,
            }),
            Event::StageTests { cases, .. } => self.send(LiveEvent::Tests { cases: cases.clone() }),
            _ => {}
        }
    }
}

impl StageObserver for LiveStream {
    fn log(&self, line: &LogLine) {
        self.send(LiveEvent::Log { line: line.clone() });
    }

    fn progress(&self, done: u64, total: u64) {
        self.send(LiveEvent::Progress { done, total });
    }

    fn annotate(&self, annotation: &Annotation) {
        self.send(LiveEvent::Annotation {
            annotation: annotation.clone(),
        });
    }
}
