//! cairn's no-op run against Turborepo's fully cached run: the no-op
//! benchmark's 1,000 packages of 11 files (`support::write_no_op_workspace`),
//! as cairn stages in one folder and as npm workspaces with a `build` task
//! in another, the same files in both; everything already built, alternating
//! runs, paired.
//!
//! `cargo bench -p cairn --bench turbo`; installs `turbo` 2 from the npm
//! registry into `target/bench-turbo` the first time, and is skipped (with
//! a message) where npm is missing. Figures in BENCHMARKS.md.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{cairn_run, compare, run};

const FILES: usize = 11;
const RUNS: usize = 15;

fn main() {
    // `CAIRN_BENCH_PACKAGES`: fewer packages than the no-op benchmark's
    // 1,000. Turborepo's first build runs `npm run build` in each, about a
    // second of CPU apiece; on 2 cores the full workspace takes most of an hour.
    let packages: usize = std::env::var("CAIRN_BENCH_PACKAGES")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(1_000);
    if which::which("npm").is_err() {
        println!("npm is not installed: the Turborepo comparison is skipped (apt-get install npm)");
        return;
    }
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-turbo");
    let turbo_bin = tool.join("node_modules/.bin/turbo");
    if !turbo_bin.exists() {
        std::fs::create_dir_all(&tool).expect("mkdir");
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tool)
            .arg("turbo@2"));
    }
    let version = Command::new(&turbo_bin).arg("--version").output().expect("turbo runs");
    println!("turbo {}", String::from_utf8_lossy(&version.stdout).trim());

    let base = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let (cairn_root, turbo_root) = (base.path().join("cairn"), base.path().join("turbo"));
    for root in [&cairn_root, &turbo_root] {
        std::fs::create_dir(root).expect("mkdir");
        support::write_no_op_workspace(root, packages, FILES);
    }
    write_turbo_workspace(&turbo_root, packages);
    let turbo = || {
        let mut command = Command::new(&turbo_bin);
        command
            .args(["run", "build", "--output-logs=none"])
            .current_dir(&turbo_root)
            .env("TURBO_TELEMETRY_DISABLED", "1")
            .env("DO_NOT_TRACK", "1")
            .env("TURBO_NO_UPDATE_NOTIFIER", "1");
        command
    };
    // Build everything once with each; files younger than two seconds are
    // hashed again by cairn on every run, so let them age first.
    std::thread::sleep(Duration::from_millis(2_500));
    run(&mut cairn_run(&cairn_root, cache.path()));
    run(&mut turbo());
    std::thread::sleep(Duration::from_millis(2_500));
    run(&mut cairn_run(&cairn_root, cache.path()));
    let cached = turbo().output().expect("turbo runs");
    assert!(
        String::from_utf8_lossy(&cached.stdout).contains(&format!("{packages} cached, {packages} total")),
        "turbo's second run is not fully cached:\n{}",
        String::from_utf8_lossy(&cached.stdout)
    );

    let mut cairn_times = Vec::new();
    let mut turbo_times = Vec::new();
    for _ in 0..RUNS {
        cairn_times.push(run(&mut cairn_run(&cairn_root, cache.path())));
        turbo_times.push(run(&mut turbo()));
    }
    compare(
        &format!("{packages} packages of {FILES} files, all built"),
        ("turbo run build (fully cached)", &turbo_times),
        ("cairn run -j 2 (nothing to do)", &cairn_times),
    );
}

/// Makes the packages of `root` npm workspaces whose `build` does what the
/// cairn stage does, with Turborepo's task settings and a git repository
/// (Turborepo hashes files through git).
fn write_turbo_workspace(root: &Path, packages: usize) {
    let names: Vec<String> = (0..packages).map(|index| format!("\"pkg{index}\"")).collect();
    // Turborepo wants to know which package manager (and version) to trust.
    let npm = Command::new("npm").arg("--version").output().expect("npm runs");
    let npm = String::from_utf8_lossy(&npm.stdout).trim().to_owned();
    std::fs::write(
        root.join("package.json"),
        format!(
            "{{\"name\":\"bench\",\"private\":true,\"packageManager\":\"npm@{npm}\",\"workspaces\":[{}]}}",
            names.join(",")
        ),
    )
    .expect("write");
    std::fs::write(
        root.join("turbo.json"),
        r#"{"tasks":{"build":{"inputs":["f*.txt"],"outputs":["out.txt"]}}}"#,
    )
    .expect("write");
    for index in 0..packages {
        std::fs::write(
            root.join(format!("pkg{index}/package.json")),
            format!("{{\"name\":\"pkg{index}\",\"version\":\"1.0.0\",\"scripts\":{{\"build\":\"tr a-z A-Z < f0.txt > out.txt\"}}}}"),
        )
        .expect("write");
    }
    run(Command::new("git").args(["init", "-q"]).current_dir(root));
}
