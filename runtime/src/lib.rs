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
pub mod threads;
pub mod units;
pub mod workspace;

pub use cache_dir::CacheDir;
pub use observer::{Annotation, Level, LogLine, LogSource, StageObserver};
pub use runtime::{LoadedComponent, Runtime, RuntimeError};
pub use sandbox::{Invocation, Limits, Outcome, Sandbox, StageFailure, StageRun};
