//! `cairn watch`: runs the pipeline, then again each time the files below
//! it change, until Ctrl-C. Each round is an ordinary run through the
//! cache, so only the stages a change reaches run again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use cairn::CacheDir;
use cairn::executor::CacheMode;
use cairn::pipeline;
use cairn::report::{Style, paint};
use cairn::run;
use cairn::units::HumanDuration;
use cairn::watch::Changes;

use super::args::PipelineLocation;
use super::pipeline::ExecutionArgs;
use super::{Status, terminal};

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Stages to run, with everything they need (default: all).
    #[arg(value_name = "STAGE")]
    stages: Vec<String>,

    #[command(flatten)]
    location: PipelineLocation,

    #[command(flatten)]
    execution: ExecutionArgs,

    /// How long the files must be left alone before a round starts: an
    /// editor's save, or a formatter's, is several writes.
    #[arg(long, value_name = "DURATION", default_value = "50ms")]
    settle: HumanDuration,
}

impl WatchArgs {
    pub(crate) fn execute(self, verbose: u8, trust: cairn::Trust) -> anyhow::Result<Status> {
        let file = self.location.path();
        let cache = CacheDir::from_env()?;
        let reporter = self.execution.reporter(verbose);
        let executor = self.execution.async_runtime()?;
        let status = executor.block_on(async {
            let root = pipeline::root_of(&file);
            let mut changes = Changes::watch(&root)?;
            // One listener for the whole watch: a Ctrl-C between rounds,
            // when no round listens, is remembered, not lost.
            let (interrupted, _) = tokio::sync::watch::channel(false);
            let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot listen for Ctrl-C")?;
            let notify = interrupted.clone();
            tokio::spawn(async move {
                if signals.recv().await.is_some() {
                    notify.send_replace(true);
                }
            });
            let until_interrupted = || {
                let mut receiver = interrupted.subscribe();
                async move {
                    let _ = receiver.wait_for(|interrupted| *interrupted).await;
                }
            };
            loop {
                match run::prepare_with_state(&file, &self.stages, &cache) {
                    Ok((prepared, state)) => {
                        let mut settings = self.execution.settings(
                            trust.clone(),
                            CacheMode {
                                read: true,
                                check: false,
                            },
                            false,
                        )?;
                        // The process goes on: what a round built is freed.
                        settings.exiting = false;
                        let round = run::execute(
                            prepared,
                            state,
                            settings,
                            cache.clone(),
                            Arc::clone(&reporter),
                            until_interrupted(),
                        );
                        let results = tokio::spawn(round).await.context("the run's task failed")??;
                        if results.interrupted {
                            return anyhow::Ok(Status::Interrupted);
                        }
                    }
                    // A half-edited pipeline file: say what is wrong, and
                    // wait for the next save.
                    Err(error) => terminal::print_error(&anyhow::Error::new(error)),
                }
                if !self.execution.json {
                    eprintln!(
                        "{} for changes below {} (Ctrl-C stops)",
                        paint("watching", Style::Hint),
                        root.display()
                    );
                }
                tokio::select! {
                    () = until_interrupted() => return Ok(Status::Interrupted),
                    changed = changes.next(self.settle.0) => {
                        if changed.is_empty() {
                            anyhow::bail!("the file watcher stopped");
                        }
                        tracing::debug!(?changed, "files changed");
                    }
                }
            }
        })?;
        executor.shutdown_timeout(Duration::from_secs(1));
        Ok(status)
    }
}
