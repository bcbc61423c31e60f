//! Rust stage folders: `cargo build --release --target wasm32-wasip2`, with
//! `cairn-sdk` taken from the SDK cairn embeds ([`super::rust_sdk`]), and the
//! checkout, the SDK's folder and `CARGO_HOME` remapped so the bytes do not
//! depend on where any of them is.

use std::path::{Path, PathBuf};

use cairn_guest_build::GuestBuild;

use super::{BuildError, Compiled, rust_sdk};
use cairn_core::cache_dir::CacheDir;

pub(super) fn compile(cache: &CacheDir, folder: &Path) -> Result<Compiled, BuildError> {
    let manifest = folder.join("Cargo.toml");
    let workspace = cairn_guest_build::workspace_root(&manifest)?;
    let mut build =
        GuestBuild::new(&manifest, cache.root().join("cargo-target")).remap_path_prefix(workspace, "/source");
    if wants_embedded_sdk(&manifest) {
        let sdk = rust_sdk::install(cache).map_err(BuildError::io(cache.root()))?;
        let sdk_path = toml::Value::String(sdk.crate_dir.to_string_lossy().into_owned());
        build = build
            .config(format!("patch.crates-io.cairn-sdk.path={sdk_path}"))
            .remap_path_prefix(&sdk.root, "/cairn-sdk");
    }
    if let Some(cargo_home) = cargo_home() {
        build = build.remap_path_prefix(cargo_home, "/cargo");
    }
    let artifacts = build.run()?;
    let [artifact] = artifacts.as_slice() else {
        return Err(BuildError::Ambiguous {
            count: artifacts.len(),
            names: artifacts
                .iter()
                .map(|artifact| artifact.target_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let bytes = std::fs::read(&artifact.path).map_err(BuildError::io(&artifact.path))?;
    let mut files = artifact.source_files();
    files.extend(["Cargo.toml", "Cargo.lock"].map(|name| folder.join(name)));
    Ok(Compiled { bytes, files })
}

/// Whether the package depends on `cairn-sdk` by version (not by path or
/// git), the dependency cairn supplies; a stage that does not use the SDK is
/// built without the patch, so cargo has no unused patch to warn about.
/// Whether the folder's files are all its build reads besides pinned
/// registry crates: a `Cargo.lock`, no `[workspace]` elsewhere above it, and
/// no dependency by `path` or `git`.
pub(super) fn self_contained(folder: &Path) -> bool {
    let manifest = folder.join("Cargo.toml");
    if !folder.join("Cargo.lock").is_file() {
        return false;
    }
    let Ok(table) = std::fs::read_to_string(&manifest).map(|text| text.parse::<toml::Table>()) else {
        return false;
    };
    let Ok(table) = table else {
        return false;
    };
    let local = |dependencies: &toml::Value| {
        dependencies.as_table().is_some_and(|dependencies| {
            dependencies
                .values()
                .any(|dependency| dependency.get("path").is_some() || dependency.get("git").is_some())
        })
    };
    let tables = std::iter::once(&table).chain(
        table
            .get("target")
            .and_then(toml::Value::as_table)
            .into_iter()
            .flat_map(|targets| targets.values().filter_map(toml::Value::as_table)),
    );
    for section in tables {
        for (name, dependencies) in section {
            if name.ends_with("dependencies") && local(dependencies) {
                return false;
            }
        }
    }
    if table.get("patch").is_some() {
        return false;
    }
    cairn_guest_build::workspace_root(&manifest).is_ok_and(|root| root == folder)
}

fn wants_embedded_sdk(manifest: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return false;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    match table
        .get("dependencies")
        .and_then(|dependencies| dependencies.get("cairn-sdk"))
    {
        Some(toml::Value::String(_)) => true,
        Some(toml::Value::Table(spec)) => !spec.contains_key("path") && !spec.contains_key("git"),
        _ => false,
    }
}

/// `rustc -vV`: a new toolchain rebuilds every folder.
pub(super) fn toolchain() -> Vec<u8> {
    std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
        .map(|output| output.stdout)
        .unwrap_or_default()
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|home| home.join(".cargo")))
}
