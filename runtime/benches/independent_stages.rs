//! 500 independent trivial stages, 2 at a time: `cairn run -j 2` against
//! `make -r -j2` running the equivalent native command (`tr a-z A-Z`) for
//! each, in the same run on the same files. A sandboxed stage should cost
//! less than a process spawn.
//!
//! `cargo bench -p cairn --bench independent_stages`; figures in BENCHMARKS.md.

mod support;

use std::fmt::Write as _;
use std::process::Command;

use support::{cairn_run, median, paired_ratio, run};

const STAGES: usize = 500;
const RUNS: usize = 11;

fn main() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let root = workspace.path();
    std::fs::create_dir(root.join("in")).expect("mkdir");
    let mut makefile = String::from("all:");
    let mut pipeline = String::from("[pipeline]\nname = \"independent\"\n");
    for index in 0..STAGES {
        std::fs::write(
            root.join(format!("in/{index}.txt")),
            format!("stage number {index} says hello\n"),
        )
        .expect("write");
        let _ = write!(makefile, " out/{index}.txt");
        let _ = write!(
            pipeline,
            "[stages.s{index}]\nuses = {:?}\ninputs = [\"in/{index}.txt\"]\nargs = [\"upper\", \"/src/in/{index}.txt\", \"/out/{index}.txt\"]\ncache = false\n",
            cairn_test_programs::PROBE_COMPONENT
        );
    }
    makefile.push_str("\nout/%.txt: in/%.txt\n\t@mkdir -p out\n\ttr a-z A-Z < $< > $@\n");
    std::fs::write(root.join("Makefile"), makefile).expect("write");
    std::fs::write(root.join("cairn.toml"), pipeline).expect("write");

    let cairn = || cairn_run(root, cache.path());
    let make = || {
        let mut command = Command::new("make");
        command.args(["-r", "-j2", "-B", "-s"]).current_dir(root);
        command
    };
    // Warm up both: cairn compiles the component once per machine.
    run(&mut cairn());
    run(&mut make());
    assert_eq!(
        std::fs::read_to_string(root.join("cairn-out/s7/7.txt")).expect("cairn's output"),
        std::fs::read_to_string(root.join("out/7.txt")).expect("make's output"),
    );

    // The same runs writing a Chrome trace: what `--trace` costs.
    let trace = cache.path().join("trace.json");
    let traced = || {
        let mut command = cairn_run(root, cache.path());
        command.arg("--trace").arg(&trace);
        command
    };
    let mut cairn_times = Vec::new();
    let mut make_times = Vec::new();
    let mut traced_times = Vec::new();
    for _ in 0..RUNS {
        cairn_times.push(run(&mut cairn()));
        make_times.push(run(&mut make()));
        traced_times.push(run(&mut traced()));
    }
    let (cairn_median, make_median) = (median(&cairn_times), median(&make_times));
    println!("{STAGES} independent trivial stages, -j 2, median of {RUNS} runs");
    println!(
        "  make -r -j2 (tr a-z A-Z)        {:>8.1} ms",
        make_median.as_secs_f64() * 1e3
    );
    println!(
        "  cairn run -j 2 (wasm sandbox)   {:>8.1} ms",
        cairn_median.as_secs_f64() * 1e3
    );
    println!(
        "  cairn / make                    {:>8.2}x",
        cairn_median.as_secs_f64() / make_median.as_secs_f64()
    );
    println!(
        "  cairn run -j 2 --trace          {:>8.1} ms; with / without, paired {:.3}x",
        median(&traced_times).as_secs_f64() * 1e3,
        paired_ratio(&traced_times, &cairn_times)
    );
}
