//! What a successful stage returns: below the sandbox that produces it and
//! the cache that keeps it.

use std::collections::BTreeMap;

/// What a successful stage returned. Commands return an empty outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// One line for the run summary.
    pub summary: Option<String>,
    /// Named values for downstream `${{ stages.NAME.outputs.KEY }}`.
    pub outputs: BTreeMap<String, String>,
}
