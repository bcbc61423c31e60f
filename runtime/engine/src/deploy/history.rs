//! The deployment history: one JSON record per deployment, and a lock per
//! environment so that one run deploys it at a time.
//!
//! Records live in the cache, under the pipeline's name (two checkouts of
//! one pipeline on a machine share them): `deployments-v1/<pipeline>/`
//! holds `records/<id>.json`, `locks/<environment>.lock` and
//! `monitor.jsonl`. A record is created under a fresh id with `create_new`
//! (two runs never take one id) and replaced whole by a rename at every
//! change, so a reader sees one version or the next, never half of one. A
//! run killed mid-deployment leaves its record `running` with its
//! environment's lock released by the kernel: whoever next finds the lock
//! free marks that record failed, as interrupted.

use std::collections::BTreeMap;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cairn_core::Digest;
use cairn_core::cache_dir::{CacheDir, write_atomically};

/// Why the history cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file of the history cannot be read or written.
    #[error("deployment history: cannot use `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A record is not one cairn wrote.
    #[error("deployment history: `{path}` is damaged ({reason}); move it aside to go on")]
    Damaged {
        /// The record.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// No deployment has the id asked for.
    #[error("there is no deployment #{id} of pipeline `{pipeline}`\nhint: `cairn deployments` lists them")]
    Unknown {
        /// The id asked for.
        id: u64,
        /// The pipeline.
        pipeline: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How a deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Its stages are running (or its run was killed and nobody looked since).
    Running,
    /// Every stage in the environment succeeded, verify stages included.
    Succeeded,
    /// A stage failed, it was not approved, or its run was interrupted.
    Failed,
    /// It failed its verification and an earlier deployment replaced it.
    RolledBack,
}

impl DeploymentStatus {
    /// The lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Running => "running",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::RolledBack => "rolled_back",
        }
    }
}

/// The outputs of a stage outside the environment that a deployment took:
/// what was deployed, by digest. Rollback restores them from the store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    /// The stage that produced them.
    pub stage: String,
    /// The digest of its outputs tree.
    pub digest: Digest,
    /// The outputs it returned, for `${{ stages.NAME.outputs.KEY }}`.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

/// Who decided a deployment, and how.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    /// `approved`, `rejected` or `timed_out`.
    pub decision: String,
    /// Who: a user name, or `cairn` for a timeout or an automatic rollback.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
    /// Why, when they said.
    #[serde(default)]
    pub reason: Option<String>,
    /// `cairn approve`, `--approve`, `terminal`, `timeout` or `automatic rollback`.
    pub how: String,
}

/// How one stage of a deployment ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageOutcome {
    /// The stage.
    pub stage: String,
    /// Whether it is a `verify` stage.
    pub verify: bool,
    /// `succeeded`, `failed` or `skipped`.
    pub status: String,
    /// Why it failed or was skipped.
    #[serde(default)]
    pub error: Option<String>,
}

/// One deployment of one environment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    /// Its number, unique in the pipeline's history.
    pub id: u64,
    /// The environment.
    pub environment: String,
    /// The run that deployed it.
    pub run: String,
    /// The commit checked out, when in git.
    pub commit: Option<String>,
    /// The branch checked out, when on one.
    pub branch: Option<String>,
    /// How it stands.
    pub status: DeploymentStatus,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// When it ended, RFC 3339.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// What it deployed.
    pub artifacts: Vec<Artifact>,
    /// Who approved it, when the environment asks.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// Its stages, verify stages included, as they ended.
    #[serde(default)]
    pub stages: Vec<StageOutcome>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// For a rollback: the deployment whose artifacts it redeployed.
    #[serde(default)]
    pub rollback_to: Option<u64>,
    /// For a deployment rolled back: the rollback that replaced it.
    #[serde(default)]
    pub rolled_back_by: Option<u64>,
    /// The deploying process, for messages about a held lock.
    pub pid: u32,
}

impl Deployment {
    /// The digests it deployed, as `stage blake3:short` words.
    pub fn artifact_summary(&self) -> String {
        if self.artifacts.is_empty() {
            return "no artifacts".to_owned();
        }
        self.artifacts
            .iter()
            .map(|artifact| format!("{} {}", artifact.stage, artifact.digest.short()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `now` as RFC 3339, to the second.
pub fn timestamp(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string()
}

/// One pipeline's deployment history.
#[derive(Clone, Debug)]
pub struct History {
    dir: PathBuf,
    pipeline: String,
}

/// An environment held for one run's deployment; released when dropped
/// (or by the kernel when the process dies).
#[derive(Debug)]
pub struct EnvironmentLock {
    file: File,
    /// Whether it wrote its holder into the file (and so clears it).
    holding: bool,
}

impl Drop for EnvironmentLock {
    fn drop(&mut self) {
        // Still holding the lock: nobody reads a stale holder after this.
        if self.holding {
            let _ = self.file.set_len(0);
        }
    }
}

impl History {
    /// The history of the pipeline named `pipeline`, in `cache`.
    pub fn open(cache: &CacheDir, pipeline: &str) -> Self {
        let readable: String = pipeline
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let id = Digest::of(pipeline.as_bytes()).to_hex();
        Self {
            dir: cache
                .root()
                .join("deployments-v1")
                .join(format!("{readable}-{}", &id[..12])),
            pipeline: pipeline.to_owned(),
        }
    }

    /// The folder holding it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn records(&self) -> PathBuf {
        self.dir.join("records")
    }

    fn record_path(&self, id: u64) -> PathBuf {
        self.records().join(format!("{id:08}.json"))
    }

    fn lock_path(&self, environment: &str) -> PathBuf {
        self.dir.join("locks").join(format!("{environment}.lock"))
    }

    /// Where `cairn monitor` appends its rounds.
    pub fn monitor_log(&self) -> PathBuf {
        self.dir.join("monitor.jsonl")
    }

    /// Who holds `environment`'s lock, as its holder wrote it.
    pub fn holder(&self, environment: &str) -> Option<String> {
        let text = fs::read_to_string(self.lock_path(environment)).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// Takes `environment`'s lock for run `run` if it is free, and writes
    /// who holds it for whoever waits; `None` when another run holds it.
    pub fn lock_for(&self, environment: &str, run: &str) -> Result<Option<EnvironmentLock>, HistoryError> {
        use std::io::Write;
        let Some(mut lock) = self.try_lock(environment)? else {
            return Ok(None);
        };
        let path = self.lock_path(environment);
        let holder = format!("run {run} (process {})\n", std::process::id());
        lock.file
            .set_len(0)
            .and_then(|()| lock.file.write_all(holder.as_bytes()))
            .map_err(io_error(&path))?;
        lock.holding = true;
        Ok(Some(lock))
    }

    /// Takes `environment`'s lock if it is free; `None` when another run holds it.
    pub fn try_lock(&self, environment: &str) -> Result<Option<EnvironmentLock>, HistoryError> {
        let path = self.lock_path(environment);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(EnvironmentLock { file, holding: false })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(HistoryError::Io { path, source }),
        }
    }

    /// Records a new deployment under the next free id, which it returns.
    pub fn create(&self, deployment: &mut Deployment) -> Result<u64, HistoryError> {
        let records = self.records();
        fs::create_dir_all(&records).map_err(io_error(&records))?;
        let mut id = self.last_id()? + 1;
        loop {
            let path = self.record_path(id);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(_) => break,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => id += 1,
                Err(source) => return Err(HistoryError::Io { path, source }),
            }
        }
        deployment.id = id;
        self.save(deployment)?;
        Ok(id)
    }

    /// Replaces a deployment's record, whole.
    pub fn save(&self, deployment: &Deployment) -> Result<(), HistoryError> {
        let path = self.record_path(deployment.id);
        let bytes = serde_json::to_vec_pretty(deployment).map_err(|error| HistoryError::Damaged {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        write_atomically(&path, &bytes).map_err(io_error(&path))
    }

    fn last_id(&self) -> Result<u64, HistoryError> {
        Ok(self.ids()?.last().copied().unwrap_or(0))
    }

    fn ids(&self) -> Result<Vec<u64>, HistoryError> {
        let records = self.records();
        let entries = match fs::read_dir(&records) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(HistoryError::Io { path: records, source }),
        };
        let mut ids: Vec<u64> = entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                name.to_str()?.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Deployment `id`; `None` for an id taken by a run that died before
    /// it wrote anything.
    fn read(&self, id: u64) -> Result<Option<Deployment>, HistoryError> {
        let path = self.record_path(id);
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| HistoryError::Damaged {
                path,
                reason: error.to_string(),
            })
    }

    /// Deployment `id`, with an interrupted one marked failed.
    pub fn get(&self, id: u64) -> Result<Deployment, HistoryError> {
        let unknown = || HistoryError::Unknown {
            id,
            pipeline: self.pipeline.clone(),
        };
        if !self.record_path(id).is_file() {
            return Err(unknown());
        }
        let deployment = self.read(id)?.ok_or_else(unknown)?;
        Ok(self.recovered(vec![deployment])?.remove(0))
    }

    /// Every deployment (of `environment` only, when given), oldest first,
    /// with interrupted ones marked failed.
    pub fn list(&self, environment: Option<&str>) -> Result<Vec<Deployment>, HistoryError> {
        let mut deployments = Vec::new();
        for id in self.ids()? {
            if let Some(deployment) = self.read(id)?
                && environment.is_none_or(|environment| deployment.environment == environment)
            {
                deployments.push(deployment);
            }
        }
        self.recovered(deployments)
    }

    /// Marks failed each `running` deployment whose environment's lock is
    /// free: its run is gone (killed, or its machine lost) without ending it.
    fn recovered(&self, mut deployments: Vec<Deployment>) -> Result<Vec<Deployment>, HistoryError> {
        let mut free: BTreeMap<String, bool> = BTreeMap::new();
        for deployment in &mut deployments {
            if deployment.status != DeploymentStatus::Running || deployment.pid == std::process::id() {
                continue;
            }
            let is_free = match free.get(&deployment.environment) {
                Some(&known) => known,
                None => {
                    let known = self.try_lock(&deployment.environment)?.is_some();
                    free.insert(deployment.environment.clone(), known);
                    known
                }
            };
            if is_free {
                mark_interrupted(deployment);
                self.save(deployment)?;
            }
        }
        Ok(deployments)
    }

    /// While holding `environment`'s lock: marks failed every deployment
    /// of it still `running`, which only a dead run can have left.
    pub fn recover_held(&self, environment: &str) -> Result<(), HistoryError> {
        for mut deployment in self.list_raw(environment)? {
            if deployment.status == DeploymentStatus::Running {
                mark_interrupted(&mut deployment);
                self.save(&deployment)?;
            }
        }
        Ok(())
    }

    fn list_raw(&self, environment: &str) -> Result<Vec<Deployment>, HistoryError> {
        let mut deployments = Vec::new();
        for id in self.ids()? {
            if let Some(deployment) = self.read(id)?
                && deployment.environment == environment
            {
                deployments.push(deployment);
            }
        }
        Ok(deployments)
    }

    /// The newest successful deployment of `environment` older than `before`
    /// (any, when `None`).
    pub fn last_succeeded(&self, environment: &str, before: Option<u64>) -> Result<Option<Deployment>, HistoryError> {
        Ok(self
            .list(Some(environment))?
            .into_iter()
            .rev()
            .filter(|deployment| before.is_none_or(|before| deployment.id < before))
            .find(|deployment| deployment.status == DeploymentStatus::Succeeded))
    }

    /// Appends one line to the monitor's log.
    pub fn append_monitor(&self, line: &serde_json::Value) -> Result<(), HistoryError> {
        use std::io::Write;
        let path = self.monitor_log();
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut text = line.to_string();
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io_error(&path))
    }
}

fn mark_interrupted(deployment: &mut Deployment) {
    deployment.status = DeploymentStatus::Failed;
    deployment.error = Some(format!(
        "interrupted: run {} (process {}) ended before the deployment finished",
        deployment.run, deployment.pid
    ));
    if deployment.finished_at.is_none() {
        deployment.finished_at = Some(timestamp(SystemTime::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(environment: &str) -> Deployment {
        Deployment {
            id: 0,
            environment: environment.to_owned(),
            run: "r1".to_owned(),
            commit: None,
            branch: None,
            status: DeploymentStatus::Running,
            started_at: timestamp(SystemTime::now()),
            finished_at: None,
            artifacts: Vec::new(),
            approval: None,
            stages: Vec::new(),
            error: None,
            rollback_to: None,
            rolled_back_by: None,
            pid: 1,
        }
    }

    #[test]
    fn ids_are_unique_and_a_dead_runs_deployment_reads_as_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(dir.path()).expect("cache");
        let history = History::open(&cache, "site");
        let mut first = deployment("staging");
        let mut second = deployment("production");
        assert_eq!(history.create(&mut first).expect("create"), 1);
        assert_eq!(history.create(&mut second).expect("create"), 2);
        // Process 1 holds no lock here: the record is a dead run's.
        let listed = history.list(Some("staging")).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, DeploymentStatus::Failed);
        assert!(
            listed[0]
                .error
                .as_deref()
                .is_some_and(|error| error.contains("interrupted"))
        );
        // While a run holds production, its running record stands.
        let held = history.lock_for("production", "r2").expect("lock").expect("free");
        assert!(
            history
                .holder("production")
                .is_some_and(|holder| holder.starts_with("run r2 (process "))
        );
        assert_eq!(history.get(2).expect("get").status, DeploymentStatus::Running);
        assert!(history.try_lock("production").expect("lock").is_none(), "held");
        assert!(matches!(history.get(9), Err(HistoryError::Unknown { id: 9, .. })));
        drop(held);
        assert_eq!(history.holder("production"), None, "released");
    }

    #[test]
    fn a_damaged_record_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(dir.path()).expect("cache");
        let history = History::open(&cache, "site");
        history.create(&mut deployment("staging")).expect("create");
        fs::write(history.record_path(1), b"{not json").expect("damage");
        let error = history.list(None).expect_err("damaged").to_string();
        assert!(error.contains("00000001.json") && error.contains("damaged"), "{error}");
    }
}
