//! The clocks a stage sees. Pinned by default, so a stage that stamps a date
//! into its output produces the same bytes on every run and every machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_core::grants::Clock;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Installs `clock`. A stage granted the network keeps the real monotonic
/// clock even when its wall clock is pinned: timeouts, retries and elapsed
/// times over a network mean real time, and such a stage's result already
/// depends on what the network answers (it is impure).
pub(crate) fn grant(builder: &mut WasiCtxBuilder, clock: Clock, network: bool) {
    if let Clock::Pinned { source_date_epoch } = clock {
        builder.wall_clock(PinnedWallClock(Duration::from_secs(source_date_epoch)));
        if !network {
            builder.monotonic_clock(SteppingMonotonicClock(AtomicU64::new(0)));
        }
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
