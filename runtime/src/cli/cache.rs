//! `cairn cache ...` and `cairn explain`: looking into and after the cache.

use anyhow::Context;
use clap::{Args, Subcommand};

use cairn::remote::GcPolicy;
use cairn::report::{Style, paint};
use cairn::units::{ByteSize, HumanDuration};
use cairn::{CacheDir, cache_maintenance, explain, pipeline};

use super::Status;
use super::args::PipelineLocation;
use super::remote::{SharedCacheArgs, with_shared};

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Show where the cache is and how big each part is.
    Stats,
    /// Rehash every blob and check every entry; remove what is damaged (exit 1 if anything was).
    Verify,
    /// Evict least recently used results until the cache holds at most --max-size.
    Gc(GcArgs),
    /// Remove everything in the cache.
    Clear,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// The most the stored blobs and results may take.
    #[arg(long, value_name = "SIZE", default_value = "10GiB")]
    max_size: ByteSize,

    /// Trim the shared cache instead: the server given, or else
    /// CAIRN_REMOTE or the pipeline's `[remote] url`.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    remote: Option<String>,

    /// With --remote: also remove what was written longer ago than this
    /// (`30d`, `12h`).
    #[arg(long, value_name = "AGE", requires = "remote")]
    max_age: Option<HumanDuration>,

    #[command(flatten)]
    location: PipelineLocation,
}

impl GcArgs {
    /// `cairn cache gc --remote`: by age, then the oldest blobs until the
    /// rest fit.
    fn collect_shared(&self, url: &str) -> anyhow::Result<Status> {
        let url = Some(url.to_owned())
            .filter(|url| !url.is_empty())
            .or_else(|| std::env::var("CAIRN_REMOTE").ok().filter(|url| !url.is_empty()));
        let shared = SharedCacheArgs::new(url);
        let policy = GcPolicy {
            max_age: self.max_age.map(|age| age.0),
            max_bytes: Some(self.max_size.0),
        };
        let report = with_shared(&shared, &self.location, false, async |opened| {
            Ok(opened.cache.backend().collect_garbage(policy).await?)
        })?;
        println!(
            "removed {} blobs ({}) and {} entries from the shared cache (limit {}{})",
            report.blobs,
            ByteSize(report.bytes),
            report.entries,
            self.max_size,
            self.max_age
                .map(|age| format!(", at most {} old", humantime::format_duration(age.0)))
                .unwrap_or_default()
        );
        Ok(Status::Success)
    }
}

impl CacheCommand {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let cache = CacheDir::from_env()?;
        match self {
            CacheCommand::Stats => {
                let stats = cache_maintenance::stats(&cache).context("cannot measure the cache")?;
                println!("cache     {}", cache.root().display());
                println!(
                    "blobs     {:>8} files  {:>10}",
                    stats.blobs.0,
                    ByteSize(stats.blobs.1).to_string()
                );
                println!(
                    "results   {:>8} stages {:>10}",
                    stats.actions.0,
                    ByteSize(stats.actions.1).to_string()
                );
                println!(
                    "compiled  {:>8} files  {:>10}",
                    stats.compiled.0,
                    ByteSize(stats.compiled.1).to_string()
                );
                println!("other     {:>8}        {:>10}", "", ByteSize(stats.other).to_string());
                println!("total     {:>8}        {:>10}", "", ByteSize(stats.total()).to_string());
                Ok(Status::Success)
            }
            CacheCommand::Verify => {
                let report = cache_maintenance::verify(&cache)?;
                println!(
                    "checked {} blobs, {} results and {} compiled components",
                    report.blobs, report.actions, report.compiled
                );
                for blob in &report.corrupt_blobs {
                    println!("removed corrupt blob blake3:{blob}");
                }
                for action in &report.broken_actions {
                    println!("removed broken result {action}");
                }
                for compiled in &report.corrupt_compiled {
                    println!("removed corrupt compiled component {compiled}");
                }
                if report.leftovers > 0 {
                    println!(
                        "removed {} half-written files left by interrupted runs",
                        report.leftovers
                    );
                }
                let damaged = report.corrupt_blobs.len() + report.broken_actions.len() + report.corrupt_compiled.len();
                if report.clean() {
                    println!("{} 0 corrupt entries", paint("ok:", Style::Success));
                    Ok(Status::Success)
                } else {
                    println!(
                        "{} {damaged} corrupt entries removed; the stages that need them will run again",
                        paint("warning:", Style::Warn)
                    );
                    Ok(Status::StageFailed)
                }
            }
            CacheCommand::Gc(arguments) if arguments.remote.is_some() => {
                arguments.collect_shared(arguments.remote.as_deref().unwrap_or_default())
            }
            CacheCommand::Gc(arguments) => {
                let report = cache_maintenance::gc(&cache, arguments.max_size)?;
                println!(
                    "{} -> {}: evicted {} results and {} blobs (limit {})",
                    ByteSize(report.before),
                    ByteSize(report.after),
                    report.actions,
                    report.blobs,
                    arguments.max_size
                );
                Ok(Status::Success)
            }
            CacheCommand::Clear => {
                let freed = cache_maintenance::clear(&cache)?;
                println!("removed {} from {}", ByteSize(freed), cache.root().display());
                Ok(Status::Success)
            }
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The stage (a matrix stage's name explains every entry).
    stage: String,

    #[command(flatten)]
    location: PipelineLocation,
}

impl ExplainArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let pipeline = pipeline::load(&self.location.path())?;
        let cache = CacheDir::from_env()?;
        super::terminal::print_out(&explain::explain(&cache, &pipeline, &self.stage)?)?;
        Ok(Status::Success)
    }
}
