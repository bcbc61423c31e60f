//! A run as it is kept once it ends: what `cairn runs`, `cairn show`, the
//! HTML report, traces, JUnit, SARIF and OpenTelemetry are all made from.
//!
//! [`Recorder`] builds it from the events as they pass, so the record says
//! exactly what the person watching saw, with the time of each stage. It
//! holds one small entry per stage and a bounded tail of each log, so a run
//! of a thousand cached stages costs a few hundred kilobytes at most.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use cairn_core::Digest;
use cairn_core::events::{Phase, TestCase, TestCounts};
use cairn_core::observer::{Level, LogSource};

use super::{Event, Reporter, Status};

/// The record's layout; a reader refuses another.
pub const FORMAT: u32 = 1;

/// The most log lines kept per stage: the last ones, where failures are.
pub const MAX_LOG_LINES: usize = 2_000;

/// The most annotations kept per stage.
pub const MAX_ANNOTATIONS: usize = 1_000;

/// One run, as kept in the history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// The layout ([`FORMAT`]).
    pub format: u32,
    /// The run's id, as `cairn show` and `cairn approve` take it.
    pub id: String,
    /// What ran: `run`, `rollback` or `monitor`.
    pub command: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline file.
    pub file: String,
    /// The commit checked out, when in a git repository.
    pub commit: Option<String>,
    /// The branch checked out.
    pub branch: Option<String>,
    /// When it began, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// `succeeded`, `failed` or `interrupted`.
    pub status: String,
    /// How many stages could run at once.
    pub jobs: usize,
    /// The stages of the run, in the order of the file.
    pub stages: Vec<StageRecord>,
    /// What happened to deployments, in order.
    pub deployments: Vec<String>,
}

/// One stage of a recorded run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage.
    pub name: String,
    /// The stages it needs (its edges in the graph).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub needs: Vec<String>,
    /// The environment it deploys to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub environment: Option<String>,
    /// How it ended; `None` if the run ended before it did.
    pub status: Option<Status>,
    /// When it began, in microseconds after the run began.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub start_us: u64,
    /// How long it took, in microseconds.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub duration_us: u64,
    /// How many times it ran.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub attempts: u32,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// What to do about the failure.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Its one-line summary.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<String>,
    /// The outputs it returned.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub outputs: BTreeMap<String, String>,
    /// Its stage key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<Digest>,
    /// The digest of its outputs tree.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outputs_digest: Option<Digest>,
    /// What its JUnit reports counted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tests: Option<TestCounts>,
    /// Where its time went.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub phases: Vec<Phase>,
    /// Why it ran, in words (a reused stage's status and key say why it
    /// was reused: [`StageRecord::explanation`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub why: Option<String>,
    /// The last [`MAX_LOG_LINES`] lines of its log.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub log: Vec<RecordedLine>,
    /// Lines of its log left out before those.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub log_left_out: u64,
    /// Its annotations, with repository paths.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub annotations: Vec<RecordedAnnotation>,
    /// The test cases its JUnit reports listed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cases: Vec<TestCase>,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A line of a stage's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedLine {
    /// `stdout`, `stderr` or `host`.
    pub source: LogSource,
    /// Its level.
    pub level: Level,
    /// The text, secrets masked.
    pub text: String,
}

/// A diagnostic a stage attached to a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedAnnotation {
    /// The file, as a repository path.
    pub path: String,
    /// 1-based line; 0 for the whole file.
    pub line: u32,
    /// 1-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub column: Option<u32>,
    /// How serious.
    pub severity: Level,
    /// What is wrong.
    pub message: String,
}

impl RunRecord {
    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageRecord> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// How many stages ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.stages.iter().filter(|stage| stage.status == Some(status)).count()
    }

    /// When the run began, as a time.
    pub fn started(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(self.started_ms)
    }
}

impl StageRecord {
    /// Why it ran or was reused, in words.
    pub fn explanation(&self) -> Option<std::borrow::Cow<'_, str>> {
        match (&self.why, self.status, self.key) {
            (Some(why), ..) => Some(why.as_str().into()),
            (None, Some(Status::Cached), Some(key)) => {
                Some(format!("reused: a result for its key ({}) was already stored", key.short()).into())
            }
            _ => None,
        }
    }

    /// The status's name, `unfinished` for a stage the run never ended.
    pub fn status_name(&self) -> &'static str {
        self.status.map_or("unfinished", Status::as_str)
    }
}

/// What a run is before the events fill it in: who runs what.
#[derive(Clone, Debug)]
pub struct RunHeader {
    /// The run's id.
    pub id: String,
    /// `run`, `rollback` or `monitor`.
    pub command: String,
    /// The pipeline file.
    pub file: String,
    /// The commit checked out.
    pub commit: Option<String>,
    /// The branch checked out.
    pub branch: Option<String>,
    /// Every stage of the pipeline (the events say which ran).
    pub stages: Vec<StageRecord>,
}

/// A [`Reporter`] that passes every event on and keeps what the record
/// needs of it.
pub struct Recorder {
    inner: std::sync::Arc<dyn Reporter>,
    started: Instant,
    started_at: SystemTime,
    books: Mutex<Books>,
}

struct Books {
    header: RunHeader,
    record: Option<RunRecord>,
    index: HashMap<String, usize>,
    logs: Vec<VecDeque<RecordedLine>>,
}

impl Recorder {
    /// Records the run `header` describes, passing events on to `inner`.
    pub fn new(inner: std::sync::Arc<dyn Reporter>, header: RunHeader) -> Self {
        Self {
            inner,
            started: Instant::now(),
            started_at: SystemTime::now(),
            books: Mutex::new(Books {
                header,
                record: None,
                index: HashMap::new(),
                logs: Vec::new(),
            }),
        }
    }

    /// Ends the record with the run's last event (`pipeline_finished`) and
    /// hands it over, without passing the event on (the caller does, while
    /// the record is being kept); `None` when the run never started.
    pub fn finish(&self, finished: &Event) -> Option<RunRecord> {
        self.keep(finished);
        let mut books = self.books.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut record = books.record.take()?;
        for (stage, log) in record.stages.iter_mut().zip(std::mem::take(&mut books.logs)) {
            stage.log = log.into();
        }
        Some(record)
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn keep(&self, event: &Event) {
        let mut books = self.books.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let books = &mut *books;
        if let Event::PipelineStarted { pipeline, stages, jobs } = event {
            // A second pass (an automatic rollback) adds to the first's
            // record: a stage it runs again keeps its place, its new result
            // over the old.
            let record = books.record.get_or_insert_with(|| RunRecord {
                format: FORMAT,
                id: books.header.id.clone(),
                command: books.header.command.clone(),
                pipeline: pipeline.clone(),
                file: books.header.file.clone(),
                commit: books.header.commit.clone(),
                branch: books.header.branch.clone(),
                started_ms: self
                    .started_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis() as u64),
                duration_ms: 0,
                status: "interrupted".to_owned(),
                jobs: *jobs,
                stages: Vec::new(),
                deployments: Vec::new(),
            });
            let selected: std::collections::HashSet<&str> = stages.iter().map(String::as_str).collect();
            // Each stage enters the record once: moved, not copied, out of
            // the header (a thousand of them are most of what a no-op
            // run's record allocates).
            for stage in &mut books.header.stages {
                if selected.contains(stage.name.as_str()) && !books.index.contains_key(&stage.name) {
                    books.index.insert(stage.name.clone(), record.stages.len());
                    record.stages.push(std::mem::take(stage));
                    books.logs.push(VecDeque::new());
                }
            }
            return;
        }
        let now = self.now_us();
        let Some(record) = books.record.as_mut() else {
            return;
        };
        let slot = |name: &str| books.index.get(name).copied();
        match event {
            Event::StageLog {
                stage,
                source,
                level,
                text,
            } => {
                if let Some(index) = slot(stage) {
                    let log = &mut books.logs[index];
                    if log.len() == MAX_LOG_LINES {
                        log.pop_front();
                        record.stages[index].log_left_out += 1;
                    }
                    log.push_back(RecordedLine {
                        source: *source,
                        level: *level,
                        text: text.clone(),
                    });
                }
            }
            Event::StageAnnotation {
                stage,
                path,
                line,
                column,
                severity,
                message,
            } => {
                if let Some(index) = slot(stage)
                    && record.stages[index].annotations.len() < MAX_ANNOTATIONS
                {
                    record.stages[index].annotations.push(RecordedAnnotation {
                        path: path.clone(),
                        line: *line,
                        column: *column,
                        severity: *severity,
                        message: message.clone(),
                    });
                }
            }
            Event::StageFinished {
                stage,
                status,
                duration_ms,
                attempts,
                error,
                hint,
                reason,
                summary,
                outputs,
                key,
                outputs_digest,
                tests,
                phases,
            } => {
                let Some(index) = slot(stage) else {
                    return;
                };
                let entry = &mut record.stages[index];
                // From when the stage began (hashing, compiling, waiting for
                // its environment included), not from its first attempt.
                let took = phases
                    .iter()
                    .map(|phase| phase.start_us + phase.duration_us)
                    .max()
                    .unwrap_or(duration_ms * 1000);
                entry.start_us = now.saturating_sub(took);
                entry.duration_us = now.saturating_sub(entry.start_us);
                entry.status = Some(*status);
                entry.attempts = *attempts;
                entry.error.clone_from(error);
                entry.hint.clone_from(hint);
                entry.reason.clone_from(reason);
                entry.summary.clone_from(summary);
                entry.outputs.clone_from(outputs);
                entry.key = *key;
                entry.outputs_digest = *outputs_digest;
                entry.tests = *tests;
                entry.phases.clone_from(phases);
            }
            Event::StageTests { stage, cases } => {
                if let Some(index) = slot(stage) {
                    record.stages[index].cases.clone_from(cases);
                }
            }
            Event::Deployment { .. } | Event::ApprovalRequested { .. } => {
                if let Some((text, _)) = super::deployment_lines(event) {
                    record.deployments.push(text);
                }
            }
            Event::PipelineFinished { status, .. } => {
                record.status = (*status).to_owned();
                record.duration_ms = self.started.elapsed().as_millis() as u64;
            }
            Event::PipelineStarted { .. } | Event::StageStarted { .. } | Event::StageProgress { .. } => {}
        }
    }
}

impl Reporter for Recorder {
    fn event(&self, event: &Event) {
        self.keep(event);
        self.inner.event(event);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Which job slot each stage ran in, for a timeline with one lane per
/// slot: a stage takes the first lane free when it begins.
pub fn lanes(stages: &[StageRecord]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..stages.len()).collect();
    order.sort_by_key(|&index| (stages[index].start_us, index));
    let mut free_at: Vec<u64> = Vec::new();
    let mut lanes = vec![0; stages.len()];
    for index in order {
        let stage = &stages[index];
        if stage.status.is_none() || stage.status == Some(Status::Skipped) {
            continue;
        }
        let end = stage.start_us + stage.duration_us;
        let lane = match free_at.iter().position(|&free| free <= stage.start_us) {
            Some(lane) => lane,
            None => {
                free_at.push(0);
                free_at.len() - 1
            }
        };
        free_at[lane] = end;
        lanes[index] = lane;
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, start_us: u64, duration_us: u64) -> StageRecord {
        StageRecord {
            name: name.to_owned(),
            status: Some(Status::Succeeded),
            start_us,
            duration_us,
            ..StageRecord::default()
        }
    }

    struct Nowhere;
    impl Reporter for Nowhere {
        fn event(&self, _: &Event) {}
    }

    fn finished(stage: &str, status: Status) -> Event {
        Event::StageFinished {
            stage: stage.to_owned(),
            status,
            duration_ms: 1,
            attempts: 1,
            error: None,
            hint: None,
            reason: None,
            summary: None,
            outputs: BTreeMap::new(),
            key: None,
            outputs_digest: None,
            tests: None,
            phases: Vec::new(),
        }
    }

    #[test]
    fn a_second_pass_updates_its_stages_in_place() {
        let recorder = Recorder::new(
            std::sync::Arc::new(Nowhere),
            RunHeader {
                id: "run".to_owned(),
                command: "run".to_owned(),
                file: "cairn.toml".to_owned(),
                commit: None,
                branch: None,
                stages: ["build", "deploy", "verify"].map(|name| stage(name, 0, 0)).to_vec(),
            },
        );
        let started = |stages: &[&str]| Event::PipelineStarted {
            pipeline: "p".to_owned(),
            stages: stages.iter().map(|name| (*name).to_owned()).collect(),
            jobs: 2,
        };
        recorder.event(&started(&["build", "deploy", "verify"]));
        for (name, status) in [
            ("build", Status::Succeeded),
            ("deploy", Status::Succeeded),
            ("verify", Status::Failed),
        ] {
            recorder.event(&finished(name, status));
        }
        // The rollback pass runs the environment's stages again.
        recorder.event(&started(&["deploy", "verify"]));
        recorder.event(&finished("verify", Status::Succeeded));
        let record = recorder
            .finish(&Event::PipelineFinished {
                status: "failed",
                duration_ms: 5,
                succeeded: 3,
                cached: 0,
                failed: 1,
                skipped: 0,
            })
            .expect("a record");
        let statuses: Vec<(&str, Option<Status>)> = record
            .stages
            .iter()
            .map(|stage| (stage.name.as_str(), stage.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("build", Some(Status::Succeeded)),
                ("deploy", Some(Status::Succeeded)),
                ("verify", Some(Status::Succeeded))
            ]
        );
    }

    #[test]
    fn overlapping_stages_take_separate_lanes_and_a_free_lane_is_reused() {
        let stages = [
            stage("a", 0, 10),
            stage("b", 5, 10),
            stage("c", 12, 5),
            stage("d", 16, 1),
        ];
        assert_eq!(lanes(&stages), [0, 1, 0, 1]);
    }
}
