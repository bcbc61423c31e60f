//! CPU-bound work in the sandbox against the same program run natively:
//! two kernels (a sieve of Eratosthenes and a JSON round trip, from
//! `tests/programs/kernels`), each as whole processes, `cairn stage run`
//! against the native build, paired run by run; and, where the `wasmtime`
//! CLI is installed, wasmtime's own defaults on the same module, so that
//! cairn's engine settings are seen apart from Cranelift's code.
//!
//! `cargo bench -p cairn --bench compute`; figures in BENCHMARKS.md.
//! `CAIRN_BENCH_WASMTIME=PATH` names the wasmtime CLI when it is not on
//! `PATH` (`cargo install wasmtime-cli@48` matches cairn's wasmtime).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_guest_build::GuestBuild;
use support::{median, paired_ratio};

const RUNS: usize = 9;
const KERNELS: [(&str, &str); 2] = [("sieve", "60000000"), ("json", "400000")];

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = workspace.join("Cargo.toml");
    let wasm = GuestBuild::new(&manifest, workspace.join("target/guests"))
        .package("cairn-kernels")
        .run()
        .expect("the kernels build for wasm32-wasip2")
        .remove(0)
        .path;
    let native_target = workspace.join("target/bench-native");
    let built = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "cairn-kernels",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&native_target)
        .status()
        .expect("cargo runs");
    assert!(built.success(), "the kernels build natively");
    let native = native_target.join("release/kernels");
    let cache = tempfile::tempdir().expect("tempdir");
    let wasmtime = wasmtime_cli();
    let precompiled = cache.path().join("kernels.cwasm");
    if let Some(wasmtime) = &wasmtime {
        let status = Command::new(wasmtime)
            .arg("compile")
            .arg(&wasm)
            .arg("-o")
            .arg(&precompiled)
            .status()
            .expect("wasmtime runs");
        assert!(status.success(), "wasmtime compiles the kernels");
    } else {
        println!("(no wasmtime CLI on PATH and no CAIRN_BENCH_WASMTIME: its column is skipped)");
    }

    for (kernel, size) in KERNELS {
        let cairn = || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
            command
                .args(["stage", "run", "--timeout", "10m", "--memory", "2GiB"])
                .arg(&wasm)
                .args(["--", kernel, size])
                .env("CAIRN_CACHE", cache.path());
            command
        };
        let direct = || {
            let mut command = Command::new(&native);
            command.args([kernel, size]);
            command
        };
        // The same answer both ways (and the component compiled, once).
        let expected = output(&mut direct());
        assert!(
            output(&mut cairn()).contains(expected.trim()),
            "cairn's run of `{kernel}` computed something else than the native build's {expected:?}"
        );
        let mut native_times = Vec::new();
        let mut cairn_times = Vec::new();
        let mut wasmtime_times = Vec::new();
        for _ in 0..RUNS {
            native_times.push(time(&mut direct()));
            cairn_times.push(time(&mut cairn()));
            if let Some(wasmtime) = &wasmtime {
                let mut command = Command::new(wasmtime);
                command
                    .args(["run", "--allow-precompiled"])
                    .arg(&precompiled)
                    .args([kernel, size]);
                wasmtime_times.push(time(&mut command));
            }
        }
        println!(
            "\n{kernel} {size}, whole processes, median of {RUNS} runs (paired: each against the native run before it)"
        );
        let line = |what: &str, times: &[Duration]| {
            println!(
                "  {what:<44} {:>8.1} ms  {:>5.2}x native, paired {:.2}x",
                median(times).as_secs_f64() * 1e3,
                median(times).as_secs_f64() / median(&native_times).as_secs_f64(),
                paired_ratio(times, &native_times)
            );
        };
        line("native (release, same source)", &native_times);
        line("cairn stage run (sandbox, cached compile)", &cairn_times);
        if !wasmtime_times.is_empty() {
            line("wasmtime run --allow-precompiled (defaults)", &wasmtime_times);
        }
    }
}

/// The wasmtime CLI, if one is installed.
fn wasmtime_cli() -> Option<PathBuf> {
    std::env::var_os("CAIRN_BENCH_WASMTIME")
        .map(PathBuf::from)
        .or_else(|| which::which("wasmtime").ok())
}

fn output(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn time(command: &mut Command) -> Duration {
    let started = Instant::now();
    output(command);
    started.elapsed()
}
