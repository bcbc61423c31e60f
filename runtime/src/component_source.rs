//! Where component bytes come from: a `.wasm` file, the standard library
//! embedded in cairn, a stage source folder built on demand, or a component
//! published to a registry and pinned in `cairn.lock` (see [`crate::oci`]).
//!
//! A source folder is built with cargo once, and rebuilt only when a file
//! that build read changes: the files come from cargo's dep-info (the crate,
//! its path dependencies such as `cairn-sdk`, and the WIT they embed), plus
//! `Cargo.toml`, `Cargo.lock` and the toolchain version. An unchanged folder
//! costs hashing those files, not a cargo invocation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_guest_build::{GuestBuild, GuestBuildError};

use crate::cache_dir::{CacheDir, write_atomically};
use crate::cas::Store;
use crate::component::Digest;
use crate::oci::OciError;
use crate::oci::resolve::RemoteComponents;
use crate::once_map::OnceMap;
use crate::pipeline::Uses;
use crate::standard_stages;

/// Why a component's bytes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A `.wasm` file could not be read.
    #[error("cannot read the component `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// `std:NAME` names no standard stage.
    #[error("there is no standard stage `std:{0}`")]
    UnknownStandard(String),
    /// A remote component could not be had.
    #[error(transparent)]
    Remote(#[from] OciError),
    /// A remote component was asked for before the pipeline's references were resolved.
    #[error("`{0}` has not been resolved against cairn.lock")]
    Unresolved(String),
    /// Building a stage source folder failed.
    #[error("cannot build the stage folder `{folder}`")]
    Build {
        /// The folder.
        folder: PathBuf,
        /// What went wrong.
        #[source]
        source: GuestBuildError,
    },
    /// The folder builds more or less than one component.
    #[error("the stage folder `{folder}` builds {count} components ({names}); cairn needs exactly one")]
    Ambiguous {
        /// The folder.
        folder: PathBuf,
        /// How many.
        count: usize,
        /// Their names.
        names: String,
    },
    /// The build cache could not be read or written.
    #[error("cannot use the stage build cache at `{path}`")]
    Cache {
        /// The entry.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// Produces component bytes for `uses` values, building folders at most
/// once per run and once per content.
pub struct ComponentSources {
    cache: CacheDir,
    folders: OnceMap<PathBuf, Arc<[u8]>>,
    remote: Option<(tokio::sync::Mutex<RemoteComponents>, Arc<Store>)>,
}

impl ComponentSources {
    /// Sources keeping built folders in `cache`.
    pub fn new(cache: CacheDir) -> Self {
        Self {
            cache,
            folders: OnceMap::default(),
            remote: None,
        }
    }

    /// Sources that also hand out the pinned remote components, kept in `store`.
    pub fn with_remote(mut self, remote: RemoteComponents, store: Arc<Store>) -> Self {
        self.remote = Some((tokio::sync::Mutex::new(remote), store));
        self
    }

    /// The bytes of the component `uses` names.
    pub async fn bytes(&self, uses: &Uses) -> Result<Arc<[u8]>, SourceError> {
        match uses {
            Uses::File(path) => std::fs::read(path).map(Arc::from).map_err(|source| SourceError::Read {
                path: path.clone(),
                source,
            }),
            Uses::Standard(name) => standard_stages::get(name)
                .map(Arc::from)
                .ok_or_else(|| SourceError::UnknownStandard(name.clone())),
            Uses::Oci(reference) => match &self.remote {
                Some((remote, store)) => Ok(remote.lock().await.bytes(reference, store).await?),
                None => Err(SourceError::Unresolved(reference.text.clone())),
            },
            Uses::SourceFolder(folder) => {
                self.folders
                    .get_or_try_init(folder.clone(), || {
                        let cache = self.cache.clone();
                        let folder = folder.clone();
                        async move {
                            tokio::task::spawn_blocking(move || build_folder(&cache, &folder))
                                .await
                                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
                        }
                    })
                    .await
            }
        }
    }
}

/// What the cache remembers of a folder's last build: the files it was
/// built from, their digest then, and the component it produced.
#[derive(serde::Serialize, serde::Deserialize)]
struct BuildRecord {
    files: Vec<PathBuf>,
    inputs: Digest,
    component: Digest,
}

/// Builds a stage folder, or returns the component its last build produced
/// when none of the files that build read has changed since.
fn build_folder(cache: &CacheDir, folder: &Path) -> Result<Arc<[u8]>, SourceError> {
    let bucket = cache.root().join("stage-builds-v1");
    let cache_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SourceError::Cache { path, source }
    };
    let folder = folder.canonicalize().map_err(|source| SourceError::Read {
        path: folder.to_owned(),
        source,
    })?;
    let record_path = bucket.join(format!(
        "{}.json",
        Digest::of(folder.to_string_lossy().as_bytes()).to_hex()
    ));
    if let Some(bytes) = reusable_build(&bucket, &record_path) {
        tracing::debug!(folder = %folder.display(), "reusing the stage folder's last build");
        return Ok(bytes);
    }

    // Not a warning, but worth seeing: cargo's own output follows.
    tracing::info!(
        "building the stage folder {} (cargo build --release --target wasm32-wasip2)",
        folder.display()
    );
    let manifest = folder.join("Cargo.toml");
    let build_error = |source| SourceError::Build {
        folder: folder.clone(),
        source,
    };
    let workspace = cairn_guest_build::workspace_root(&manifest).map_err(build_error)?;
    let mut build =
        GuestBuild::new(&manifest, cache.root().join("cargo-target")).remap_path_prefix(workspace, "/source");
    if let Some(cargo_home) = cargo_home() {
        build = build.remap_path_prefix(cargo_home, "/cargo");
    }
    let artifacts = build.run().map_err(build_error)?;
    let [artifact] = artifacts.as_slice() else {
        return Err(SourceError::Ambiguous {
            folder: folder.clone(),
            count: artifacts.len(),
            names: artifacts
                .iter()
                .map(|artifact| artifact.target_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let bytes = std::fs::read(&artifact.path).map_err(|source| SourceError::Read {
        path: artifact.path.clone(),
        source,
    })?;

    let mut files = artifact.source_files();
    files.extend(["Cargo.toml", "Cargo.lock"].map(|name| folder.join(name)));
    let record = BuildRecord {
        inputs: digest_files(&files),
        files,
        component: Digest::of(&bytes),
    };
    let component_path = bucket.join(format!("{}.wasm", record.component.to_hex()));
    std::fs::create_dir_all(&bucket).map_err(cache_error(&bucket))?;
    write_atomically(&component_path, &bytes).map_err(cache_error(&component_path))?;
    let json = serde_json::to_vec(&record).map_err(|error| cache_error(&record_path)(error.into()))?;
    write_atomically(&record_path, &json).map_err(cache_error(&record_path))?;
    Ok(bytes.into())
}

/// The component of the last build, if its record is sound, every file it
/// lists is unchanged, and the component's bytes are intact.
fn reusable_build(bucket: &Path, record_path: &Path) -> Option<Arc<[u8]>> {
    let record: BuildRecord = serde_json::from_slice(&std::fs::read(record_path).ok()?).ok()?;
    if digest_files(&record.files) != record.inputs {
        return None;
    }
    let bytes = std::fs::read(bucket.join(format!("{}.wasm", record.component.to_hex()))).ok()?;
    (Digest::of(&bytes) == record.component).then(|| bytes.into())
}

/// A digest of the toolchain and of each file's path and contents (a missing
/// file counts as a distinct state, so adding a `Cargo.lock` is a change).
fn digest_files(files: &[PathBuf]) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("cairn 2026 stage folder build inputs v1");
    let mut update = |part: &[u8]| {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    };
    update(&toolchain_version());
    for file in files {
        update(file.to_string_lossy().as_bytes());
        match std::fs::read(file) {
            Ok(contents) => update(&contents),
            Err(_) => update(b"\0missing"),
        }
    }
    Digest::from_hasher(&hasher)
}

/// `rustc -vV`: a new toolchain rebuilds every folder.
fn toolchain_version() -> Vec<u8> {
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
