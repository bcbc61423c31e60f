//! What a run reports as it goes: each stage's [`Status`] and the
//! [`Event`]s a reporter turns into a terminal view, CI lines or JSON.
//! Below both the engine that emits them and the reporters that show them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::observer::{Level, LogSource};

/// How a stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It ran and succeeded.
    Succeeded,
    /// Its result came from the cache without running.
    Cached,
    /// It ran and failed (after any retries).
    Failed,
    /// It did not run: its condition was false, something it needs did not
    /// succeed, or an earlier failure stopped the pipeline.
    Skipped,
}

impl Status {
    /// The lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Cached => "cached",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    /// Whether downstream stages may use the result.
    pub fn is_success(self) -> bool {
        matches!(self, Status::Succeeded | Status::Cached)
    }
}

/// Something that happened during a run. Serialized with its kind in `"event"`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run begins; lists the stages it will consider.
    PipelineStarted {
        /// The pipeline's name.
        pipeline: String,
        /// Every stage of this run, in the order of the file.
        stages: Vec<String>,
        /// How many stages may run at once.
        jobs: usize,
    },
    /// A stage starts an attempt.
    StageStarted {
        /// The stage.
        stage: String,
        /// 1 for the first run, higher for retries.
        attempt: u32,
    },
    /// A line of a stage's log.
    StageLog {
        /// The stage.
        stage: String,
        /// `stdout`, `stderr` or `host`.
        source: LogSource,
        /// The line's level.
        level: Level,
        /// The text, secrets masked.
        text: String,
    },
    /// A stage reported progress.
    StageProgress {
        /// The stage.
        stage: String,
        /// Units done.
        done: u64,
        /// Units in all; 0 when unknown.
        total: u64,
    },
    /// A stage attached a diagnostic to an input file.
    StageAnnotation {
        /// The stage.
        stage: String,
        /// The file, as the stage saw it.
        path: String,
        /// 1-based line; 0 for the whole file.
        line: u32,
        /// 1-based column, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        column: Option<u32>,
        /// How serious.
        severity: Level,
        /// What is wrong.
        message: String,
    },
    /// A stage ended.
    StageFinished {
        /// The stage.
        stage: String,
        /// How it ended.
        status: Status,
        /// Wall time of all its attempts, in milliseconds (0 when skipped).
        duration_ms: u64,
        /// How many times it ran.
        attempts: u32,
        /// Why it failed, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// What to do about the failure, when there is something to say
        /// (the key that raises a crossed bound, say).
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        /// Why it was skipped, when it was.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Its one-line summary, when it returned one.
        #[serde(skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        /// The outputs it returned.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        outputs: BTreeMap<String, String>,
        /// Its stage key: the digest of everything it could observe.
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<Digest>,
        /// The digest of its outputs tree (`/out`).
        #[serde(skip_serializing_if = "Option::is_none")]
        outputs_digest: Option<Digest>,
        /// The test cases its JUnit reports (`reports.junit`) counted.
        #[serde(skip_serializing_if = "Option::is_none")]
        tests: Option<TestCounts>,
        /// Where its time went, step by step (for traces and reports).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        phases: Vec<Phase>,
    },
    /// The test cases a stage's JUnit reports (`reports.junit`) listed.
    StageTests {
        /// The stage.
        stage: String,
        /// The cases, in the order of the reports.
        cases: Vec<TestCase>,
    },
    /// Something happened to a deployment: it waits for its environment,
    /// started, ended, or is rolled back.
    Deployment {
        /// The environment.
        environment: String,
        /// The deployment's number in the history, once it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        deployment: Option<u64>,
        /// `waiting`, `started`, `succeeded`, `failed`, `rejected`,
        /// `rolling_back` or `rolled_back`.
        status: &'static str,
        /// What happened, in words.
        message: String,
    },
    /// A deployment waits for a person's decision.
    ApprovalRequested {
        /// The environment.
        environment: String,
        /// The run, as `cairn approve` takes it.
        run: String,
        /// What would go out, a line per artifact, with what it replaces.
        changes: Vec<String>,
        /// The command that approves.
        approve: String,
        /// The command that rejects.
        reject: String,
        /// How long the run waits, in milliseconds.
        timeout_ms: u64,
    },
    /// The run ended.
    PipelineFinished {
        /// `succeeded`, `failed` or `interrupted`.
        status: &'static str,
        /// Wall time of the whole run, in milliseconds.
        duration_ms: u64,
        /// Stages that succeeded.
        succeeded: usize,
        /// Stages whose result came from the cache.
        cached: usize,
        /// Stages that failed.
        failed: usize,
        /// Stages that were skipped.
        skipped: usize,
    },
}

/// One step of a stage's execution: the spans a trace draws inside the
/// stage's own, so a slow stage shows whether hashing, restoring, compiling
/// or the stage itself took the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Phase {
    /// `deployment` (waiting for the environment's lock and approval),
    /// `key`, `restore`, `inputs`, `compile`, `sandbox`, `instantiate`,
    /// `run`, `store` or `publish`.
    pub name: std::borrow::Cow<'static, str>,
    /// When it began, in microseconds after the stage began.
    pub start_us: u64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
}

/// Measures a stage's [`Phase`]s as it goes: each mark closes the phase
/// that ran since the previous one.
#[derive(Debug)]
pub struct PhaseClock {
    started: std::time::Instant,
    last: std::time::Instant,
    phases: Vec<Phase>,
}

impl PhaseClock {
    /// A clock for a stage that began at `started`.
    pub fn new(started: std::time::Instant) -> Self {
        Self {
            started,
            last: started,
            phases: Vec::new(),
        }
    }

    /// Closes the phase `name`, which ran from the last mark until now.
    pub fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.push(name, now - self.last);
        self.last = now;
    }

    /// Closes the phase `name`, which took `duration` of the time since the
    /// last mark (the rest belongs to the next mark).
    pub fn split(&mut self, name: &'static str, duration: std::time::Duration) {
        let duration = duration.min(std::time::Instant::now() - self.last);
        self.push(name, duration);
        self.last += duration;
    }

    fn push(&mut self, name: &'static str, duration: std::time::Duration) {
        self.phases.push(Phase {
            name: std::borrow::Cow::Borrowed(name),
            start_us: (self.last - self.started).as_micros() as u64,
            duration_us: duration.as_micros() as u64,
        });
    }

    /// The time since the last mark.
    pub fn since_mark(&self) -> std::time::Duration {
        self.last.elapsed()
    }

    /// When the stage began.
    pub fn started(&self) -> std::time::Instant {
        self.started
    }

    /// The phases measured.
    pub fn finish(self) -> Vec<Phase> {
        self.phases
    }
}

/// One test case a stage's JUnit report listed.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct TestCase {
    /// The case's name.
    pub name: String,
    /// Its class or file, as the report names it.
    pub classname: String,
    /// How long it took, in seconds.
    pub time_s: f64,
    /// `passed`, `failed` or `skipped`.
    pub result: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

/// How many test cases a stage's JUnit reports counted, by result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TestCounts {
    /// Cases that passed.
    pub passed: u64,
    /// Cases that failed or raised an error.
    pub failed: u64,
    /// Cases that were skipped.
    pub skipped: u64,
}

impl TestCounts {
    /// The output keys the counts are kept under, so that a reused result
    /// carries them and later stages can read them
    /// (`${{ stages.test.outputs.tests_failed }}`).
    pub const OUTPUT_KEYS: [&'static str; 3] = ["tests_passed", "tests_failed", "tests_skipped"];

    /// The counts kept in a stage's outputs, if it has them.
    pub fn from_outputs(outputs: &BTreeMap<String, String>) -> Option<Self> {
        let [passed, failed, skipped] =
            Self::OUTPUT_KEYS.map(|key| outputs.get(key).and_then(|value| value.parse().ok()));
        Some(Self {
            passed: passed?,
            failed: failed?,
            skipped: skipped?,
        })
    }

    /// The counts as output entries.
    pub fn to_outputs(self) -> [(String, String); 3] {
        let [passed, failed, skipped] = Self::OUTPUT_KEYS;
        [
            (passed.to_owned(), self.passed.to_string()),
            (failed.to_owned(), self.failed.to_string()),
            (skipped.to_owned(), self.skipped.to_string()),
        ]
    }
}

impl std::fmt::Display for TestCounts {
    /// `41 passed, 1 failed, 2 skipped`, leaving out what is zero (but
    /// always saying how many passed).
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} passed", self.passed)?;
        if self.failed > 0 {
            write!(formatter, ", {} failed", self.failed)?;
        }
        if self.skipped > 0 {
            write!(formatter, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}
