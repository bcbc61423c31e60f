//! What a requester sends a worker, and what a worker streams back while it
//! runs a stage.
//!
//! A job is a stage's [`KeyParts`] (everything it can observe, named by
//! digest: its component, its `/src` tree, the outputs of the stages it
//! needs) with the bounds and retries it runs with. Nothing else reaches
//! the worker: no path of the requester's machine, no secret (stages
//! granted secrets are never sent). The worker recomputes the key from the
//! parts and refuses a job whose key does not match, so a result can only
//! ever be stored under the key of what actually ran.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stage_key::KeyParts;
use cairn_core::Digest;
use cairn_core::events::TestCase;
use cairn_core::limits::Limits;
use cairn_core::observer::{Annotation, LogLine};
use cairn_core::units::ByteSize;

/// Bumped when a job's meaning changes: a worker refuses jobs of another
/// version, naming both.
pub const JOB_VERSION: u32 = 1;

/// One stage to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// [`JOB_VERSION`] of the requester.
    pub version: u32,
    /// The stage's key, which the worker checks against `parts`.
    pub key: Digest,
    /// Everything the stage observes.
    pub parts: KeyParts,
    /// Its bounds.
    pub limits: JobLimits,
    /// How many times a failed attempt is retried.
    pub retries: u32,
    /// The JUnit reports it writes.
    pub junit: Vec<String>,
}

/// [`Limits`], as a job carries them.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct JobLimits {
    timeout_ms: u64,
    memory: u64,
    max_output: u64,
    max_log: u64,
    max_entries: u64,
}

impl From<Limits> for JobLimits {
    fn from(limits: Limits) -> Self {
        Self {
            timeout_ms: limits.timeout.as_millis() as u64,
            memory: limits.memory.0,
            max_output: limits.max_output.0,
            max_log: limits.max_log.0,
            max_entries: limits.max_entries,
        }
    }
}

impl From<JobLimits> for Limits {
    fn from(limits: JobLimits) -> Self {
        Self {
            timeout: Duration::from_millis(limits.timeout_ms),
            memory: ByteSize(limits.memory),
            max_output: ByteSize(limits.max_output),
            max_log: ByteSize(limits.max_log),
            max_entries: limits.max_entries,
        }
    }
}

impl Job {
    /// The bytes sent.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A job received, checked: its version, and its key against its parts.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let versioned: Versioned =
            serde_json::from_slice(bytes).map_err(|error| format!("the job cannot be read: {error}"))?;
        if versioned.version != JOB_VERSION {
            return Err(format!(
                "the job is of version {} and this worker runs version {JOB_VERSION} (cairn {}): run workers of \
                 the requester's cairn version",
                versioned.version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        let job: Job = serde_json::from_slice(bytes).map_err(|error| format!("the job cannot be read: {error}"))?;
        let key = job.parts.key();
        if key != job.key {
            return Err(format!(
                "refused: the job was sent as {} but what it describes has the key {key}",
                job.key
            ));
        }
        Ok(job)
    }
}

/// What a worker streams while it runs a stage, for the requester's live
/// view and events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A worker took the job (`delivery` > 1: another worker had it first)
    /// and starts an attempt.
    Started {
        /// The worker.
        worker: String,
        /// How many times the job has been handed out.
        delivery: u64,
        /// The attempt (retries count up).
        attempt: u32,
    },
    /// A line of the stage's log.
    Log {
        /// The line, secrets masked (none are granted on a worker).
        line: LogLine,
    },
    /// The stage's progress.
    Progress {
        /// Done so far.
        done: u64,
        /// Out of.
        total: u64,
    },
    /// A diagnostic on an input file.
    Annotation {
        /// As the stage made it (paths as the stage saw them).
        annotation: Annotation,
    },
    /// The cases of the stage's JUnit reports.
    Tests {
        /// In the order of the reports.
        cases: Vec<TestCase>,
    },
    /// The job's result is published: read it now.
    Finished,
}

impl LiveEvent {
    /// The bytes sent.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_whose_key_is_not_its_parts_is_refused() {
        let parts = KeyParts {
            stage: "build".into(),
            component: Digest::of(b"component"),
            format: "component".into(),
            args: Vec::new(),
            config: Default::default(),
            env: Default::default(),
            secrets: Vec::new(),
            network: Vec::new(),
            http_auth: Default::default(),
            clock: cairn_sandbox::Clock::Pinned { source_date_epoch: 0 },
            random: cairn_pipeline::RandomGrant::Seeded,
            inputs: Digest::of(b"inputs"),
            needs: Default::default(),
            tools: Default::default(),
            tool_sandbox: None,
        };
        let mut job = Job {
            version: JOB_VERSION,
            key: parts.key(),
            parts,
            limits: Limits::default().into(),
            retries: 0,
            junit: Vec::new(),
        };
        assert!(Job::decode(&job.encode()).is_ok());
        job.parts.args.push("--different".to_owned());
        let refused = Job::decode(&job.encode()).expect_err("a forged key");
        assert!(refused.contains("refused"), "{refused}");
        job.version = JOB_VERSION + 1;
        let refused = Job::decode(&job.encode()).expect_err("another version");
        assert!(refused.contains("version"), "{refused}");
        assert_eq!(Limits::from(JobLimits::from(Limits::default())), Limits::default());
    }
}
