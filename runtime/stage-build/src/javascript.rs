//! JavaScript stage folders: an ES module (`package.json`'s `main`, default
//! `stage.js`) built against the `cairn:stage` world with componentize-js.
//! The SDK's `cairn.js` is importable as `./cairn.js`.
//!
//! componentize-js is looked for in the folder's `node_modules` (its
//! `package.json` pins it), then in each parent folder's, then on `PATH`.
//! `fetch` works (componentize-js's `http` feature, over `wasi:http`, which
//! the host checks against the stage's granted origins); `fetch-event` is
//! disabled: a stage has no use for incoming requests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::tools::{self, Tool};
use super::{BuildError, Compiled, Language, source_files, wit};

const COMPONENTIZE_JS: Tool = Tool {
    program: "componentize-js",
    override_env: "CAIRN_COMPONENTIZE_JS",
    install: "run `npm install` in the stage folder (its package.json pins componentize-js 0.23.0), \
              or install it for every folder with `npm install -g @bytecodealliance/componentize-js@0.23.0`",
    language: Language::JavaScript,
    failure_hint: None,
};

/// The SDK's helpers, available to every stage as `./cairn.js` unless the
/// folder has a `cairn.js` of its own.
pub(super) const HELPER: &str = include_str!("../../../sdk/js/cairn.js");

pub(super) fn compile(folder: &Path, scratch: &Path) -> Result<Compiled, BuildError> {
    let tool = COMPONENTIZE_JS.find(&node_bins(folder))?;
    let wit_dir = scratch.join("wit");
    wit::write_to(&wit_dir).map_err(BuildError::io(&wit_dir))?;
    let output = scratch.join("stage.wasm");
    let entry = entry(folder)?;
    // The sources are built from a copy, so the helper can sit beside them
    // without being written into the user's folder.
    let files = source_files(folder);
    let sources = scratch.join("src");
    for file in &files {
        let relative = file.strip_prefix(folder).unwrap_or(file);
        let copy = sources.join(relative);
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent).map_err(BuildError::io(parent))?;
        }
        std::fs::copy(file, &copy).map_err(BuildError::io(file))?;
    }
    let helper = sources.join("cairn.js");
    if !helper.exists() {
        std::fs::write(&helper, HELPER).map_err(BuildError::io(&helper))?;
    }
    let args: Vec<OsString> = vec![
        sources.join(entry).into(),
        "--wit".into(),
        wit_dir.into(),
        "--world-name".into(),
        wit::WORLD.into(),
        "--disable".into(),
        "fetch-event".into(),
        "--out".into(),
        output.clone().into(),
    ];
    COMPONENTIZE_JS.run(&tool, &args, folder)?;
    let bytes = std::fs::read(&output).map_err(BuildError::io(&output))?;
    Ok(Compiled { bytes, files })
}

pub(super) fn toolchain(folder: &Path) -> Result<Vec<u8>, BuildError> {
    Ok(tools::identity(&COMPONENTIZE_JS.find(&node_bins(folder))?))
}

/// The module to build: `main` in `package.json`, or `stage.js`.
fn entry(folder: &Path) -> Result<String, BuildError> {
    let manifest = folder.join("package.json");
    let text = std::fs::read(&manifest).map_err(BuildError::io(&manifest))?;
    let package: serde_json::Value = serde_json::from_slice(&text).map_err(|error| BuildError::Io {
        path: manifest.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
    })?;
    let entry = package["main"].as_str().unwrap_or("stage.js").to_owned();
    if folder.join(&entry).is_file() {
        Ok(entry)
    } else {
        Err(BuildError::Io {
            path: folder.join(&entry),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the stage's module (package.json `main`, default stage.js) does not exist",
            ),
        })
    }
}

/// `node_modules/.bin` of the folder and of each folder above it.
fn node_bins(folder: &Path) -> Vec<PathBuf> {
    folder
        .ancestors()
        .map(|dir| dir.join("node_modules").join(".bin"))
        .filter(|bin| bin.is_dir())
        .collect()
}
