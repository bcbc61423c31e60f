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
    let sdk = rust_sdk::install(cache).map_err(BuildError::io(cache.root()))?;
    let sdk_path = toml::Value::String(sdk.crate_dir.to_string_lossy().into_owned());
    let mut build = GuestBuild::new(&manifest, cache.root().join("cargo-target"))
        .config(format!("patch.crates-io.cairn-sdk.path={sdk_path}"))
        .remap_path_prefix(workspace, "/source")
        .remap_path_prefix(&sdk.root, "/cairn-sdk");
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
