//! Compiles the guest programs the tests run, once per test build, and
//! generates a constant naming each file (the pattern of wasmtime's
//! `crates/test-programs/artifacts`).

use std::fmt::Write as _;
use std::path::PathBuf;

use cairn_guest_build::{GuestBuild, build_script_target_dir};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace_manifest = manifest_dir.join("../../../Cargo.toml");
    let target_dir = build_script_target_dir();

    let components = GuestBuild::new(&workspace_manifest, &target_dir)
        .package("cairn-probe")
        .package("cairn-stage-probe")
        .run_in_build_script();
    let preview1 = GuestBuild::new(&workspace_manifest, &target_dir)
        .target("wasm32-wasip1")
        .package("cairn-probe")
        .run_in_build_script();

    let mut code = String::new();
    for (constant, artifacts, target_name, what) in [
        (
            "PROBE_COMPONENT",
            &components,
            "probe",
            "the probe as a wasi:cli/command component",
        ),
        (
            "PROBE_PREVIEW1",
            &preview1,
            "probe",
            "the probe as a WASI preview1 core module",
        ),
        (
            "STAGE_PROBE",
            &components,
            "cairn_stage_probe",
            "the cairn:stage probe component",
        ),
    ] {
        let artifact = artifacts
            .iter()
            .find(|artifact| artifact.target_name == target_name)
            .unwrap_or_else(|| panic!("no artifact for `{target_name}`"));
        writeln!(code, "/// The path of {what}.").expect("write to String");
        writeln!(code, "pub const {constant}: &str = {:?};", artifact.path).expect("write to String");
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("artifacts.rs"), code).expect("write artifacts.rs");
}
