//! `cairn watch`: a first round, then a round each time an input changes,
//! with only the stages the change reaches running again; Ctrl-C stops it
//! with exit code 130.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_saved_input_reruns_what_it_reaches_and_ctrl_c_stops_the_watch() {
    let dir = pipeline_dir(
        r#"
        [stages.show]
        uses = "{probe}"
        inputs = ["notes.txt"]
        args = ["cat", "/src/notes.txt"]

        [stages.other]
        uses = "{probe}"
        inputs = ["other.txt"]
        args = ["cat", "/src/other.txt"]
        "#,
        &[("notes.txt", "first draft\n"), ("other.txt", "untouched\n")],
    );
    let mut child = cairn(dir.path())
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn watch starts");
    let (sender, events) = mpsc::channel::<(Instant, serde_json::Value)>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let event = serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            if sender.send((Instant::now(), event)).is_err() {
                break;
            }
        }
    });
    let round = |events: &mpsc::Receiver<(Instant, serde_json::Value)>| {
        let mut seen = Vec::new();
        loop {
            let (at, event) = events
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no end of round in {seen:#?}"));
            let last = event["event"] == "pipeline_finished";
            seen.push((at, event));
            if last {
                return seen;
            }
        }
    };
    let first = round(&events);
    let ran: Vec<&serde_json::Value> = first.iter().map(|(_, event)| event).collect();
    assert_eq!(
        ran.last().map(|event| &event["status"]),
        Some(&"succeeded".into()),
        "{ran:#?}"
    );

    // Give the watcher a moment to be past its first round's wait, then save.
    std::thread::sleep(Duration::from_millis(300));
    let saved = Instant::now();
    std::fs::write(dir.path().join("notes.txt"), "second draft\n").expect("save");
    let second = round(&events);
    let (started_at, _) = second
        .iter()
        .find(|(_, event)| event["event"] == "stage_started" && event["stage"] == "show")
        .unwrap_or_else(|| panic!("`show` ran again: {second:#?}"));
    eprintln!(
        "cairn watch: a save reached the stage in {} ms (with the 50 ms settle)",
        started_at.duration_since(saved).as_millis()
    );
    let events_only: Vec<serde_json::Value> = second.into_iter().map(|(_, event)| event).collect();
    let statuses = statuses(&events_only);
    assert_eq!(
        (statuses["show"].as_str(), statuses["other"].as_str()),
        ("succeeded", "cached"),
        "only what the change reaches runs: {events_only:#?}"
    );
    assert!(
        stage_stdout(&events_only, "show").concat().contains("second draft"),
        "{events_only:#?}"
    );

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
}

/// Waits for `child`, killing it after `timeout`.
fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cairn watch did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
