//! Timing helpers shared by the benchmarks: run a command, take a median.
#![allow(dead_code)] // each benchmark uses a different part

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::{CacheDir, Runtime};

/// The tokio runtime the in-process benchmarks run stages on.
pub fn executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio starts")
}

/// Spawns `/bin/true` `runs` times from this process and reports it: the
/// native baseline a stage's start is compared with.
pub fn native_baseline(runs: usize) -> Vec<Duration> {
    let native = measure(runs, || {
        let status = Command::new("/bin/true").status().expect("/bin/true runs");
        assert!(status.success());
    });
    report("spawn /bin/true (native process)", &native, None);
    native
}

/// Runs `command` to completion with its output discarded; panics if it fails.
pub fn run(command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the command starts");
    assert!(status.success(), "{command:?} failed");
    started.elapsed()
}

/// `cairn run -j 2` in `root` with the cache at `cache`, as the benchmarks
/// that compare whole runs with make time it.
pub fn cairn_run(root: &Path, cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(["run", "-j", "2"])
        .current_dir(root)
        .env("CAIRN_CACHE", cache);
    command
}

/// The median of `a[i] / b[i]`: each run against the one right after it,
/// which shares the machine's mood of that moment.
pub fn paired_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// `CAIRN_BENCH_BASELINE`: another `cairn` binary (an earlier commit's,
/// with the same cache formats) to time beside this one, in the same runs.
pub fn baseline_binary() -> Option<std::path::PathBuf> {
    std::env::var_os("CAIRN_BENCH_BASELINE")
        .filter(|path| !path.is_empty())
        .map(Into::into)
}

/// The sample at `fraction` of the sorted samples (0.5: the median).
pub fn percentile(samples: &[Duration], fraction: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// The median.
pub fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 0.5)
}

/// Times `step` `runs` times after one warm-up run.
pub fn measure(runs: usize, mut step: impl FnMut()) -> Vec<Duration> {
    step(); // warm up
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            step();
            started.elapsed()
        })
        .collect()
}

/// Times an async `step` `runs` times after one warm-up run.
pub async fn measure_async<F: Future<Output = ()>>(runs: usize, mut step: impl FnMut() -> F) -> Vec<Duration> {
    step().await; // warm up
    measure_async_n(runs, step).await
}

/// Times an async `step` `runs` times, with no warm-up (for first-time costs).
pub async fn measure_async_n<F: Future<Output = ()>>(runs: usize, mut step: impl FnMut() -> F) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        step().await;
        samples.push(started.elapsed());
    }
    samples
}

/// Prints the median and p90 of `samples`, and their ratio to `baseline`'s median.
pub fn report(what: &str, samples: &[Duration], baseline: Option<&[Duration]>) {
    let median = percentile(samples, 0.5);
    let p90 = percentile(samples, 0.9);
    let ratio = baseline
        .map(|baseline| {
            format!(
                "  ({:.2}x the line it is compared with)",
                median.as_secs_f64() / percentile(baseline, 0.5).as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "  {what:<52} {:>9.3} ms / {:>9.3} ms{ratio}",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );
}

/// What loading one component costs, each load in a new `Runtime`.
pub struct LoadCosts {
    /// First loads, each in a fresh compiled cache: Cranelift runs.
    pub compile: Vec<Duration>,
    /// The first later load of each compiled entry: its digest is checked
    /// in full, as it is the first time an entry is loaded (3 entries).
    pub checked: Vec<Duration>,
    /// Later loads from the bytes, over a warm compiled cache whose entry's
    /// check is sealed: hashing the bytes, an `fstat`, mapping (20 runs).
    pub later: Vec<Duration>,
    /// Later loads by a known digest, as `cairn run` loads a `.wasm` whose
    /// digest it remembers by its stamp: the bytes are never read (20 runs).
    pub by_digest: Vec<Duration>,
    /// The warm cache, for running the component afterwards.
    pub warm: tempfile::TempDir,
}

/// Measures [`LoadCosts`] for `bytes`, with `compiles` first loads.
pub async fn load_costs(bytes: &Arc<[u8]>, compiles: usize) -> LoadCosts {
    let fresh: Vec<tempfile::TempDir> = (0..compiles).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let mut caches = fresh.iter();
    let compile = measure_async_n(compiles, || {
        let root = caches.next().expect("one cache a compile");
        async move {
            let runtime = Runtime::new(&CacheDir::open(root.path()).expect("cache")).expect("runtime");
            assert!(runtime.load(bytes.clone()).await.expect("loads").compiled_now());
        }
    })
    .await;
    // An entry's check is sealed by its stamp only once the stamp is older
    // than the racy window (two seconds): wait as a later run would.
    std::thread::sleep(Duration::from_millis(2_100));
    let mut caches = fresh.iter();
    let checked = measure_async_n(compiles, || {
        let root = caches.next().expect("one cache a compile");
        async move {
            let runtime = Runtime::new(&CacheDir::open(root.path()).expect("cache")).expect("runtime");
            assert!(!runtime.load(bytes.clone()).await.expect("loads").compiled_now());
        }
    })
    .await;
    let warm_root = fresh.into_iter().next().expect("at least one compile");
    let warm = CacheDir::open(warm_root.path()).expect("cache");
    let later = measure_async_n(20, || async {
        let runtime = Runtime::new(&warm).expect("runtime");
        assert!(!runtime.load(bytes.clone()).await.expect("loads").compiled_now());
    })
    .await;
    let digest = cairn_core::Digest::of(bytes);
    let by_digest = measure_async_n(20, || async {
        let runtime = Runtime::new(&warm).expect("runtime");
        let unread = async { panic!("a cached component's bytes were read") };
        assert!(!runtime.load_known(digest, unread).await.expect("loads").compiled_now());
    })
    .await;
    LoadCosts {
        compile,
        checked,
        later,
        by_digest,
        warm: warm_root,
    }
}

/// Prints [`LoadCosts`], each later load against compiling.
pub fn report_load_costs(costs: &LoadCosts) {
    report("first load: compile with Cranelift", &costs.compile, None);
    report(
        "first later load: check the entry's digest, map it",
        &costs.checked,
        Some(&costs.compile),
    );
    report(
        "later load: hash the bytes, fstat the entry, map it",
        &costs.later,
        Some(&costs.compile),
    );
    report(
        "later load by digest (cairn run): fstat, map",
        &costs.by_digest,
        Some(&costs.compile),
    );
}

/// Prints the medians of a baseline and of what is measured against it,
/// and their ratio (of medians, and paired when the runs alternated): the
/// three lines every whole-command comparison prints.
pub fn compare(title: &str, baseline: (&str, &[Duration]), measured: (&str, &[Duration])) {
    let (baseline_name, baseline_samples) = baseline;
    let (measured_name, measured_samples) = measured;
    let (baseline_median, measured_median) = (median(baseline_samples), median(measured_samples));
    println!("\n{title}, median of {} runs", measured_samples.len());
    println!("  {baseline_name:<44} {:>8.1} ms", baseline_median.as_secs_f64() * 1e3);
    println!("  {measured_name:<44} {:>8.1} ms", measured_median.as_secs_f64() * 1e3);
    println!(
        "  {:<44} {:>8.3}x, paired {:.3}x",
        "ratio",
        measured_median.as_secs_f64() / baseline_median.as_secs_f64(),
        paired_ratio(measured_samples, baseline_samples)
    );
}

/// Writes the no-op benchmark's workspace in `root`: `stages` stages, each
/// reading its own folder of `files` small files and upper-casing one into
/// its outputs, as `cairn.toml` and as an equivalent `Makefile`.
pub fn write_no_op_workspace(root: &Path, stages: usize, files: usize) {
    use std::fmt::Write as _;
    let mut pipeline = String::from("[pipeline]\nname = \"no-op\"\n");
    let mut makefile = String::from("all:");
    let mut rules = String::new();
    for stage in 0..stages {
        std::fs::create_dir(root.join(format!("pkg{stage}"))).expect("mkdir");
        for file in 0..files {
            std::fs::write(
                root.join(format!("pkg{stage}/f{file}.txt")),
                format!("package {stage} file {file}\n"),
            )
            .expect("write");
        }
        let _ = write!(
            pipeline,
            "[stages.s{stage}]\nuses = {:?}\ninputs = [\"pkg{stage}/**\"]\nargs = [\"upper\", \"/src/pkg{stage}/f0.txt\", \"/out/out.txt\"]\n",
            cairn_test_programs::PROBE_COMPONENT
        );
        let _ = write!(makefile, " out/pkg{stage}.txt");
        let prerequisites: Vec<String> = (0..files).map(|file| format!("pkg{stage}/f{file}.txt")).collect();
        let _ = writeln!(
            rules,
            "out/pkg{stage}.txt: {}\n\t@mkdir -p out\n\ttr a-z A-Z < pkg{stage}/f0.txt > $@",
            prerequisites.join(" ")
        );
    }
    std::fs::write(root.join("cairn.toml"), pipeline).expect("write");
    std::fs::write(root.join("Makefile"), format!("{makefile}\n{rules}")).expect("write");
}

/// Writes `files` files of `size` pseudo-random bytes (the same on every
/// run) in `dir`, `data000.bin` on; their paths.
pub fn write_random_tree(dir: &Path, files: usize, size: usize) -> Vec<std::path::PathBuf> {
    (0..files)
        .map(|index| {
            let mut contents = vec![0u8; size];
            blake3::Hasher::new_derive_key("cairn benchmark data")
                .update(&index.to_le_bytes())
                .finalize_xof()
                .fill(&mut contents);
            let path = dir.join(format!("data{index:03}.bin"));
            std::fs::write(&path, contents).expect("write");
            path
        })
        .collect()
}
