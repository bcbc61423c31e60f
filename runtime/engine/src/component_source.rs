//! Where component bytes come from: a `.wasm` file, the standard library
//! embedded in cairn, a stage source folder built on demand, or a component
//! published to a registry and pinned in `cairn.lock` (see [`cairn_oci`]).
//!
//! Source folders, in any language, are built by [`cairn_stage_build`]; with
//! a shared cache, a JavaScript, Python or C folder another machine built
//! from the same sources and toolchain is taken from it instead (those
//! tools do not build the same bytes twice, so building again would give
//! the stage, and every stage after it, a new key).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_cas::Store;
use cairn_component::{BinaryFormat, Digest};
use cairn_core::cache_dir::CacheDir;
use cairn_core::once_map::OnceMap;
use cairn_oci::OciError;
use cairn_oci::resolve::RemoteComponents;
use cairn_pipeline::Uses;
use cairn_remote::SharedCache;
use cairn_stage_build::{self as stage_build, BuildError};

use crate::state::ComponentRecord;
use crate::workspace::Stamp;

/// Why a `.wasm` file gives no component.
#[derive(Debug, thiserror::Error)]
pub enum FileComponentError {
    /// The file cannot be read.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// The bytes are not WebAssembly.
    #[error("not a WebAssembly file")]
    NotWasm,
}

/// The component in the `.wasm` file at `path`, digested by stamp: for a
/// file whose stamp is what `remembered` knows, the remembered digest
/// (the bytes are read only if a stage runs); otherwise the file is read and
/// digested, and the record to remember comes back with it. Stamped before
/// it is read, so a change made meanwhile shows next time.
pub fn file_component(
    path: &Path,
    remembered: impl FnOnce(&Stamp) -> Option<ComponentRecord>,
) -> Result<(ComponentRef, Option<ComponentRecord>), FileComponentError> {
    let stamp = Stamp::of(&std::fs::metadata(path)?);
    if let Some(record) = remembered(&stamp) {
        return Ok((
            ComponentRef::in_file(path.to_owned(), record.digest, record.format),
            None,
        ));
    }
    let bytes: Arc<[u8]> = std::fs::read(path)?.into();
    let format = BinaryFormat::detect(&bytes).ok_or(FileComponentError::NotWasm)?;
    let component = ComponentRef::loaded(Arc::clone(&bytes), Digest::of(&bytes), format);
    let record = ComponentRecord {
        stamp,
        digest: component.digest,
        format,
    };
    Ok((component, Some(record)))
}

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
    /// A needed stage's output was asked for before that stage ran.
    #[error("`in:{stage}/{path}` is written by stage `{stage}` during a run; it cannot be read before")]
    NotYetProduced {
        /// The stage that writes it.
        stage: String,
        /// The file, in that stage's outputs.
        path: String,
    },
    /// A `.wasm` file changed after the run computed the keys of the stages
    /// using it.
    #[error("the component `{}` changed during the run; run again to use the new one", .0.display())]
    Changed(PathBuf),
    /// Building a stage source folder failed.
    #[error("cannot build the stage folder `{}`", folder.components().collect::<PathBuf>().display())]
    Build {
        /// The folder.
        folder: PathBuf,
        /// What went wrong.
        #[source]
        source: BuildError,
    },
}

/// Produces component bytes for `uses` values, building folders at most
/// once per run and once per content.
pub struct ComponentSources {
    cache: CacheDir,
    folders: OnceMap<PathBuf, Arc<[u8]>>,
    remote: Option<(tokio::sync::Mutex<RemoteComponents>, Arc<Store>)>,
    shared: Option<(Arc<SharedCache>, Arc<Store>)>,
}

impl ComponentSources {
    /// Sources keeping built folders in `cache`.
    pub fn new(cache: CacheDir) -> Self {
        Self {
            cache,
            folders: OnceMap::default(),
            remote: None,
            shared: None,
        }
    }

    /// Sources that take and share stage folder builds through `shared`,
    /// their components kept in `store`.
    pub fn with_shared(mut self, shared: Option<Arc<SharedCache>>, store: Arc<Store>) -> Self {
        self.shared = shared.map(|shared| (shared, store));
        self
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
            Uses::Standard(name) => cairn_stdlib::get(name)
                .map(Arc::from)
                .ok_or_else(|| SourceError::UnknownStandard(name.clone())),
            Uses::Output { stage, path } => Err(SourceError::NotYetProduced {
                stage: stage.clone(),
                path: path.clone(),
            }),
            Uses::Oci(reference) => match &self.remote {
                Some((remote, store)) => Ok(remote.lock().await.bytes(reference, store).await?),
                None => Err(SourceError::Unresolved(reference.text.clone())),
            },
            Uses::SourceFolder(folder) => {
                self.folders
                    .get_or_try_init(folder.clone(), || self.build_folder(folder.clone()))
                    .await
            }
        }
    }
}

impl ComponentSources {
    /// The component of a stage folder: its last build here, else the
    /// build another machine shared, else a build now (then shared).
    async fn build_folder(&self, folder: PathBuf) -> Result<Arc<[u8]>, SourceError> {
        let failed = |folder: &Path| {
            let folder = folder.to_owned();
            move |source| SourceError::Build { folder, source }
        };
        let cache = self.cache.clone();
        let build = blocking({
            let folder = folder.clone();
            move || stage_build::FolderBuild::new(&cache, &folder)
        })
        .await
        .map(Arc::new)
        .map_err(failed(&folder))?;
        let reused = blocking({
            let build = Arc::clone(&build);
            move || build.reuse()
        })
        .await;
        if let Some(built) = reused {
            return Ok(built.bytes);
        }
        let shared = self.shared.as_ref().zip(build.portable_key());
        if let Some(((shared, store), key)) = &shared {
            match shared.fetch_build(store, key).await {
                Ok(Some(bytes)) => {
                    tracing::debug!(folder = %folder.display(), "took the stage folder's build from the shared cache");
                    let build = Arc::clone(&build);
                    return blocking(move || build.adopt(bytes))
                        .await
                        .map(|built| built.bytes)
                        .map_err(failed(&folder));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot take the stage folder's build from the shared cache; building it here")
                }
            }
        }
        let built = blocking({
            let build = Arc::clone(&build);
            move || build.build()
        })
        .await
        .map_err(failed(&folder))?;
        if let Some(((shared, store), key)) = &shared {
            let stored = store.put_bytes(&built.bytes);
            let outcome = match stored {
                Ok(component) => shared
                    .share_build(store, key, component)
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, "cannot share the stage folder's build");
            }
        }
        Ok(built.bytes)
    }
}

/// `work` on a thread that may block, its panic carried over.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// A stage's component: its digest and format, which its key needs on every
/// run, and its bytes, which only a stage that runs needs. A `.wasm` file
/// whose digest is remembered by its stamp is not read until then (a
/// JavaScript or Python component is 14 to 18 MB), and is checked against
/// that digest when it is.
#[derive(Clone)]
pub struct ComponentRef {
    /// The bytes' digest.
    pub digest: Digest,
    /// What the bytes' header says they are.
    pub format: BinaryFormat,
    bytes: Bytes,
}

/// Where a component's bytes are.
#[derive(Clone)]
enum Bytes {
    /// In memory.
    Loaded(Arc<[u8]>),
    /// In a file, read at most once, by whichever stage needs them first.
    File {
        path: Arc<PathBuf>,
        read: Arc<tokio::sync::OnceCell<Arc<[u8]>>>,
    },
}

impl ComponentRef {
    /// A component whose bytes are at hand.
    pub fn loaded(bytes: Arc<[u8]>, digest: Digest, format: BinaryFormat) -> Self {
        Self {
            digest,
            format,
            bytes: Bytes::Loaded(bytes),
        }
    }

    /// A component in the file at `path`, whose bytes have the digest `digest`.
    pub fn in_file(path: PathBuf, digest: Digest, format: BinaryFormat) -> Self {
        Self {
            digest,
            format,
            bytes: Bytes::File {
                path: Arc::new(path),
                read: Arc::default(),
            },
        }
    }

    /// The bytes, read now if they were not: an error if the file cannot be
    /// read or no longer holds the bytes of the digest the stage's key was
    /// computed with.
    pub async fn bytes(&self) -> Result<Arc<[u8]>, SourceError> {
        let (path, read) = match &self.bytes {
            Bytes::Loaded(bytes) => return Ok(Arc::clone(bytes)),
            Bytes::File { path, read } => (path, read),
        };
        let digest = self.digest;
        let bytes = read.get_or_try_init(|| {
            let path = Arc::clone(path);
            async move {
                tokio::task::spawn_blocking(move || {
                    let bytes = std::fs::read(path.as_ref()).map_err(|source| SourceError::Read {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    if Digest::of(&bytes) != digest {
                        return Err(SourceError::Changed(path.to_path_buf()));
                    }
                    Ok(Arc::from(bytes))
                })
                .await
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            }
        });
        bytes.await.cloned()
    }
}
