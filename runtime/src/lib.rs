//! cairn runs DevOps pipelines whose every stage is a WebAssembly component
//! in a capability sandbox.
//!
//! The host is a set of crates along the data flow, each using only those
//! below it (the compiler enforces the direction):
//!
//! | crate | owns |
//! | --- | --- |
//! | [`cairn_core`] | digests, sizes, events and statuses, bounds and grants, outcomes, the cache folder |
//! | [`cairn_component`] | what kind of WebAssembly a file holds; preview1 modules as components |
//! | [`cairn_cas`] | the content-addressed store, trees, the action cache |
//! | [`cairn_sandbox`] | the wasmtime host: one stage in its sandbox |
//! | [`cairn_oci`] | registries, the wasm OCI artifact, `cairn.lock` |
//! | [`cairn_stage_build`] | stage folders built into components, and their templates |
//! | [`cairn_stdlib`] | the standard stages, embedded |
//! | [`cairn_pipeline`] | `cairn.toml`: parse, check, graph |
//! | [`cairn_report`] | terminal, plain and JSON reporters |
//! | [`cairn_engine`] | scheduler, executor, keys, state, workspace, published outputs |
//!
//! This crate is the `cairn` binary; as a library it re-exports those
//! crates under the names the command line and the tests use.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub use cairn_cas as cas;
pub use cairn_component as component;
pub use cairn_core::{cache_dir, observer, threads, units};
pub use cairn_engine::{
    cache_maintenance, component_source, deploy, executor, explain, git, host_tools, junit, monitor, output_dir, run,
    runs, scheduler, secrets, shared_cache, stage_key, state, watch, worker, workspace,
};
pub use cairn_oci as oci;
pub use cairn_pipeline as pipeline;
pub use cairn_remote as remote;
pub use cairn_report as report;
pub use cairn_sandbox as sandbox;
pub use cairn_sandbox::runtime;
pub use cairn_stage_build as stage_build;
pub use cairn_stage_build::scaffold;
pub use cairn_stdlib as standard_stages;

pub use cairn_core::CacheDir;
pub use cairn_core::observer::{Annotation, Level, LogLine, LogSource, StageObserver};
pub use cairn_sandbox::{Invocation, Limits, Outcome, Sandbox, StageFailure, StageRun};
pub use cairn_sandbox::{LoadedComponent, Runtime, RuntimeError, Trust};
