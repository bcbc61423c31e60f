//! `cairn cache ...` and `cairn explain`: looking into and after the cache.

use anyhow::Context;
use clap::{Args, Subcommand};

use cairn::report::{Style, paint};
use cairn::units::ByteSize;
use cairn::{CacheDir, cache_maintenance, explain, pipeline};

use super::Status;
use super::args::PipelineLocation;

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
