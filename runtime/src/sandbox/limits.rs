//! The bounds every stage runs within, and the memory limiter that enforces
//! one of them inside wasmtime.
//!
//! Each bound has a name users see in errors (`timeout`, `memory`,
//! `max_output`, `max_log`) that is also the `cairn.toml` key and the
//! `cairn stage run` flag that raises it.

use std::time::Duration;

use wasmtime::ResourceLimiter;

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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10 * 60),
            memory: ByteSize::mib(512),
            max_output: ByteSize::gib(1),
            max_log: ByteSize::mib(4),
        }
    }
}

/// A bound a stage crossed. Raised inside wasmtime (memory) or by the sandbox
/// (time, output), and turned into a [`super::StageFailure`].
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
        }
    }
}

/// The most table elements a component may grow to: far above what real
/// programs use, low enough that a hostile one cannot exhaust host memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Enforces [`Limits::memory`] across every linear memory of one store.
///
/// wasmtime's `StoreLimits` bounds each memory on its own and reports a
/// failure as text; this one sums the memories (a component has several: the
/// program's and the adapter's) and fails with a typed [`BoundExceeded`].
pub(crate) struct MemoryLimiter {
    limit: ByteSize,
    in_use: u64,
    last_growth: u64,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: ByteSize) -> Self {
        Self {
            limit,
            in_use: 0,
            last_growth: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let requested = self.in_use.saturating_add(growth);
        if requested > self.limit.0 {
            return Err(wasmtime::Error::new(BoundExceeded::Memory {
                limit: self.limit,
                requested: ByteSize(requested),
            }));
        }
        self.in_use = requested;
        self.last_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The growth was counted in `memory_growing` but did not happen.
        self.in_use = self.in_use.saturating_sub(self.last_growth);
        self.last_growth = 0;
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
