//! What a pull request can put in a workspace, treated as hostile: symbolic
//! links are data and never doors out of it, and FIFOs, sockets and devices
//! are never inputs (nothing waits on them).

use std::os::unix::fs::symlink;
use std::time::Duration;

use crate::support::*;

/// A line of the host's `/etc/passwd` that must never leave the host.
fn passwd_line() -> String {
    std::fs::read_to_string("/etc/passwd")
        .expect("the host has /etc/passwd")
        .lines()
        .next()
        .expect("a line")
        .to_owned()
}

#[test]
fn symbolic_links_are_data_and_never_lead_out_of_the_workspace() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), "outside the workspace\n").expect("write");
    let dir = pipeline_dir(
        r#"
        [stages.look]
        uses = "{probe}"
        inputs = ["**"]
        args = ["list", "/src", "&&", "cat", "/src/inside", "&&", "list", "/src/docs-link"]

        [stages.escape]
        uses = "{probe}"
        inputs = ["**"]
        args = ["cat", "/src/pw"]
        "#,
        &[("real.txt", "real\n"), ("docs/a.md", "# a\n")],
    );
    let root = dir.path();
    symlink("/etc/passwd", root.join("pw")).expect("absolute link");
    // `..` past the root: both folders are in the same temporary folder.
    let sibling = outside
        .path()
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    symlink(format!("../{sibling}/secret.txt"), root.join("up")).expect("link past the root");
    symlink("real.txt", root.join("inside")).expect("link to a file inside");
    symlink("docs", root.join("docs-link")).expect("link to a folder inside");
    symlink("/etc", root.join("etc-link")).expect("link to a folder outside");
    symlink("loop2", root.join("loop1")).expect("loop");
    symlink("loop1", root.join("loop2")).expect("loop");

    let (finished, events) = run_json(root, &[]);
    assert_eq!(finished.code, Some(1), "only `escape` fails: {finished:?}");
    assert_eq!(finished_stage(&events, "look")["status"], "succeeded", "{finished:?}");
    let listed = stage_stdout(&events, "look");
    for name in [
        "docs-link",
        "etc-link",
        "inside",
        "loop1",
        "loop2",
        "pw",
        "real.txt",
        "up",
    ] {
        assert!(
            listed.iter().any(|line| line == name),
            "`{name}` is in /src: {listed:?}"
        );
    }
    assert!(
        listed.iter().any(|line| line == "real"),
        "a link inside resolves inside: {listed:?}"
    );
    assert!(
        listed.iter().any(|line| line == "a.md"),
        "a folder link inside resolves inside: {listed:?}"
    );
    assert!(
        !finished.stderr.contains("cache"),
        "nothing about the cache: {finished:?}"
    );
    let escape = stage_error(&events, "escape");
    assert!(escape.starts_with("exited with"), "the link leads nowhere: {escape}");

    // Warned once per link that leaves, naming the file and its target.
    for (link, target) in [("pw", "/etc/passwd".to_owned()), ("etc-link", "/etc".to_owned())] {
        let warning = format!("`{link}` is a symbolic link to `{target}`, outside the workspace");
        assert_eq!(finished.stderr.matches(&warning).count(), 1, "{finished:?}");
    }
    let up = format!("`up` is a symbolic link to `../{sibling}/secret.txt`, outside the workspace");
    assert_eq!(finished.stderr.matches(&up).count(), 1, "{finished:?}");

    // What the links point at appears nowhere: not in cairn-out, the
    // cache or the events.
    for needle in [passwd_line(), "outside the workspace\n".to_owned()] {
        assert!(!finished.stdout.contains(needle.trim_end()), "{needle}: {finished:?}");
        assert_eq!(
            files_containing(&root.join("cairn-out"), needle.as_bytes()),
            Vec::<String>::new()
        );
        assert_eq!(
            files_containing(&cache_for(root), needle.as_bytes()),
            Vec::<String>::new()
        );
    }

    // The key covers a link's target text: retargeting reruns the stage.
    let (_, events) = run_json(root, &[]);
    assert_eq!(finished_stage(&events, "look")["status"], "cached");
    std::fs::write(root.join("other.txt"), "real\n").expect("write");
    std::fs::remove_file(root.join("inside")).expect("remove");
    symlink("other.txt", root.join("inside")).expect("relink");
    let (_, events) = run_json(root, &[]);
    assert_eq!(finished_stage(&events, "look")["status"], "succeeded", "{events:#?}");
}

#[test]
fn fifos_and_sockets_are_never_inputs_and_nothing_waits_on_them() {
    let dir = pipeline_dir(
        r#"
        [stages.count]
        uses = "{probe}"
        inputs = ["*.txt"]
        args = ["list", "/src"]
        "#,
        &[("input.txt", "text\n")],
    );
    let root = dir.path();
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("pipe.txt"))
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let _socket = std::os::unix::net::UnixListener::bind(root.join("socket.txt")).expect("a socket");

    let mut child = cairn(root)
        .args(["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cairn starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("waits").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("cairn hangs on a FIFO");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(r#""text":"input.txt""#), "{stdout}");
    assert!(
        !stdout.contains("pipe.txt") && !stdout.contains("socket.txt"),
        "{stdout}"
    );
    for name in ["pipe.txt", "socket.txt"] {
        let warning = format!("`{name}` is a FIFO, socket or device, not a file: it is left out of `/src`");
        assert!(stderr.contains(&warning), "{stderr}");
    }
}
