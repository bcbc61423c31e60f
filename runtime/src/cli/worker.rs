//! `cairn worker`: run stages other machines send through the shared
//! cache's server, until Ctrl-C or SIGTERM (the running ones finish first).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use cairn::CacheDir;
use cairn::shared_cache::SharedCacheRequest;
use cairn::units::HumanDuration;
use cairn::worker::{WorkerSettings, serve};

use super::Status;

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The NATS server runs send stages through (`nats://HOST:PORT`).
    /// Credentials come from CAIRN_NATS_* variables, never from here.
    #[arg(long = "remote", value_name = "URL", env = "CAIRN_REMOTE")]
    url: String,

    /// How many stages to run at once (default: the number of CPUs).
    #[arg(long, short)]
    jobs: Option<usize>,

    /// The worker's name in results and `cairn remote status` (default:
    /// the host name and process id).
    #[arg(long)]
    name: Option<String>,

    /// How long a worker may go silent before its stage is handed to
    /// another (applies when the queue is first created).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    ack_wait: HumanDuration,

    /// How many times a stage is handed out before it fails with what
    /// each worker said (a stage that kills or stalls its worker).
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_deliveries: u64,

    /// On how many servers of a cluster the queue keeps each job, when it
    /// is first created (1 to 5).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    replicas: u32,
}

impl WorkerArgs {
    pub(crate) fn execute(self, trust: cairn::Trust) -> anyhow::Result<Status> {
        let cache = CacheDir::from_env()?;
        let jobs = self
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
            .max(1);
        let name = self.name.clone().unwrap_or_else(default_name);
        let request = SharedCacheRequest {
            url: Some(self.url.clone()),
            read_only: false,
            workers: true,
            replicas: Some(self.replicas as usize),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(jobs.max(2))
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let summary = runtime.block_on(async {
            let opened = request
                .open(None, true)
                .await?
                .context("no shared cache is named: give --remote nats://HOST:PORT or set CAIRN_REMOTE")?;
            let queue = opened.queue.context("the worker pool's queue was not opened")?;
            let settings = WorkerSettings {
                name,
                jobs,
                cache,
                trust,
                ack_wait: self.ack_wait.0.max(Duration::from_secs(1)),
                max_deliveries: self.max_deliveries.max(1),
                say: Arc::new(|line| eprintln!("{line}")),
            };
            anyhow::Ok(serve(settings, opened.cache, queue, stopped()).await?)
        })?;
        runtime.shutdown_background();
        eprintln!("{} stage(s) finished here", summary.finished);
        Ok(Status::Success)
    }
}

/// Completes at Ctrl-C or SIGTERM (what service managers send).
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return super::pipeline::ctrl_c().await;
    };
    tokio::select! {
        () = super::pipeline::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// `host-1234`: unique among the workers of one machine.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}
