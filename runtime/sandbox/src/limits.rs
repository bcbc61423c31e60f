//! The memory limiter that enforces the `memory` bound inside wasmtime.

use cairn_core::limits::BoundExceeded;
use cairn_core::units::ByteSize;
use wasmtime::ResourceLimiter;

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
