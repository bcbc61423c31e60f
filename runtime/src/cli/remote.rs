//! The shared cache on the command line: the flags every run takes, and
//! `cairn remote status`.

use anyhow::Context;
use clap::{Args, Subcommand};

use cairn::remote::BackendStatus;
use cairn::remote::work::QueueStatus;
use cairn::shared_cache::{Opened, SharedCacheRequest};
use cairn::units::ByteSize;

use super::Status;
use super::args::PipelineLocation;

/// `--remote` and `--remote-read-only`.
#[derive(Debug, Args)]
pub(crate) struct SharedCacheArgs {
    /// Share the cache through this NATS server (`nats://HOST:PORT`), over
    /// the pipeline's `[remote] url`. Credentials come from CAIRN_NATS_*
    /// variables, never from here.
    #[arg(long = "remote", value_name = "URL", env = "CAIRN_REMOTE")]
    url: Option<String>,

    /// Reuse what the shared cache holds but write nothing to it (runs of
    /// untrusted changes, such as pull requests from forks).
    #[arg(long = "remote-read-only", env = "CAIRN_REMOTE_READ_ONLY")]
    read_only: bool,
}

impl SharedCacheArgs {
    /// The flags as if given `--remote URL` (or none).
    pub(crate) fn new(url: Option<String>) -> Self {
        Self { url, read_only: false }
    }

    /// What the engine is asked for; `workers` sends stages to the
    /// worker pool (only commands that run stages have `--workers`).
    pub(crate) fn request(&self, workers: bool) -> SharedCacheRequest {
        SharedCacheRequest {
            url: self.url.clone(),
            read_only: self.read_only,
            workers,
            replicas: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum RemoteCommand {
    /// Show the shared cache's server, its buckets and their sizes.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    shared: SharedCacheArgs,

    #[command(flatten)]
    location: PipelineLocation,

    /// Print it as JSON.
    #[arg(long)]
    json: bool,
}

impl RemoteCommand {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        match self {
            RemoteCommand::Status(arguments) => arguments.execute(),
        }
    }
}

/// The pipeline at `location`, when there is one to read `[remote]` from.
pub(crate) fn pipeline_at(location: &PipelineLocation) -> anyhow::Result<Option<cairn::pipeline::Pipeline>> {
    let path = location.path();
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(cairn::pipeline::load(&path)?))
}

/// Connects to the shared cache `shared` and the pipeline ask for (and
/// its worker queue, with `queue`), in a runtime of its own; an error when
/// neither names one.
pub(crate) fn with_shared<T>(
    shared: &SharedCacheArgs,
    location: &PipelineLocation,
    queue: bool,
    work: impl AsyncFnOnce(&Opened) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let pipeline = pipeline_at(location)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let cache = shared
            .request(false)
            .open(pipeline.as_ref(), queue)
            .await?
            .context("no shared cache is named: give --remote nats://HOST:PORT, set CAIRN_REMOTE, or add `[remote] url` to cairn.toml")?;
        work(&cache).await
    })
}

impl StatusArgs {
    fn execute(self) -> anyhow::Result<Status> {
        let (status, queue): (BackendStatus, QueueStatus) =
            with_shared(&self.shared, &self.location, true, async |opened| {
                let queue = match &opened.queue {
                    Some(queue) => queue.status().await?,
                    None => QueueStatus::default(),
                };
                Ok((opened.cache.backend().status().await?, queue))
            })?;
        if self.json {
            let mut json = serde_json::to_value(&status)?;
            json["queue"] = serde_json::to_value(&queue)?;
            println!("{}", serde_json::to_string_pretty(&json)?);
            return Ok(Status::Success);
        }
        println!(
            "server    {}{}",
            status.server,
            status
                .version
                .map(|version| format!(" (nats-server {version})"))
                .unwrap_or_default()
        );
        for bucket in &status.buckets {
            println!(
                "{:<9} {:<14} {:>8} entries {:>10}  replicas {}",
                bucket.holds,
                bucket.name,
                bucket.entries,
                ByteSize(bucket.bytes).to_string(),
                bucket.replicas
            );
        }
        println!(
            "queue     {} waiting, {} running, {} handed out again (ack wait {})",
            queue.waiting,
            queue.running,
            queue.redelivered,
            cairn::units::HumanDuration(std::time::Duration::from_millis(queue.ack_wait_ms))
        );
        if queue.workers.is_empty() {
            println!("workers   none connected");
        }
        for worker in &queue.workers {
            println!(
                "worker    {} (cairn {}): {} of {} slots busy",
                worker.name, worker.version, worker.running, worker.jobs
            );
        }
        Ok(Status::Success)
    }
}
