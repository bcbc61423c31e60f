//! Why a stage failed, in words a pipeline author can act on.
//!
//! wasmtime reports everything as one error type; this module sorts those
//! errors into the few things that can go wrong with a stage, so that the
//! CLI, the reports and the cache can treat "exceeded its memory limit"
//! differently from "returned an error".

use wasmtime::{Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::outputs::OutputError;
use super::secret_mask::SecretMask;
use crate::errors::root_cause;
use cairn_core::limits::BoundExceeded;

/// How many wasm frames a trap message keeps; the rest is rarely useful.
const BACKTRACE_FRAMES: usize = 12;

/// Rust and C keep large locals on a "shadow stack" in linear memory. When
/// recursion exhausts it, the guest's stack pointer wraps below zero and the
/// next store traps as an out-of-bounds access, not as a wasm stack overflow.
/// An out-of-bounds trap this many calls deep is reported as the overflow it is.
const DEEP_RECURSION_FRAMES: usize = 1_000;

/// How many frames the engine collects on a trap: enough to tell deep
/// recursion, cheap to collect (a frame-pointer walk).
pub(crate) const CAPTURED_FRAMES: usize = 1_024;

/// A stage that ran and did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageFailure {
    /// A stage returned `err` from `run`.
    #[error("returned an error: {0}")]
    Returned(String),
    /// A program exited with a non-zero status.
    #[error("{}", describe_exit(*.0))]
    Exit(i32),
    /// A stage called `exit` instead of returning from `run`.
    #[error("called exit({0}) instead of returning from `run`")]
    ExitedInsteadOfReturning(i32),
    /// A bound was crossed.
    #[error(transparent)]
    Bound(#[from] BoundExceeded),
    /// Unbounded recursion.
    #[error("overflowed its stack (unbounded recursion?){backtrace}")]
    StackOverflow {
        /// The innermost frames, with a leading newline; empty when unknown.
        backtrace: String,
    },
    /// Any other trap: a panic, an out-of-bounds access, a failed host call.
    #[error("trapped: {message}{backtrace}")]
    Trap {
        /// What wasmtime says happened.
        message: String,
        /// The innermost frames, with a leading newline; empty when unknown.
        backtrace: String,
        /// Whether the stage's log shows a Rust panic just before.
        panicked: bool,
    },
    /// The stage finished but what it left in `/out` cannot be kept.
    #[error(transparent)]
    InvalidOutput(#[from] OutputError),
}

impl StageFailure {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            StageFailure::Bound(bound) => Some(bound.hint()),
            StageFailure::Trap { panicked: true, .. } => {
                Some("the stage panicked: its panic message is in the log above")
            }
            StageFailure::Trap { message, .. } if message.contains("unreachable") => Some(
                "the program executed an `unreachable` instruction, the way most languages abort \
                 (a failed assertion, `abort()`, an AssemblyScript `abort`); its last log lines may say why",
            ),
            StageFailure::ExitedInsteadOfReturning(_) => {
                Some("return from `run` (with an error to fail the stage) so the host receives the outcome")
            }
            _ => None,
        }
    }

    /// Marks a trap as a Rust panic when the stage's log says so: Rust's
    /// panic handler prints `panicked at` to stderr before it traps.
    pub(crate) fn with_log(self, log: &super::CapturedLog) -> Self {
        match self {
            StageFailure::Trap {
                message,
                backtrace,
                panicked: false,
            } => StageFailure::Trap {
                panicked: log
                    .lines
                    .iter()
                    .rev()
                    .take(50)
                    .any(|line| line.text.contains("panicked at")),
                message,
                backtrace,
            },
            other => other,
        }
    }

    /// The failure with every secret value in its words masked.
    pub(crate) fn masked(self, mask: &SecretMask) -> Self {
        if mask.is_empty() {
            return self;
        }
        match self {
            StageFailure::Returned(message) => StageFailure::Returned(mask.mask(&message)),
            StageFailure::Trap {
                message,
                backtrace,
                panicked,
            } => StageFailure::Trap {
                message: mask.mask(&message),
                backtrace: mask.mask(&backtrace),
                panicked,
            },
            StageFailure::StackOverflow { backtrace } => StageFailure::StackOverflow {
                backtrace: mask.mask(&backtrace),
            },
            other => other,
        }
    }

    /// Sorts an error from calling into the guest.
    pub(crate) fn from_wasmtime(error: wasmtime::Error) -> Self {
        if let Some(exit) = error.downcast_ref::<I32Exit>() {
            return StageFailure::Exit(exit.0);
        }
        if let Some(bound) = error.downcast_ref::<BoundExceeded>() {
            return StageFailure::Bound(*bound);
        }
        let trace = error.downcast_ref::<WasmBacktrace>();
        let depth = trace.map_or(0, |trace| trace.frames().len());
        let backtrace = trace
            .map(|trace| {
                let text = trace.to_string();
                let mut lines: Vec<&str> = text.lines().skip(1).take(BACKTRACE_FRAMES).collect();
                if text.lines().count() > BACKTRACE_FRAMES + 1 {
                    lines.push("  ...");
                }
                format!("\nwasm backtrace:\n{}", lines.join("\n"))
            })
            .unwrap_or_default();
        match error.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => StageFailure::StackOverflow { backtrace },
            Some(Trap::MemoryOutOfBounds) if depth >= DEEP_RECURSION_FRAMES => {
                StageFailure::StackOverflow { backtrace }
            }
            Some(trap) => StageFailure::Trap {
                message: trap.to_string(),
                backtrace,
                panicked: false,
            },
            None => StageFailure::Trap {
                message: root_cause(&error),
                backtrace,
                panicked: false,
            },
        }
    }
}

fn describe_exit(code: i32) -> String {
    // WASI 0.2's plain `exit` only carries success or failure, which reaches
    // the host as status 1; only `exit-with-code` carries other numbers.
    if code == 1 {
        "exited with failure (status 1)".to_owned()
    } else {
        format!("exited with status {code}")
    }
}
