//! C stage folders: every `.c` file of the folder (`stage.c` among them)
//! compiled by clang for `wasm32-wasi` as a reactor, against bindings for
//! the `cairn:stage` world that wit-bindgen-c generates here, then turned
//! into a component with the WASI preview1 reactor adapter. The SDK's
//! `cairn.h` is on the include path next to the generated `stage.h`.
//!
//! Debian: `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

use super::tools::{self, Tool};
use super::{BuildError, Compiled, Language, source_files, wit};

const CLANG: Tool = Tool {
    program: "clang",
    override_env: "CAIRN_CLANG",
    install: "install it with `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`",
    language: Language::C,
    failure_hint: Some(
        "a missing header or `wasm-ld` means the WebAssembly toolchain is incomplete: \
         apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32",
    ),
};

/// The SDK's helpers, shipped with every build.
pub(super) const HELPER: &str = include_str!("../../../sdk/c/cairn.h");

pub(super) fn compile(folder: &Path, scratch: &Path) -> Result<Compiled, BuildError> {
    let clang = CLANG.find(&[])?;
    let bindings = scratch.join("bindings");
    generate_bindings(scratch, &bindings)?;
    let helper = bindings.join("cairn.h");
    std::fs::write(&helper, HELPER).map_err(BuildError::io(&helper))?;

    let files = source_files(folder);
    let sources: Vec<&PathBuf> = files
        .iter()
        .filter(|path| path.parent() == Some(folder) && path.extension().is_some_and(|extension| extension == "c"))
        .collect();
    let module = scratch.join("module.wasm");
    let mut args: Vec<OsString> = [
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-Wall",
        "-Wno-unused-function",
        // wasm-ld's default stack is 64 KiB; give C what Rust gets.
        "-Wl,-z,stack-size=1048576",
    ]
    .map(OsString::from)
    .into();
    // The bytes must not depend on where the folder or the scratch space is.
    for (from, to) in [(folder, "/source"), (scratch, "/build")] {
        let mut map = OsString::from("-ffile-prefix-map=");
        map.push(from);
        map.push("=");
        map.push(to);
        args.push(map);
    }
    args.extend(["-I".into(), bindings.clone().into(), "-I".into(), folder.into()]);
    args.extend(sources.iter().map(|source| source.as_os_str().to_owned()));
    args.push(bindings.join("stage.c").into());
    args.push(bindings.join("stage_component_type.o").into());
    args.extend(["-o".into(), module.clone().into()]);
    CLANG.run(&clang, &args, folder)?;

    let module_bytes = std::fs::read(&module).map_err(BuildError::io(&module))?;
    let bytes = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module_bytes)
        .and_then(|encoder| {
            encoder.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|mut encoder| encoder.encode())
        .map_err(|error| BuildError::Componentize(format!("cannot turn the C module into a component: {error:#}")))?;
    Ok(Compiled { bytes, files })
}

pub(super) fn toolchain() -> Result<Vec<u8>, BuildError> {
    Ok(tools::identity(&CLANG.find(&[])?))
}

/// Writes `stage.h`, `stage.c` and `stage_component_type.o` for the world into `bindings`.
fn generate_bindings(scratch: &Path, bindings: &Path) -> Result<(), BuildError> {
    let wit_dir = scratch.join("wit");
    wit::write_to(&wit_dir).map_err(BuildError::io(&wit_dir))?;
    let failed = |error: anyhow::Error| BuildError::Componentize(format!("cannot generate the C bindings: {error:#}"));
    let mut resolve = wit_bindgen_core::wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(&wit_dir).map_err(failed)?;
    let world = resolve.select_world(&[package], Some(wit::WORLD)).map_err(failed)?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(failed)?;
    std::fs::create_dir_all(bindings).map_err(BuildError::io(bindings))?;
    for (name, contents) in files.iter() {
        let path = bindings.join(name);
        std::fs::write(&path, contents).map_err(BuildError::io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_declare_the_stage_export_and_the_host_imports() {
        let scratch = tempfile::tempdir().unwrap();
        let bindings = scratch.path().join("bindings");
        generate_bindings(scratch.path(), &bindings).unwrap();
        let header = std::fs::read_to_string(bindings.join("stage.h")).unwrap();
        assert!(header.contains("exports_stage_run("), "{header}");
        assert!(header.contains("cairn_stage_host_log("), "{header}");
        assert!(bindings.join("stage_component_type.o").is_file());
    }
}
