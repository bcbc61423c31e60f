//! The scheduler's own cost, with stages that do nothing: parsing and
//! checking a 5,000-stage `cairn.toml`, then planning and dispatching it as a
//! chain (each stage needs the previous one) and as a fan-out (one root,
//! 4,999 stages needing it).
//!
//! `cargo bench -p cairn --bench scheduler`; figures in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::pipeline::{self, Graph};
use cairn::report::{Event, Reporter, Status};
use cairn::scheduler::{self, ConditionContext, Executor, Options, StageResult, Upstream};

const STAGES: usize = 5_000;
const RUNS: usize = 7;

/// Succeeds at once.
struct Nothing;

impl Executor for Nothing {
    async fn execute(self: Arc<Self>, _index: usize, _upstream: Upstream) -> StageResult {
        StageResult {
            status: Status::Succeeded,
            outputs: Arc::default(),
            summary: None,
            error: None,
            hint: None,
            reason: None,
            attempts: 1,
            duration: Duration::ZERO,
            key: None,
            outputs_digest: None,
            tests: None,
            phases: Vec::new(),
        }
    }
}

/// Drops every event, as a reporter that costs nothing.
struct Discard;

impl Reporter for Discard {
    fn event(&self, _event: &Event) {}
}

fn main() {
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio starts");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("scheduler cost per stage, {STAGES} stages, median of {RUNS} runs");
    for (shape, needs) in [("chain", chain as fn(usize) -> Option<usize>), ("fan-out", fan_out)] {
        let mut text = String::new();
        for index in 0..STAGES {
            text.push_str(&format!("[stages.s{index}]\nuses = \"std:wc\"\n"));
            if let Some(need) = needs(index) {
                text.push_str(&format!("needs = [\"s{need}\"]\n"));
            }
        }
        let file = dir.path().join(format!("{shape}.toml"));
        std::fs::write(&file, text).expect("write");

        let mut parse = Vec::new();
        let mut dispatch = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let pipeline = pipeline::load(&file).expect("valid");
            parse.push(started.elapsed());

            let started = Instant::now();
            let pipeline = Arc::new(pipeline);
            let graph = Arc::new(Graph::new(&pipeline.stages).expect("acyclic"));
            let selected = scheduler::select(&pipeline, &graph, &[]).expect("all");
            // On a worker thread, as `cairn run` does, so that dispatching a
            // stage does not cross threads.
            let results = executor
                .block_on(executor.spawn(async move {
                    scheduler::run(
                        &pipeline,
                        &graph,
                        &selected,
                        Arc::new(Nothing),
                        &Discard,
                        Options {
                            jobs: 2,
                            fail_fast: false,
                        },
                        &ConditionContext::default(),
                        std::future::pending(),
                    )
                    .await
                }))
                .expect("the scheduler task");
            dispatch.push(started.elapsed());
            assert!(results.succeeded());
        }
        println!(
            "  {shape:<8} parse + check {:>6.1} µs/stage   plan + dispatch {:>6.1} µs/stage",
            per_stage(&mut parse),
            per_stage(&mut dispatch)
        );
    }
}

fn chain(index: usize) -> Option<usize> {
    index.checked_sub(1)
}

fn fan_out(index: usize) -> Option<usize> {
    (index > 0).then_some(0)
}

fn per_stage(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6 / STAGES as f64
}
