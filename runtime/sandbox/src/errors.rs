//! wasmtime's errors in words: shared by the loader and the failure
//! classification, below both.

/// `error: cause: cause`.
pub(crate) fn error_chain(error: &wasmtime::Error) -> String {
    error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

/// The innermost cause alone, where wasmtime says what actually happened.
pub(crate) fn root_cause(error: &wasmtime::Error) -> String {
    error
        .chain()
        .last()
        .map_or_else(|| error.to_string(), ToString::to_string)
}
