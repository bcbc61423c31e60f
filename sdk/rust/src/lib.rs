//! Write cairn pipeline stages in Rust.
//!
//! A stage is a type implementing [`Stage`] plus one [`export!`] line; build
//! the crate as a `cdylib` for `wasm32-wasip2` and the result is a component
//! cairn can run:
//!
//! ```ignore
//! use cairn_sdk::{Invocation, Outcome, Stage};
//!
//! struct Hello;
//!
//! impl Stage for Hello {
//!     fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
//!         cairn_sdk::info!("hello from {}", invocation.stage);
//!         std::fs::write("/out/greeting.txt", "hello\n")?;
//!         Ok(Outcome::new().summary("said hello"))
//!     }
//! }
//!
//! cairn_sdk::export!(Hello);
//! ```
//!
//! Inside the sandbox a stage sees its declared inputs read-only under `/src`,
//! the outputs of the stages it `needs` under `/in/<stage>`, and writes its own
//! artifact under `/out`; [`fs`] has helpers for all three. Logs, progress and
//! annotations go to the host through the functions at the crate root.

use std::collections::BTreeMap;

pub mod fs;
pub mod http;
mod log;
pub mod tools;

pub use log::{Annotation, Level, annotate, log, progress};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "cairn:stage/stage",
        pub_export_macro: true,
        export_macro_name: "__export_stage_world",
        default_bindings_module: "cairn_sdk::bindings",
        generate_all,
    });
}

/// The error a stage returns: anything that implements `std::error::Error`,
/// or a `String`/`&str` message, so `?` works on I/O and parse errors alike.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pipeline stage written in Rust.
///
/// `run` is called once per stage execution, in a fresh sandbox; there is no
/// state to keep between calls.
pub trait Stage {
    /// Does the stage's work. `Err` fails the stage, and its message (with
    /// the chain of causes) is shown to the user.
    fn run(invocation: Invocation) -> Result<Outcome>;
}

/// What the pipeline asks of the stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The stage's name in the pipeline, for messages.
    pub stage: String,
    /// The stage's `args`.
    pub args: Vec<String>,
    /// The stage's `with` table.
    pub config: BTreeMap<String, String>,
}

impl Invocation {
    /// The value of `with.KEY`, if the pipeline set it.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    /// `with.KEY` as a comma-separated list, each item trimmed, empty items
    /// dropped (`"a, b,"` is `["a", "b"]`); empty when unset.
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.config(key)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// Whether `with.KEY` is set to a true value (`true`, `yes`, `on`, `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.config(key).map(str::to_ascii_lowercase).as_deref(),
            Some("true" | "yes" | "on" | "1")
        )
    }
}

/// What a successful stage hands back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One line for the run summary.
    pub summary: Option<String>,
    /// Named values downstream stages reference as `${{ stages.NAME.outputs.KEY }}`.
    pub outputs: BTreeMap<String, String>,
}

impl Outcome {
    /// An outcome with no summary and no outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the one-line summary.
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }

    /// Adds a named output value.
    pub fn output(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.outputs.insert(key.into(), value.to_string());
        self
    }
}

/// Returns the value of a secret the pipeline granted this stage, or `None`.
///
/// The host masks the value wherever it appears in the stage's logs; do not
/// write it to `/out`, which is cached and shared.
pub fn secret(name: &str) -> Option<String> {
    bindings::cairn::stage::host::secret(name)
}

/// Exports a [`Stage`] implementation as the component's `run` function.
#[macro_export]
macro_rules! export {
    ($stage:ty) => {
        const _: () = {
            struct CairnStageExport;

            impl $crate::bindings::Guest for CairnStageExport {
                fn run(
                    invocation: $crate::bindings::cairn::stage::types::Invocation,
                ) -> ::core::result::Result<$crate::bindings::cairn::stage::types::Outcome, ::std::string::String>
                {
                    $crate::__run::<$stage>(invocation)
                }
            }

    $crate::bindings::__export_stage_world!(CairnStageExport with_types_in $crate::bindings);
        };
    };
}

/// Converts between the generated WIT types and the SDK's types around a call
/// to the stage. Public only for [`export!`].
#[doc(hidden)]
pub fn __run<S: Stage>(
    invocation: bindings::cairn::stage::types::Invocation,
) -> std::result::Result<bindings::cairn::stage::types::Outcome, String> {
    let invocation = Invocation {
        stage: invocation.stage,
        args: invocation.args,
        config: invocation.config.into_iter().collect(),
    };
    match S::run(invocation) {
        Ok(outcome) => Ok(bindings::cairn::stage::types::Outcome {
            summary: outcome.summary,
            outputs: outcome.outputs.into_iter().collect(),
        }),
        Err(error) => Err(error_chain(error.as_ref())),
    }
}

/// `error: cause: cause`, the way the host prints errors too.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
