//! The shared cache: what lets a stage built on one machine be reused on
//! every other.
//!
//! Three parts, each replaceable on its own:
//! - [`Backend`]: the few operations a shared store must offer (blobs by
//!   digest, two tables of small entries written first-writer-wins, a
//!   status). [`nats::NatsBackend`] is the one there is, on NATS JetStream;
//!   a REAPI or object-store backend implements the same trait.
//! - [`SharedCache`]: the exchange between the local store and a backend.
//!   It uploads only what the backend lacks and checks every byte it
//!   downloads against its blake3 digest before the local store takes it,
//!   so a tampered object is refused by name and never used.
//! - [`settings`]: where the server and its credentials come from (the
//!   environment and files, never the command line).

pub mod nats;
pub mod settings;
mod shared;
pub mod work;

use std::time::Duration;

use async_trait::async_trait;
use cairn_core::Digest;

pub use settings::{RemoteSettings, SettingsError};
pub use shared::{Shared, SharedCache, SharedError};

/// The small entries a backend keeps, each written once by its first writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Stage key → what the stage produced (an action cache entry).
    Actions,
    /// A stage folder's source digest and build toolchain → the component
    /// it builds to.
    Builds,
}

impl Table {
    /// Its name in messages and on the server.
    pub fn name(self) -> &'static str {
        match self {
            Self::Actions => "actions",
            Self::Builds => "builds",
        }
    }
}

/// Whether a first-writer-wins write was the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// This writer's value is the one kept.
    Stored,
    /// Another writer was first; its value stays.
    AlreadyThere,
}

/// What `cairn remote status` shows of one bucket.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BucketStatus {
    /// Its name on the server.
    pub name: String,
    /// What it holds (`blobs`, `actions`, `builds`, `jobs`, ...).
    pub holds: String,
    /// How many entries or objects.
    pub entries: u64,
    /// How many bytes the server keeps for it.
    pub bytes: u64,
    /// On how many servers each entry is kept.
    pub replicas: usize,
}

/// The state of a shared cache's server, for `cairn remote status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendStatus {
    /// The server, as the user named it (no credentials).
    pub server: String,
    /// The server's version, when it says.
    pub version: Option<String>,
    /// Its buckets.
    pub buckets: Vec<BucketStatus>,
}

/// What `cairn cache gc --remote` is asked to keep.
#[derive(Clone, Copy, Debug)]
pub struct GcPolicy {
    /// Entries and blobs last written longer ago than this go.
    pub max_age: Option<Duration>,
    /// Then the oldest blobs go until the blobs take at most this.
    pub max_bytes: Option<u64>,
}

/// What a garbage collection removed.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Table entries deleted.
    pub entries: u64,
}

/// A failure to reach or use a shared cache's server.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server cannot be reached, or refuses the connection.
    #[error("cannot connect to the shared cache at {server}: {reason}")]
    Connect {
        /// The server, without credentials.
        server: String,
        /// Why, in words.
        reason: String,
    },
    /// The server refused the credentials.
    #[error("the shared cache at {server} refused the credentials: {reason}")]
    Unauthorized {
        /// The server, without credentials.
        server: String,
        /// What it said.
        reason: String,
    },
    /// An operation failed after connecting.
    #[error("the shared cache at {server}: cannot {doing}: {reason}")]
    Operation {
        /// The server, without credentials.
        server: String,
        /// What was being done (`read blob 3f2a…`).
        doing: String,
        /// Why.
        reason: String,
    },
}

impl RemoteError {
    /// `doing` on `server` failed with `error`: what every operation after
    /// connecting reports.
    pub(crate) fn operation(server: &str, doing: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Operation {
            server: server.to_owned(),
            doing: doing.into(),
            reason: error.to_string(),
        }
    }
}

/// A place blobs and first-writer-wins entries can be shared through.
///
/// Backends store bytes as they are given; checking what comes back is
/// [`SharedCache`]'s job, so that every backend gets the same integrity for
/// free and a careless one cannot skip it.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The server, for messages (never with credentials).
    fn server(&self) -> &str;

    /// The entry of `table` for `key`, if there is one.
    async fn entry(&self, table: Table, key: &Digest) -> Result<Option<Vec<u8>>, RemoteError>;

    /// Writes `value` for `key` unless an entry is already there.
    async fn create_entry(&self, table: Table, key: &Digest, value: Vec<u8>) -> Result<Written, RemoteError>;

    /// Removes the entry of `table` for `key` (one whose blobs are gone).
    async fn remove_entry(&self, table: Table, key: &Digest) -> Result<(), RemoteError>;

    /// Whether the blob `digest` is stored.
    async fn has_blob(&self, digest: &Digest) -> Result<bool, RemoteError>;

    /// The bytes stored under `digest`, unchecked.
    async fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, RemoteError>;

    /// Stores `bytes` under `digest`, which the caller has computed.
    async fn put_blob(&self, digest: &Digest, bytes: Vec<u8>) -> Result<(), RemoteError>;

    /// Removes the blob `digest` (one whose bytes are not its digest's).
    async fn remove_blob(&self, digest: &Digest) -> Result<(), RemoteError>;

    /// The server and its buckets.
    async fn status(&self) -> Result<BackendStatus, RemoteError>;

    /// Removes what `policy` does not keep.
    async fn collect_garbage(&self, policy: GcPolicy) -> Result<GcReport, RemoteError>;
}
