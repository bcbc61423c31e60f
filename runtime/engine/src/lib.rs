//! Running a pipeline: everything between a checked `cairn.toml` and the
//! published outputs.
//!
//! [`run`] prepares a run (the workspace walk, components, the lock file),
//! [`scheduler`] runs the graph, [`executor`] runs one stage of it through
//! the cache (its key from [`stage_key`], its inputs from [`workspace`]),
//! [`state`] remembers what each workspace observed, and [`output_dir`]
//! publishes `cairn-out/`. [`explain`] reads back why a stage ran.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cache_maintenance;
pub mod component_source;
pub mod deploy;
pub mod executor;
pub mod explain;
pub mod git;
pub mod host_tools;
pub mod junit;
pub mod monitor;
pub mod output_dir;
pub mod run;
pub mod runs;
pub mod scheduler;
pub mod secrets;
pub mod shared_cache;
pub mod stage_key;
pub mod state;
pub mod watch;
pub mod worker;
pub mod workspace;
