//! The Rust SDK, embedded: `cairn-sdk` for stage folders wherever they are.
//!
//! A Rust stage depends on `cairn-sdk = "0.1"` by version. That crate is not
//! fetched from anywhere: cairn writes the SDK it embeds (sources, manifest
//! and the `cairn:stage` WIT they bind to) to a folder of its cache named by
//! version and content, and builds stage folders with cargo's
//! `[patch.crates-io]` pointing there. A machine with only the `cairn`
//! binary and rustup builds any stage folder, the SDK always matches the host
//! that runs the stage, and the folder's path is remapped so the component's
//! bytes do not depend on where the cache is.

use std::io;
use std::path::{Path, PathBuf};

use super::wit;
use cairn_core::cache_dir::CacheDir;

/// The SDK's version, the one stage manifests ask for.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `wit-bindgen` the SDK is built with: the workspace's (a unit test
/// holds the two together).
const WIT_BINDGEN: &str = "0.61";

/// The SDK's sources, by path relative to the SDK's folder.
const SOURCES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../sdk/rust/src/lib.rs")),
    ("src/fs.rs", include_str!("../../../sdk/rust/src/fs.rs")),
    ("src/log.rs", include_str!("../../../sdk/rust/src/log.rs")),
    ("src/tools.rs", include_str!("../../../sdk/rust/src/tools.rs")),
    ("src/http.rs", include_str!("../../../sdk/rust/src/http.rs")),
];

/// The SDK's manifest: its own workspace, so that it builds wherever it is.
fn manifest() -> String {
    format!(
        "[package]\n\
         name = \"cairn-sdk\"\n\
         version = \"{VERSION}\"\n\
         edition = \"2024\"\n\
         description = \"Write cairn pipeline stages in Rust (written by cairn from the copy it embeds)\"\n\
         license = \"Apache-2.0\"\n\
         \n\
         [dependencies]\n\
         wit-bindgen = \"{WIT_BINDGEN}\"\n"
    )
}

/// A digest of everything written, naming the folder it is written to.
fn digest() -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(manifest().as_bytes());
    for (name, text) in SOURCES {
        hasher.update(name.as_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.update(wit::digest().as_bytes());
    hasher.finalize()
}

/// Where the SDK lies once installed: `root/sdk/rust`, beside `root/wit`
/// (the SDK's `generate!` reads `../../wit`).
pub struct InstalledSdk {
    /// The folder whose path is remapped in builds.
    pub root: PathBuf,
    /// The crate's folder, for `[patch.crates-io]`.
    pub crate_dir: PathBuf,
}

/// Writes the SDK into `cache` unless it is there already, and says where.
/// The folder is written beside its final place and renamed into it, so a
/// concurrent or interrupted install never leaves half an SDK.
pub fn install(cache: &CacheDir) -> io::Result<InstalledSdk> {
    let bucket = cache.root().join("sdk-v1");
    let root = bucket.join(format!("rust-{VERSION}-{}", &digest().to_hex()[..16]));
    let installed = InstalledSdk {
        crate_dir: root.join("sdk").join("rust"),
        root: root.clone(),
    };
    if installed.crate_dir.join("Cargo.toml").is_file() {
        return Ok(installed);
    }
    std::fs::create_dir_all(&bucket)?;
    let staging = tempfile::Builder::new().prefix(".sdk-").tempdir_in(&bucket)?;
    write_sdk(staging.path())?;
    match std::fs::rename(staging.path(), &root) {
        Ok(()) => {}
        // Another process installed it first: the same bytes.
        Err(_) if installed.crate_dir.join("Cargo.toml").is_file() => {}
        Err(error) => return Err(error),
    }
    Ok(installed)
}

fn write_sdk(root: &Path) -> io::Result<()> {
    let crate_dir = root.join("sdk").join("rust");
    std::fs::create_dir_all(crate_dir.join("src"))?;
    std::fs::write(crate_dir.join("Cargo.toml"), manifest())?;
    for (name, text) in SOURCES {
        std::fs::write(crate_dir.join(name), text)?;
    }
    wit::write_to(&root.join("wit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_sdk_uses_the_workspace_wit_bindgen() {
        let workspace: toml::Table = include_str!("../../../Cargo.toml")
            .parse()
            .expect("the workspace manifest");
        let requirement = workspace["workspace"]["dependencies"]["wit-bindgen"]
            .as_str()
            .expect("a version string");
        assert_eq!(requirement, WIT_BINDGEN);
    }

    #[test]
    fn every_source_file_of_the_sdk_is_embedded() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(folder)
            .expect("the SDK's sources")
            .map(|entry| format!("src/{}", entry.expect("an entry").file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<&str> = SOURCES.iter().map(|(name, _)| *name).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn installing_twice_gives_the_same_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(dir.path()).expect("cache");
        let first = install(&cache).expect("installed");
        let second = install(&cache).expect("installed again");
        assert_eq!(first.crate_dir, second.crate_dir);
        assert!(first.root.join("wit/stage.wit").is_file());
        assert!(first.crate_dir.join("src/lib.rs").is_file());
    }
}
