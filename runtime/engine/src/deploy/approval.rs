//! Approvals: a deployment waiting for a person, and the decision that
//! ends the wait, exchanged as files in the cache so that `cairn approve`
//! and `cairn reject` work from any terminal or job of the machine.
//!
//! The waiting run writes `approvals-v1/<run>.<environment>.request.json`
//! (what would be deployed) and removes it when the wait ends; a decision
//! is `<run>.<environment>.decision.json`, put in place by a hard link so
//! the first decision wins and a second is refused, never overwriting it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cairn_core::cache_dir::CacheDir;

use super::history::{Approval, timestamp};

/// Why a decision cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No run waits for this decision.
    #[error("no run `{run}` is waiting for approval to deploy `{environment}`{waiting}")]
    NotWaiting {
        /// The run named.
        run: String,
        /// The environment named.
        environment: String,
        /// The runs that do wait, as a hint.
        waiting: String,
    },
    /// Someone decided first.
    #[error("run `{run}`'s deployment to `{environment}` was already {decision} by {by}")]
    Decided {
        /// The run.
        run: String,
        /// The environment.
        environment: String,
        /// What was decided.
        decision: String,
        /// By whom.
        by: String,
    },
    /// A file cannot be read or written.
    #[error("approvals: cannot use `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// What a waiting run shows the person deciding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// The run.
    pub run: String,
    /// The environment.
    pub environment: String,
    /// The pipeline.
    pub pipeline: String,
    /// What would go out, a line per artifact, and what it replaces.
    pub changes: Vec<String>,
    /// The commit, when in git.
    pub commit: Option<String>,
    /// The branch, when on one.
    pub branch: Option<String>,
    /// When the wait began, RFC 3339.
    pub since: String,
}

/// The folder of approval requests and decisions.
#[derive(Clone, Debug)]
pub struct Approvals {
    dir: PathBuf,
}

/// A request on disk, removed when the wait ends however it ends.
pub struct Pending {
    path: PathBuf,
    decision: PathBuf,
}

impl Drop for Pending {
    fn drop(&mut self) {
        // The decision went into the deployment's record; a later decision
        // on this run finds no request and is refused.
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(&self.decision);
    }
}

impl Pending {
    /// The decision, once someone made it.
    pub fn decision(&self) -> Option<Approval> {
        let bytes = fs::read(&self.decision).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ApprovalError + '_ {
    move |source| ApprovalError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Approvals {
    /// The approvals of the cache `cache`.
    pub fn open(cache: &CacheDir) -> Self {
        Self {
            dir: cache.root().join("approvals-v1"),
        }
    }

    fn file(&self, run: &str, environment: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{run}.{environment}.{kind}.json"))
    }

    /// Puts `request` up for a decision.
    pub fn request(&self, request: &Request) -> Result<Pending, ApprovalError> {
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let path = self.file(&request.run, &request.environment, "request");
        let bytes = serde_json::to_vec_pretty(request).map_err(|error| ApprovalError::Io {
            path: path.clone(),
            source: io::Error::other(error),
        })?;
        cairn_core::cache_dir::write_atomically(&path, &bytes).map_err(io_error(&path))?;
        Ok(Pending {
            path,
            decision: self.file(&request.run, &request.environment, "decision"),
        })
    }

    /// Every request waiting for a decision.
    pub fn waiting(&self) -> Vec<Request> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut requests: Vec<Request> = entries
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                path.to_str()?.ends_with(".request.json").then_some(())?;
                serde_json::from_slice(&fs::read(&path).ok()?).ok()
            })
            .collect();
        requests.sort_by(|a, b| a.since.cmp(&b.since));
        requests
    }

    /// Records a decision on run `run`'s deployment to `environment`: the
    /// first one made stands.
    pub fn decide(
        &self,
        run: &str,
        environment: &str,
        approved: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<Request, ApprovalError> {
        let request_path = self.file(run, environment, "request");
        let request: Option<Request> = fs::read(&request_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let Some(request) = request else {
            let waiting: Vec<String> = self
                .waiting()
                .iter()
                .map(|request| format!("{} {}", request.run, request.environment))
                .collect();
            return Err(ApprovalError::NotWaiting {
                run: run.to_owned(),
                environment: environment.to_owned(),
                waiting: if waiting.is_empty() {
                    "\nhint: no run is waiting for an approval on this machine".to_owned()
                } else {
                    format!("\nhint: waiting now: {}", waiting.join("; "))
                },
            });
        };
        let decision = Approval {
            decision: if approved { "approved" } else { "rejected" }.to_owned(),
            by: by.to_owned(),
            at: timestamp(SystemTime::now()),
            reason,
            how: if approved { "cairn approve" } else { "cairn reject" }.to_owned(),
        };
        let bytes = serde_json::to_vec_pretty(&decision).map_err(|error| ApprovalError::Io {
            path: request_path.clone(),
            source: io::Error::other(error),
        })?;
        let staged = tempfile::Builder::new()
            .prefix(".decision-")
            .tempfile_in(&self.dir)
            .map_err(io_error(&self.dir))?;
        fs::write(staged.path(), &bytes).map_err(io_error(staged.path()))?;
        let target = self.file(run, environment, "decision");
        match fs::hard_link(staged.path(), &target) {
            Ok(()) => Ok(request),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let earlier: Option<Approval> = fs::read(&target)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok());
                Err(ApprovalError::Decided {
                    run: run.to_owned(),
                    environment: environment.to_owned(),
                    decision: earlier
                        .as_ref()
                        .map_or_else(|| "decided".to_owned(), |earlier| earlier.decision.clone()),
                    by: earlier.map_or_else(|| "someone".to_owned(), |earlier| earlier.by),
                })
            }
            Err(source) => Err(ApprovalError::Io { path: target, source }),
        }
    }
}

/// Who is deciding: the login name, as `git` and `sudo` take it.
pub fn current_user() -> String {
    ["CAIRN_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_decision_stands_and_a_decision_needs_a_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let approvals = Approvals::open(&CacheDir::open(dir.path()).expect("cache"));
        let refused = approvals.decide("r1", "production", true, "ana", None);
        assert!(matches!(refused, Err(ApprovalError::NotWaiting { .. })));
        let pending = approvals
            .request(&Request {
                run: "r1".to_owned(),
                environment: "production".to_owned(),
                pipeline: "site".to_owned(),
                changes: Vec::new(),
                commit: None,
                branch: None,
                since: timestamp(SystemTime::now()),
            })
            .expect("request");
        assert_eq!(approvals.waiting().len(), 1);
        assert!(pending.decision().is_none());
        approvals
            .decide("r1", "production", false, "bo", Some("not on a Friday".to_owned()))
            .expect("reject");
        let second = approvals.decide("r1", "production", true, "ana", None);
        assert!(
            matches!(&second, Err(ApprovalError::Decided { decision, by, .. }) if decision == "rejected" && by == "bo"),
            "{second:?}"
        );
        let decision = pending.decision().expect("decided");
        assert_eq!(decision.reason.as_deref(), Some("not on a Friday"));
        drop(pending);
        assert!(approvals.waiting().is_empty(), "the request goes with the wait");
        assert!(
            fs::read_dir(dir.path().join("approvals-v1"))
                .expect("the folder")
                .next()
                .is_none(),
            "and so does the decision"
        );
    }
}
