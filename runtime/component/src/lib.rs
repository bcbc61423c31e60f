//! Turning bytes into something runnable: what kind of WebAssembly a file
//! holds, how a preview1 module becomes a component, and how compiled code is
//! kept between runs.
//!
//! cairn runs three kinds of file, detected from the bytes alone so users
//! never say which they have:
//! - a component exporting `run` from `cairn:stage/stage` (a stage);
//! - a component exporting `wasi:cli/run` (any WASI 0.2 command-line program);
//! - a WASI preview1 core module with `_start` (what most compilers still
//!   emit), run as it is on wasmtime's preview1 implementation (adapted into
//!   a command component only to be published or described).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod adapt;
mod inspect;

pub use adapt::{AdaptError, check_is_preview1_command};
pub use cairn_core::Digest;
pub use inspect::{Description, WorldNames, describe, world_names};

use std::borrow::Cow;
use std::fmt;

/// What a loaded component is, which decides how it is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// Exports `run` from `cairn:stage/stage`: gets an invocation, returns an outcome.
    Stage,
    /// Exports `wasi:cli/run`: gets args and env, returns an exit status.
    Command,
    /// A WASI preview1 core module with `_start`, run on WASI preview1.
    Preview1Command,
}

impl ComponentKind {
    /// A stable lower-case name, for the cache key and machine output.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Stage => "stage",
            ComponentKind::Command => "command",
            ComponentKind::Preview1Command => "preview1-command",
        }
    }

    /// The world the component is run as.
    pub fn world(self) -> &'static str {
        match self {
            ComponentKind::Stage => "cairn:stage/stage@0.1.0",
            ComponentKind::Command => "wasi:cli/command@0.2",
            ComponentKind::Preview1Command => "wasi_snapshot_preview1 (a command module)",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            ComponentKind::Stage => "stage component (cairn:stage/stage)",
            ComponentKind::Command => "command component (wasi:cli/command)",
            ComponentKind::Preview1Command => "WASI preview1 module (a command, run on wasi_snapshot_preview1)",
        })
    }
}

/// What the first bytes of a file say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BinaryFormat {
    /// A component (any world).
    Component,
    /// A core module.
    CoreModule,
}

impl BinaryFormat {
    /// Reads the header; `None` for bytes that are not WebAssembly.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        if wasmparser::Parser::is_component(bytes) {
            Some(BinaryFormat::Component)
        } else if wasmparser::Parser::is_core_wasm(bytes) {
            Some(BinaryFormat::CoreModule)
        } else {
            None
        }
    }

    /// Its name in a stage key: `component` or `core-module`.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryFormat::Component => "component",
            BinaryFormat::CoreModule => "core-module",
        }
    }
}

/// The component form of a file: the file itself, or a preview1 module
/// wrapped in the preview1 command adapter.
pub fn to_component(bytes: &[u8]) -> Result<Cow<'_, [u8]>, LoadError> {
    match BinaryFormat::detect(bytes) {
        Some(BinaryFormat::Component) => Ok(Cow::Borrowed(bytes)),
        Some(BinaryFormat::CoreModule) => Ok(Cow::Owned(adapt::preview1_to_component(bytes)?)),
        None => Err(LoadError::NotWasm),
    }
}

/// Why a file could not be turned into a runnable component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component's bytes could not be had: unreadable, or changed since
    /// they were hashed (loading by digest reads them only when needed).
    #[error("{0}")]
    Source(String),
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic number)")]
    NotWasm,
    /// A core module that is not a WASI preview1 program.
    #[error(transparent)]
    Adapt(#[from] AdaptError),
    /// Cranelift rejected or failed to compile the component.
    #[error("invalid component: {0}")]
    Compile(String),
    /// The component imports something cairn does not provide.
    #[error(
        "the component needs an import cairn does not provide: {0}\n\
         hint: stages can import cairn:stage/host and the WASI 0.2 interfaces wasi:cli, \
         wasi:clocks, wasi:filesystem, wasi:io, wasi:random and wasi:sockets"
    )]
    Imports(String),
    /// The component exports neither a stage nor a command entry point.
    #[error(
        "the component exports neither `run` (cairn:stage/stage) nor `wasi:cli/run` (a command); it exports: {exports}\n\
         hint: build a stage with cairn-sdk's `export!`, or a program with a `main` function for wasm32-wasip2"
    )]
    NoEntryPoint {
        /// What the component does export, comma-separated.
        exports: String,
    },
    /// The component exports an entry point with the wrong signature.
    #[error("the component's `{export}` export does not match {world}: {reason}")]
    WrongSignature {
        /// The export that was found.
        export: String,
        /// The world it was checked against.
        world: &'static str,
        /// What wasmtime said.
        reason: String,
    },
}
