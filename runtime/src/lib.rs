//! cairn runs DevOps pipelines whose every stage is a WebAssembly component
//! in a capability sandbox.
//!
//! This crate is the host. Data flows one way through it: [`pipeline`]
//! parses and checks `cairn.toml`, [`run`] prepares a run (workspace walk,
//! components), [`scheduler`] runs the graph, [`executor`] runs one stage of
//! it, [`sandbox`] runs one component with exactly the capabilities its
//! [`Sandbox`] grants, and [`runtime`] owns the wasmtime engine and the
//! loaded components. Stages report through a [`StageObserver`] and runs
//! through a [`report::Reporter`]; nothing below the CLI prints.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cache_dir;
pub mod cache_maintenance;
pub mod cas;
pub mod component;
pub mod component_source;
pub mod executor;
pub mod explain;
mod files;
pub mod git;
pub mod observer;
pub mod oci;
mod once_map;
pub mod output_dir;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod runtime;
pub mod sandbox;
pub mod scaffold;
pub mod scheduler;
pub mod secrets;
pub mod stage_build;
pub mod stage_key;
pub mod standard_stages;
pub mod state;
pub mod units;
pub mod workspace;

pub use cache_dir::CacheDir;
pub use observer::{Annotation, Level, LogLine, LogSource, StageObserver};
pub use runtime::{LoadedComponent, Runtime, RuntimeError};
pub use sandbox::{Invocation, Limits, Outcome, Sandbox, StageFailure, StageRun};

/// Sizes the thread pool cairn's parallel work runs on (rayon's global
/// pool) at twice the cores, 4 to 16: most of what it does when little
/// changed, walking the workspace and checking `cairn-out/`, waits in the
/// kernel, and does so while the pipeline and the state are read beside it.
/// Call it once, before anything runs in parallel, as `cairn` does when it
/// starts; otherwise the pool has a thread per core. Does nothing if the
/// pool is already running.
pub fn size_thread_pool() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads((cores * 2).clamp(4, 16))
        .thread_name(|index| format!("cairn-{index}"))
        .build_global();
}
