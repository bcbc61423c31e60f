//! The worker pool against a real NATS server with JetStream: stages sent
//! with `--workers` run on `cairn worker` processes and land in
//! `cairn-out/` as if run here; a worker killed (`kill -9`) or stopped
//! (`SIGSTOP`) mid-stage has its stage finished by another, and a late
//! result changes nothing; a stage no worker finishes fails after the
//! bounded deliveries with what each delivery came to; a requester killed
//! mid-run picks its result up when run again; secrets never leave.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::remote_cache::{Checkout, bucket, status_json};
use crate::support::nats::{TestCluster, TestNats};
use crate::support::*;

/// A `cairn worker` process with a cache (a machine) of its own.
struct Worker {
    name: String,
    child: Child,
    log: PathBuf,
    _home: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

impl Worker {
    /// Starts a worker named `name` (one stage at a time, silent workers
    /// replaced after 2 s), waiting until it takes jobs.
    fn start(server: &str, name: &str, extra: &[&str]) -> Self {
        let home = tempfile::tempdir().expect("a folder for the worker");
        let cache = machine_cache();
        let log = home.path().join("worker.log");
        let file = std::fs::File::create(&log).expect("the worker's log");
        let child = cairn(home.path())
            .env("CAIRN_CACHE", cache.path())
            .env_remove("CAIRN_REMOTE")
            .args(["worker", "--remote", server, "--name", name, "--jobs", "1"])
            .args(if extra.contains(&"--ack-wait") {
                &[][..]
            } else {
                &["--ack-wait", "2s"][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log twice"))
            .stderr(file)
            .spawn()
            .expect("cairn worker starts");
        let mut worker = Self {
            name: name.to_owned(),
            child,
            log,
            _home: home,
            _cache: cache,
        };
        worker.wait_for("takes jobs from", Duration::from_secs(30));
        worker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the worker's log holds `text`.
    fn wait_for(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("worker {} exited ({status}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "worker {} never said `{text}`:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many deliveries the worker started.
    fn started(&self) -> usize {
        self.log().matches("): started, delivery").count()
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} worker {}", self.name);
    }

    /// `kill -9`: the worker vanishes mid-stage, as with a lost machine.
    fn kill(mut self) -> String {
        self.signal("KILL");
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `cairn run --workers --json` going on in the background.
struct Requester {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Requester {
    fn start(checkout: &Checkout, server: &str) -> Self {
        let stdout = checkout.dir.path().join("run.stdout");
        let stderr = checkout.dir.path().join("run.stderr");
        let child = checkout
            .cairn()
            .args(["run", "--json", "--workers", "--remote", server])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout"))
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("cairn run starts");
        Self { child, stdout, stderr }
    }

    /// Waits (at most two minutes) for the run to end.
    fn finish(mut self) -> (Finished, Vec<serde_json::Value>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the run") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the run did not end:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let events = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
            .collect();
        let finished = Finished {
            code: status.code(),
            stdout,
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        };
        (finished, events)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one worker among `workers` whose log says it started a stage.
fn wait_for_start(workers: &[Worker], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        if let Some(index) = workers.iter().position(|worker| worker.started() > 0) {
            return index;
        }
        assert!(Instant::now() < deadline, "no worker started the stage");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn host_lines(events: &[serde_json::Value], stage: &str) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["event"] == "stage_log" && event["stage"] == stage && event["source"] == "host")
        .filter_map(|event| event["text"].as_str().map(str::to_owned))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The shared cache tests' pipeline, and a stage granted a secret.
fn spread() -> String {
    format!(
        "{}{}",
        crate::remote_cache::PIPELINE,
        r#"
    [stages.signed]
    uses = "{probe}"
    secrets = ["SIGNING_KEY"]
    args = ["env"]
"#
    )
}

#[test]
fn stages_sent_to_workers_land_here_as_if_run_here_and_secrets_stay() {
    let server = TestNats::start();
    let workers = [
        Worker::start(&server.url, "w1", &[]),
        Worker::start(&server.url, "w2", &[]),
    ];
    let checkout = Checkout::with(&spread(), crate::remote_cache::FILES);
    let (finished, events) = run_json_with(
        {
            let mut command = checkout.cairn();
            command.env("SIGNING_KEY", "s3cret-value");
            command
        },
        &["--workers", "--remote", &server.url],
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let statuses = statuses(&events);
    assert!(statuses.values().all(|status| status == "succeeded"), "{statuses:?}");
    // The workers' logs reach this run's events, live.
    assert_eq!(stage_stdout(&events, "copy"), ["some data"]);
    assert_eq!(stage_stdout(&events, "after-constant"), ["always the same"]);
    for stage in ["constant", "copy", "after-constant"] {
        let lines = host_lines(&events, stage);
        assert!(
            lines.iter().any(|line| line.starts_with("runs on worker w")),
            "{stage}: {lines:?}"
        );
    }
    assert_eq!(
        read(&checkout.dir.path().join("cairn-out/constant/result.txt")),
        "always the same"
    );
    // The stage granted a secret ran here, and its value went nowhere.
    let signed = host_lines(&events, "signed");
    assert!(
        signed
            .iter()
            .any(|line| line.contains("runs on this machine, not on a worker") && line.contains("secrets")),
        "{signed:?}"
    );
    let started: usize = workers.iter().map(Worker::started).sum();
    assert_eq!(started, 3, "{}\n{}", workers[0].log(), workers[1].log());
    for worker in &workers {
        assert!(!worker.log().contains("signed"), "{}", worker.log());
    }
    let found = server.with_client(async |jetstream| {
        let mut found = Vec::new();
        for stream in ["cairn-jobs", "OBJ_cairn-blobs", "KV_cairn-actions", "KV_cairn-results"] {
            let stream = jetstream.get_stream(stream).await.expect("the stream");
            let last = stream.cached_info().state.last_sequence;
            for sequence in 1..=last {
                if let Ok(message) = stream.get_raw_message(sequence).await
                    && String::from_utf8_lossy(&message.payload).contains("s3cret-value")
                {
                    found.push(message.subject.to_string());
                }
            }
        }
        found
    });
    assert!(found.is_empty(), "the secret is on the server: {found:?}");

    // `cairn remote status` shows the workers and an empty queue.
    let status = status_json(&checkout, &server);
    assert_eq!(
        status["queue"]["workers"].as_array().map(Vec::len),
        Some(2),
        "{status:#}"
    );
    assert_eq!(status["queue"]["waiting"], 0, "{status:#}");
    assert_eq!(bucket(&status, "actions")["entries"], 3, "{status:#}");

    // Another machine runs nothing that a worker ran.
    let second = Checkout::with(&spread(), crate::remote_cache::FILES);
    let mut command = second.cairn();
    command.env("SIGNING_KEY", "s3cret-value");
    let (finished, events) = run_json_with(command, &["--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let statuses = crate::support::statuses(&events);
    for stage in ["constant", "copy", "after-constant"] {
        assert_eq!(statuses[stage], "cached", "{statuses:?}");
    }
}

#[test]
fn a_stage_that_fails_on_a_worker_fails_the_run_with_the_workers_words() {
    let server = TestNats::start();
    let worker = Worker::start(&server.url, "w1", &[]);
    let checkout = Checkout::with(
        r#"
        [stages.broken]
        uses = "{probe}"
        args = ["cat", "/src/missing.txt"]
        "#,
        &[],
    );
    let (finished, events) = checkout.run(&["--workers", "--remote", &server.url]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "broken");
    assert!(error.contains("on worker w1"), "{error}");
    assert!(
        stage_stdout(&events, "broken")
            .iter()
            .any(|line| line.starts_with("error:")),
        "{events:#?}"
    );
    assert!(worker.log().contains("broken"), "{}", worker.log());
}

const LONG: &str = r#"
    [stages.long]
    uses = "{probe}"
    args = ["sleep", "4000", "&&", "write", "/out/done.txt", "finished"]
"#;

#[test]
fn a_worker_killed_mid_stage_has_its_stage_finished_by_another() {
    let server = TestNats::start();
    let mut workers = vec![
        Worker::start(&server.url, "w1", &[]),
        Worker::start(&server.url, "w2", &[]),
        Worker::start(&server.url, "w3", &[]),
    ];
    let checkout = Checkout::with(LONG, &[]);
    let requester = Requester::start(&checkout, &server.url);
    let running = wait_for_start(&workers, Duration::from_secs(60));
    let killed = workers.remove(running).kill();
    let (finished, events) = requester.finish();
    assert_eq!(finished.code, Some(0), "{finished:?}\nkilled worker:\n{killed}");
    assert_eq!(statuses(&events)["long"], "succeeded");
    let again = host_lines(&events, "long");
    assert!(again.iter().any(|line| line.contains("handed out again")), "{again:?}");
    let started: usize = workers.iter().map(Worker::started).sum::<usize>() + 1;
    assert!(started <= 2, "the stage ran {started} times");
    assert_eq!(read(&checkout.dir.path().join("cairn-out/long/done.txt")), "finished");
    let status = status_json(&checkout, &server);
    assert_eq!(bucket(&status, "actions")["entries"], 1, "{status:#}");
}

#[test]
fn a_long_stage_that_reports_progress_is_never_handed_out_again() {
    let server = TestNats::start();
    // Silent for 1 s would be enough to lose the stage: the worker's
    // progress reports keep it through the 4 s the stage takes.
    let workers = [
        Worker::start(&server.url, "w1", &["--ack-wait", "1s"]),
        Worker::start(&server.url, "w2", &["--ack-wait", "1s"]),
    ];
    let checkout = Checkout::with(LONG, &[]);
    let (finished, events) = checkout.run(&["--workers", "--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["long"], "succeeded");
    let started: usize = workers.iter().map(Worker::started).sum();
    assert_eq!(started, 1, "{}\n{}", workers[0].log(), workers[1].log());
    let status = status_json(&checkout, &server);
    assert_eq!(status["queue"]["redelivered"], 0, "{status:#}");
}

#[test]
fn a_stopped_worker_is_replaced_and_its_late_result_changes_nothing() {
    let server = TestNats::start();
    let mut workers = vec![
        Worker::start(&server.url, "w1", &[]),
        Worker::start(&server.url, "w2", &[]),
    ];
    let checkout = Checkout::with(LONG, &[]);
    let requester = Requester::start(&checkout, &server.url);
    let running = wait_for_start(&workers, Duration::from_secs(60));
    workers[running].signal("STOP");
    let (finished, events) = requester.finish();
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["long"], "succeeded");
    let published = read(&checkout.dir.path().join("cairn-out/long/done.txt"));

    workers[running].signal("CONT");
    workers[running].wait_for(
        "late: another worker's result was published first",
        Duration::from_secs(60),
    );
    let status = status_json(&checkout, &server);
    assert_eq!(bucket(&status, "actions")["entries"], 1, "{status:#}");
    assert_eq!(read(&checkout.dir.path().join("cairn-out/long/done.txt")), published);
    let (finished, events) = checkout.run(&["--workers", "--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["long"], "cached");
}

#[test]
fn a_stage_that_takes_its_workers_down_fails_after_the_bounded_deliveries() {
    let server = TestNats::start();
    let bound = ["--max-deliveries", "2"];
    let checkout = Checkout::with(LONG, &[]);
    let requester = Requester::start(&checkout, &server.url);
    // Each worker that takes the stage dies with it, as one whose machine
    // runs out of memory would.
    for name in ["w1", "w2"] {
        let workers = [Worker::start(&server.url, name, &bound)];
        wait_for_start(&workers, Duration::from_secs(60));
        let [worker] = workers;
        worker.kill();
    }
    let mut last = Worker::start(&server.url, "w3", &bound);
    let (finished, events) = requester.finish();
    assert_eq!(finished.code, Some(1), "{finished:?}");
    let error = stage_error(&events, "long");
    assert!(
        error.contains("no worker finished the stage in 2 deliveries"),
        "{error}"
    );
    assert!(error.contains("worker w1") && error.contains("worker w2"), "{error}");
    last.wait_for("no worker finished the stage", Duration::from_secs(10));
    assert_eq!(last.started(), 0, "{}", last.log());
    let status = status_json(&checkout, &server);
    assert_eq!(status["queue"]["waiting"], 0, "{status:#}");
    assert_eq!(status["queue"]["running"], 0, "{status:#}");
}

#[test]
fn a_requester_killed_mid_run_picks_the_result_up_when_run_again() {
    let server = TestNats::start();
    let workers = [Worker::start(&server.url, "w1", &[])];
    let checkout = Checkout::with(LONG, &[]);
    let requester = Requester::start(&checkout, &server.url);
    wait_for_start(&workers, Duration::from_secs(60));
    requester.kill();
    let (finished, events) = checkout.run(&["--workers", "--remote", &server.url]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        ["succeeded", "cached"].contains(&statuses(&events)["long"].as_str()),
        "{events:#?}"
    );
    assert_eq!(read(&checkout.dir.path().join("cairn-out/long/done.txt")), "finished");
    assert_eq!(workers[0].started(), 1, "{}", workers[0].log());
}

#[test]
fn workers_without_a_shared_cache_are_refused_with_the_line_to_add() {
    let checkout = Checkout::with(LONG, &[]);
    let (finished, _) = checkout.run(&["--workers"]);
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("[remote] url"), "{finished:?}");
}

#[test]
fn killing_the_queue_leader_of_a_three_server_cluster_mid_pipeline_loses_nothing() {
    let mut cluster = TestCluster::start(3);
    let replicated = ["--replicas", "3", "--max-deliveries", "5"];
    let workers = [
        Worker::start(&cluster.url, "w1", &replicated),
        Worker::start(&cluster.url, "w2", &replicated),
    ];
    let checkout = Checkout::with(
        r#"
        [remote]
        replicas = 3

        [stages.first]
        uses = "{probe}"
        args = ["sleep", "3000", "&&", "write", "/out/a.txt", "first"]

        [stages.second]
        uses = "{probe}"
        needs = ["first"]
        args = ["sleep", "1000", "&&", "cat", "/in/first/a.txt"]

        [stages.third]
        uses = "{probe}"
        needs = ["second"]
        args = ["write", "/out/c.txt", "third"]
        "#,
        &[],
    );
    let requester = Requester::start(&checkout, &cluster.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        if workers.iter().any(|worker| worker.started() > 0)
            && let Some(leader) = cluster.leader_of("cairn-jobs")
        {
            break leader;
        }
        assert!(Instant::now() < deadline, "no stage started on the cluster");
        std::thread::sleep(Duration::from_millis(50));
    };
    let replicas = cluster.with_client(async |jetstream| {
        let mut stream = jetstream.get_stream("cairn-jobs").await.expect("the queue");
        stream.info().await.expect("its info").config.num_replicas
    });
    assert_eq!(replicas, 3);
    cluster.kill(&leader);
    let (finished, events) = requester.finish();
    assert_eq!(finished.code, Some(0), "{finished:?}\nleader {leader} killed");
    let statuses = statuses(&events);
    assert!(statuses.values().all(|status| status == "succeeded"), "{statuses:?}");
    assert_eq!(stage_stdout(&events, "second"), ["first"]);
    assert_eq!(read(&checkout.dir.path().join("cairn-out/third/c.txt")), "third");
    let new_leader = cluster.leader_of("cairn-jobs").expect("a new leader");
    assert_ne!(new_leader, leader);
}

#[test]
fn hundreds_of_stages_spread_over_two_workers_all_land() {
    // Each stage reads and returns a few blobs: a server-side consumer per
    // read or per wait (they linger for 30 s) would exhaust the server's
    // consumers long before the end.
    const STAGES: usize = 400;
    let server = TestNats::start();
    let _workers = [
        Worker::start(&server.url, "w1", &[]),
        Worker::start(&server.url, "w2", &[]),
    ];
    let mut pipeline = String::new();
    let mut files = Vec::new();
    for index in 0..STAGES {
        pipeline.push_str(&format!(
            "[stages.s{index}]\nuses = \"{{probe}}\"\ninputs = [\"in/{index}.txt\"]\nargs = [\"upper\", \"/src/in/{index}.txt\", \"/out/{index}.txt\"]\n"
        ));
        files.push((format!("in/{index}.txt"), format!("stage {index} says hello\n")));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    let checkout = Checkout::with(&pipeline, &files);
    let (finished, events) = checkout.run(&["--workers", "--remote", &server.url, "-j", "8"]);
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);
    let statuses = statuses(&events);
    assert_eq!(statuses.len(), STAGES);
    assert!(statuses.values().all(|status| status == "succeeded"), "{statuses:?}");
    assert_eq!(
        read(&checkout.dir.path().join("cairn-out/s399/399.txt")),
        "STAGE 399 SAYS HELLO\n"
    );
}

#[test]
fn a_job_purged_from_the_queue_is_sent_again_by_the_next_run() {
    let server = TestNats::start();
    let checkout = Checkout::with(LONG, &[]);
    // A run queues the job while no worker is there, and dies.
    let requester = Requester::start(&checkout, &server.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.with_client(async |jetstream| match jetstream.get_stream("cairn-jobs").await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }) == 0
    {
        assert!(Instant::now() < deadline, "the job was never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    requester.kill();
    // An operator empties the queue; the server still remembers the job's
    // id for its duplicate window.
    server.with_client(async |jetstream| {
        let stream = jetstream.get_stream("cairn-jobs").await.expect("the queue");
        stream.purge().await.expect("purged");
    });
    let worker = Worker::start(&server.url, "w1", &[]);
    // Bounded: without sending it again, the run would wait for ever.
    let (finished, events) = Requester::start(&checkout, &server.url).finish();
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["long"], "succeeded");
    assert_eq!(worker.started(), 1, "{}", worker.log());
}
