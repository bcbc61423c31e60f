//! The three kinds of component cairn runs, detected from their bytes, what
//! happens to files that are none of them, and the compiled-component cache.

use std::sync::Arc;

use crate::support::*;
use cairn::component::{ComponentKind, Digest, LoadError};
use cairn::{CacheDir, Runtime, StageFailure, standard_stages};

#[tokio::test]
async fn a_command_component_runs_with_args_env_and_exit_status() {
    let probe = probe().await;
    assert_eq!(probe.kind(), ComponentKind::Command);

    let mut sandbox = sandbox(&["argv", "with space", "--flag"]);
    sandbox.invocation.stage = "tool".into();
    let run = run(&probe, &sandbox).await;
    assert_succeeded(&run);
    assert_eq!(
        stdout(&run),
        ["tool", "argv", "with space", "--flag"],
        "argv[0] is the stage name"
    );

    let mut with_env = crate::support::sandbox(&["env"]);
    with_env.env.insert("MODE".into(), "ci".into());
    assert_eq!(stdout(&crate::support::run(&probe, &with_env).await), ["MODE=ci"]);

    assert_succeeded(&crate::support::run(&probe, &crate::support::sandbox(&["exit", "0"])).await);
    // WASI 0.2's `exit` carries only success or failure: Rust's exit(3)
    // reaches the host as a failure, reported as status 1.
    let failed = crate::support::run(&probe, &crate::support::sandbox(&["exit", "3"])).await;
    assert!(
        matches!(failed.result, Err(StageFailure::Exit(1))),
        "{:?}",
        failed.result
    );
    assert_eq!(
        failed.result.expect_err("failed").to_string(),
        "exited with failure (status 1)"
    );
}

#[tokio::test]
async fn a_preview1_module_is_adapted_and_runs_as_a_command() {
    let module = load(cairn_test_programs::PROBE_PREVIEW1).await;
    assert_eq!(module.kind(), ComponentKind::Preview1Command);

    let src = folder(&[("input.txt", "from the host")]);
    let mut sandbox = sandbox(&["args", "a", "b", "&&", "env", "&&", "cat", "/src/input.txt"]);
    sandbox.env.insert("KEY".into(), "value".into());
    sandbox.src = Some(src.path().to_owned());
    let run = run(&module, &sandbox).await;
    assert_succeeded(&run);
    assert_eq!(stdout(&run), ["a", "b", "KEY=value", "from the host"]);

    let failed = crate::support::run(&module, &crate::support::sandbox(&["exit", "3"])).await;
    assert!(
        matches!(failed.result, Err(StageFailure::Exit(_))),
        "{:?}",
        failed.result
    );
    let refused = crate::support::run(&module, &crate::support::sandbox(&["read", "/etc/passwd"])).await;
    assert!(
        refusal(&refused).contains("NotFound"),
        "the adapter runs in the same sandbox"
    );
}

#[tokio::test]
async fn a_stage_component_is_detected_by_its_run_export() {
    assert_eq!(stage_probe().await.kind(), ComponentKind::Stage);
    for name in standard_stages::names() {
        let bytes = standard_stages::get(name).expect("listed");
        let component = runtime().load(Arc::from(bytes)).await.expect("a standard stage loads");
        assert_eq!(component.kind(), ComponentKind::Stage, "std:{name}");
    }
}

#[tokio::test]
async fn files_that_are_not_runnable_components_are_rejected_with_a_reason() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text", b"#!/bin/sh\necho hi\n".to_vec(), "not a WebAssembly file"),
        (
            "an empty core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "no `_start` export",
        ),
        (
            "an empty component",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "exports neither `run`",
        ),
        (
            "a truncated component",
            b"\0asm\x0d\0\x01\0\x07\x09".to_vec(),
            "invalid component",
        ),
        (
            "a component importing wasi:http",
            component_importing("wasi:http/outgoing-handler@0.2.0"),
            "wasi:http/outgoing-handler@0.2.0",
        ),
    ];
    for (what, bytes, expected) in cases {
        let error = match runtime().load(bytes.into()).await {
            Ok(_) => panic!("{what} must not load"),
            Err(error) => error,
        };
        assert!(error.to_string().contains(expected), "{what}: {error}");
    }
}

#[tokio::test]
async fn a_core_module_importing_more_than_preview1_is_rejected() {
    // (module (import "env" "f" (func)) (func (export "_start")))
    let module = [
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: one func type () -> ()
        0x02, 0x09, 0x01, 0x03, b'e', b'n', b'v', 0x01, b'f', 0x00, 0x00, // import env.f
        0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
        0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x01, // export _start
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
    ];
    let error = match runtime().load(Arc::from(&module[..])).await {
        Ok(_) => panic!("must not load"),
        Err(error) => error,
    };
    assert!(matches!(error, LoadError::Adapt(_)), "{error:?}");
    assert!(error.to_string().contains("`env::f`"), "{error}");
}

/// A component that imports an instance named `name` exporting one function
/// `handle: func()`, and does nothing with it.
fn component_importing(name: &str) -> Vec<u8> {
    use wasm_encoder::{Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType};
    let mut instance = InstanceType::new();
    instance
        .ty()
        .function()
        .params(Vec::<(&str, wasm_encoder::ComponentValType)>::new())
        .result(None);
    instance.export("handle", ComponentTypeRef::Func(0));
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&instance);
    component.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import(name, ComponentTypeRef::Instance(0));
    component.section(&imports);
    component.finish()
}

#[tokio::test]
async fn loading_the_same_bytes_twice_returns_the_same_component() {
    let first = probe().await;
    let second = probe().await;
    assert!(Arc::ptr_eq(&first, &second));
    let bytes = std::fs::read(cairn_test_programs::PROBE_COMPONENT).expect("built");
    assert_eq!(first.digest(), Digest::of(&bytes));
}

#[tokio::test]
async fn compiled_components_are_cached_and_corrupt_entries_recompiled() {
    let cache_root = tempfile::tempdir().expect("tempdir");
    let cache = CacheDir::open(cache_root.path()).expect("cache");
    let bytes: Arc<[u8]> = std::fs::read(cairn_test_programs::PROBE_COMPONENT)
        .expect("built")
        .into();

    let fresh = Runtime::new(&cache)
        .expect("runtime")
        .load(bytes.clone())
        .await
        .expect("loads");
    assert!(fresh.compiled_now(), "a new cache compiles");

    let warm = Runtime::new(&cache)
        .expect("runtime")
        .load(bytes.clone())
        .await
        .expect("loads");
    assert!(
        !warm.compiled_now(),
        "a second process deserializes instead of compiling"
    );

    // Flip one bit in the middle of every compiled entry.
    let entries = compiled_entries(cache.root());
    assert_eq!(entries.len(), 1, "{entries:?}");
    for entry in &entries {
        let mut contents = std::fs::read(entry).expect("read");
        let middle = contents.len() / 2;
        contents[middle] ^= 0x10;
        std::fs::write(entry, contents).expect("write");
    }
    let runtime = Runtime::new(&cache).expect("runtime");
    let recovered = runtime.load(bytes).await.expect("a corrupt entry is not an error");
    assert!(
        recovered.compiled_now(),
        "the corrupt entry was dropped and the component recompiled"
    );
    let run = runtime
        .run(&recovered, &sandbox(&["echo", "ok"]), Arc::new(cairn::observer::Silent))
        .await
        .expect("runs");
    assert_succeeded(&run);

    assert!(
        cache.root().join("CACHEDIR.TAG").is_file(),
        "the cache marks itself for backup tools"
    );
}

fn compiled_entries(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries = Vec::new();
    let mut pending = vec![root.join("compiled-v1")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "cwasm") {
                entries.push(path);
            }
        }
    }
    entries
}

#[tokio::test]
async fn the_standard_wc_stage_counts_its_inputs() {
    let wc = runtime()
        .load(Arc::from(standard_stages::get("wc").expect("std:wc")))
        .await
        .expect("loads");
    let src = folder(&[("a.txt", "one two\nthree\n"), ("sub/b.md", "four\n")]);
    let upstream = folder(&[("c.txt", "five six seven\n")]);
    let mut sandbox = cairn::Sandbox::new("wc", [0; 32]);
    sandbox.src = Some(src.path().to_owned());
    sandbox.inputs.insert("build".into(), upstream.path().to_owned());
    let (run, recorder) = run_with(&wc, &sandbox).await;
    assert_succeeded(&run);
    let outcome = run.result.as_ref().expect("succeeded");
    assert_eq!(outcome.outputs["files"], "3");
    assert_eq!(outcome.outputs["lines"], "4");
    assert_eq!(outcome.outputs["words"], "7");
    assert_eq!(outcome.summary.as_deref(), Some("3 files, 4 lines, 7 words"));
    let table = std::fs::read_to_string(run.outputs().join("wc.txt")).expect("wc.txt");
    assert!(
        table.contains("/src/sub/b.md") && table.contains("/in/build/c.txt"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.outputs().join("wc.json")).expect("wc.json")).expect("JSON");
    assert_eq!(report["total"]["bytes"], 34);
    assert_eq!(recorder.progress.lock().expect("not poisoned").last(), Some(&(3, 3)));
}

#[tokio::test]
async fn the_standard_validate_stage_annotates_each_error_with_its_position() {
    let validate = runtime()
        .load(Arc::from(standard_stages::get("validate").expect("std:validate")))
        .await
        .expect("loads");
    let src = folder(&[
        ("good.toml", "[package]\nname = \"x\"\n"),
        ("good.json", "{\"a\": [1, 2]}"),
        ("bad.toml", "[package]\nname = \n"),
        ("nested/bad.json", "{\n  \"a\": 1,\n  \"b\": ]\n}"),
        ("ignored.txt", "not checked {"),
    ]);
    let mut sandbox = cairn::Sandbox::new("validate", [0; 32]);
    sandbox.src = Some(src.path().to_owned());
    let run = run(&validate, &sandbox).await;
    let failure = run.result.as_ref().expect_err("two files are invalid").to_string();
    assert!(failure.contains("2 of 4 files are invalid"), "{failure}");
    let annotations: Vec<String> = run.annotations.iter().map(ToString::to_string).collect();
    assert_eq!(annotations.len(), 2, "{annotations:#?}");
    assert!(
        annotations[0].starts_with("/src/bad.toml:2:8: error: "),
        "{annotations:#?}"
    );
    assert!(
        annotations[1].starts_with("/src/nested/bad.json:3:8: error: expected value"),
        "{annotations:#?}"
    );

    let clean = folder(&[("good.toml", "a = 1\n")]);
    sandbox.src = Some(clean.path().to_owned());
    let run = crate::support::run(&validate, &sandbox).await;
    assert_succeeded(&run);
    assert_eq!(run.result.as_ref().expect("valid").outputs["files"], "1");
}
