//! The shared cache's costs, against a real `nats-server` on loopback
//! (skipped with a message where it is not installed):
//!
//! - a no-op run of 1,000 cached stages with the shared cache attached,
//!   paired against the same run without it (target: within 2x);
//! - sharing and fetching a 1 GiB tree (128 files of 8 MiB) through
//!   cairn, against the server's own limit: the same bytes put into and
//!   read from a JetStream object store directly, without cairn;
//! - the dispatch overhead of a stage run on a worker: a chain of 20
//!   stages (each waits for the one before) with `--workers` against the
//!   same run here, per stage (target: under 5 ms);
//! - 500 trivial independent stages over two workers (one slot each)
//!   against a local `-j 2` run: what sending costs on this 2-core
//!   machine, where the workers share the requester's cores (no speed-up
//!   is possible here; the ratio measures overhead).
//!
//! `cargo bench -p cairn --bench remote`; figures in BENCHMARKS.md.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{cairn_run, median, paired_ratio, run};
use tokio::io::AsyncReadExt;

use cairn::CacheDir;
use cairn::cas::{ActionEntry, Store, Tree};
use cairn::component::Digest;
use cairn::remote::nats::NatsBackend;
use cairn::remote::{RemoteSettings, SharedCache};

const NO_OP_RUNS: usize = 21;
const FILES: usize = 128;
const FILE_SIZE: usize = 8 << 20;

/// A server on a free loopback port, with a store of its own.
struct Server {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Option<Server> {
    let store = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Server {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _store: store,
    })
}

fn main() {
    let Some(server) = start_server() else {
        println!(
            "nats-server is not installed (`cargo xtask setup` installs it): the shared cache benchmarks are skipped"
        );
        return;
    };
    // `cargo bench -p cairn --bench remote -- dispatch spread` runs those.
    let only: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|part| name.contains(part.as_str()));
    if wanted("no-op") {
        no_op_with_remote(&server);
    }
    if wanted("tree") {
        tree_throughput(&server);
    }
    if wanted("dispatch") {
        dispatch_overhead(&server);
    }
    if wanted("spread") {
        spread_over_workers(&server);
    }
}

/// A `cairn worker` with a cache of its own, stopped when dropped.
struct Worker {
    child: Child,
    _cache: tempfile::TempDir,
}

impl Worker {
    fn start(server: &Server, name: &str) -> Self {
        let cache = tempfile::tempdir().expect("tempdir");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["worker", "--remote", &server.url, "--jobs", "1", "--name", name])
            .env("CAIRN_CACHE", cache.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cairn worker starts");
        Self { child, _cache: cache }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cairn run --no-cache -j JOBS` in `root`: every stage runs (or is sent)
/// every time, its result stored but not reused.
fn uncached(root: &std::path::Path, cache: &std::path::Path, jobs: &str, server: Option<&Server>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(["run", "--no-cache", "-j", jobs])
        .current_dir(root)
        .env("CAIRN_CACHE", cache);
    if let Some(server) = server {
        command.args(["--workers", "--remote", &server.url]);
    }
    command
}

fn dispatch_overhead(server: &Server) {
    const CHAIN: usize = 20;
    const RUNS: usize = 11;
    let _worker = Worker::start(server, "bench-1");
    let workspace = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let root = workspace.path();
    let mut pipeline = String::from("[pipeline]\nname = \"chain\"\n");
    for index in 0..CHAIN {
        let needs = match index {
            0 => String::new(),
            _ => format!("needs = [\"s{}\"]\n", index - 1),
        };
        pipeline.push_str(&format!(
            "[stages.s{index}]\nuses = {:?}\n{needs}args = [\"write\", \"/out/{index}.txt\", \"stage {index}\"]\n",
            cairn_test_programs::PROBE_COMPONENT
        ));
    }
    std::fs::write(root.join("cairn.toml"), pipeline).expect("write");
    // Warm up: the component compiled here and on the worker.
    run(&mut uncached(root, cache.path(), "2", None));
    run(&mut uncached(root, cache.path(), "2", Some(server)));
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for _ in 0..RUNS {
        local.push(run(&mut uncached(root, cache.path(), "2", None)));
        remote.push(run(&mut uncached(root, cache.path(), "2", Some(server))));
    }
    let per_stage = |samples: &[Duration]| median(samples).as_secs_f64() * 1e3 / CHAIN as f64;
    println!("\na chain of {CHAIN} stages run every time (--no-cache), median of {RUNS} alternating runs");
    println!(
        "  here                             {:>8.1} ms ({:.2} ms a stage)",
        median(&local).as_secs_f64() * 1e3,
        per_stage(&local)
    );
    println!(
        "  on one worker (--workers)        {:>8.1} ms ({:.2} ms a stage)",
        median(&remote).as_secs_f64() * 1e3,
        per_stage(&remote)
    );
    println!(
        "  dispatch overhead a stage        {:>8.2} ms (workers / here, paired {:.2}x)",
        per_stage(&remote) - per_stage(&local),
        paired_ratio(&remote, &local)
    );
}

fn spread_over_workers(server: &Server) {
    const STAGES: usize = 500;
    const RUNS: usize = 5;
    let _workers = [Worker::start(server, "bench-a"), Worker::start(server, "bench-b")];
    let workspace = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let root = workspace.path();
    std::fs::create_dir(root.join("in")).expect("mkdir");
    let mut pipeline = String::from("[pipeline]\nname = \"spread\"\n");
    for index in 0..STAGES {
        std::fs::write(
            root.join(format!("in/{index}.txt")),
            format!("stage {index} says hello\n"),
        )
        .expect("write");
        pipeline.push_str(&format!(
            "[stages.s{index}]\nuses = {:?}\ninputs = [\"in/{index}.txt\"]\nargs = [\"upper\", \"/src/in/{index}.txt\", \"/out/{index}.txt\"]\n",
            cairn_test_programs::PROBE_COMPONENT
        ));
    }
    std::fs::write(root.join("cairn.toml"), pipeline).expect("write");
    run(&mut uncached(root, cache.path(), "2", None));
    run(&mut uncached(root, cache.path(), "8", Some(server)));
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for _ in 0..RUNS {
        local.push(run(&mut uncached(root, cache.path(), "2", None)));
        remote.push(run(&mut uncached(root, cache.path(), "8", Some(server))));
    }
    println!("\n{STAGES} independent trivial stages run every time, median of {RUNS} alternating runs");
    println!(
        "  here, -j 2                       {:>8.1} ms",
        median(&local).as_secs_f64() * 1e3
    );
    println!(
        "  two workers (one slot each), -j 8 {:>7.1} ms",
        median(&remote).as_secs_f64() * 1e3
    );
    println!(
        "  workers / here, paired           {:>8.2}x",
        paired_ratio(&remote, &local)
    );
}

fn no_op_with_remote(server: &Server) {
    let workspace = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let root = workspace.path();
    support::write_no_op_workspace(root, 1_000, 11);
    std::thread::sleep(Duration::from_millis(2_500));
    let local = || cairn_run(root, cache.path());
    let remote = || {
        let mut command = cairn_run(root, cache.path());
        command.args(["--remote", &server.url]);
        command
    };
    // Fills the shared cache, then settles the workspace as the cache
    // benchmark does.
    run(&mut remote());
    std::thread::sleep(Duration::from_millis(2_500));
    run(&mut local());
    let mut local_times = Vec::new();
    let mut remote_times = Vec::new();
    for _ in 0..NO_OP_RUNS {
        local_times.push(run(&mut local()));
        remote_times.push(run(&mut remote()));
    }
    println!("no-op run of 1000 cached stages, median of {NO_OP_RUNS} alternating runs");
    println!(
        "  local cache only                 {:>8.1} ms",
        median(&local_times).as_secs_f64() * 1e3
    );
    println!(
        "  with --remote (loopback)         {:>8.1} ms",
        median(&remote_times).as_secs_f64() * 1e3
    );
    println!(
        "  remote / local, paired           {:>8.2}x",
        paired_ratio(&remote_times, &local_times)
    );
}

fn tree_throughput(server: &Server) {
    let data = tempfile::tempdir().expect("tempdir");
    let paths = support::write_random_tree(data.path(), FILES, FILE_SIZE);
    let gib = (FILES * FILE_SIZE) as f64 / f64::from(1u32 << 30);
    let executor = support::executor();
    executor.block_on(async {
        let settings = RemoteSettings::new(&server.url, false, 1, |_| None).expect("settings");
        let shared = SharedCache::new(Arc::new(NatsBackend::open(&settings).await.expect("connects")), false);
        let sender_cache = tempfile::tempdir().expect("tempdir");
        let sender = Store::open(&CacheDir::open(sender_cache.path()).expect("cache")).expect("store");
        let (_, tree) = Tree::ingest(&sender, data.path()).expect("the tree is stored");
        let entry = ActionEntry::new(tree, Digest::of(b""), false, Vec::new(), Default::default(), 0);
        let key = Digest::of(b"the 1 GiB benchmark tree");
        let started = Instant::now();
        shared.share_action(&sender, &key, &entry).await.expect("shared");
        let upload = started.elapsed();

        let receiver_cache = tempfile::tempdir().expect("tempdir");
        let receiver = Store::open(&CacheDir::open(receiver_cache.path()).expect("cache")).expect("store");
        let started = Instant::now();
        shared
            .fetch_action(&receiver, &key)
            .await
            .expect("fetched")
            .expect("a hit");
        let download = started.elapsed();

        // The server's own limit: the same files through the object store,
        // straight from and to memory, no hashing, no local store.
        let client = async_nats::connect(&server.url).await.expect("connects");
        let jetstream = async_nats::jetstream::new(client);
        let raw = jetstream
            .create_object_store(async_nats::jetstream::object_store::Config {
                bucket: "raw".to_owned(),
                ..Default::default()
            })
            .await
            .expect("a bucket");
        let files: Vec<Vec<u8>> = paths.iter().map(|path| std::fs::read(path).expect("read")).collect();
        let started = Instant::now();
        for (index, bytes) in files.iter().enumerate() {
            raw.put(format!("f{index}").as_str(), &mut bytes.as_slice())
                .await
                .expect("put");
        }
        let raw_upload = started.elapsed();
        let started = Instant::now();
        for index in 0..FILES {
            let mut object = raw.get(format!("f{index}")).await.expect("get");
            let mut bytes = Vec::with_capacity(FILE_SIZE);
            object.read_to_end(&mut bytes).await.expect("read");
        }
        let raw_download = started.elapsed();
        // The local floor of a download: putting the same bytes into a
        // fresh local store (hashed, written, renamed), from memory.
        let floor_cache = tempfile::tempdir().expect("tempdir");
        let floor = Store::open(&CacheDir::open(floor_cache.path()).expect("cache")).expect("store");
        let started = Instant::now();
        for bytes in &files {
            floor.put_bytes(bytes).expect("stored");
        }
        let local_store = started.elapsed();
        let rate = |took: Duration| gib / took.as_secs_f64();
        println!(
            "\nsharing a {gib:.0} GiB tree ({FILES} files of {} MiB) over loopback",
            FILE_SIZE >> 20
        );
        println!(
            "  upload    cairn {:>6.2} GiB/s  object store alone {:>6.2} GiB/s  ({:.2}x)",
            rate(upload),
            rate(raw_upload),
            upload.as_secs_f64() / raw_upload.as_secs_f64()
        );
        println!(
            "  download  cairn {:>6.2} GiB/s  object store alone {:>6.2} GiB/s  ({:.2}x)",
            rate(download),
            rate(raw_download),
            download.as_secs_f64() / raw_download.as_secs_f64()
        );
        println!(
            "  the local store alone (hash, write, rename from memory) {:>6.2} GiB/s",
            rate(local_store)
        );
    });
}
