//! Running a stage: its `/src` snapshot, its sandbox built from its key's
//! parts, its attempts, and its outputs and log stored.

use super::*;

impl StageExecutor {
    /// Runs the stage (with its retries) and stores what it produced.
    pub(super) async fn run(
        &self,
        stage: &Stage,
        component: &ComponentRef,
        prepared: &Prepared,
        upstream: &Upstream,
        observer: Arc<dyn StageObserver>,
        clock: &mut PhaseClock,
    ) -> Result<Ran, (StageError, u32)> {
        let failed = |error: StageError| (error, 1);
        if let Some(reason) = &prepared.not_reused {
            observer.log(&host_line(Level::Info, format!("runs every time: {reason}")));
        }
        let snapshot = self
            .snapshot_inputs(&prepared.inputs)
            .await
            .map_err(|error| failed(error.into()))?;
        clock.mark("inputs");
        let placement = Placement {
            src: snapshot.as_ref().map(|snapshot| snapshot.path().to_owned()),
            needed: Box::new(|need| {
                if let Some(folder) = self.deployments.pinned_dir(need) {
                    return Some(folder);
                }
                let folder = self.output_root.join(need);
                (upstream.outputs.contains_key(need) && folder.is_dir()).then_some(folder)
            }),
            secret: Box::new(|name| self.secrets.get(name)),
            tool: Box::new(|name| {
                self.tools.by_stage[prepared.index]
                    .iter()
                    .find(|tool| tool.grant.name == name)
                    .map(|tool| tool.grant.clone())
            }),
            limits: stage.limits,
        };
        let sandbox = prepared.parts.sandbox(&prepared.key, placement).map_err(failed)?;
        let runtime = self
            .runtime
            .get()
            .await
            .map_err(|error| failed(error.to_string().into()))?;
        // The bytes are read only if the compiled cache lacks the component.
        let bytes = async {
            component
                .bytes()
                .await
                .map_err(|error| LoadError::Source(error.to_string()))
        };
        let loaded = runtime
            .load_known(component.digest, bytes)
            .await
            .map_err(|error| match error {
                LoadError::Source(message) => failed(message.into()),
                error => failed(format!("cannot load its component: {error}").into()),
            })?;
        clock.mark("compile");
        let attempts = Attempts {
            stage: &stage.name,
            retries: stage.retries,
            junit: &stage.junit,
            reporter: self.reporter.as_ref(),
        };
        let (run, outcome, attempt) = attempts.run(&runtime, &loaded, &sandbox, observer, clock).await?;
        let stored = store_outputs(Arc::clone(&self.store), run, outcome, attempt)
            .await
            .map_err(|error| (error.into(), attempt));
        clock.mark("store");
        stored
    }

    /// Copies the input files into the store (checking they are still what
    /// was hashed) and links them into a read-only snapshot for `/src`.
    pub(super) async fn snapshot_inputs(&self, indices: &[usize]) -> Result<Option<ScratchFolder>, String> {
        if indices.is_empty() {
            return Ok(None);
        }
        let inputs = self.inputs_tree(indices)?;
        let store = Arc::clone(&self.store);
        let workspace = Arc::clone(&self.workspace);
        let scratch = Arc::clone(&self.scratch);
        tokio::task::spawn_blocking(move || {
            store_inputs(&store, &workspace, &inputs)?;
            let snapshot = scratch.folder("src").map_err(StoreError::io(scratch.dir()))?;
            inputs.materialize(&store, snapshot.path(), Materialize::Link)?;
            Ok(Some(snapshot))
        })
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
        .map_err(|error: TreeError| error.to_string())
    }

    /// Copies the input files and their tree into the store (for a worker
    /// to fetch), without a snapshot; the tree's digest.
    pub(super) async fn stored_inputs(&self, indices: &[usize]) -> Result<Digest, String> {
        let inputs = self.inputs_tree(indices)?;
        let store = Arc::clone(&self.store);
        let workspace = Arc::clone(&self.workspace);
        tokio::task::spawn_blocking(move || store_inputs(&store, &workspace, &inputs))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            .map_err(|error| error.to_string())
    }

    /// The tree of the input files `indices`.
    fn inputs_tree(&self, indices: &[usize]) -> Result<Tree, String> {
        let files = self.workspace.files();
        Ok(Tree::new(
            indices
                .iter()
                .map(|&index| {
                    self.input_entry(index).map(|kind| Entry {
                        path: files[index].path.clone(),
                        kind,
                    })
                })
                .collect::<Result<_, _>>()?,
        ))
    }
}

/// Copies the files of `inputs` the store lacks from the workspace (each
/// checked against the digest it was keyed with), then the tree; its digest.
fn store_inputs(store: &Store, workspace: &Workspace, inputs: &Tree) -> Result<Digest, StoreError> {
    for entry in inputs.entries() {
        if let EntryKind::File { digest, .. } = &entry.kind
            && !store.has_blob(digest)
        {
            let path = workspace.root().join(&entry.path);
            store.put_opened(|| workspace.open_input(&entry.path), &path, Some(*digest))?;
        }
    }
    inputs.store(store)
}

/// How a stage is attempted: its name, its retries, the JUnit reports it
/// writes, and where its attempts and test cases are reported. The same on
/// this machine and on a worker.
pub(crate) struct Attempts<'a> {
    pub stage: &'a str,
    pub retries: u32,
    pub junit: &'a [String],
    pub reporter: &'a dyn Reporter,
}

impl Attempts<'_> {
    /// Runs a loaded stage until it succeeds or its retries are spent: the
    /// successful run, its outcome with its test counts, and its attempt.
    pub(crate) async fn run(
        &self,
        runtime: &Runtime,
        loaded: &Arc<LoadedComponent>,
        sandbox: &Sandbox,
        observer: Arc<dyn StageObserver>,
        clock: &mut PhaseClock,
    ) -> Result<(StageRun, Outcome, u32), (StageError, u32)> {
        for attempt in 1..=self.retries + 1 {
            self.reporter.event(&Event::StageStarted {
                stage: self.stage.to_owned(),
                attempt,
            });
            let mut run = runtime
                .run(loaded, sandbox, Arc::clone(&observer))
                .await
                .map_err(|error| (error.to_string().into(), attempt))?;
            let sandbox_setup = clock.since_mark().saturating_sub(run.duration);
            clock.split("sandbox", sandbox_setup);
            clock.split("instantiate", run.instantiation);
            clock.mark("run");
            let tests = self.read_test_reports(&mut run, observer.as_ref());
            match &run.result {
                Ok(outcome) => {
                    let mut outcome = outcome.clone();
                    if let Some(counts) = tests {
                        outcome.outputs.extend(counts.to_outputs());
                        outcome.summary = Some(match outcome.summary.take() {
                            Some(summary) => format!("{summary} · {counts}"),
                            None => counts.to_string(),
                        });
                    }
                    return Ok((run, outcome, attempt));
                }
                Err(failure) if attempt <= self.retries => {
                    observer.log(&notice(format!("attempt {attempt} {failure}; retrying")));
                }
                Err(failure) => {
                    let error = StageError {
                        message: match tests {
                            Some(counts) => format!("{failure} · {counts}"),
                            None => failure.to_string(),
                        },
                        hint: failure.hint().map(str::to_owned),
                        tests,
                    };
                    return Err((error, attempt));
                }
            }
        }
        Err(("the stage did not run".into(), 0))
    }

    /// Reads the JUnit reports the stage names, whether it succeeded or not:
    /// each unreadable report becomes a warning in its log, each failed case an
    /// annotation kept with its run. `None` when it names none, or none could
    /// be read.
    fn read_test_reports(&self, run: &mut StageRun, observer: &dyn StageObserver) -> Option<TestCounts> {
        if self.junit.is_empty() {
            return None;
        }
        let report = crate::junit::read(run.outputs(), self.junit);
        for warning in &report.warnings {
            observer.log(&notice(warning.clone()));
        }
        for failure in report.failures {
            observer.annotate(&failure);
            run.annotations.push(failure);
        }
        if !report.cases.is_empty() {
            self.reporter.event(&Event::StageTests {
                stage: self.stage.to_owned(),
                cases: report.cases,
            });
        }
        (report.warnings.len() < self.junit.len()).then_some(report.counts)
    }
}

/// Stores a successful run's outputs and log.
pub(crate) async fn store_outputs(
    store: Arc<Store>,
    run: StageRun,
    outcome: Outcome,
    attempts: u32,
) -> Result<Ran, String> {
    tokio::task::spawn_blocking(move || {
        let (tree, outputs) = Tree::ingest(&store, run.outputs()).map_err(|error| error.to_string())?;
        let log = if run.log.lines.is_empty() {
            None
        } else {
            let bytes = serde_json::to_vec(&run.log.lines).map_err(|error| error.to_string())?;
            Some(store.put_bytes(&bytes).map_err(|error| error.to_string())?)
        };
        Ok(Ran {
            produced: Produced {
                outputs,
                outcome,
                log,
                annotations: run.annotations.clone(),
            },
            tree,
            attempts,
            run,
        })
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}
