//! What every layer of cairn shares, below all of them: digests, sizes and
//! durations, the log and annotation types stages report, the statuses and
//! events of a run, the bounds and grants a stage runs under, what a stage
//! returns, the cache folder and atomic writes, and the run's thread pool.
//!
//! Nothing here knows about WebAssembly, pipelines or the terminal: a type
//! two layers share lives here, so neither has to depend on the other.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cache_dir;
pub mod digest;
pub mod events;
pub mod files;
pub mod grants;
pub mod limits;
pub mod mutate;
pub mod network;
pub mod observer;
pub mod once_map;
pub mod outcome;
pub mod scratch;
pub mod stamp;
pub mod threads;
pub mod units;

pub use cache_dir::{CacheDir, CacheDirError, write_atomically};
pub use digest::Digest;
pub use events::{Event, Status};
pub use grants::{Clock, ClockGrant, RandomGrant};
pub use limits::{BoundExceeded, Limits};
pub use network::{NetworkEntry, Origin};
pub use outcome::Outcome;
