//! What a health check costs through `wasi:http`, next to `curl` doing the
//! same in the same run: a loopback HTTP server answers
//! `{"status":"ok"}`, and
//!
//! - `curl -sf URL` is spawned (the baseline: a native process's time);
//! - `std:http` runs in-process as a stage would in a pipeline (the
//!   component loaded once, a fresh sandbox and instance per check), with
//!   a JSON pointer expectation;
//! - `cairn stage run std:http` is spawned, cairn's own start-up included.
//!
//! `cargo bench -p cairn --bench network`; figures in BENCHMARKS.md.

mod support;

use std::process::Command;
use std::sync::Arc;

use cairn::observer::Silent;
use cairn::{CacheDir, Runtime, Sandbox};
use http_body_util::Full;
use hyper::body::Bytes;
use support::{executor, measure, measure_async, report, run};

const RUNS: usize = 200;

fn main() {
    let executor = executor();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.set_nonblocking(true).expect("non-blocking");
    let address = listener.local_addr().expect("address");
    executor.spawn(serve(listener));
    let origin = format!("http://{address}");
    let url = format!("{origin}/health");
    println!("a health check against a loopback server, {RUNS} runs each (median / p90)");

    let curl = measure(RUNS, || {
        run(Command::new("curl").args(["-sf", "-o", "/dev/null", &url]));
    });
    report("curl -sf URL (native process)", &curl, None);

    let cache_root = tempfile::tempdir().expect("tempdir");
    let cache = CacheDir::open(cache_root.path()).expect("cache");
    executor.block_on(async {
        let runtime = Runtime::new(&cache).expect("runtime");
        let bytes: Arc<[u8]> = cairn::standard_stages::get("http").expect("std:http").into();
        let loaded = runtime.load(bytes).await.expect("std:http loads");
        let mut sandbox = Sandbox::new("health", [0; 32]);
        sandbox.network = vec![origin.clone()];
        sandbox.invocation.config = [
            ("url".to_owned(), url.clone()),
            ("expect_json_pointer".to_owned(), "/status".to_owned()),
            ("expect_json_equals".to_owned(), "ok".to_owned()),
        ]
        .into();
        let stage = measure_async(RUNS, || async {
            let run = runtime.run(&loaded, &sandbox, Arc::new(Silent)).await.expect("sandbox");
            assert!(run.result.is_ok(), "{:?}", run.result);
        })
        .await;
        report("std:http stage, in-process", &stage, Some(&curl));
    });

    let cairn = measure(RUNS / 4, || {
        run(Command::new(env!("CARGO_BIN_EXE_cairn"))
            .env("CAIRN_CACHE", cache_root.path())
            .args(["stage", "run", "std:http", "--network", &origin, "--with"])
            .arg(format!("url={url}"))
            .args(["--out", cache_root.path().join("out").to_str().expect("UTF-8")]));
    });
    report("cairn stage run std:http (process)", &cairn, Some(&curl));
}

async fn serve(listener: std::net::TcpListener) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(
                    br#"{"status":"ok"}"#,
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
