//! Stages in each language cairn builds, doing the same small job (list
//! `/src`, write `/out/files.txt`, log a line): the size of the component,
//! its first load (Cranelift compiles it), a later load (deserialized from
//! the compiled cache), and one call, next to spawning a native process.
//!
//! `cargo bench -p cairn --bench languages`; needs the toolchains the
//! polyglot tests need. The stages are the `cairn stage new` templates.

mod support;

use std::process::Command;
use std::sync::Arc;

use cairn::observer::Silent;
use cairn::stage_build::{self, Language};
use cairn::{CacheDir, Runtime, Sandbox, scaffold};
use support::{load_costs, measure, measure_async, report, report_load_costs};

fn main() {
    let executor = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio starts");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Builds are kept between benchmark runs; compiled components are not.
    let build_cache = CacheDir::open(workspace.join("target/bench-stage-builds")).expect("cache");
    let stages = tempfile::tempdir().expect("tempdir");
    let src = tempfile::tempdir().expect("tempdir");
    for name in ["a.txt", "b.txt"] {
        std::fs::write(src.path().join(name), name).expect("an input");
    }

    let native = measure(200, || {
        assert!(Command::new("/bin/true").status().expect("/bin/true runs").success());
    });
    println!("one call, the same work in every language (median / p90)");
    report("spawn /bin/true (native process)", &native, None);

    for language in Language::ALL {
        let folder = scaffold::create(stages.path(), &format!("hello-{}", language.key()), language)
            .expect("the template is written");
        let built = stage_build::build(&build_cache, &folder)
            .unwrap_or_else(|error| panic!("cannot build the {language} stage: {error}"));
        let bytes: Arc<[u8]> = built.bytes;
        println!("\n{language}: {:.2} MB component", bytes.len() as f64 / 1e6);
        executor.block_on(async {
            let costs = load_costs(&bytes, 3).await;
            report_load_costs(&costs);
            let warm = CacheDir::open(costs.warm.path()).expect("cache");
            let runtime = Runtime::new(&warm).expect("runtime");
            let component = runtime.load(bytes.clone()).await.expect("loads");
            let mut sandbox = Sandbox::new("hello", [0; 32]);
            sandbox.src = Some(src.path().to_owned());
            let call = measure_async(50, || async {
                let run = runtime.run(&component, &sandbox, Arc::new(Silent)).await.expect("runs");
                assert!(run.result.is_ok(), "{:?}", run.result);
            })
            .await;
            report("one call: instantiate and run", &call, Some(&native));
        });
    }
}
