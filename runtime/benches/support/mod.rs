//! Timing helpers shared by the benchmarks: run a command, take a median.
#![allow(dead_code)] // each benchmark uses a different part

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` to completion with its output discarded; panics if it fails.
pub fn run(command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the command starts");
    assert!(status.success(), "{command:?} failed");
    started.elapsed()
}

/// The sample at `fraction` of the sorted samples (0.5: the median).
pub fn percentile(samples: &[Duration], fraction: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// The median.
pub fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 0.5)
}
