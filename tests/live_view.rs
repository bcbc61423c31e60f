//! The live terminal view, on a real pseudo-terminal (tmux): a running
//! stage's spinner, progress bar and last log line, the lines of finished
//! stages and the summary; colours, and none with `NO_COLOR`; and a narrow
//! terminal left clean when the run ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// A tmux server of the test's own (its own socket), stopped when dropped.
struct Terminal {
    socket: PathBuf,
    _folder: tempfile::TempDir,
}

impl Terminal {
    /// Runs `cairn run` in `dir` on a `width`×20 terminal, with `env` set.
    fn run(dir: &Path, width: u16, env: &[(&str, &str)]) -> Self {
        let folder = tempfile::tempdir().expect("a folder for the socket");
        let socket = folder.path().join("tmux.sock");
        let mut command = format!("env CAIRN_CACHE='{}'", cache_for(dir).display());
        for (name, value) in env {
            command.push_str(&format!(" {name}='{value}'"));
        }
        command.push_str(&format!(
            " '{}' run -C '{}'; echo EXIT=$?; sleep 60",
            env!("CARGO_BIN_EXE_cairn"),
            dir.display()
        ));
        let started = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "cairn", "-x"])
            .arg(width.to_string())
            .args(["-y", "20"])
            .arg(command)
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs (`cargo xtask setup` installs it)");
        assert!(started.success(), "tmux new-session");
        Self {
            socket,
            _folder: folder,
        }
    }

    /// The screen, with colours as escape sequences.
    fn screen(&self) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-e", "-t", "cairn"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The screen once `wanted` says yes, or the last one after 60 s.
    fn wait_for(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if wanted(&screen) || Instant::now() > deadline {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

/// Whether `screen` has any foreground colour.
fn coloured(screen: &str) -> bool {
    (30..=37)
        .chain(90..=97)
        .any(|colour| screen.contains(&format!("\u{1b}[{colour}m")))
}

/// `screen` without escape sequences.
fn plain(screen: &str) -> String {
    let mut text = String::new();
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            text.push(c);
        }
    }
    text
}

const PIPELINE: &str = r#"
[stages.quick]
uses = "{stage_probe}"
with = { mode = "noop" }
cache = false

[stages.slow]
uses = "{stage_probe}"
needs = ["quick"]
with = { mode = "slow", ms = "2500" }
cache = false
"#;

#[test]
fn the_live_view_shows_running_stages_and_the_summary_in_colour() {
    let dir = pipeline_dir(PIPELINE, &[]);
    let terminal = Terminal::run(dir.path(), 100, &[]);
    // While `slow` runs: its spinner line, elapsed time, progress bar and
    // last log line, below the line of the stage that finished.
    let running = plain(&terminal.wait_for(|screen| plain(screen).contains("1/2")));
    let line = running
        .lines()
        .find(|line| line.contains("slow") && line.contains("1/2"))
        .unwrap_or_else(|| panic!("a progress line for `slow`:\n{running}"));
    assert!(line.contains("[==") && line.contains("working on it"), "{line}");
    assert!(running.contains("✓ quick"), "{running}");

    let finished = terminal.wait_for(|screen| screen.contains("EXIT="));
    let text = plain(&finished);
    assert!(text.contains("EXIT=0"), "{text}");
    assert!(text.contains("✓ slow") && text.contains("slept"), "{text}");
    assert!(text.contains("pipeline succeeded: 2 succeeded"), "{text}");
    assert!(
        !text.contains("1/2") && !text.contains("working on it"),
        "the bar is cleared:\n{text}"
    );
    let table: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("slow ") || line.starts_with("quick "))
        .collect();
    assert_eq!(table.len(), 2, "a summary row per stage:\n{text}");
    assert!(coloured(&finished), "colours on a terminal:\n{finished:?}");
}

#[test]
fn no_color_and_a_narrow_terminal_keep_the_view_clean() {
    let dir = pipeline_dir(PIPELINE, &[]);
    let terminal = Terminal::run(dir.path(), 40, &[("NO_COLOR", "1")]);
    let running = terminal.wait_for(|screen| plain(screen).contains("1/2"));
    assert!(!coloured(&running), "no colours with NO_COLOR:\n{running:?}");
    let finished = terminal.wait_for(|screen| screen.contains("EXIT="));
    assert!(!coloured(&finished), "no colours with NO_COLOR:\n{finished:?}");
    let text = plain(&finished);
    assert!(text.contains("EXIT=0") && text.contains("✓ slow"), "{text}");
    // Nothing of the progress line is left behind, wrapped or not.
    assert!(
        !text.contains("1/2") && !text.contains("working on it") && !text.contains("[=="),
        "{text}"
    );
    // The summary's rows are whole lines, not wrapped remnants.
    assert!(
        text.lines()
            .any(|line| line.starts_with("slow ") && line.contains("succeeded")),
        "{text}"
    );
}
