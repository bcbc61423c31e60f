//! Builds the standard stages (`stages/*`) into components and embeds them in
//! the `cairn` binary, so `uses = "std:NAME"` works on a fresh install with no
//! network.

use std::fmt::Write as _;
use std::path::PathBuf;

use cairn_guest_build::{GuestBuild, build_script_target_dir};

/// `std:NAME` and the cargo package that implements it.
const STANDARD_STAGES: &[(&str, &str)] = &[
    ("archive", "stage-archive"),
    ("checksum", "stage-checksum"),
    ("http", "stage-http"),
    ("notify", "stage-notify"),
    ("run", "stage-run"),
    ("sbom", "stage-sbom"),
    ("secret-scan", "stage-secret-scan"),
    ("template", "stage-template"),
    ("upload", "stage-upload"),
    ("validate", "stage-validate"),
    ("wc", "stage-wc"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let mut build = GuestBuild::new(workspace.join("Cargo.toml"), build_script_target_dir());
    for (_, package) in STANDARD_STAGES {
        build = build.package(*package);
    }
    let artifacts = build.run_in_build_script();
    // The compiler's dependency lists name source files only: a stage's
    // manifest (a crate feature, say) and the lock file matter too.
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());
    for (name, _) in STANDARD_STAGES {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("stages").join(name).join("Cargo.toml").display()
        );
    }

    let mut code = String::from("/// The standard stages: `std:NAME` and the component's bytes, sorted by name.\n");
    code.push_str("pub(crate) static STANDARD_STAGES: &[(&str, &[u8])] = &[\n");
    for (name, package) in STANDARD_STAGES {
        let artifact = artifacts
            .iter()
            .find(|artifact| artifact.package == *package)
            .unwrap_or_else(|| panic!("no component was built for `{package}`"));
        let embedded = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&artifact.path, &embedded).expect("copy the component into OUT_DIR");
        writeln!(code, "    ({name:?}, include_bytes!({embedded:?})),").expect("write to String");
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("standard_stages.rs"), code).expect("write standard_stages.rs");
}
