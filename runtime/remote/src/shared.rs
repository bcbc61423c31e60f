//! The checked exchange between the local store and a shared backend.
//!
//! Downloads: an action entry names an outputs tree, its files and a log;
//! each blob is fetched only when the local store lacks it, and its bytes
//! are hashed before the store takes them. A blob whose bytes are not its
//! name is refused with [`SharedError::Tampered`] and never written, so a
//! poisoned shared cache can cost a rebuild, never a wrong result.
//!
//! Uploads: blobs the backend already has are skipped; the entry goes last,
//! written only if absent, so a reader never finds an entry whose blobs are
//! still on their way, and the first of two writers of a key wins (stage
//! results are deterministic, so both are the same result).

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};

use cairn_cas::{ActionEntry, EntryKind, Store, StoreError, Tree, TreeError};
use cairn_core::Digest;

use super::{Backend, RemoteError, Table, Written};

/// How many blobs move at once.
const PARALLEL_BLOBS: usize = 8;

/// A shared cache in use: a backend, and whether this run may write to it.
#[derive(Clone)]
pub struct SharedCache {
    backend: Arc<dyn Backend>,
    read_only: bool,
    /// Blobs the backend was seen to hold, and when: not asked about again
    /// for [`PRESENT_FOR`] (a run sending a thousand stages to workers
    /// sends their one component once, and asks once).
    present: Arc<std::sync::Mutex<std::collections::HashMap<Digest, std::time::Instant>>>,
}

/// How long a blob seen on the backend is taken to be there still. Short,
/// because `cairn cache gc --remote` may remove it meanwhile; an entry
/// naming a collected blob is a miss, and is healed by the next writer.
const PRESENT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// What sharing a result did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    /// The entry is now shared, after uploading this many blobs of this
    /// many bytes (the rest were there).
    Uploaded {
        /// Blobs sent.
        blobs: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// Another machine shared the same key first.
    AlreadyThere,
    /// This run may not write (`--remote-read-only`).
    ReadOnly,
}

/// A failure of the exchange.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The server failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A downloaded blob is not what its name says.
    #[error(
        "the shared cache at {server} returned bytes for blob {digest} whose blake3 digest is {actual}: \
         refused, not used (the object was damaged or replaced; delete it on the server)"
    )]
    Tampered {
        /// The server.
        server: String,
        /// The digest asked for.
        digest: Digest,
        /// The digest of what came back.
        actual: Digest,
    },
    /// An entry names a blob the server does not have (collected, or never
    /// uploaded whole).
    #[error("the shared cache at {server} has an entry for {key} but not its blob {digest}")]
    MissingBlob {
        /// The server.
        server: String,
        /// The entry's key.
        key: Digest,
        /// The blob.
        digest: Digest,
    },
    /// An entry that cannot be read.
    #[error("the shared cache at {server} holds an unreadable {table} entry for {key}: {reason}")]
    Entry {
        /// The server.
        server: String,
        /// Which table.
        table: &'static str,
        /// The key.
        key: Digest,
        /// Why.
        reason: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A downloaded tree cannot be read.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

impl SharedCache {
    /// Shares through `backend`; only reads when `read_only`.
    pub fn new(backend: Arc<dyn Backend>, read_only: bool) -> Self {
        Self {
            backend,
            read_only,
            present: Arc::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Whether this run only reads.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The result stored for `key`, brought into `store` whole (its tree,
    /// files and log, each checked) and recorded in its action cache;
    /// `None` when no machine has shared one.
    ///
    /// A writing run also heals what it finds broken, so that the next
    /// machine does not stumble on it again: a blob whose bytes are not its
    /// digest's is deleted, and an entry that named it or a blob since
    /// collected is removed; this run, having built the stage, shares it
    /// whole again.
    pub async fn fetch_action(&self, store: &Store, key: &Digest) -> Result<Option<ActionEntry>, SharedError> {
        let fetched = self.fetch_action_unhealed(store, key).await;
        self.heal(Table::Actions, key, &fetched).await;
        fetched
    }

    async fn fetch_action_unhealed(&self, store: &Store, key: &Digest) -> Result<Option<ActionEntry>, SharedError> {
        let Some(bytes) = self.backend.entry(Table::Actions, key).await? else {
            return Ok(None);
        };
        let entry: ActionEntry =
            serde_json::from_slice(&bytes).map_err(|error| self.unreadable(Table::Actions, key, error))?;
        if !entry.is_current() {
            // Written by another version of cairn: a miss, as locally.
            return Ok(None);
        }
        self.fetch_tree_of(store, key, entry.outputs, entry.has_log.then_some(entry.log))
            .await?;
        store.put_action(key, &entry)?;
        Ok(Some(entry))
    }

    /// Brings the tree `digest` and its files into `store`, each checked:
    /// what a worker needs of a job's inputs and of the stages it needs.
    pub async fn fetch_tree(&self, store: &Store, digest: Digest) -> Result<Tree, SharedError> {
        self.fetch_tree_of(store, &digest, digest, None).await
    }

    /// The tree `digest` (named by the entry `key`) and its files, and
    /// `extra` with them.
    async fn fetch_tree_of(
        &self,
        store: &Store,
        key: &Digest,
        digest: Digest,
        extra: Option<Digest>,
    ) -> Result<Tree, SharedError> {
        self.fetch_blob(store, key, digest).await?;
        let tree = Tree::load(store, &digest)?;
        let wanted = file_digests(&tree).chain(extra);
        futures_util::stream::iter(wanted.map(Ok))
            .try_for_each_concurrent(PARALLEL_BLOBS, |digest| async move {
                self.fetch_blob(store, key, digest).await.map(drop)
            })
            .await?;
        Ok(tree)
    }

    /// Sends the tree `digest` that `store` holds, and its files, where
    /// the backend lacks them: a job's inputs, for the worker that runs it.
    pub async fn share_tree(&self, store: &Store, digest: Digest) -> Result<(usize, u64), SharedError> {
        let tree = Tree::load(store, &digest)?;
        let mut blobs: Vec<Digest> = file_digests(&tree).collect();
        blobs.push(digest);
        blobs.sort_unstable_by_key(|digest| *digest.as_bytes());
        blobs.dedup();
        self.upload(store, blobs).await
    }

    /// Sends `bytes` (whose digest is `digest`) unless the backend has
    /// them: a job's component.
    pub async fn share_blob(&self, digest: Digest, bytes: &[u8]) -> Result<bool, SharedError> {
        if self.backend_has(&digest).await? {
            return Ok(false);
        }
        self.backend.put_blob(&digest, bytes.to_vec()).await?;
        self.seen(digest);
        Ok(true)
    }

    /// Whether the backend holds `digest`, asked unless it was seen there
    /// lately.
    async fn backend_has(&self, digest: &Digest) -> Result<bool, RemoteError> {
        let lately = self
            .present
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(digest)
            .is_some_and(|seen| seen.elapsed() < PRESENT_FOR);
        if lately {
            return Ok(true);
        }
        let has = self.backend.has_blob(digest).await?;
        if has {
            self.seen(*digest);
        }
        Ok(has)
    }

    fn seen(&self, digest: Digest) {
        self.present
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(digest, std::time::Instant::now());
    }

    /// The blob `digest` (a job's component), from `store` or brought into
    /// it, checked against its digest either way.
    pub async fn fetch_checked(&self, store: &Store, digest: Digest) -> Result<Vec<u8>, SharedError> {
        self.fetch_checked_for(store, &digest, digest).await
    }

    /// The blob `digest` named by the entry `key`, from `store` or brought
    /// into it.
    async fn fetch_checked_for(&self, store: &Store, key: &Digest, digest: Digest) -> Result<Vec<u8>, SharedError> {
        match self.fetch_blob(store, key, digest).await? {
            Some(bytes) => Ok(bytes),
            None => Ok(store.read(&digest)?),
        }
    }

    /// Shares the result `store` holds for `key`: the blobs the backend
    /// lacks, then the entry, unless another machine was first.
    pub async fn share_action(&self, store: &Store, key: &Digest, entry: &ActionEntry) -> Result<Shared, SharedError> {
        if self.read_only {
            return Ok(Shared::ReadOnly);
        }
        if self.backend.entry(Table::Actions, key).await?.is_some() {
            return Ok(Shared::AlreadyThere);
        }
        self.share_new_action(store, key, entry).await
    }

    /// [`SharedCache::share_action`] without asking first whether the
    /// entry is there: for a result made because it was not (a worker's
    /// job), where asking costs a round trip and almost never saves one.
    pub async fn share_new_action(
        &self,
        store: &Store,
        key: &Digest,
        entry: &ActionEntry,
    ) -> Result<Shared, SharedError> {
        if self.read_only {
            return Ok(Shared::ReadOnly);
        }
        let tree = Tree::load(store, &entry.outputs)?;
        let mut blobs: Vec<Digest> = file_digests(&tree).collect();
        blobs.push(entry.outputs);
        if entry.has_log {
            blobs.push(entry.log);
        }
        blobs.sort_unstable_by_key(|digest| *digest.as_bytes());
        blobs.dedup();
        let (sent, bytes) = self.upload(store, blobs).await?;
        let value = serde_json::to_vec(entry).map_err(|error| self.unreadable(Table::Actions, key, error))?;
        Ok(match self.backend.create_entry(Table::Actions, key, value).await? {
            Written::Stored => Shared::Uploaded { blobs: sent, bytes },
            Written::AlreadyThere => Shared::AlreadyThere,
        })
    }

    /// The component a stage folder built to elsewhere, by `key` (its
    /// source digest and the toolchain's identity): its bytes, checked and
    /// kept in `store`.
    pub async fn fetch_build(&self, store: &Store, key: &Digest) -> Result<Option<Vec<u8>>, SharedError> {
        let fetched = self.fetch_build_unhealed(store, key).await;
        self.heal(Table::Builds, key, &fetched).await;
        fetched
    }

    async fn fetch_build_unhealed(&self, store: &Store, key: &Digest) -> Result<Option<Vec<u8>>, SharedError> {
        let Some(bytes) = self.backend.entry(Table::Builds, key).await? else {
            return Ok(None);
        };
        let component = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.trim().parse::<Digest>().ok())
            .ok_or_else(|| self.unreadable(Table::Builds, key, "not a digest"))?;
        self.fetch_checked_for(store, key, component).await.map(Some)
    }

    /// Shares that the stage folder of `key` built to `component`.
    pub async fn share_build(&self, store: &Store, key: &Digest, component: Digest) -> Result<Shared, SharedError> {
        if self.read_only {
            return Ok(Shared::ReadOnly);
        }
        let (sent, bytes) = self.upload(store, vec![component]).await?;
        let value = component.to_string().into_bytes();
        Ok(match self.backend.create_entry(Table::Builds, key, value).await? {
            Written::Stored => Shared::Uploaded { blobs: sent, bytes },
            Written::AlreadyThere => Shared::AlreadyThere,
        })
    }

    /// Removes what a fetch of `key` found broken, unless this run only
    /// reads: a blob whose bytes are not its digest's, and the entry that
    /// led to it or to a missing blob or that cannot be read.
    async fn heal<T>(&self, table: Table, key: &Digest, fetched: &Result<T, SharedError>) {
        if self.read_only {
            return;
        }
        let removed = match fetched {
            Err(SharedError::Tampered { digest, .. }) => match self.backend.remove_blob(digest).await {
                Ok(()) => self.backend.remove_entry(table, key).await,
                Err(error) => Err(error),
            },
            Err(SharedError::MissingBlob { .. } | SharedError::Entry { .. }) => {
                self.backend.remove_entry(table, key).await
            }
            _ => Ok(()),
        };
        if let Err(error) = removed {
            tracing::warn!(%error, "cannot remove a broken object from the shared cache");
        }
    }

    /// Sends each of `blobs` the backend lacks; how many, and their bytes.
    async fn upload(&self, store: &Store, blobs: Vec<Digest>) -> Result<(usize, u64), SharedError> {
        let sent: Vec<u64> = futures_util::stream::iter(blobs)
            .map(|digest| async move {
                if self.backend_has(&digest).await? {
                    return Ok::<_, SharedError>(None);
                }
                let bytes = store.read(&digest)?;
                let size = bytes.len() as u64;
                self.backend.put_blob(&digest, bytes).await?;
                self.seen(digest);
                Ok(Some(size))
            })
            .buffer_unordered(PARALLEL_BLOBS)
            .try_filter_map(|size| async move { Ok(size) })
            .try_collect()
            .await?;
        Ok((sent.len(), sent.iter().sum()))
    }

    /// Brings the blob `digest` (named by the entry `key`) into `store`,
    /// unless it is there, refusing bytes that are not its digest's; the
    /// bytes, when it downloaded them.
    async fn fetch_blob(&self, store: &Store, key: &Digest, digest: Digest) -> Result<Option<Vec<u8>>, SharedError> {
        if store.has_blob(&digest) {
            return Ok(None);
        }
        let Some(bytes) = self.backend.blob(&digest).await? else {
            return Err(SharedError::MissingBlob {
                server: self.backend.server().to_owned(),
                key: *key,
                digest,
            });
        };
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(SharedError::Tampered {
                server: self.backend.server().to_owned(),
                digest,
                actual,
            });
        }
        store.put_bytes(&bytes)?;
        self.seen(digest);
        Ok(Some(bytes))
    }

    fn unreadable(&self, table: Table, key: &Digest, reason: impl ToString) -> SharedError {
        SharedError::Entry {
            server: self.backend.server().to_owned(),
            table: table.name(),
            key: *key,
            reason: reason.to_string(),
        }
    }
}

/// The digests of a tree's files.
fn file_digests(tree: &Tree) -> impl Iterator<Item = Digest> + '_ {
    tree.entries().iter().filter_map(|entry| match entry.kind {
        EntryKind::File { digest, .. } => Some(digest),
        _ => None,
    })
}
