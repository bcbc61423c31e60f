//! The cache's two costs that every run pays:
//!
//! - a no-op run: 1,000 stages over 11,000 input files, everything cached,
//!   against `make -r` finding an equivalent Makefile up to date;
//! - first-run hashing of a 1 GiB tree, against `b3sum` on the same files
//!   (`cargo install b3sum`; the comparison is skipped without it).
//!
//! `cargo bench -p cairn --bench cache`; figures in BENCHMARKS.md.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use support::{baseline_binary, cairn_run, median, paired_ratio, run};

use cairn::CacheDir;
use cairn::state::WorkspaceState;
use cairn::workspace::Workspace;

const STAGES: usize = 1_000;
const FILES_PER_STAGE: usize = 11;
/// The no-op runs are short and the machines noisy: many alternating runs.
const NO_OP_RUNS: usize = 41;

fn main() {
    no_op_run();
    hashing();
}

fn no_op_run() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let root = workspace.path();
    support::write_no_op_workspace(root, STAGES, FILES_PER_STAGE);
    // Files younger than two seconds are hashed on every run (they could
    // still change within the same timestamp): let them age first.
    std::thread::sleep(Duration::from_millis(2_500));

    let cairn = || cairn_run(root, cache.path());
    let make = || {
        let mut command = Command::new("make");
        command.args(["-r", "-s"]).current_dir(root);
        command
    };
    run(&mut cairn());
    run(&mut cairn());
    run(Command::new("make").args(["-r", "-s", "-j2"]).current_dir(root));
    // Those runs changed the top folder (`cairn-out/`, `out/`): once it is
    // old enough to trust, one more run remembers its listing.
    std::thread::sleep(Duration::from_millis(2_500));
    run(&mut cairn());
    // The same runs with the run history off: what recording costs; and,
    // when given, an earlier binary: what a change cost.
    let unrecorded = || {
        let mut command = cairn_run(root, cache.path());
        command.env("CAIRN_KEEP_RUNS", "0");
        command
    };
    let baseline = baseline_binary();
    // The earlier binary gets a copy of the settled cache: sharing one
    // would make each rewrite what the other's formats (a checked
    // pipeline's, say) no longer read, and both pay for it on every run.
    // The copy remembers the same `cairn-out/`, so neither republishes it.
    let baseline_cache = tempfile::tempdir().expect("a cache for the baseline");
    if baseline.is_some() {
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", cache.path().display()))
            .arg(baseline_cache.path())
            .status()
            .expect("cp runs");
        assert!(copied.success(), "the cache is copied for the baseline");
    }
    let earlier = |binary: &Path| {
        let mut command = Command::new(binary);
        command
            .args(["run", "-j", "2"])
            .current_dir(root)
            .env("CAIRN_CACHE", baseline_cache.path());
        command
    };
    if let Some(binary) = &baseline {
        run(&mut earlier(binary));
        run(&mut earlier(binary));
        run(&mut cairn());
    }
    let mut cairn_times = Vec::new();
    let mut make_times = Vec::new();
    let mut unrecorded_times = Vec::new();
    let mut baseline_times = Vec::new();
    for _ in 0..NO_OP_RUNS {
        cairn_times.push(run(&mut cairn()));
        make_times.push(run(&mut make()));
        unrecorded_times.push(run(&mut unrecorded()));
        if let Some(binary) = &baseline {
            baseline_times.push(run(&mut earlier(binary)));
        }
    }
    let (cairn_median, make_median) = (median(&cairn_times), median(&make_times));
    println!(
        "no-op run: {STAGES} stages over {} input files, everything up to date, median of {NO_OP_RUNS} runs",
        STAGES * FILES_PER_STAGE
    );
    println!(
        "  make -r                        {:>8.1} ms",
        make_median.as_secs_f64() * 1e3
    );
    println!(
        "  cairn run -j 2                 {:>8.1} ms",
        cairn_median.as_secs_f64() * 1e3
    );
    println!(
        "  cairn / make                   {:>8.2}x",
        cairn_median.as_secs_f64() / make_median.as_secs_f64()
    );
    println!(
        "  median of paired ratios        {:>8.2}x",
        paired_ratio(&cairn_times, &make_times)
    );
    println!(
        "  history off (CAIRN_KEEP_RUNS=0) {:>7.1} ms; history on / off, paired {:.3}x",
        median(&unrecorded_times).as_secs_f64() * 1e3,
        paired_ratio(&cairn_times, &unrecorded_times)
    );
    if let Some(binary) = &baseline {
        println!(
            "  baseline {} {:>7.1} ms; paired against make {:.2}x; this / baseline, paired {:.3}x",
            binary.display(),
            median(&baseline_times).as_secs_f64() * 1e3,
            paired_ratio(&baseline_times, &make_times),
            paired_ratio(&cairn_times, &baseline_times)
        );
    }
}

fn hashing() {
    const FILES: usize = 128;
    const FILE_SIZE: usize = 8 << 20;
    let tree = tempfile::tempdir().expect("tempdir");
    let paths = support::write_random_tree(tree.path(), FILES, FILE_SIZE);
    let gib = (FILES * FILE_SIZE) as f64 / f64::from(1u32 << 30);

    let b3sum = Command::new("b3sum")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    let mut cairn_times = Vec::new();
    let mut b3sum_times = Vec::new();
    for _ in 0..5 {
        cairn_times.push(hash_with_cairn(tree.path()));
        if b3sum {
            b3sum_times.push(run(Command::new("b3sum").arg("--no-names").args(&paths)));
        }
    }
    let cairn_median = median(&cairn_times);
    println!(
        "\nfirst-run hashing of a {gib:.0} GiB tree ({FILES} files of {} MiB), median of 5 runs",
        FILE_SIZE >> 20
    );
    println!(
        "  cairn (walk + hash, no state)  {:>8.1} ms  {:>5.2} GiB/s",
        cairn_median.as_secs_f64() * 1e3,
        gib / cairn_median.as_secs_f64()
    );
    if b3sum {
        let b3sum_median = median(&b3sum_times);
        println!(
            "  b3sum                          {:>8.1} ms  {:>5.2} GiB/s",
            b3sum_median.as_secs_f64() * 1e3,
            gib / b3sum_median.as_secs_f64()
        );
        println!(
            "  cairn throughput / b3sum's     {:>8.2}x",
            b3sum_median.as_secs_f64() / cairn_median.as_secs_f64()
        );
    } else {
        println!("  (b3sum is not installed: `cargo install b3sum` to compare)");
    }
}

/// Walks `root` and hashes every file with an empty state, as a first run does.
fn hash_with_cairn(root: &Path) -> Duration {
    let cache = tempfile::tempdir().expect("tempdir");
    let cache = CacheDir::open(cache.path()).expect("cache");
    let started = Instant::now();
    let workspace = Workspace::scan(root, &["**"]).expect("scan");
    let mut state = WorkspaceState::load(&cache, root);
    let wanted: Vec<usize> = (0..workspace.files().len()).collect();
    let digests = state.digests(&workspace, &wanted).expect("hashed");
    let elapsed = started.elapsed();
    assert!(digests.iter().all(Option::is_some));
    elapsed
}
