//! The clocks a stage sees. Pinned by default, so a stage that stamps a date
//! into its output produces the same bytes on every run and every machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_core::grants::Clock;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

pub(crate) fn grant(builder: &mut WasiCtxBuilder, clock: Clock) {
    if let Clock::Pinned { source_date_epoch } = clock {
        builder.wall_clock(PinnedWallClock(Duration::from_secs(source_date_epoch)));
        builder.monotonic_clock(SteppingMonotonicClock(AtomicU64::new(0)));
    }
}

struct PinnedWallClock(Duration);

impl HostWallClock for PinnedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// Nanoseconds the pinned monotonic clock advances per reading.
const MONOTONIC_STEP: u64 = 1_000;

struct SteppingMonotonicClock(AtomicU64);

impl HostMonotonicClock for SteppingMonotonicClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP
    }

    fn now(&self) -> u64 {
        self.0.fetch_add(MONOTONIC_STEP, Ordering::Relaxed) + MONOTONIC_STEP
    }
}
