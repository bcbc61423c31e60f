//! Shared helpers for the end-to-end tests: one runtime for the test binary
//! over a shared compiled-component cache, the guest programs, an observer
//! that records what a stage reported, and a wrapper around the real `cairn`
//! binary.

pub mod http_server;
pub mod nats;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, LazyLock, Mutex};

use cairn::observer::{Annotation, LogLine, LogSource, StageObserver};
use cairn::{CacheDir, LoadedComponent, Runtime, Sandbox, StageRun};

/// A cache shared by every test of this build, so each guest is compiled once
/// per test run rather than once per test.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cairn-test-cache")
}

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let cache = CacheDir::open(shared_cache_dir()).expect("the shared test cache opens");
    Runtime::new(&cache).expect("the runtime starts")
});

/// The runtime shared by the tests of one binary.
pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

/// Loads a guest program by path through the shared runtime.
pub async fn load(path: &str) -> Arc<LoadedComponent> {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    runtime().load(bytes.into()).await.expect("the guest loads")
}

/// The probe as a command component.
pub async fn probe() -> Arc<LoadedComponent> {
    load(cairn_test_programs::PROBE_COMPONENT).await
}

/// The `cairn:stage` probe.
pub async fn stage_probe() -> Arc<LoadedComponent> {
    load(cairn_test_programs::STAGE_PROBE).await
}

/// A sandbox for a probe run: `probe ARGS...`, nothing granted.
pub fn sandbox(args: &[&str]) -> Sandbox {
    let mut sandbox = Sandbox::new("probe", [7; 32]);
    sandbox.invocation.args = args.iter().map(|arg| (*arg).to_owned()).collect();
    sandbox
}

/// Everything a stage reported while it ran.
#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<LogLine>>,
    pub progress: Mutex<Vec<(u64, u64)>>,
    pub annotations: Mutex<Vec<Annotation>>,
}

impl StageObserver for Recorder {
    fn log(&self, line: &LogLine) {
        self.lines.lock().expect("not poisoned").push(line.clone());
    }
    fn progress(&self, done: u64, total: u64) {
        self.progress.lock().expect("not poisoned").push((done, total));
    }
    fn annotate(&self, annotation: &Annotation) {
        self.annotations.lock().expect("not poisoned").push(annotation.clone());
    }
}

/// Runs a loaded component in `sandbox`, recording what it reports.
pub async fn run_with(component: &LoadedComponent, sandbox: &Sandbox) -> (StageRun, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let run = runtime()
        .run(component, sandbox, recorder.clone())
        .await
        .expect("the sandbox is set up");
    (run, recorder)
}

/// Runs a loaded component and returns the run alone.
pub async fn run(component: &LoadedComponent, sandbox: &Sandbox) -> StageRun {
    run_with(component, sandbox).await.0
}

/// What the guest printed on stdout, one entry per line.
pub fn stdout(run: &StageRun) -> Vec<String> {
    run.log
        .lines
        .iter()
        .filter(|line| line.source == LogSource::Stdout)
        .map(|line| line.text.clone())
        .collect()
}

/// The probe's one-line report of a refused action (`error: Kind: message`).
pub fn refusal(run: &StageRun) -> String {
    assert!(
        run.result.is_err(),
        "the action was expected to be refused, but it succeeded: {:?}",
        stdout(run)
    );
    stdout(run)
        .into_iter()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in {:?}", stdout(run)))
}

/// Asserts a run succeeded, showing its log if not.
pub fn assert_succeeded(run: &StageRun) {
    if let Err(failure) = &run.result {
        panic!("the stage failed: {failure}\nlog: {:#?}", run.log.lines);
    }
}

/// Proves the runtime still works after a stage misbehaved: a fresh stage in
/// the same process runs normally.
pub async fn assert_runtime_still_healthy() {
    let probe = probe().await;
    let run = run(&probe, &sandbox(&["echo", "still alive"])).await;
    assert_succeeded(&run);
    assert_eq!(stdout(&run), ["still alive"]);
}

/// A folder of files, for `/src` and `/in/*`.
pub fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }
    dir
}

/// Every file under `root` with its contents, for comparing output trees.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

/// The cache `cairn` uses for the workspace `dir`: its own store and
/// workspace state, so tests cannot hit each other's results, but the
/// compiled components and stage builds of the whole test run, so nothing is
/// compiled twice.
pub fn cache_for(dir: &Path) -> PathBuf {
    let name = blake3::hash(dir.to_string_lossy().as_bytes()).to_hex();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("caches")
        .join(&name[..16]);
    if !cache.exists() {
        std::fs::create_dir_all(&cache).expect("a test cache");
        for shared in ["compiled-v1", "stage-builds-v1", "cargo-target"] {
            let target = shared_cache_dir().join(shared);
            std::fs::create_dir_all(&target).expect("the shared part of the test cache");
            let _ = std::os::unix::fs::symlink(&target, cache.join(shared));
        }
    }
    cache
}

/// Starts a server the test needs, its stdout and stderr in the file
/// `log`; `install` says how to get it when it is missing.
pub fn spawn_server(command: &mut Command, log: &Path, install: &str) -> std::process::Child {
    let file = std::fs::File::create(log).expect("the server's log");
    command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("the log twice"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {:?} ({error}); {install}", command.get_program()))
}

/// Waits up to 30 s for a server the test started to be `ready`, failing
/// with its `log` if it exits or never is.
pub fn wait_for_server(
    name: &str,
    child: &mut std::process::Child,
    ready: impl Fn() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited ({status}):\n{}", log());
        }
        if ready() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{name} did not start:\n{}", log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The cache of another machine: a store and stage folder builds of its
/// own, sharing with the test run only the compiled code and cargo's
/// target folder, which hold no results (so a Rust stage folder builds in
/// seconds, to the same bytes).
pub fn machine_cache() -> tempfile::TempDir {
    let cache = tempfile::tempdir().expect("a cache");
    for shared in ["compiled-v1", "cargo-target"] {
        let target = shared_cache_dir().join(shared);
        std::fs::create_dir_all(&target).expect("the shared part of the test cache");
        std::os::unix::fs::symlink(&target, cache.path().join(shared)).expect("a link to the shared cache");
    }
    cache
}

/// The real `cairn` binary, run in `dir` with that workspace's test cache.
pub fn cairn(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .current_dir(dir)
        .env("CAIRN_CACHE", cache_for(dir))
        // Registry credentials of the test's own, never the machine's.
        .env("DOCKER_CONFIG", cache_for(dir).join("docker"))
        .env_remove("CAIRN_INSECURE_REGISTRIES")
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CAIRN_LOG")
        // A test run on a CI runner or with a collector configured reports
        // to neither: tests that want them set them.
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        // Every test keeps its runs, whatever the machine says.
        .env_remove("CAIRN_KEEP_RUNS")
        .env_remove("CAIRN_KEEP_DAYS");
    command
}

/// The exit code, stdout and stderr of a finished command, for assertions.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion.
pub fn finish(command: &mut Command) -> Finished {
    let Output { status, stdout, stderr } = command.output().expect("cairn starts");
    Finished {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "exit code {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A workspace folder holding `cairn.toml` with `pipeline` (in which
/// `{probe}`, `{stage_probe}` and `{preview1}` name the guest programs) and
/// the given files.
pub fn pipeline_dir(pipeline: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let text = pipeline
        .replace("{probe}", cairn_test_programs::PROBE_COMPONENT)
        .replace("{stage_probe}", cairn_test_programs::STAGE_PROBE)
        .replace("{preview1}", cairn_test_programs::PROBE_PREVIEW1);
    let mut all = vec![("cairn.toml", text.as_str())];
    all.extend_from_slice(files);
    folder(&all)
}

/// Runs `cairn run --json ARGS` in `dir` and returns how it finished and its events.
pub fn run_json(dir: &Path, args: &[&str]) -> (Finished, Vec<serde_json::Value>) {
    run_json_with(cairn(dir), args)
}

/// [`run_json`] with a `cairn` command of the caller's (its own environment, say).
pub fn run_json_with(mut command: Command, args: &[&str]) -> (Finished, Vec<serde_json::Value>) {
    let finished = finish(command.arg("run").arg("--json").args(args));
    let events = finished
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect();
    (finished, events)
}

/// The events of one kind.
pub fn events_of<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|event| event["event"] == kind).collect()
}

/// The `stage_finished` event of `stage`.
pub fn finished_stage<'a>(events: &'a [serde_json::Value], stage: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|event| event["event"] == "stage_finished" && event["stage"] == stage)
        .unwrap_or_else(|| panic!("no stage_finished for `{stage}` in {events:#?}"))
}

/// The stdout lines a stage logged, from `stage_log` events.
pub fn stage_stdout(events: &[serde_json::Value], stage: &str) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["event"] == "stage_log" && event["stage"] == stage && event["source"] == "stdout")
        .filter_map(|event| event["text"].as_str().map(str::to_owned))
        .collect()
}

/// The `error` of a stage's `stage_finished` event.
pub fn stage_error(events: &[serde_json::Value], stage: &str) -> String {
    finished_stage(events, stage)["error"]
        .as_str()
        .unwrap_or_else(|| panic!("`{stage}` has no error"))
        .to_owned()
}

/// Each stage's final status, by name.
pub fn statuses(events: &[serde_json::Value]) -> BTreeMap<String, String> {
    events_of(events, "stage_finished")
        .into_iter()
        .map(|event| {
            (
                event["stage"].as_str().expect("a stage").to_owned(),
                event["status"].as_str().expect("a status").to_owned(),
            )
        })
        .collect()
}

/// Runs `body` in a process of its own: the test binary again, asked to run
/// only the test named `test` (its path in the binary), for measurements of
/// the whole process (its peak memory) that tests running beside it in the
/// same process would disturb.
pub fn in_own_process(test: &str, body: impl FnOnce()) {
    const ALONE: &str = "CAIRN_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        body();
        return;
    }
    let status = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .status()
        .expect("the test binary runs");
    assert!(status.success(), "`{test}`, run alone, failed ({status})");
}

/// The repository this test binary was built from.
pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A copy of `examples/NAME` in a temporary folder outside the repository,
/// as a newcomer copies an example to start a pipeline of their own: tests
/// run and build there, so the checkout's `examples/` is never written to.
pub fn copy_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&repository().join("examples").join(name), dir.path());
    dir
}

/// Copies the sources under `from` to `to`: not what builds and runs leave
/// behind (`target/`, `cairn-out/`, `node_modules/`, `__pycache__/`, `.git/`).
pub fn copy_tree(from: &Path, to: &Path) {
    const LEFT_BEHIND: [&str; 5] = [".git", "target", "cairn-out", "node_modules", "__pycache__"];
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        std::fs::create_dir_all(to.join(&relative)).expect("mkdir");
        for entry in std::fs::read_dir(from.join(&relative)).expect("readable").flatten() {
            let name = entry.file_name();
            if LEFT_BEHIND.iter().any(|skip| name == *skip) {
                continue;
            }
            let path = relative.join(&name);
            if entry.file_type().expect("type").is_dir() {
                pending.push(path);
            } else {
                std::fs::copy(entry.path(), to.join(&path)).expect("copy");
            }
        }
    }
}

/// Every file under `root` whose bytes, name or link target contain
/// `needle` (links are not followed): where a secret or a host file must
/// never be found.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                let named = path
                    .to_string_lossy()
                    .contains(std::str::from_utf8(needle).unwrap_or_default());
                if named || bytes.windows(needle.len()).any(|window| window == needle) {
                    found.push(path.display().to_string());
                }
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                if target
                    .to_string_lossy()
                    .contains(std::str::from_utf8(needle).unwrap_or_default())
                {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}
