//! 500 independent trivial stages, 2 at a time: `cairn run -j 2` against
//! `make -r -j2` running the equivalent native command (`tr a-z A-Z`) for
//! each, in the same run on the same files. A sandboxed stage should cost
//! less than a process spawn, on a fresh file system and on one that has
//! seen churn (100,000 files created and deleted in it first).
//!
//! `cargo bench -p cairn --bench independent_stages`; figures in BENCHMARKS.md.
//! With `CAIRN_BENCH_DIR=/mnt/fresh` it runs there: BENCHMARKS.md shows how
//! to make a fresh ext4 file system for it.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use support::{cairn_run, median, paired_ratio, run};

const STAGES: usize = 500;
const RUNS: usize = 11;

fn main() {
    // `CAIRN_BENCH_DIR`: the file system to run on (a freshly made one, to
    // see the first figure at its best); the temporary folder otherwise.
    let base = std::env::var_os("CAIRN_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let workspace = tempfile::tempdir_in(&base).expect("tempdir");
    let cache = tempfile::tempdir_in(&base).expect("tempdir");
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

    // Warm up both: cairn compiles the component once per machine.
    run(&mut cairn_run(root, cache.path()));
    run(&mut make(root));
    assert_eq!(
        std::fs::read_to_string(root.join("cairn-out/s7/7.txt")).expect("cairn's output"),
        std::fs::read_to_string(root.join("out/7.txt")).expect("make's output"),
    );

    measure(root, cache.path(), "before churn", true);
    // ext4 keeps what was recently deleted in its inode allocator's way: a
    // file system that has seen churn makes every `mkdir` slower.
    churn(root.parent().expect("the workspace has a parent"), 100_000);
    measure(
        root,
        cache.path(),
        "after 100,000 files were created and deleted",
        false,
    );
}

/// Times `cairn run -j 2` and `make -r -j2` alternately, and also with
/// `--trace` when `traced`, and prints medians and paired ratios.
fn measure(root: &Path, cache: &Path, when: &str, traced: bool) {
    let trace = cache.join("trace.json");
    let mut cairn_times = Vec::new();
    let mut make_times = Vec::new();
    let mut traced_times = Vec::new();
    for _ in 0..RUNS {
        cairn_times.push(run(&mut cairn_run(root, cache)));
        make_times.push(run(&mut make(root)));
        if traced {
            let mut command = cairn_run(root, cache);
            command.arg("--trace").arg(&trace);
            traced_times.push(run(&mut command));
        }
    }
    let (cairn_median, make_median) = (median(&cairn_times), median(&make_times));
    println!("\n{STAGES} independent trivial stages, -j 2, {when}, median of {RUNS} runs");
    println!(
        "  make -r -j2 (tr a-z A-Z)        {:>8.1} ms",
        make_median.as_secs_f64() * 1e3
    );
    println!(
        "  cairn run -j 2 (wasm sandbox)   {:>8.1} ms",
        cairn_median.as_secs_f64() * 1e3
    );
    println!(
        "  cairn / make                    {:>8.2}x, paired {:.2}x",
        cairn_median.as_secs_f64() / make_median.as_secs_f64(),
        paired_ratio(&cairn_times, &make_times)
    );
    if traced {
        println!(
            "  cairn run -j 2 --trace          {:>8.1} ms; with / without, paired {:.3}x",
            median(&traced_times).as_secs_f64() * 1e3,
            paired_ratio(&traced_times, &cairn_times)
        );
    }
}

fn make(root: &Path) -> Command {
    let mut command = Command::new("make");
    command.args(["-r", "-j2", "-B", "-s"]).current_dir(root);
    command
}

/// Creates `files` empty files in a new folder under `parent`, then deletes them.
fn churn(parent: &Path, files: usize) {
    let folder = tempfile::tempdir_in(parent).expect("tempdir");
    for index in 0..files {
        let sub = folder.path().join(format!("{}", index / 1000));
        if index % 1000 == 0 {
            std::fs::create_dir(&sub).expect("mkdir");
        }
        std::fs::write(sub.join(format!("{index}")), b"").expect("write");
    }
    drop(folder);
}
