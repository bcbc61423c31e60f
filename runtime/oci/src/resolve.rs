//! From the remote `uses` of a pipeline to verified component bytes.
//!
//! [`resolve`] brings `cairn.lock` in line with the pipeline: a reference
//! the lock pins keeps its pin (no network), a new one is resolved (its tag
//! looked up, its component downloaded and stored) and pinned, and a pin no
//! stage uses any more is dropped. With `--locked` any such change is an
//! error instead. [`RemoteComponents::bytes`] then hands out each pinned
//! component: from the store when it is there (offline runs), else
//! downloaded by its pinned digest and checked against every digest the lock
//! recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::artifact::{self, Layer, MAX_MANIFEST_SIZE};
use super::layout::Layout;
use super::lockfile::{LockFile, Pin};
use super::registry::{Registry, Settings};
use super::{Location, OciError, OciReference, Sha256};
use cairn_cas::{Store, StoreError};
use cairn_core::Digest;

/// Which pins `resolve` may move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Update {
    /// None: pinned references keep their pins.
    #[default]
    Nothing,
    /// All of them (`cairn lock --update`).
    All,
    /// These references (`cairn lock --update STAGE`).
    References(HashSet<String>),
}

/// How remote components are resolved.
#[derive(Clone, Debug, Default)]
pub struct ResolveOptions {
    /// Fail instead of changing the lock file (`--locked`, for CI).
    pub locked: bool,
    /// Which pins to re-resolve.
    pub update: Update,
    /// How registries are reached.
    pub registry: Settings,
}

/// One change to the lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A reference pinned for the first time.
    Added {
        /// The reference.
        uses: String,
        /// Its manifest digest, once resolved.
        manifest: Option<Sha256>,
    },
    /// A pin moved.
    Updated {
        /// The reference.
        uses: String,
        /// The old manifest digest.
        from: Sha256,
        /// The new one, once resolved.
        to: Option<Sha256>,
    },
    /// A pin no stage uses.
    Removed {
        /// The reference.
        uses: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added {
                uses,
                manifest: Some(manifest),
            } => write!(formatter, "pinned `{uses}` to {manifest}"),
            Change::Added { uses, manifest: None } => write!(formatter, "`{uses}` is not pinned"),
            Change::Updated {
                uses,
                from,
                to: Some(to),
            } => write!(formatter, "moved `{uses}` from {from} to {to}"),
            Change::Updated { uses, from, to: None } => {
                write!(formatter, "`{uses}` is pinned to {from}, which it does not name")
            }
            Change::Removed { uses } => write!(formatter, "unpinned `{uses}` (no stage uses it)"),
        }
    }
}

/// The pinned remote components of a pipeline.
pub struct RemoteComponents {
    /// The lock file the pins come from; none when pulling unpinned.
    lock_path: Option<PathBuf>,
    pins: HashMap<String, Pin>,
    /// What resolving downloaded already, by content digest.
    fetched: HashMap<Digest, Arc<[u8]>>,
    registries: HashMap<String, Arc<Registry>>,
    settings: Settings,
    /// What changed in the lock file.
    pub changes: Vec<Change>,
}

/// Brings the lock file at `lock_path` in line with `references` (every
/// remote `uses` of the pipeline), writing it when something changed.
pub async fn resolve(
    references: &[&OciReference],
    lock_path: &Path,
    store: &Store,
    options: &ResolveOptions,
) -> Result<RemoteComponents, OciError> {
    let lock = if references.is_empty() && !lock_path.exists() {
        LockFile {
            path: lock_path.to_owned(),
            pins: BTreeMap::new(),
        }
    } else {
        LockFile::load(lock_path)?
    };
    let mut remote = RemoteComponents {
        lock_path: Some(lock_path.to_owned()),
        ..RemoteComponents::unpinned(options.registry.clone())
    };
    let mut seen = HashSet::new();
    for reference in references {
        if !seen.insert(reference.text.as_str()) {
            continue;
        }
        let locked = lock.pins.get(&reference.text);
        let consistent = locked.filter(|pin| reference.digest.is_none_or(|digest| digest == pin.manifest));
        let update = match &options.update {
            Update::Nothing => false,
            Update::All => true,
            Update::References(texts) => texts.contains(&reference.text),
        };
        if let (Some(pin), false) = (consistent, update) {
            remote.pins.insert(reference.text.clone(), pin.clone());
            continue;
        }
        let change = |manifest| match locked {
            Some(pin) => Change::Updated {
                uses: reference.text.clone(),
                from: pin.manifest,
                to: manifest,
            },
            None => Change::Added {
                uses: reference.text.clone(),
                manifest,
            },
        };
        if options.locked {
            remote.changes.push(change(None));
            continue;
        }
        let (pin, bytes) = remote.fetch(reference, None, store).await?;
        if locked != Some(&pin) {
            remote.changes.push(change(Some(pin.manifest)));
        }
        remote.fetched.insert(pin.content, bytes);
        remote.pins.insert(reference.text.clone(), pin);
    }
    for uses in lock.pins.keys() {
        if !seen.contains(uses.as_str()) {
            remote.changes.push(Change::Removed { uses: uses.clone() });
        }
    }
    if options.locked && !remote.changes.is_empty() {
        return Err(OciError::LockOutdated {
            path: lock_path.to_owned(),
            changes: remote.changes.iter().map(ToString::to_string).collect(),
        });
    }
    if !remote.changes.is_empty() {
        LockFile {
            path: lock_path.to_owned(),
            pins: remote
                .pins
                .iter()
                .map(|(uses, pin)| (uses.clone(), pin.clone()))
                .collect(),
        }
        .save()?;
    }
    Ok(remote)
}

impl RemoteComponents {
    /// Components with no lock file: each is pulled by what its reference
    /// names now (`cairn stage run oci://...`, like `docker run`).
    pub fn unpinned(settings: Settings) -> Self {
        RemoteComponents {
            lock_path: None,
            pins: HashMap::new(),
            fetched: HashMap::new(),
            registries: HashMap::new(),
            settings,
            changes: Vec::new(),
        }
    }

    /// The pin of `reference`.
    pub fn pin(&self, reference: &OciReference) -> Option<&Pin> {
        self.pins.get(&reference.text)
    }

    /// The bytes of a pinned component: from the store when it has them
    /// intact, else downloaded by the pinned digest and checked. Without a
    /// lock file, the component is pulled by what its reference names.
    pub async fn bytes(&mut self, reference: &OciReference, store: &Store) -> Result<Arc<[u8]>, OciError> {
        let Some(pin) = self.pins.get(&reference.text).cloned() else {
            return match &self.lock_path {
                Some(path) => Err(OciError::Lock {
                    path: path.clone(),
                    problem: format!("`{reference}` has no pin"),
                }),
                None => Ok(self.fetch(reference, None, store).await?.1),
            };
        };
        if let Some(bytes) = self.fetched.get(&pin.content) {
            return Ok(Arc::clone(bytes));
        }
        match store.read(&pin.content) {
            Ok(bytes) => {
                store.keep(&pin.content)?;
                return Ok(bytes.into());
            }
            Err(StoreError::Missing { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        let (_, bytes) = self.fetch(reference, Some(&pin), store).await?;
        self.fetched.insert(pin.content, Arc::clone(&bytes));
        Ok(bytes)
    }

    /// Downloads `reference` (by the digest of `pin` when given, else by
    /// what it names), checks it, and stores it.
    async fn fetch(
        &mut self,
        reference: &OciReference,
        pin: Option<&Pin>,
        store: &Store,
    ) -> Result<(Pin, Arc<[u8]>), OciError> {
        let what = reference.text.as_str();
        let expected = pin.map(|pin| pin.manifest).or(reference.digest);
        let (manifest_digest, layer, bytes) = match &reference.location {
            Location::Registry { host, repository } => {
                let registry = self.registry(host)?;
                let lookup = expected.map_or_else(|| reference.tag_or_digest(), |digest| digest.to_string());
                tracing::debug!(reference = what, lookup, "fetching a manifest");
                let manifest = registry.manifest(repository, &lookup, what).await?;
                let layer = artifact::component_layer(&manifest, expected.as_ref(), what)?;
                check_pinned_layer(&layer, pin, what)?;
                let bytes = registry.component(repository, &layer, what).await?;
                (Sha256::of(&manifest), layer, bytes)
            }
            Location::Layout { path } => {
                let (manifest_digest, layer, bytes) = read_layout(path, reference, expected)?;
                check_pinned_layer(&layer, pin, what)?;
                (manifest_digest, layer, bytes)
            }
        };
        let content = Digest::of(&bytes);
        if let Some(pin) = pin
            && pin.content != content
        {
            return Err(OciError::DigestMismatch {
                what: format!("the component of `{what}`"),
                expected: format!("{} (from cairn.lock)", pin.content),
                actual: content.to_string(),
            });
        }
        store.put_bytes(&bytes)?;
        store.keep(&content)?;
        Ok((
            Pin {
                manifest: manifest_digest,
                layer: layer.digest,
                size: layer.size,
                content,
            },
            bytes.into(),
        ))
    }

    fn registry(&mut self, host: &str) -> Result<Arc<Registry>, OciError> {
        if let Some(registry) = self.registries.get(host) {
            return Ok(Arc::clone(registry));
        }
        let registry = Arc::new(Registry::connect(host, &self.settings)?);
        self.registries.insert(host.to_owned(), Arc::clone(&registry));
        Ok(registry)
    }
}

/// A pinned manifest must name the layer the lock recorded.
fn check_pinned_layer(layer: &Layer, pin: Option<&Pin>, what: &str) -> Result<(), OciError> {
    match pin {
        Some(pin) if pin.layer != layer.digest || pin.size != layer.size => Err(OciError::DigestMismatch {
            what: format!("the layer of `{what}`"),
            expected: format!("{} ({} bytes, from cairn.lock)", pin.layer, pin.size),
            actual: format!("{} ({} bytes)", layer.digest, layer.size),
        }),
        _ => Ok(()),
    }
}

/// Reads an artifact from an image-layout folder, checking every digest.
fn read_layout(
    path: &Path,
    reference: &OciReference,
    expected: Option<Sha256>,
) -> Result<(Sha256, Layer, Vec<u8>), OciError> {
    let what = reference.text.as_str();
    let layout = Layout::open(path)?;
    let not_found = || OciError::NotFound {
        reference: what.to_owned(),
        place: format!("the OCI layout `{}`", path.display()),
    };
    let manifest_digest = match expected {
        Some(digest) => digest,
        None => layout
            .manifest_digest(reference.tag.as_deref().unwrap_or("latest"))?
            .ok_or_else(not_found)?,
    };
    let manifest = layout
        .read_blob(&manifest_digest, MAX_MANIFEST_SIZE as u64)?
        .ok_or_else(not_found)?;
    let layer = artifact::component_layer(&manifest, Some(&manifest_digest), what)?;
    let bytes = layout
        .read_blob(&layer.digest, layer.size)?
        .ok_or_else(|| OciError::Layout {
            path: path.to_owned(),
            problem: format!("the component blob {} of `{what}` is missing", layer.digest),
        })?;
    artifact::check_layer(&bytes, &layer, what)?;
    Ok((manifest_digest, layer, bytes))
}
