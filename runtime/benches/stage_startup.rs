//! What it costs to start a sandboxed stage, next to what it costs to start
//! a native process, measured in the same run on the same machine.
//!
//! `cargo bench -p cairn --bench stage_startup` prints medians and ratios;
//! BENCHMARKS.md records the figures. Timings on shared machines are noisy,
//! so every figure is a median of many runs and comparisons are ratios.

mod support;

use std::path::Path;
use std::sync::Arc;

use cairn::observer::Silent;
use cairn::{CacheDir, LoadedComponent, Runtime, Sandbox};
use cairn_guest_build::GuestBuild;
use support::{executor, load_costs, measure_async, native_baseline, report, report_load_costs};

const RUNS: usize = 300;

fn main() {
    let executor = executor();
    let cache_root = tempfile::tempdir().expect("tempdir");
    let cache = CacheDir::open(cache_root.path()).expect("cache");

    println!("stage startup, {RUNS} runs each (median / p90)");
    let native = native_baseline(RUNS);

    executor.block_on(async {
        let runtime = Runtime::new(&cache).expect("runtime");
        let probe = load(&runtime, cairn_test_programs::PROBE_COMPONENT).await;
        let stage = load(&runtime, cairn_test_programs::STAGE_PROBE).await;

        let command_sandbox = {
            let mut sandbox = Sandbox::new("probe", [0; 32]);
            sandbox.invocation.args = vec!["args".into()];
            sandbox
        };
        let command = measure_async(RUNS, || run(&runtime, &probe, &command_sandbox)).await;
        report("instantiate + run a trivial command component", &command, Some(&native));

        let stage_sandbox = {
            let mut sandbox = Sandbox::new("noop", [0; 32]);
            sandbox.invocation.config.insert("mode".into(), "noop".into());
            sandbox
        };
        let stage_run = measure_async(RUNS, || run(&runtime, &stage, &stage_sandbox)).await;
        report("instantiate + run a trivial stage component", &stage_run, Some(&native));
    });

    // A component of several megabytes: std:validate built without optimizations.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let large = GuestBuild::new(workspace.join("Cargo.toml"), workspace.join("target/guests"))
        .package("stage-validate")
        .debug()
        .run()
        .expect("the large component builds");
    let bytes: Arc<[u8]> = std::fs::read(&large[0].path).expect("built").into();
    println!(
        "\nloading a {:.1} MB component (std:validate, debug build)",
        bytes.len() as f64 / 1e6
    );
    executor.block_on(async {
        report_load_costs(&load_costs(&bytes, 3).await);
    });
}

async fn load(runtime: &Runtime, path: &str) -> Arc<LoadedComponent> {
    let bytes = std::fs::read(path).expect("built by cairn-test-programs");
    runtime.load(bytes.into()).await.expect("loads")
}

async fn run(runtime: &Runtime, component: &LoadedComponent, sandbox: &Sandbox) {
    let run = runtime.run(component, sandbox, Arc::new(Silent)).await.expect("runs");
    assert!(run.result.is_ok(), "{:?}", run.result);
}
