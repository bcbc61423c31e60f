//! cairn's end-to-end tests: the real `cairn` binary and the real engine on
//! real components and servers.
//!
//! One test binary, with a module per area, as cargo's and uv's are: every
//! integration-test binary links wasmtime (and TLS) again, so one binary
//! builds and links once. The guest programs the tests run are built once per
//! build by `tests/programs/artifacts`.

mod support;

mod bounds;
mod cache;
mod ci_examples;
mod cli_pipeline;
mod cli_stage;
mod components;
mod deploy;
mod environments;
mod hermetic;
mod host_tools;
mod hostile;
mod limits;
mod live_view;
mod log_bound;
mod network;
mod observe;
mod pipeline_errors;
mod pipelines;
mod polyglot;
mod registry;
mod remote_cache;
mod sandbox;
mod std_delivery;
mod std_manifests;
mod wasi_preview1;
mod watch;
mod workers;
