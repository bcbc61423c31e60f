//! Builds Rust guest crates into WebAssembly components.
//!
//! cairn needs this in three places: the `cairn` build script embeds the
//! standard stages, the test-program build script compiles the guests the
//! tests run, and `cairn run` builds stage source folders on demand. All three
//! must agree on how a guest is built (target, flags that keep the output
//! byte-for-byte reproducible, how a missing target is installed), so the
//! logic lives here once.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// The target stage components are built for.
pub const COMPONENT_TARGET: &str = "wasm32-wasip2";

/// A failure to build a guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestBuildError {
    /// The Rust standard library for the wasm target is not installed and
    /// could not be installed automatically.
    #[error("the Rust target `{target}` is not installed{reason}\nhint: run `rustup target add {target}`")]
    TargetMissing {
        /// The target triple.
        target: String,
        /// Why automatic installation did not happen, with a leading separator.
        reason: String,
    },
    /// A tool could not be started at all.
    #[error("could not run `{program}`")]
    Spawn {
        /// The program cairn tried to start.
        program: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// `cargo build` ran and failed; its diagnostics were already printed.
    #[error("`cargo build` of {packages} for {target} failed ({status}); its errors are printed above")]
    CargoFailed {
        /// The packages that were being built.
        packages: String,
        /// The target triple.
        target: String,
        /// How cargo exited.
        status: std::process::ExitStatus,
    },
    /// `cargo metadata` failed or did not list the package.
    #[error("`cargo metadata` could not read the package `{}`; its errors are printed above", manifest.display())]
    Metadata {
        /// The package's manifest.
        manifest: PathBuf,
    },
    /// Cargo succeeded but reported no `.wasm` file for a package.
    #[error("`cargo build` produced no .wasm file for `{package}`; is it a `bin` or `cdylib` crate?")]
    NoArtifact {
        /// The package without an artifact.
        package: String,
    },
}

/// A `.wasm` file cargo produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The cargo target name (the bin name, or the library name with `_`).
    pub target_name: String,
    /// The package the target belongs to.
    pub package: String,
    /// The file.
    pub path: PathBuf,
}

impl Artifact {
    /// Every source file the artifact was built from, read from the dep-info
    /// file cargo writes next to it, so a build script can rerun exactly when
    /// one of them changes.
    pub fn source_files(&self) -> Vec<PathBuf> {
        let Ok(contents) = std::fs::read_to_string(self.path.with_extension("d")) else {
            return Vec::new();
        };
        let mut files = Vec::new();
        for line in contents.lines() {
            let Some((_, dependencies)) = line.split_once(": ") else {
                continue;
            };
            // Make-style escaping: a backslash before a space keeps it in the name.
            let mut current = String::new();
            let mut characters = dependencies.chars().peekable();
            while let Some(character) = characters.next() {
                match character {
                    '\\' if characters.peek() == Some(&' ') => {
                        current.push(' ');
                        characters.next();
                    }
                    ' ' => {
                        if !current.is_empty() {
                            files.push(PathBuf::from(std::mem::take(&mut current)));
                        }
                    }
                    other => current.push(other),
                }
            }
            if !current.is_empty() {
                files.push(PathBuf::from(current));
            }
        }
        files.sort();
        files.dedup();
        files
    }
}

/// One `cargo build` of some guest packages of a workspace.
#[derive(Debug, Clone)]
pub struct GuestBuild {
    manifest_path: PathBuf,
    packages: Vec<String>,
    target: String,
    target_dir: PathBuf,
    release: bool,
    remapped_prefixes: Vec<(PathBuf, String)>,
    config: Vec<String>,
}

impl GuestBuild {
    /// Builds `packages` of the workspace whose root manifest is `manifest_path`
    /// for [`COMPONENT_TARGET`], in release mode, into `target_dir`.
    pub fn new(manifest_path: impl Into<PathBuf>, target_dir: impl Into<PathBuf>) -> Self {
        Self {
            manifest_path: manifest_path.into(),
            packages: Vec::new(),
            target: COMPONENT_TARGET.to_owned(),
            target_dir: target_dir.into(),
            release: true,
            remapped_prefixes: Vec::new(),
            config: Vec::new(),
        }
    }

    /// Passes `--config KEY=VALUE` to cargo (a value in TOML syntax), as
    /// `[patch]` for a dependency the builder supplies itself.
    pub fn config(mut self, key_value: impl Into<String>) -> Self {
        self.config.push(key_value.into());
        self
    }

    /// Adds a package to build.
    pub fn package(mut self, name: impl Into<String>) -> Self {
        self.packages.push(name.into());
        self
    }

    /// Builds with cargo's `dev` profile instead of `release`: larger, slower
    /// code, which benchmarks use as a stand-in for big components.
    pub fn debug(mut self) -> Self {
        self.release = false;
        self
    }

    /// Builds for another wasm target (`wasm32-wasip1` for core modules).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// Replaces a host path prefix in everything the compiler embeds (panic
    /// messages, debug info), so the same sources build to the same bytes in
    /// any checkout on any machine.
    pub fn remap_path_prefix(mut self, from: impl Into<PathBuf>, to: impl Into<String>) -> Self {
        self.remapped_prefixes.push((from.into(), to.into()));
        self
    }

    /// Runs cargo and returns the `.wasm` artifacts, at least one per package.
    pub fn run(&self) -> Result<Vec<Artifact>, GuestBuildError> {
        ensure_target_installed(&self.target)?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut command = Command::new(&cargo);
        command
            .arg("build")
            .arg("--manifest-path")
            .arg(&self.manifest_path)
            .arg("--target")
            .arg(&self.target)
            .arg("--message-format=json-render-diagnostics")
            .env("CARGO_TARGET_DIR", &self.target_dir)
            // Flags meant for the host build must not leak into the guest.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env("CARGO_ENCODED_RUSTFLAGS", self.rustflags())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if self.release {
            command.arg("--release");
        }
        for package in &self.packages {
            command.arg("--package").arg(package);
        }
        for key_value in &self.config {
            command.arg("--config").arg(key_value);
        }
        let mut child = command.spawn().map_err(|source| GuestBuildError::Spawn {
            program: cargo.to_string_lossy().into_owned(),
            source,
        })?;
        let mut artifacts = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                artifacts.extend(parse_artifact_message(&line));
            }
        }
        let status = child.wait().map_err(|source| GuestBuildError::Spawn {
            program: cargo.to_string_lossy().into_owned(),
            source,
        })?;
        if !status.success() {
            return Err(GuestBuildError::CargoFailed {
                packages: if self.packages.is_empty() {
                    format!("`{}`", self.manifest_path.display())
                } else {
                    self.packages.join(", ")
                },
                target: self.target.clone(),
                status,
            });
        }
        for package in &self.packages {
            if !artifacts.iter().any(|artifact| &artifact.package == package) {
                return Err(GuestBuildError::NoArtifact {
                    package: package.clone(),
                });
            }
        }
        Ok(artifacts)
    }

    /// [`run`](Self::run) for build scripts: a failure panics with its
    /// message (which cargo shows), and cargo is told to rerun the script
    /// when any source file of the built guests changes.
    pub fn run_in_build_script(&self) -> Vec<Artifact> {
        let artifacts = self.run().unwrap_or_else(|error| panic!("{error}"));
        for artifact in &artifacts {
            for file in artifact.source_files() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
        artifacts
    }

    fn rustflags(&self) -> String {
        self.remapped_prefixes
            .iter()
            .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
            .collect::<Vec<_>>()
            .join("\u{1f}")
    }
}

/// Where a build script should build guests: `target/guests` beside the
/// host's profile folders when the layout is the usual one, so guests are
/// built once per checkout rather than once per build-script hash, and in a
/// folder of their own so the nested cargo does not wait on the outer one's lock.
pub fn build_script_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_else(|| "target".into()));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let mut ancestors = out_dir.ancestors();
    match (ancestors.nth(2), ancestors.nth(1)) {
        (Some(build), Some(target)) if build.ends_with("build") => target.join("guests"),
        _ => out_dir.join("guests"),
    }
}

/// The parts of cargo's `compiler-artifact` JSON message we read.
#[derive(Deserialize)]
struct ArtifactMessage {
    reason: String,
    #[serde(default)]
    package_id: String,
    #[serde(default)]
    target: Option<ArtifactTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct ArtifactTarget {
    name: String,
}

fn parse_artifact_message(line: &str) -> Vec<Artifact> {
    let Ok(message) = serde_json::from_str::<ArtifactMessage>(line) else {
        return Vec::new();
    };
    let Some(target) = message.target else {
        return Vec::new();
    };
    if message.reason != "compiler-artifact" {
        return Vec::new();
    }
    let package = package_name(&message.package_id);
    message
        .filenames
        .into_iter()
        .filter(|path| path.extension().is_some_and(|extension| extension == "wasm"))
        .map(|path| Artifact {
            target_name: target.name.clone(),
            package: package.clone(),
            path,
        })
        .collect()
}

/// The package name in a cargo package id, in either the old
/// (`name 0.1.0 (path+file:///...)`) or the new (`path+file:///...#name@0.1.0`) form.
fn package_name(package_id: &str) -> String {
    if let Some((_, fragment)) = package_id.rsplit_once('#') {
        let name = fragment.split('@').next().unwrap_or(fragment);
        // `#0.1.0` alone means the name is the last path segment.
        if name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            let path = package_id.rsplit_once('#').map_or(package_id, |(path, _)| path);
            return path.rsplit('/').next().unwrap_or(path).to_owned();
        }
        return name.to_owned();
    }
    package_id.split(' ').next().unwrap_or(package_id).to_owned()
}

/// The root folder of the cargo workspace `manifest_path` belongs to (the
/// folder of the package itself when it is not in a workspace).
///
/// Remapping this folder (and `CARGO_HOME`) is what makes a build's bytes
/// independent of where the checkout is: cargo names packages inside the
/// workspace by relative path, and the compiler embeds the remapped prefix.
pub fn workspace_root(manifest_path: &Path) -> Result<PathBuf, GuestBuildError> {
    let output = cargo_about(
        &["locate-project", "--workspace", "--message-format", "plain"],
        manifest_path,
    )?;
    let root_manifest = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    match root_manifest.parent() {
        Some(root) if output.status.success() && !root.as_os_str().is_empty() => Ok(root.to_owned()),
        _ => Ok(manifest_path.parent().unwrap_or(Path::new(".")).to_owned()),
    }
}

/// Runs `cargo ARGS --manifest-path MANIFEST` (a query, not a build), its
/// errors shown to the user.
fn cargo_about(args: &[&str], manifest_path: &Path) -> Result<std::process::Output, GuestBuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    Command::new(&cargo)
        .args(args)
        .arg("--manifest-path")
        .arg(manifest_path)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| GuestBuildError::Spawn {
            program: cargo.to_string_lossy().into_owned(),
            source,
        })
}

/// What a package's `Cargo.toml` says about it, workspace inheritance
/// applied: what `cairn publish` annotates a stage with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct PackageMetadata {
    /// The package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its one-line description.
    #[serde(default)]
    pub description: Option<String>,
    /// Where its source lives.
    #[serde(default)]
    pub repository: Option<String>,
    /// Its home page.
    #[serde(default)]
    pub homepage: Option<String>,
    /// Its SPDX license expression.
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    manifest_path: PathBuf,
}

/// Reads the package at `manifest_path` with `cargo metadata`.
pub fn package_metadata(manifest_path: &Path) -> Result<PackageMetadata, GuestBuildError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        packages: Vec<PackageMetadata>,
    }
    let output = cargo_about(&["metadata", "--format-version", "1", "--no-deps"], manifest_path)?;
    let wanted = manifest_path
        .canonicalize()
        .unwrap_or_else(|_| manifest_path.to_owned());
    let metadata: Option<Metadata> = serde_json::from_slice(&output.stdout).ok();
    metadata
        .filter(|_| output.status.success())
        .and_then(|metadata| {
            metadata
                .packages
                .into_iter()
                .find(|package| package.manifest_path.canonicalize().is_ok_and(|path| path == wanted))
        })
        .ok_or_else(|| GuestBuildError::Metadata {
            manifest: manifest_path.to_owned(),
        })
}

/// Makes sure the standard library for `target` is installed, installing it
/// with rustup when rustup manages the toolchain.
pub fn ensure_target_installed(target: &str) -> Result<(), GuestBuildError> {
    if target_installed(target)? {
        return Ok(());
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", target]);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    match rustup.stdout(Stdio::null()).status() {
        Ok(status) if status.success() && target_installed(target)? => Ok(()),
        Ok(status) => Err(GuestBuildError::TargetMissing {
            target: target.to_owned(),
            reason: format!(", and `rustup target add {target}` failed ({status})"),
        }),
        Err(_) => Err(GuestBuildError::TargetMissing {
            target: target.to_owned(),
            reason: ", and `rustup` is not on PATH to install it".to_owned(),
        }),
    }
}

fn target_installed(target: &str) -> Result<bool, GuestBuildError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|source| GuestBuildError::Spawn {
            program: rustc.to_string_lossy().into_owned(),
            source,
        })?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_read_from_both_id_forms() {
        assert_eq!(package_name("path+file:///w/stages/wc#stage-wc@0.1.0"), "stage-wc");
        assert_eq!(package_name("path+file:///w/stages/wc#0.1.0"), "wc");
        assert_eq!(package_name("stage-wc 0.1.0 (path+file:///w/stages/wc)"), "stage-wc");
    }

    #[test]
    fn artifact_messages_yield_wasm_files_only() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///w#probe@0.1.0","target":{"name":"probe"},"filenames":["/t/probe.wasm","/t/probe.d"]}"#;
        let artifacts = parse_artifact_message(line);
        assert_eq!(artifacts.len(), 1);
        assert_eq!(artifacts[0].package, "probe");
        assert_eq!(artifacts[0].path, PathBuf::from("/t/probe.wasm"));
        assert!(parse_artifact_message(r#"{"reason":"build-finished","success":true}"#).is_empty());
    }

    #[test]
    fn dep_info_is_parsed_with_escaped_spaces() {
        let dir = std::env::temp_dir().join(format!("cairn-guest-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("x.d"),
            "/t/x.wasm: /src/a.rs /src/with\\ space.rs\n\n/src/a.rs:\n",
        )
        .expect("write dep-info");
        let artifact = Artifact {
            target_name: "x".into(),
            package: "x".into(),
            path: dir.join("x.wasm"),
        };
        assert_eq!(
            artifact.source_files(),
            vec![PathBuf::from("/src/a.rs"), PathBuf::from("/src/with space.rs")]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
