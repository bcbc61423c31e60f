//! The `cairn:stage/host` interface: what a stage can ask of the host
//! besides WASI.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::host_tools::{ToolRequest, Tools, not_granted};
use super::logs::LogCapture;
use cairn_core::observer::{Annotation, Level, StageObserver};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "cairn:stage/stage",
    imports: { "cairn:stage/tools.run": async },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi": wasmtime_wasi::p2::bindings,
    },
});

pub(crate) use self::cairn::stage::host;
pub(crate) use self::cairn::stage::tools;
pub(crate) use self::cairn::stage::types;

/// How many annotations a stage may attach; more are counted, not kept, so a
/// runaway linter cannot exhaust the host's memory.
const MAX_ANNOTATIONS: usize = 10_000;

/// The host side of one stage's `cairn:stage/host` imports.
pub(crate) struct HostApi {
    capture: Arc<LogCapture>,
    observer: Arc<dyn StageObserver>,
    secrets: BTreeMap<String, String>,
    /// `None` for a stage granted no tool.
    tools: Option<Tools>,
    stage: String,
    pub(crate) annotations: Vec<Annotation>,
    pub(crate) dropped_annotations: u64,
}

impl HostApi {
    pub(crate) fn new(
        capture: Arc<LogCapture>,
        observer: Arc<dyn StageObserver>,
        secrets: BTreeMap<String, String>,
        stage: String,
        tools: Option<Tools>,
    ) -> Self {
        Self {
            capture,
            observer,
            secrets,
            tools,
            stage,
            annotations: Vec::new(),
            dropped_annotations: 0,
        }
    }
}

impl From<host::Level> for Level {
    fn from(level: host::Level) -> Self {
        match level {
            host::Level::Trace => Level::Trace,
            host::Level::Debug => Level::Debug,
            host::Level::Info => Level::Info,
            host::Level::Warn => Level::Warn,
            host::Level::Error => Level::Error,
        }
    }
}

impl host::Host for HostApi {
    fn log(&mut self, level: host::Level, message: String) {
        self.capture.host_log(level.into(), &message);
    }

    fn progress(&mut self, done: u64, total: u64) {
        self.observer.progress(done, total);
    }

    fn annotate(&mut self, annotation: host::Annotation) {
        if self.annotations.len() >= MAX_ANNOTATIONS {
            self.dropped_annotations += 1;
            return;
        }
        let annotation = Annotation {
            path: annotation.path,
            line: annotation.line,
            column: annotation.column,
            severity: annotation.severity.into(),
            message: self.capture.masked(&annotation.message),
        };
        self.observer.annotate(&annotation);
        self.annotations.push(annotation);
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.secrets.get(&name).cloned()
    }
}

impl types::Host for HostApi {}

impl tools::Host for HostApi {
    async fn run(&mut self, tool: String, args: Vec<String>, options: tools::RunOptions) -> Result<i32, String> {
        let Some(tools) = &self.tools else {
            return Err(not_granted(&self.stage, &[], &tool));
        };
        let request = ToolRequest {
            tool,
            args,
            cwd: options.cwd,
            env: options.env,
        };
        tools.run(request).await.map_err(|error| self.capture.masked(&error))
    }
}
