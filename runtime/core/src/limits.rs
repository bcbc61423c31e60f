//! The bounds every stage runs within.
//!
//! Each bound has a name users see in errors (`timeout`, `memory`,
//! `max_output`, `max_log`) that is also the `cairn.toml` key and the
//! `cairn stage run` flag that raises it. Below both the pipeline that
//! reads them and the sandbox that enforces them.

use std::time::Duration;

use crate::units::{ByteSize, HumanDuration};

/// How far a stage may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from instantiation to return.
    pub timeout: Duration,
    /// Linear memory, summed over all memories of the component.
    pub memory: ByteSize,
    /// Bytes written under `/out`, and separately under `/tmp`.
    pub max_output: ByteSize,
    /// Log text kept (and shown); beyond it lines are counted and dropped.
    pub max_log: ByteSize,
    /// Entries (files, folders, links) under `/out`, and separately under
    /// `/tmp`: a stage creating empty files is seen by no byte bound, and
    /// every entry costs an inode now and a cache entry later.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10 * 60),
            memory: ByteSize::mib(512),
            max_output: ByteSize::gib(1),
            max_log: ByteSize::mib(4),
            max_entries: 100_000,
        }
    }
}

/// A bound a stage crossed. Raised inside wasmtime (memory) or by the sandbox
/// (time, output), and turned into a stage failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoundExceeded {
    /// The stage ran longer than `timeout`.
    #[error("exceeded its time limit of {}", HumanDuration(*.0))]
    Time(Duration),
    /// The stage asked for more linear memory than `memory`.
    #[error("exceeded its memory limit of {limit} (it asked for {requested})")]
    Memory {
        /// The bound.
        limit: ByteSize,
        /// The total the failed growth would have reached.
        requested: ByteSize,
    },
    /// The stage wrote more than `max_output` under `/out`.
    #[error("wrote more than its output limit of {limit} to /out ({written} so far)")]
    Output {
        /// The bound.
        limit: ByteSize,
        /// What was measured.
        written: ByteSize,
    },
    /// The stage wrote more than `max_output` under `/tmp`.
    #[error("wrote more than its scratch limit of {limit} to /tmp ({written} so far)")]
    Scratch {
        /// The bound (the same value as the output limit).
        limit: ByteSize,
        /// What was measured.
        written: ByteSize,
    },
    /// The stage created more than `max_entries` entries under `/out` or `/tmp`.
    #[error("created more than its entry limit of {limit} entries in {folder} ({created} so far)")]
    Entries {
        /// The bound.
        limit: u64,
        /// `/out` or `/tmp`.
        folder: &'static str,
        /// What was counted.
        created: u64,
    },
}

impl BoundExceeded {
    /// What to change to let the stage go further.
    pub fn hint(&self) -> &'static str {
        match self {
            BoundExceeded::Time(_) => {
                "raise `timeout` for the stage (`--timeout` for `cairn stage run`) if it needs longer"
            }
            BoundExceeded::Memory { .. } => {
                "raise `memory` for the stage (`--memory` for `cairn stage run`) if it needs more"
            }
            BoundExceeded::Output { .. } | BoundExceeded::Scratch { .. } => {
                "raise `max_output` for the stage (`--max-output` for `cairn stage run`) if it needs more"
            }
            BoundExceeded::Entries { .. } => {
                "raise `max_entries` for the stage (`--max-entries` for `cairn stage run`) if it needs more"
            }
        }
    }
}
