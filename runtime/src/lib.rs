//! cairn runs DevOps pipelines whose every stage is a WebAssembly component
//! in a capability sandbox.
//!
//! This crate is the host. Data flows one way through it:
//! [`component`] turns bytes into something runnable, [`runtime`] owns the
//! wasmtime engine and the loaded components, and [`sandbox`] runs one stage
//! with exactly the capabilities its [`Sandbox`] grants. What a stage reports
//! while it runs goes to a [`StageObserver`]; nothing below the CLI prints.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cache_dir;
pub mod component;
pub mod observer;
pub mod output_dir;
pub mod runtime;
pub mod sandbox;
pub mod standard_stages;
pub mod units;

pub use cache_dir::CacheDir;
pub use observer::{Annotation, Level, LogLine, LogSource, StageObserver};
pub use runtime::{LoadedComponent, Runtime, RuntimeError};
pub use sandbox::{Invocation, Limits, Outcome, Sandbox, StageFailure, StageRun};
