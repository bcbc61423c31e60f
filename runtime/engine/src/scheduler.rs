//! Running a pipeline's graph: each stage once all it needs are done, up to
//! `jobs` at a time, deciding for each whether it runs at all.
//!
//! The scheduler knows nothing of WebAssembly: it hands stages to an
//! [`Executor`] and routes results. That keeps its own cost measurable on its
//! own (`benches/scheduler.rs`), and lets the cache later decide, inside the
//! executor, that a stage need not run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::task::JoinSet;

use cairn_core::Digest;
use cairn_core::events::{Phase, TestCounts};
use cairn_pipeline::{Graph, Pipeline, Reference, Stage};
use cairn_report::{Event, Reporter, Status};

/// How a stage ended, and what it handed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageResult {
    /// How it ended.
    pub status: Status,
    /// Outputs it returned, for `${{ stages.NAME.outputs.KEY }}`.
    pub outputs: Arc<BTreeMap<String, String>>,
    /// Its one-line summary.
    pub summary: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// What to do about the failure, apart from what happened.
    pub hint: Option<String>,
    /// Why it was skipped.
    pub reason: Option<String>,
    /// How many attempts it took.
    pub attempts: u32,
    /// Wall time of its attempts.
    pub duration: Duration,
    /// Its stage key, when it has one (not when skipped).
    pub key: Option<Digest>,
    /// The digest of its outputs tree, when it succeeded.
    pub outputs_digest: Option<Digest>,
    /// What its JUnit reports counted.
    pub tests: Option<TestCounts>,
    /// Where its time went.
    pub phases: Vec<Phase>,
}

impl StageResult {
    /// A stage that did not run, and why.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self {
            status: Status::Skipped,
            outputs: Arc::default(),
            summary: None,
            error: None,
            hint: None,
            reason: Some(reason.into()),
            attempts: 0,
            duration: Duration::ZERO,
            key: None,
            outputs_digest: None,
            tests: None,
            phases: Vec::new(),
        }
    }

    /// A stage that failed before or while running.
    pub fn failed(error: impl Into<StageError>, attempts: u32, duration: Duration) -> Self {
        let error = error.into();
        Self {
            status: Status::Failed,
            error: Some(error.message),
            hint: error.hint,
            tests: error.tests,
            phases: Vec::new(),
            attempts,
            duration,
            ..Self::skipped("")
        }
        .without_reason()
    }

    fn without_reason(mut self) -> Self {
        self.reason = None;
        self
    }
}

/// Why a stage failed, and apart from it what to do about it: kept apart
/// so every reporter can show the hint its own way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageError {
    /// What happened.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// What its JUnit reports counted, when it wrote some before failing.
    pub tests: Option<TestCounts>,
}

impl StageError {
    /// A failure with a hint.
    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
            tests: None,
        }
    }
}

impl From<String> for StageError {
    fn from(message: String) -> Self {
        Self {
            message,
            hint: None,
            tests: None,
        }
    }
}

impl From<&str> for StageError {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

/// What a stage gets from the stages it needs that succeeded in this run.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    /// Outputs by the needed stage's expanded name.
    pub outputs: BTreeMap<String, Arc<BTreeMap<String, String>>>,
    /// The digest of each needed stage's outputs tree, for the stage key.
    pub digests: BTreeMap<String, Digest>,
    /// How each needed stage (by table name, a matrix's entries taken
    /// together) ended: what `${{ stages.NAME.result }}` reads.
    pub results: BTreeMap<String, String>,
}

/// Runs one stage; the scheduler calls it once all the stage's needs ended.
pub trait Executor: Send + Sync + 'static {
    /// Runs stage `index` of the pipeline (all of its attempts).
    fn execute(self: Arc<Self>, index: usize, upstream: Upstream) -> impl Future<Output = StageResult> + Send;

    /// The stage's result when it can be had at once, without running or
    /// restoring anything (outputs already in place for its key). The
    /// scheduler asks first, for every ready stage and many at a time on all
    /// cores, and starts only the stages this declines: a run where most
    /// stages are cached then costs no task, thread hand-off or job slot per
    /// stage. It must not wait on anything slower than a few `stat`s.
    fn reuse(&self, _index: usize, _upstream: &Upstream) -> Option<StageResult> {
        None
    }
}

/// How to run the graph.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Most stages running at once.
    pub jobs: usize,
    /// Stop starting stages after the first failure (make's behaviour). By
    /// default independent stages go on, as GitHub Actions' jobs do, and a
    /// stage whose `if` reads a failed stage's result still runs.
    pub fail_fast: bool,
}

/// Values `if` conditions read besides stage results.
#[derive(Clone, Debug, Default)]
pub struct ConditionContext {
    /// The checked-out git branch, if any.
    pub branch: Option<String>,
    /// What `monitor.*` reads, in a stage `cairn monitor` runs for a change.
    pub monitor: BTreeMap<String, String>,
}

/// The results of a run, by stage index; `None` for stages not selected.
#[derive(Debug)]
pub struct RunResults {
    /// One entry per pipeline stage.
    pub stages: Vec<Option<StageResult>>,
    /// Wall time of the whole run.
    pub duration: Duration,
    /// Whether the run was interrupted before it finished.
    pub interrupted: bool,
    /// The run as kept in the history, once it has ended.
    pub record: Option<Arc<cairn_report::record::RunRecord>>,
}

impl RunResults {
    /// Whether every selected stage succeeded or was skipped by its condition.
    pub fn succeeded(&self) -> bool {
        !self
            .stages
            .iter()
            .flatten()
            .any(|result| result.status == Status::Failed)
    }

    /// The `pipeline_finished` event for these results.
    pub fn finished_event(&self) -> Event {
        let interrupted = self.interrupted;
        let count = |status| {
            self.stages
                .iter()
                .flatten()
                .filter(|result| result.status == status)
                .count()
        };
        let failed = count(Status::Failed);
        Event::PipelineFinished {
            status: if interrupted {
                "interrupted"
            } else if failed > 0 {
                "failed"
            } else {
                "succeeded"
            },
            duration_ms: self.duration.as_millis() as u64,
            succeeded: count(Status::Succeeded),
            cached: count(Status::Cached),
            failed,
            skipped: count(Status::Skipped),
        }
    }
}

/// The stages to run for a request: `targets` (expanded names, or base names
/// meaning every matrix entry) and everything they need; all when empty.
pub fn select(pipeline: &Pipeline, graph: &Graph, targets: &[String]) -> Result<Vec<bool>, String> {
    if targets.is_empty() {
        return Ok(vec![true; pipeline.stages.len()]);
    }
    let mut selected = vec![false; pipeline.stages.len()];
    let mut pending = Vec::new();
    for target in targets {
        let matches: Vec<usize> = pipeline
            .stages
            .iter()
            .enumerate()
            .filter(|(_, stage)| stage.name == *target || stage.base_name == *target)
            .map(|(index, _)| index)
            .collect();
        if matches.is_empty() {
            let names = pipeline.stages.iter().map(|stage| stage.base_name.as_str());
            let hint = cairn_pipeline::did_you_mean(target, names)
                .map(|close| format!("; did you mean `{close}`?"))
                .unwrap_or_default();
            return Err(format!("the pipeline has no stage `{target}`{hint}"));
        }
        pending.extend(matches);
    }
    while let Some(index) = pending.pop() {
        if !std::mem::replace(&mut selected[index], true) {
            pending.extend(graph.needs[index].iter().copied());
        }
    }
    Ok(selected)
}

/// Runs the selected stages of `pipeline`. When `interrupt` resolves, running
/// stages are stopped (their scratch space removed, nothing published) and
/// the rest are not started.
#[allow(clippy::too_many_arguments)]
pub async fn run<E: Executor>(
    pipeline: &Pipeline,
    graph: &Graph,
    selected: &[bool],
    executor: Arc<E>,
    reporter: &dyn Reporter,
    options: Options,
    context: &ConditionContext,
    interrupt: impl Future<Output = ()>,
) -> RunResults {
    let mut interrupt = std::pin::pin!(interrupt);
    let started = Instant::now();
    let mut books = Books::new(pipeline, graph, selected, reporter);
    let mut running: JoinSet<(usize, StageResult)> = JoinSet::new();
    let mut startable: VecDeque<(usize, Upstream)> = VecDeque::new();
    let mut stopped = false;
    let jobs = options.jobs.max(1);

    loop {
        settle(
            &mut books,
            &mut startable,
            executor.as_ref(),
            context,
            &mut stopped,
            options,
        );
        while running.len() < jobs
            && let Some((index, upstream)) = startable.pop_front()
        {
            if stopped {
                books.finish(index, StageResult::skipped(NOT_RUN));
                continue;
            }
            let executor = Arc::clone(&executor);
            books.in_flight[index] = true;
            running.spawn(async move { (index, executor.execute(index, upstream).await) });
        }
        if !books.ready.is_empty() {
            continue;
        }
        reporter.flush();
        let joined = tokio::select! {
            joined = running.join_next() => joined,
            () = &mut interrupt => {
                // Aborting drops each stage's future at its next yield point,
                // which removes its scratch space; waiting for that to finish
                // means nothing half-written outlives the run.
                running.shutdown().await;
                books.interrupt();
                return books.into_results(started.elapsed(), true);
            }
        };
        let Some(joined) = joined else {
            if books.ready.is_empty() && startable.is_empty() {
                break;
            }
            continue;
        };
        let (index, result) = match joined {
            Ok(done) => done,
            // A panicking executor is a cairn bug: surface it as one.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        if result.status == Status::Failed && options.fail_fast {
            stopped = true;
        }
        books.finish(index, result);
    }
    books.into_results(started.elapsed(), false)
}

/// Why a stage ready after a failure (with `--fail-fast`) does not run.
const NOT_RUN: &str = "not run: an earlier stage failed and --fail-fast stops the run at the first failure";

/// Decides every ready stage, and what that readies in turn: stages whose
/// condition or needs skip them end here, and so do stages the executor can
/// reuse at once (asked in parallel); the rest queue in `startable`.
fn settle<E: Executor>(
    books: &mut Books<'_>,
    startable: &mut VecDeque<(usize, Upstream)>,
    executor: &E,
    context: &ConditionContext,
    stopped: &mut bool,
    options: Options,
) {
    while !books.ready.is_empty() {
        let mut candidates = Vec::with_capacity(books.ready.len());
        while let Some(index) = books.ready.pop_front() {
            let decision = if *stopped {
                Err(NOT_RUN.to_owned())
            } else {
                decide(
                    &books.pipeline.stages[index],
                    &books.graph.needs[index],
                    books.pipeline,
                    &books.results,
                    context,
                )
            };
            match decision {
                Ok(upstream) => candidates.push((index, upstream)),
                Err(reason) => books.finish(index, StageResult::skipped(reason)),
            }
        }
        let reused: Vec<Option<StageResult>> = if candidates.len() > 1 {
            cairn_core::threads::install(|| {
                candidates
                    .par_iter()
                    .map(|(index, upstream)| executor.reuse(*index, upstream))
                    .collect()
            })
        } else {
            candidates
                .iter()
                .map(|(index, upstream)| executor.reuse(*index, upstream))
                .collect()
        };
        for ((index, upstream), reused) in candidates.into_iter().zip(reused) {
            match reused {
                Some(result) => {
                    if result.status == Status::Failed && options.fail_fast {
                        *stopped = true;
                    }
                    books.finish(index, result);
                }
                None => startable.push_back((index, upstream)),
            }
        }
    }
}

/// The bookkeeping of one run: how each stage ended, how many of its needs
/// each stage still waits on, and which stages are ready to start.
struct Books<'a> {
    pipeline: &'a Pipeline,
    graph: &'a Graph,
    selected: &'a [bool],
    reporter: &'a dyn Reporter,
    results: Vec<Option<StageResult>>,
    waiting: Vec<usize>,
    ready: VecDeque<usize>,
    in_flight: Vec<bool>,
}

impl<'a> Books<'a> {
    fn new(pipeline: &'a Pipeline, graph: &'a Graph, selected: &'a [bool], reporter: &'a dyn Reporter) -> Self {
        let count = pipeline.stages.len();
        let waiting: Vec<usize> = (0..count)
            .map(|index| graph.needs[index].iter().filter(|&&need| selected[need]).count())
            .collect();
        let ready = graph
            .order
            .iter()
            .copied()
            .filter(|&index| selected[index] && waiting[index] == 0)
            .collect();
        Self {
            pipeline,
            graph,
            selected,
            reporter,
            results: vec![None; count],
            waiting,
            ready,
            in_flight: vec![false; count],
        }
    }

    /// Records a stage's result, reports it, and readies what waited on it.
    fn finish(&mut self, index: usize, result: StageResult) {
        self.in_flight[index] = false;
        self.reporter.event(&Event::StageFinished {
            stage: self.pipeline.stages[index].name.clone(),
            status: result.status,
            duration_ms: result.duration.as_millis() as u64,
            attempts: result.attempts,
            error: result.error.clone(),
            hint: result.hint.clone(),
            reason: result.reason.clone(),
            summary: result.summary.clone(),
            outputs: (*result.outputs).clone(),
            key: result.key,
            outputs_digest: result.outputs_digest,
            tests: result.tests,
            phases: result.phases.clone(),
        });
        self.results[index] = Some(result);
        for &dependent in &self.graph.dependents[index] {
            if self.selected[dependent] {
                self.waiting[dependent] -= 1;
                if self.waiting[dependent] == 0 {
                    self.ready.push_back(dependent);
                }
            }
        }
    }

    /// Ends every stage that has not ended: running ones failed, the rest skipped.
    fn interrupt(&mut self) {
        for index in 0..self.results.len() {
            if self.selected[index] && self.results[index].is_none() {
                let result = if self.in_flight[index] {
                    StageResult::failed("interrupted", 1, Duration::ZERO)
                } else {
                    StageResult::skipped("interrupted")
                };
                self.finish(index, result);
            }
        }
    }

    fn into_results(self, duration: Duration, interrupted: bool) -> RunResults {
        RunResults {
            stages: self.results,
            duration,
            interrupted,
            record: None,
        }
    }
}

/// Whether a stage whose needs all ended runs, and with what; `Err` is the
/// reason it is skipped.
fn decide(
    stage: &Stage,
    needs: &[usize],
    pipeline: &Pipeline,
    results: &[Option<StageResult>],
    context: &ConditionContext,
) -> Result<Upstream, String> {
    let mut upstream = Upstream::default();
    let mut unsuccessful = None;
    for &need in needs {
        let name = &pipeline.stages[need].name;
        match &results[need] {
            Some(result) if result.status.is_success() => {
                upstream.outputs.insert(name.clone(), Arc::clone(&result.outputs));
                if let Some(digest) = result.outputs_digest {
                    upstream.digests.insert(name.clone(), digest);
                }
            }
            Some(result) => {
                unsuccessful.get_or_insert_with(|| format!("needs `{name}`, which {}", past_tense(result.status)));
            }
            // Not selected in this run: its last published outputs stand in.
            None => {}
        }
    }
    let mut statuses: BTreeMap<&str, Vec<Status>> = BTreeMap::new();
    for &need in needs {
        if let Some(result) = &results[need] {
            statuses
                .entry(pipeline.stages[need].base_name.as_str())
                .or_default()
                .push(result.status);
        }
    }
    upstream.results = statuses
        .into_iter()
        .map(|(base, statuses)| (base.to_owned(), aggregate(&statuses).as_str().to_owned()))
        .collect();
    let Some(condition) = &stage.condition else {
        return match unsuccessful {
            Some(reason) => Err(reason),
            None => Ok(upstream),
        };
    };
    // A condition that reads a needed stage's result decides even when that
    // stage failed (`if = "stages.test.result == 'failed'"`); otherwise a
    // failed need skips the stage before its condition is looked at.
    let reads_results = condition
        .references()
        .iter()
        .any(|reference| matches!(reference, Reference::StageResult(_)));
    if let Some(reason) = unsuccessful
        && !reads_results
    {
        return Err(reason);
    }
    let resolve = |reference: &Reference| -> Option<String> {
        match reference {
            Reference::Env(name) => std::env::var(name).ok(),
            Reference::Branch => context.branch.clone(),
            // Rejected outside `http_auth` when the pipeline is read.
            Reference::Secret(_) => None,
            // Substituted when the pipeline is read.
            Reference::Environment(_) => None,
            Reference::Monitor(field) => context.monitor.get(field).cloned(),
            Reference::Matrix(key) => stage
                .matrix
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, value)| value.clone()),
            Reference::StageOutput { stage: base, key } => needs
                .iter()
                .find(|&&need| pipeline.stages[need].base_name == *base)
                .and_then(|&need| results[need].as_ref())
                .and_then(|result| result.outputs.get(key).cloned()),
            Reference::StageResult(base) => {
                let statuses: Vec<Status> = needs
                    .iter()
                    .filter(|&&need| pipeline.stages[need].base_name == *base)
                    .filter_map(|&need| results[need].as_ref().map(|result| result.status))
                    .collect();
                Some(aggregate(&statuses).as_str().to_owned())
            }
        }
    };
    if condition.evaluate(&resolve).truthy() {
        Ok(upstream)
    } else {
        Err("its `if` condition is false".to_owned())
    }
}

/// The result of a matrix stage as a whole: failed if any entry failed,
/// succeeded if any ran, skipped if none did.
fn aggregate(statuses: &[Status]) -> Status {
    if statuses.contains(&Status::Failed) {
        Status::Failed
    } else if statuses.contains(&Status::Succeeded) {
        Status::Succeeded
    } else if statuses.contains(&Status::Cached) {
        Status::Cached
    } else {
        Status::Skipped
    }
}

fn past_tense(status: Status) -> &'static str {
    match status {
        Status::Failed => "failed",
        Status::Skipped => "was skipped",
        Status::Succeeded | Status::Cached => "succeeded",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Reuses the stages named in `reusable` (outputs `from = NAME`) and
    /// runs the rest, failing those named in `failing`; remembers what it
    /// was asked to run and with which upstream outputs.
    struct Recorder {
        pipeline: Arc<Pipeline>,
        reusable: Vec<&'static str>,
        failing: Vec<&'static str>,
        executed: Mutex<Vec<(String, Vec<String>)>>,
    }

    impl Recorder {
        fn result(&self, index: usize, status: Status) -> StageResult {
            let name = self.pipeline.stages[index].name.clone();
            StageResult {
                status,
                outputs: Arc::new(BTreeMap::from([("from".to_owned(), name)])),
                attempts: u32::from(status != Status::Cached),
                ..StageResult::skipped("")
            }
            .without_reason()
        }
    }

    impl Executor for Recorder {
        async fn execute(self: Arc<Self>, index: usize, upstream: Upstream) -> StageResult {
            let name = &self.pipeline.stages[index].name;
            let seen = upstream
                .outputs
                .values()
                .map(|outputs| outputs["from"].clone())
                .collect();
            self.executed.lock().expect("lock").push((name.clone(), seen));
            let status = if self.failing.contains(&name.as_str()) {
                Status::Failed
            } else {
                Status::Succeeded
            };
            self.result(index, status)
        }

        fn reuse(&self, index: usize, _upstream: &Upstream) -> Option<StageResult> {
            let name = self.pipeline.stages[index].name.as_str();
            self.reusable
                .contains(&name)
                .then(|| self.result(index, Status::Cached))
        }
    }

    struct Discard;

    impl Reporter for Discard {
        fn event(&self, _event: &Event) {}
    }

    fn run_with(
        toml: &str,
        reusable: Vec<&'static str>,
        failing: Vec<&'static str>,
        fail_fast: bool,
    ) -> (Vec<Status>, Recorder) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cairn.toml");
        std::fs::write(&file, toml).expect("write");
        let pipeline = Arc::new(cairn_pipeline::load(&file).expect("valid"));
        let graph = Graph::new(&pipeline.stages).expect("acyclic");
        let selected = select(&pipeline, &graph, &[]).expect("all");
        let recorder = Arc::new(Recorder {
            pipeline: Arc::clone(&pipeline),
            reusable,
            failing,
            executed: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let results = runtime.block_on(run(
            &pipeline,
            &graph,
            &selected,
            Arc::clone(&recorder),
            &Discard,
            Options { jobs: 1, fail_fast },
            &ConditionContext::default(),
            std::future::pending(),
        ));
        let statuses = results
            .stages
            .into_iter()
            .map(|result| result.expect("selected").status)
            .collect();
        let recorder = Arc::into_inner(recorder).expect("the run is over");
        (statuses, recorder)
    }

    const GRAPH: &str = r#"
        [stages.a]
        uses = "std:wc"
        [stages.b]
        uses = "std:wc"
        needs = ["a"]
        [stages.c]
        uses = "std:wc"
        [stages.d]
        uses = "std:wc"
        needs = ["b", "c"]
    "#;

    #[test]
    fn reused_stages_never_start_and_hand_their_outputs_on() {
        let (statuses, recorder) = run_with(GRAPH, vec!["a", "c"], vec![], false);
        assert_eq!(
            statuses,
            [Status::Cached, Status::Succeeded, Status::Cached, Status::Succeeded]
        );
        let mut executed = recorder.executed.into_inner().expect("lock");
        executed.sort();
        assert_eq!(
            executed,
            [
                ("b".to_owned(), vec!["a".to_owned()]),
                ("d".to_owned(), vec!["b".to_owned(), "c".to_owned()])
            ]
        );
    }

    /// `first` fails; `gate` and `second` do not depend on it.
    const FIRST_FAILS: &str = r#"
        [stages.first]
        uses = "std:wc"
        [stages.gate]
        uses = "std:wc"
        [stages.second]
        uses = "std:wc"
        needs = ["gate"]
    "#;

    #[test]
    fn with_fail_fast_nothing_more_starts_or_is_reused_after_a_failure() {
        let toml = FIRST_FAILS;
        // One job: `first` runs and fails while `gate` waits for a slot, so
        // `gate` never starts, and `second`, ready once `gate` ended, is not
        // reused either.
        let (statuses, recorder) = run_with(toml, vec!["second"], vec!["first"], true);
        assert_eq!(statuses, [Status::Failed, Status::Skipped, Status::Skipped]);
        let executed = recorder.executed.into_inner().expect("lock");
        assert_eq!(executed, [("first".to_owned(), Vec::<String>::new())]);
    }

    #[test]
    fn by_default_independent_stages_go_on_and_failure_conditions_run() {
        let toml = FIRST_FAILS.to_owned()
            + r#"
            [stages.after-first]
            uses = "std:wc"
            needs = ["first"]
            [stages.on-failure]
            uses = "std:wc"
            needs = ["first"]
            if = "stages.first.result == 'failed'"
        "#;
        let (statuses, recorder) = run_with(&toml, vec!["second"], vec!["first"], false);
        assert_eq!(
            statuses,
            [
                Status::Failed,
                Status::Succeeded,
                Status::Cached,
                Status::Skipped,
                Status::Succeeded
            ]
        );
        let mut executed: Vec<String> = recorder
            .executed
            .into_inner()
            .expect("lock")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        executed.sort();
        assert_eq!(executed, ["first", "gate", "on-failure"]);
    }
}
