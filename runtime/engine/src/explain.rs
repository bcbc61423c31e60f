//! `cairn explain STAGE`: why a stage ran or was cached in the last run, as
//! the difference between what it observed then and in its previous run
//! with another key (which input files, which env value, which upstream
//! output changed).

use std::fmt::Write as _;

use crate::stage_key::{Change, KeyParts};
use crate::state::{RunRecord, WorkspaceState};
use cairn_cas::{Store, StoreError, Tree};
use cairn_core::Digest;
use cairn_core::cache_dir::CacheDir;
use cairn_pipeline::Pipeline;

/// How many changed files to list before summarizing the rest.
const MAX_FILES: usize = 20;

/// Why a stage cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The pipeline has no such stage.
    #[error("the pipeline has no stage `{0}`")]
    UnknownStage(String),
    /// The stage never ran in this workspace.
    #[error("stage `{0}` has not run in this workspace yet\nhint: run `cairn run {0}` first")]
    NeverRan(String),
    /// The cache cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The explanation of `stage` (an expanded name, or a matrix stage's base
/// name for all its entries), as text.
pub fn explain(cache: &CacheDir, pipeline: &Pipeline, stage: &str) -> Result<String, ExplainError> {
    let names: Vec<&str> = pipeline
        .stages
        .iter()
        .filter(|candidate| candidate.name == stage || candidate.base_name == stage)
        .map(|candidate| candidate.name.as_str())
        .collect();
    if names.is_empty() {
        return Err(ExplainError::UnknownStage(stage.to_owned()));
    }
    let state = WorkspaceState::load(cache, &pipeline.root);
    let store = Store::open(cache)?;
    let mut text = String::new();
    for name in names {
        let record = state
            .stage(name)
            .and_then(|record| record.last.as_ref().map(|last| (last, record.previous.as_ref())));
        let Some((last, previous)) = record else {
            return Err(ExplainError::NeverRan(name.to_owned()));
        };
        text.push_str(&explain_stage(&store, name, last, previous));
        if let Some(stage) = pipeline.stage(name) {
            text.push_str(&host_tools_note(stage));
        }
    }
    Ok(text)
}

/// What a stage granted host tools should know: what of them is in its key,
/// and that their network grant is all or nothing.
fn host_tools_note(stage: &cairn_pipeline::Stage) -> String {
    if stage.tools.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = stage.tools.iter().map(|tool| tool.name.as_str()).collect();
    let mut text = format!(
        "It runs host tools under bubblewrap ({}); each one's identity (its executable and toolchain) is in its key.\n",
        names.join(", ")
    );
    if !stage.network.is_empty() {
        text.push_str(
            "Its host tools reach the whole network: `network` admits a wasm stage's connections one \
             `host:port` at a time, but a tool's grant is all or nothing.\n",
        );
    }
    text
}

/// What went into `key` for `stage` of the workspace at `root`, while the
/// workspace still remembers it (its last two keys).
pub fn key_parts(cache: &CacheDir, root: &std::path::Path, stage: &str, key: &Digest) -> Option<KeyParts> {
    let state = WorkspaceState::load(cache, root);
    let record = state.stage(stage)?;
    [record.last.as_ref(), record.previous.as_ref()]
        .into_iter()
        .flatten()
        .find(|run| run.key == *key)?
        .parts
        .decode()
}

/// Why `name` ran in the run `state` holds last, as [`explain`] says it.
pub fn why_it_ran(store: &Store, state: &WorkspaceState, name: &str) -> Option<String> {
    let record = state.stage(name)?;
    let last = record.last.as_ref()?;
    Some(explain_stage(store, name, last, record.previous.as_ref()))
}

fn explain_stage(store: &Store, name: &str, last: &RunRecord, previous: Option<&RunRecord>) -> String {
    let mut text = String::new();
    let key = last.key.short();
    if last.status == "cached" {
        let _ = writeln!(
            text,
            "stage `{name}` was cached in the last run: a result for its key ({key}) was already stored, so it did not run."
        );
        if let Some(previous) = previous {
            let _ = writeln!(text, "What changed between the two most recent keys it ran with:");
            write_changes(&mut text, store, last, previous);
        }
        return text;
    }
    let _ = writeln!(text, "stage `{name}` ran in the last run (key {key}).");
    if let Some(reason) = &last.not_reused {
        let _ = writeln!(text, "It runs every time: {reason}");
        return text;
    }
    match previous {
        None => {
            let _ = writeln!(
                text,
                "It had not run before in this workspace, and the cache had no result for its key."
            );
        }
        Some(previous) if previous.key == last.key => {
            let _ = writeln!(
                text,
                "Its key is the one it had before, but no result was reused: the stage has `cache = false`, \
                 the run used `--no-cache` or `--check`, or the stored result was missing or damaged."
            );
        }
        Some(previous) => {
            let _ = writeln!(
                text,
                "It ran because, since its previous run (key {}):",
                previous.key.short()
            );
            write_changes(&mut text, store, last, previous);
        }
    }
    text
}

fn write_changes(text: &mut String, store: &Store, last: &RunRecord, previous: &RunRecord) {
    let (Some(now), Some(before)) = (last.parts.decode(), previous.parts.decode()) else {
        let _ = writeln!(text, "  (what it observed is no longer readable)");
        return;
    };
    let changes = now.changes_since(&before);
    if changes.is_empty() {
        let _ = writeln!(text, "  nothing it observes (its key format changed)");
    }
    for change in changes {
        let _ = writeln!(text, "  - {change}");
        let trees = match &change {
            Change::Inputs { before, after } => Some((*before, *after)),
            Change::Upstream {
                before: Some(before),
                after: Some(after),
                ..
            } => Some((*before, *after)),
            _ => None,
        };
        if let Some((before, after)) = trees {
            write_tree_diff(text, store, before, after);
        }
    }
}

/// Lists the files that differ between two stored trees.
fn write_tree_diff(text: &mut String, store: &Store, before: Digest, after: Digest) {
    match (Tree::load(store, &before), Tree::load(store, &after)) {
        (Ok(before), Ok(after)) => {
            let differences = before.diff(&after);
            for line in differences.iter().take(MAX_FILES) {
                let _ = writeln!(text, "      {line}");
            }
            if differences.len() > MAX_FILES {
                let _ = writeln!(text, "      ... and {} more", differences.len() - MAX_FILES);
            }
        }
        _ => {
            let _ = writeln!(text, "      (the file lists are no longer in the cache)");
        }
    }
}
