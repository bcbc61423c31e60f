//! Pipelines: `cairn.toml` parsed, checked and planned.
//!
//! [`load`] turns a file into a [`Pipeline`] (matrix entries expanded,
//! references checked, the graph proven acyclic) or into diagnostics that
//! point at `cairn.toml:LINE:COL`. Nothing here runs anything; the
//! [`cairn_engine::scheduler`] does.

mod cache;
mod diagnostic;
pub mod expression;
#[cfg(test)]
mod fuzz;
mod graph;
mod parse;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use cache::load_cached;
pub use diagnostic::{Diagnostic, Severity, SourceFile, did_you_mean};
pub use expression::{Condition, Reference, Template};
pub use graph::{Graph, GraphFormat};

use cairn_core::Limits;
pub use cairn_core::grants::{ClockGrant, RandomGrant};
use cairn_oci::OciReference;
use cairn_stage_build::Language;

/// The file name `cairn run` looks for.
pub const PIPELINE_FILE: &str = "cairn.toml";

/// A checked pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// `[pipeline] name`, or the folder's name.
    pub name: String,
    /// The folder holding the file: the workspace `inputs` globs match in.
    pub root: PathBuf,
    /// The file, for quoting in messages.
    pub file: SourceFile,
    /// Every stage, matrix entries expanded, in the order of the file.
    pub stages: Vec<Stage>,
    /// `[environments.NAME]`: where deploy stages deploy, by name.
    pub environments: BTreeMap<String, Environment>,
    /// `[remote]`: the shared cache the pipeline's runs use by default.
    pub remote: Remote,
}

/// `[remote]`: a shared cache every run of the pipeline uses unless told
/// otherwise, so a team writes its server once instead of in every CI job.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remote {
    /// `url`: the NATS server (`nats://HOST:PORT`); `--remote` and
    /// `CAIRN_REMOTE` take precedence.
    pub url: Option<String>,
    /// `read_only`: never write to it (as `--remote-read-only`).
    pub read_only: bool,
    /// `replicas`: on how many servers of a cluster each bucket keeps its
    /// data, when cairn creates the buckets (1 to 5; default 1).
    pub replicas: u32,
    /// `execute`: send stages to the worker pool (`cairn worker`) instead
    /// of running them here, as `--workers`.
    pub execute: bool,
}

/// A deployment environment (`[environments.NAME]`): what GitHub Actions
/// calls one, the place a stage with `environment = "NAME"` deploys to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    /// The table's key.
    pub name: String,
    /// `url`: what `${{ environment.url }}` reads.
    pub url: Option<String>,
    /// `secrets`: names only stages in this environment may be granted.
    pub secrets: Vec<String>,
    /// `branches`: the git branches a stage may deploy here from (globs
    /// such as `release/*`); empty, any.
    pub branches: Vec<String>,
    /// `requires`: environments whose successful deployments are the only
    /// artifacts this one accepts (promotion: production takes what staging
    /// was shown to run, byte for byte).
    pub requires: Vec<String>,
    /// `approval`: a person decides each deployment before it starts.
    pub approval: bool,
    /// `approval_timeout`: how long a deployment waits for that decision
    /// before it fails as not approved.
    pub approval_timeout: std::time::Duration,
    /// `rollback = "auto"`: a failed `verify` stage redeploys the previous
    /// successful deployment.
    pub auto_rollback: bool,
}

/// How long a deployment waits for approval when the file does not say.
pub const DEFAULT_APPROVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Environment {
    /// Whether a stage may deploy here from `branch` (`None`: not on a
    /// branch, a detached checkout).
    pub fn allows_branch(&self, branch: Option<&str>) -> bool {
        self.branches.is_empty()
            || branch.is_some_and(|branch| {
                self.branches.iter().any(|pattern| {
                    globset::Glob::new(pattern).is_ok_and(|glob| glob.compile_matcher().is_match(branch))
                })
            })
    }
}

impl Pipeline {
    /// The lock file pinning this pipeline's remote components (`cairn.toml` → `cairn.lock`).
    pub fn lock_path(&self) -> PathBuf {
        cairn_oci::lockfile::LockFile::path_for(&self.file.name)
    }

    /// Every distinct remote component reference, in the order of the file.
    pub fn oci_references(&self) -> Vec<&OciReference> {
        let mut seen = std::collections::HashSet::new();
        self.stages
            .iter()
            .filter_map(|stage| match &stage.uses {
                Uses::Oci(reference) => seen.insert(&reference.text).then_some(reference),
                _ => None,
            })
            .collect()
    }

    /// The stage named `name` (an expanded name such as `build[target=x86]`).
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.name == name)
    }
}

/// Where a stage's component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Uses {
    /// A `.wasm` file (a component or a preview1 module).
    File(PathBuf),
    /// A stage source folder (Rust, JavaScript, Python or C), built on demand.
    SourceFolder(PathBuf),
    /// `std:NAME`, embedded in cairn.
    Standard(String),
    /// `oci://...` or `oci-layout://...`: published, pinned in `cairn.lock`.
    Oci(OciReference),
    /// `in:STAGE/PATH`: a `.wasm` file a needed stage wrote, which the stage
    /// would see at `/in/STAGE/PATH` (an interpreter a fetch stage
    /// downloaded and verified, say). Read when that stage has finished.
    Output {
        /// The needed stage.
        stage: String,
        /// The file, relative to that stage's outputs.
        path: String,
    },
}

/// Why a `uses` value names nothing cairn can run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}\nhint: {hint}")]
pub struct UsesError {
    /// What is wrong, naming the value.
    pub message: String,
    /// What would work.
    pub hint: String,
}

impl Uses {
    /// Classifies a `uses` value (a path is relative to `base`) and checks
    /// that what it names exists: the one reading of `uses` for pipelines
    /// and the command line alike.
    pub fn parse(text: &str, base: &Path) -> Result<Uses, UsesError> {
        let error = |message: String, hint: String| Err(UsesError { message, hint });
        if let Some(rest) = text.strip_prefix("in:") {
            let hint = || {
                "`in:STAGE/PATH` names a `.wasm` file that a stage this one needs wrote to its `/out`, \
                 as in `in:fetch/python.wasm`"
                    .to_owned()
            };
            let Some((stage, path)) = rest.split_once('/') else {
                return error(format!("`{text}` names no file of the stage's outputs"), hint());
            };
            let inside = !path.is_empty()
                && Path::new(path)
                    .components()
                    .all(|part| matches!(part, std::path::Component::Normal(_)));
            if stage.is_empty() || !inside {
                return error(format!("`{text}` is not a path inside a stage's outputs"), hint());
            }
            if !path.ends_with(".wasm") {
                return error(format!("`{text}` is not a `.wasm` file"), hint());
            }
            return Ok(Uses::Output {
                stage: stage.to_owned(),
                path: path.to_owned(),
            });
        }
        if let Some(name) = text.strip_prefix("std:") {
            if cairn_stdlib::get(name).is_some() {
                return Ok(Uses::Standard(name.to_owned()));
            }
            let known: Vec<_> = cairn_stdlib::names().collect();
            let hint = match did_you_mean(name, known.iter().copied()) {
                Some(close) => format!("did you mean `std:{close}`?"),
                None => format!("the standard stages are std:{}", known.join(", std:")),
            };
            return error(format!("there is no standard stage `{text}`"), hint);
        }
        if OciReference::is_oci(text) {
            return OciReference::parse(text, base)
                .map(Uses::Oci)
                .or_else(|problem| error(format!("`{text}`: {}", problem.problem), problem.hint.to_owned()));
        }
        let path = base.join(text);
        if path.is_file() {
            if path.extension().is_some_and(|extension| extension == "wasm") {
                return Ok(Uses::File(path));
            }
            error(
                format!("`{text}` is not a `.wasm` file"),
                "`uses` takes a `.wasm` component, a stage folder, `std:NAME`, or an `oci://` reference".to_owned(),
            )
        } else if path.is_dir() {
            if Language::detect(&path).is_some() {
                return Ok(Uses::SourceFolder(path));
            }
            error(
                format!("the folder `{text}` is not a stage source folder"),
                format!(
                    "a stage folder holds {}; `cairn stage new NAME --lang LANGUAGE` writes one",
                    Language::markers()
                ),
            )
        } else {
            error(
                format!("the component `{text}` does not exist"),
                format!(
                    "paths in `uses` are relative to the folder of the pipeline file, `{}`",
                    base.display()
                ),
            )
        }
    }
}

/// One of a stage's `inputs`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputGlob {
    /// The glob as written.
    pub pattern: String,
    /// Where it is in the file.
    pub span: Range<usize>,
}

/// One of a stage's `tools`, as written: resolved on the host's `PATH` (or
/// relative to the pipeline file) when the run is planned, not when the
/// file is parsed, since the file's parse is cached and `PATH` is not.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolName {
    /// The name (`cargo`) or path (`./ci/lint.sh`).
    pub name: String,
    /// Where it is in the file.
    pub span: Range<usize>,
}

/// One stage of a pipeline (one entry of a matrix).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// The name: the table's key, plus `[key=value,...]` for a matrix entry.
    pub name: String,
    /// The table's key in the file.
    pub base_name: String,
    /// This entry's matrix values, in the order the file lists the keys.
    pub matrix: Vec<(String, String)>,
    /// Where `[stages.NAME]` is in the file.
    pub span: Range<usize>,
    /// The component.
    pub uses: Uses,
    /// Workspace globs shown read-only at `/src`.
    pub inputs: Vec<InputGlob>,
    /// Arguments, with `${{ }}` references still to resolve.
    pub args: Vec<Template>,
    /// The `with` table, with references still to resolve.
    pub with: BTreeMap<String, Template>,
    /// Environment variables, with references still to resolve.
    pub env: BTreeMap<String, Template>,
    /// The stages whose outputs this one reads, by expanded name.
    pub needs: Vec<String>,
    /// Secret names granted.
    pub secrets: Vec<String>,
    /// `network` as written: HTTP origins and `host:port` pairs.
    pub network: Vec<String>,
    /// `http_auth`: the `Authorization` value the host adds to requests
    /// for an origin (keyed as [`cairn_core::Origin`] writes it), reading
    /// `secrets.NAME` only.
    pub http_auth: BTreeMap<String, Template>,
    /// The clock grant.
    pub clock: ClockGrant,
    /// The randomness grant.
    pub random: RandomGrant,
    /// Bounds, defaults applied.
    #[serde(with = "limits_as_numbers")]
    pub limits: Limits,
    /// `cache` as written: `false` for stages with side effects (they always
    /// run), `true` to reuse an impure stage's result (a fetch keyed by its
    /// lockfile). Unset, pure stages are reused and impure ones are not.
    pub cache: Option<bool>,
    /// `if`: run only when it holds.
    pub condition: Option<Condition>,
    /// How many times to rerun a failed stage.
    pub retries: u32,
    /// Host programs the stage may run (`tools`).
    pub tools: Vec<ToolName>,
    /// JUnit XML files the stage writes, relative to `/out` (`reports.junit`).
    pub junit: Vec<String>,
    /// `environment`: the environment the stage deploys to. Such a stage
    /// always runs, may be granted that environment's secrets, and refuses
    /// to start from a branch the environment does not allow.
    pub environment: Option<String>,
    /// `verify`: a check of its environment's deployment, whose failure
    /// fails the deployment (and, with `rollback = "auto"`, rolls it back).
    pub verify: bool,
    /// `on_change`: the stages `cairn monitor` runs when this check goes
    /// from passing to failing or back (expanded names).
    pub on_change: Vec<String>,
}

impl Pipeline {
    /// The environment `stage` deploys to, if any: what decides its branch
    /// rule, its secrets and whether its run is a deployment.
    pub fn environment_of(&self, stage: &Stage) -> Option<&Environment> {
        stage.environment.as_ref().and_then(|name| self.environments.get(name))
    }
}

/// [`Limits`] as plain numbers (nanoseconds and bytes) in a cached
/// pipeline, whatever syntax the file wrote them in.
mod limits_as_numbers {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use cairn_core::Limits;
    use cairn_core::units::ByteSize;

    pub(super) fn serialize<S: Serializer>(limits: &Limits, serializer: S) -> Result<S::Ok, S::Error> {
        (
            limits.timeout,
            limits.memory.0,
            limits.max_output.0,
            limits.max_log.0,
            limits.max_entries,
        )
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Limits, D::Error> {
        let (timeout, memory, max_output, max_log, max_entries) =
            <(Duration, u64, u64, u64, u64)>::deserialize(deserializer)?;
        Ok(Limits {
            timeout,
            memory: ByteSize(memory),
            max_output: ByteSize(max_output),
            max_log: ByteSize(max_log),
            max_entries,
        })
    }
}

/// Reads and checks a pipeline file; on failure, reports every problem found.
pub fn load(path: &Path) -> Result<Pipeline, LoadFailure> {
    check(path, read(path)?)
}

/// The text of the pipeline file at `path`.
fn read(path: &Path) -> Result<String, LoadFailure> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadFailure::Missing { path: path.to_owned() },
        _ => LoadFailure::Read {
            path: path.to_owned(),
            source,
        },
    })
}

/// Checks `text`, read from the pipeline file at `path`.
fn check(path: &Path, text: String) -> Result<Pipeline, LoadFailure> {
    let root = root_of(path);
    let file = SourceFile::new(path, text);
    parse::parse(file.clone(), &root).map_err(|diagnostics| LoadFailure::Invalid { file, diagnostics })
}

/// The folder a pipeline file's paths are relative to: the file's own.
pub fn root_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Why a pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// There is no such file.
    #[error(
        "cannot read the pipeline file `{}`: there is no such file\n\
         hint: write a starter with `cairn init`, or point at a pipeline with `-C DIR` or `-f FILE`",
        path.display()
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read the pipeline file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file has errors; each diagnostic says where.
    #[error("{}", render_all(file, diagnostics))]
    Invalid {
        /// The file.
        file: SourceFile,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render_all(file: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let mut text: String = diagnostics.iter().map(|diagnostic| file.render(diagnostic)).collect();
    text.push_str(&format!(
        "{} is invalid: {errors} error{}",
        file.name.display(),
        if errors == 1 { "" } else { "s" }
    ));
    text
}
