//! WASI preview1 core modules: checked before they run, and made into
//! components where a component is really needed.
//!
//! Most wasm toolchains still emit preview1 modules (`wasm32-wasip1`,
//! clang + wasi-libc, TinyGo, AssemblyScript...). They run as they are, on
//! wasmtime's own preview1 implementation over the same WASI context as a
//! component (the conformance suite in `tests/` holds it to that). The
//! standard preview1 command adapter, which implements preview1 on top of
//! WASI 0.2 inside the component, is used only to publish a module as a
//! component or to describe it: it traps on some valid programs
//! (AssemblyScript's argument and environment handling, for one).

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};
use wasmparser::{Parser, Payload};

/// Why a core module could not be run as a preview1 command.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    /// The module does not parse.
    #[error("the core module is not valid WebAssembly: {0}")]
    Invalid(String),
    /// The module has no `_start`: a library, not a program.
    #[error(
        "the core module has no `_start` export, so it is a library (a reactor), not a program\n\
         hint: cairn runs WASI preview1 command modules; build a program with a `main` function, \
         or a component for wasm32-wasip2"
    )]
    NoStart,
    /// The module imports from something other than preview1.
    #[error(
        "the core module imports `{module}::{name}`, but a WASI preview1 program may import only \
         from `wasi_snapshot_preview1`"
    )]
    ForeignImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// The adapter rejected the module.
    #[error("the preview1 adapter could not turn the module into a component: {0}")]
    Encode(String),
}

/// Wraps a preview1 command module in the preview1 command adapter.
pub(crate) fn preview1_to_component(module: &[u8]) -> Result<Vec<u8>, AdaptError> {
    check_is_preview1_command(module)?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|encoder| {
            encoder.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .and_then(|mut encoder| encoder.encode())
        .map_err(|error| AdaptError::Encode(format!("{error:#}")))
}

/// Checks the two things the command adapter needs, so a wrong module gets a
/// message about the module rather than about the adapter's internals.
pub fn check_is_preview1_command(module: &[u8]) -> Result<(), AdaptError> {
    let invalid = |error: wasmparser::BinaryReaderError| AdaptError::Invalid(error.to_string());
    let mut has_start = false;
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import.map_err(invalid)?;
                    if import.module != WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME {
                        return Err(AdaptError::ForeignImport {
                            module: import.module.to_owned(),
                            name: import.name.to_owned(),
                        });
                    }
                }
            }
            Payload::ExportSection(section) => {
                for export in section {
                    has_start |= export.map_err(invalid)?.name == "_start";
                }
            }
            _ => {}
        }
    }
    if has_start { Ok(()) } else { Err(AdaptError::NoStart) }
}
