//! Python stage folders: `stage.py`, defining `class WitWorld` with a `run`
//! method, built against the `cairn:stage` world with componentize-py
//! (`pip install componentize-py`). The folder is on the module path, so a
//! stage may import the folder's other modules, and so is the SDK's
//! `cairn_stage.py` (a folder's own module of that name wins).

use std::ffi::OsString;
use std::path::Path;

use super::tools::{self, Tool};
use super::{BuildError, Compiled, Language, source_files, wit};

const COMPONENTIZE_PY: Tool = Tool {
    program: "componentize-py",
    override_env: "CAIRN_COMPONENTIZE_PY",
    install: "install it with `pip install componentize-py==0.25.1`",
    language: Language::Python,
    failure_hint: None,
};

/// The SDK's helpers, importable as `cairn_stage` unless the folder has a
/// module of that name.
pub(super) const HELPER: &str = include_str!("../../../sdk/python/cairn_stage.py");

pub(super) fn compile(folder: &Path, scratch: &Path) -> Result<Compiled, BuildError> {
    let tool = COMPONENTIZE_PY.find(&[])?;
    let wit_dir = scratch.join("wit");
    wit::write_to(&wit_dir).map_err(BuildError::io(&wit_dir))?;
    let sdk = scratch.join("sdk");
    std::fs::create_dir_all(&sdk).map_err(BuildError::io(&sdk))?;
    std::fs::write(sdk.join("cairn_stage.py"), HELPER).map_err(BuildError::io(&sdk))?;
    let output = scratch.join("stage.wasm");
    let args: Vec<OsString> = vec![
        "--wit-path".into(),
        wit_dir.into(),
        "--world".into(),
        wit::WORLD.into(),
        "componentize".into(),
        "--python-path".into(),
        folder.as_os_str().to_owned(),
        "--python-path".into(),
        sdk.into(),
        "--output".into(),
        output.clone().into(),
        "stage".into(),
    ];
    COMPONENTIZE_PY.run(&tool, &args, folder)?;
    let bytes = std::fs::read(&output).map_err(BuildError::io(&output))?;
    Ok(Compiled {
        bytes,
        files: source_files(folder),
    })
}

pub(super) fn toolchain() -> Result<Vec<u8>, BuildError> {
    Ok(tools::identity(&COMPONENTIZE_PY.find(&[])?))
}
