//! The run history: each run's [`RunRecord`] kept in the cache folder
//! (`runs-v1/<start>_<id>.json`, with a small `<start>_<id>.summary.json`
//! for listing; `<start>` is the start in milliseconds, so names sort in
//! time order), so that `cairn runs`, `cairn show` and `cairn report` work
//! after the fact.
//!
//! Bounded: after each run the oldest records beyond the newest
//! `CAIRN_KEEP_RUNS` (default 100), and any older than `CAIRN_KEEP_DAYS`
//! (default 30), are removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use cairn_core::cache_dir::CacheDir;
use cairn_report::Status;
use cairn_report::record::{FORMAT, RunRecord};

/// The folder of the history, under the cache folder.
pub const RUNS_FOLDER: &str = "runs-v1";

const RECORD: &str = ".json";
const SUMMARY: &str = ".summary.json";

/// Why the history cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A record is not one cairn wrote (or a later cairn did).
    #[error("{path} is not a run record this cairn reads: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No run has that id.
    #[error("no recorded run `{0}`\nhint: `cairn runs` lists the recorded runs")]
    Unknown(String),
    /// More than one run starts with what was given.
    #[error("`{0}` names more than one run: {1}")]
    Ambiguous(String, String),
    /// Nothing recorded yet.
    #[error("no run has been recorded yet\nhint: run `cairn run` first")]
    Empty,
    /// A retention variable is not a number.
    #[error("{name} is `{value}`, not a whole number")]
    Retention {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// How much history is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The most runs kept.
    pub runs: usize,
    /// The oldest a kept run may be.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            runs: 100,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Retention {
    /// `CAIRN_KEEP_RUNS` and `CAIRN_KEEP_DAYS`, or the defaults. `0` runs
    /// turns the history off.
    pub fn from_env() -> Result<Self, RunsError> {
        let mut retention = Self::default();
        if let Some(runs) = number("CAIRN_KEEP_RUNS")? {
            retention.runs = runs as usize;
        }
        if let Some(days) = number("CAIRN_KEEP_DAYS")? {
            retention.max_age = Duration::from_secs(days.saturating_mul(24 * 3600));
        }
        Ok(retention)
    }
}

fn number(name: &'static str) -> Result<Option<u64>, RunsError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| RunsError::Retention { name, value }),
        _ => Ok(None),
    }
}

/// What `cairn runs` lists of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// `run` or `rollback`.
    pub command: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline file.
    pub file: String,
    /// The commit checked out.
    pub commit: Option<String>,
    /// The branch checked out.
    pub branch: Option<String>,
    /// When it began, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// `succeeded`, `failed` or `interrupted`.
    pub status: String,
    /// Stages that ran and succeeded.
    pub succeeded: usize,
    /// Stages reused from the cache.
    pub cached: usize,
    /// Stages that failed.
    pub failed: usize,
    /// Stages skipped.
    pub skipped: usize,
}

impl RunSummary {
    /// The summary of `record`.
    pub fn of(record: &RunRecord) -> Self {
        Self {
            id: record.id.clone(),
            command: record.command.clone(),
            pipeline: record.pipeline.clone(),
            file: record.file.clone(),
            commit: record.commit.clone(),
            branch: record.branch.clone(),
            started_ms: record.started_ms,
            duration_ms: record.duration_ms,
            status: record.status.clone(),
            succeeded: record.count(Status::Succeeded),
            cached: record.count(Status::Cached),
            failed: record.count(Status::Failed),
            skipped: record.count(Status::Skipped),
        }
    }
}

/// The history in one cache folder.
#[derive(Clone, Debug)]
pub struct RunHistory {
    folder: PathBuf,
}

impl RunHistory {
    /// The history kept in `cache`.
    pub fn open(cache: &CacheDir) -> Self {
        Self {
            folder: cache.root().join(RUNS_FOLDER),
        }
    }

    /// Where the records are.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Keeps `record`. The history is trimmed before, by
    /// [`make_room`](Self::make_room).
    pub fn save(&self, record: &RunRecord, retention: Retention) -> Result<(), RunsError> {
        if retention.runs == 0 {
            return Ok(());
        }
        std::fs::create_dir_all(&self.folder).map_err(|source| RunsError::Io {
            path: self.folder.clone(),
            source,
        })?;
        let stem = format!("{:013}_{}", record.started_ms, record.id);
        write_json(&self.folder.join(format!("{stem}{RECORD}")), record)?;
        // Written last: a run is listed only once its record is whole.
        write_json(&self.folder.join(format!("{stem}{SUMMARY}")), &RunSummary::of(record))?;
        Ok(())
    }

    /// Trims the history so that one more run fits in `retention`: done
    /// while the run goes on (on a thread of its own), not after it, where
    /// removing a thousand-stage record would hold up the exit.
    pub fn make_room(&self, retention: Retention) {
        self.trim(Retention {
            runs: retention.runs.saturating_sub(1),
            ..retention
        });
    }

    /// The file stems (`<start>_<id>`) of the kept runs, oldest first.
    fn stems(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.folder) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(SUMMARY).map(str::to_owned))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Removes what `retention` does not keep.
    fn trim(&self, retention: Retention) {
        let stems = self.stems();
        let excess = stems.len().saturating_sub(retention.runs);
        let now = SystemTime::now();
        for (position, id) in stems.iter().enumerate() {
            let summary = self.folder.join(format!("{id}{SUMMARY}"));
            let too_old = || {
                std::fs::metadata(&summary)
                    .and_then(|metadata| metadata.modified())
                    .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > retention.max_age)
            };
            if position < excess || too_old() {
                // The summary first: a run half removed is not listed.
                let _ = std::fs::remove_file(&summary);
                let _ = std::fs::remove_file(self.folder.join(format!("{id}{RECORD}")));
            } else {
                // Stems are in time order: the rest are newer.
                break;
            }
        }
    }

    /// Every kept run, newest first; unreadable summaries are named in
    /// the second list.
    pub fn list(&self) -> (Vec<RunSummary>, Vec<RunsError>) {
        let mut runs = Vec::new();
        let mut broken = Vec::new();
        for (_, summary) in self.summaries() {
            match summary {
                Ok(summary) => runs.push(summary),
                Err(error) => broken.push(error),
            }
        }
        (runs, broken)
    }

    /// Each kept run's stem and summary, newest first.
    fn summaries(&self) -> impl Iterator<Item = (String, Result<RunSummary, RunsError>)> + '_ {
        self.stems().into_iter().rev().map(|stem| {
            let summary = read_json::<RunSummary>(&self.folder.join(format!("{stem}{SUMMARY}")));
            (stem, summary)
        })
    }

    /// The run `id` (or the one run whose id begins with it), or the newest
    /// run of `file` when `id` is `None`.
    pub fn load(&self, id: Option<&str>, file: Option<&str>) -> Result<RunRecord, RunsError> {
        let stems = self.stems();
        let id_of = |stem: &str| stem.split_once('_').map_or(stem.to_owned(), |(_, id)| id.to_owned());
        let id = match id {
            Some(wanted) => {
                let matching: Vec<&String> = match stems.iter().find(|stem| id_of(stem) == wanted) {
                    Some(exact) => vec![exact],
                    None => stems.iter().filter(|stem| id_of(stem).starts_with(wanted)).collect(),
                };
                match matching.as_slice() {
                    [] => return Err(RunsError::Unknown(wanted.to_owned())),
                    [one] => (*one).clone(),
                    many => {
                        let names: Vec<String> = many.iter().map(|stem| id_of(stem)).collect();
                        return Err(RunsError::Ambiguous(wanted.to_owned(), names.join(", ")));
                    }
                }
            }
            None => self
                .summaries()
                .find(|(_, summary)| {
                    summary
                        .as_ref()
                        .is_ok_and(|run| file.is_none_or(|file| run.file == file))
                })
                .map(|(stem, _)| stem)
                .ok_or(RunsError::Empty)?,
        };
        let path = self.folder.join(format!("{id}{RECORD}"));
        let record: RunRecord = read_json(&path)?;
        if record.format != FORMAT {
            return Err(RunsError::Corrupt {
                path,
                reason: format!("its format is {}, this cairn reads {FORMAT}", record.format),
            });
        }
        Ok(record)
    }

    /// The bytes the history takes on disk.
    pub fn disk_usage(&self) -> u64 {
        std::fs::read_dir(&self.folder)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.metadata().ok())
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Writes `value` as JSON to `path`, whole or not at all (a temporary file
/// renamed over it), streamed rather than built in memory. Not synced to
/// the disk: a record lost or cut short by a power cut is a run left out of
/// the history (a cut one is named when listed), and a sync would cost a
/// thousand-stage no-op run a tenth of its time.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunsError> {
    use std::io::Write as _;
    let io = |source| RunsError::Io {
        path: path.to_owned(),
        source,
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    let file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(folder)
        .map_err(io)?;
    let mut writer = std::io::BufWriter::with_capacity(64 * 1024, file);
    serde_json::to_writer(&mut writer, value).map_err(|error| RunsError::Corrupt {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    writer.flush().map_err(io)?;
    let file = writer.into_inner().map_err(|error| io(error.into_error()))?;
    file.persist(path).map_err(|error| io(error.error))?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RunsError> {
    let bytes = std::fs::read(path).map_err(|source| RunsError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|error| RunsError::Corrupt {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> RunRecord {
        RunRecord {
            format: FORMAT,
            id: id.to_owned(),
            command: "run".to_owned(),
            pipeline: "p".to_owned(),
            file: "/w/cairn.toml".to_owned(),
            commit: None,
            branch: None,
            started_ms: 0,
            duration_ms: 1,
            status: "succeeded".to_owned(),
            jobs: 2,
            stages: Vec::new(),
            deployments: Vec::new(),
        }
    }

    #[test]
    fn the_newest_runs_are_kept_and_found_by_prefix() {
        let folder = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(folder.path()).unwrap();
        let history = RunHistory::open(&cache);
        let retention = Retention {
            runs: 2,
            ..Retention::default()
        };
        // Started in the same second: the milliseconds order them.
        for (id, started_ms) in [
            ("261203000001-dddd", 1),
            ("261203000002-bbbb", 2),
            ("261203000003-aaaa", 3),
        ] {
            history.make_room(retention);
            history
                .save(
                    &RunRecord {
                        started_ms,
                        ..record(id)
                    },
                    retention,
                )
                .unwrap();
        }
        let (runs, broken) = history.list();
        let ids: Vec<&str> = runs.iter().map(|run| run.id.as_str()).collect();
        assert_eq!(ids, ["261203000003-aaaa", "261203000002-bbbb"]);
        assert!(broken.is_empty());
        assert_eq!(
            history.load(Some("261203000002"), None).unwrap().id,
            "261203000002-bbbb"
        );
        assert!(matches!(
            history.load(Some("261203000001"), None),
            Err(RunsError::Unknown(_))
        ));
        assert!(matches!(
            history.load(Some("2612030000"), None),
            Err(RunsError::Ambiguous(..))
        ));
        assert_eq!(
            history.load(None, Some("/w/cairn.toml")).unwrap().id,
            "261203000003-aaaa"
        );
    }

    #[test]
    fn a_damaged_record_is_named_not_read() {
        let folder = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(folder.path()).unwrap();
        let history = RunHistory::open(&cache);
        history
            .save(&record("261203000001-aaaa"), Retention::default())
            .unwrap();
        let file = history.folder().join("0000000000000_261203000001-aaaa.json");
        std::fs::write(&file, b"{\"format\": 1, trunc").unwrap();
        let error = history.load(Some("261203000001-aaaa"), None).unwrap_err().to_string();
        assert!(error.contains("261203000001-aaaa.json is not a run record"), "{error}");
    }
}
