//! Host programs run for a stage (`cairn:stage/tools`), under bubblewrap.
//!
//! A tool sees what the stage's wasm sees and nothing else of the host (the
//! rows are built in [`bwrap`]), in its own PID namespace so that nothing it
//! started outlives it, bounded in memory and process count ([`bounds`]),
//! and with its output captured into the stage's log, masked like the rest.

mod bounds;
mod bwrap;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use crate::logs::LogCapture;
use cairn_core::Limits;
use cairn_core::observer::LogSource;

use bounds::ProcessBounds;
use bwrap::{TOOLS_BIN, ToolLayout};

/// The most processes a stage's tools may have at once: enough for a
/// parallel build, few enough that a fork bomb stops.
pub const MAX_PROCESSES: u64 = 1024;

/// A host program granted to a stage, as resolved on the host when the
/// pipeline was planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolGrant {
    /// The name the stage calls it by, and its name on the tools' `PATH`.
    pub name: String,
    /// The executable, symlinks followed.
    pub executable: PathBuf,
    /// The installation tree it belongs to (a rustup toolchain, a Node
    /// prefix), shown read-only with it; `None` for a program of the
    /// system's `/usr`, or a lone script shown by itself.
    pub root: Option<PathBuf>,
}

/// Everything a stage's tool runs are given: the stage's own folders and
/// grants, as its wasm sees them.
pub(crate) struct Tools {
    pub(crate) granted: Vec<ToolGrant>,
    pub(crate) stage: String,
    pub(crate) src: Option<PathBuf>,
    pub(crate) inputs: BTreeMap<String, PathBuf>,
    pub(crate) out: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) secrets: BTreeMap<String, String>,
    pub(crate) network: bool,
    pub(crate) limits: Limits,
    pub(crate) source_date_epoch: Option<u64>,
    pub(crate) capture: Arc<LogCapture>,
    /// The sandboxes running now, killed when the stage ends however it ends.
    pub(crate) running: Arc<Running>,
}

/// Process ids of the `bwrap` processes a stage has running.
#[derive(Default)]
pub(crate) struct Running(Mutex<Vec<u32>>);

impl Running {
    fn add(&self, pid: u32) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(pid);
    }

    fn remove(&self, pid: u32) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&p| p != pid);
    }

    /// Kills every sandbox still running. Killing `bwrap` ends its PID
    /// namespace, and with it every process the tool started.
    pub(crate) fn kill_all(&self) {
        for pid in self.0.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// How a tool run is asked for.
pub(crate) struct ToolRequest {
    pub(crate) tool: String,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: Option<String>,
    pub(crate) env: Vec<(String, String)>,
}

impl Tools {
    /// Runs a tool to its end and returns its exit status, or why it could
    /// not start.
    pub(crate) async fn run(&self, request: ToolRequest) -> Result<i32, String> {
        let layout = ToolLayout::new(&self.granted);
        if !layout.inside.contains_key(&request.tool) {
            let granted: Vec<&str> = self.granted.iter().map(|tool| tool.name.as_str()).collect();
            return Err(not_granted(&self.stage, &granted, &request.tool));
        }
        let program = PathBuf::from(TOOLS_BIN).join(&request.tool);
        let bwrap = sandbox_program().await?;
        let cwd = request
            .cwd
            .clone()
            .unwrap_or_else(|| if self.src.is_some() { "/src" } else { "/tmp" }.to_owned());
        let bounds = ProcessBounds::new(self.limits.memory, MAX_PROCESSES);
        // Cairn's own trace, not the stage's log: the same on every run
        // of this host, and a log would cost every cached run a replay.
        tracing::debug!(
            tool = %request.tool,
            memory = %self.limits.memory,
            memory_by = %bounds.memory_by(),
            processes = MAX_PROCESSES,
            processes_by = %bounds.processes_by(),
            network = self.network,
            "runs a host tool under bubblewrap"
        );
        let mut child = self.start(bwrap, &layout, &cwd, &program, &request, &bounds).await?;
        let pid = child.id();
        if let Some(pid) = pid {
            self.running.add(pid);
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (status, (), ()) = tokio::join!(
            child.wait(),
            self.copy_into_log(stdout, LogSource::Stdout),
            self.copy_into_log(stderr, LogSource::Stderr)
        );
        if let Some(pid) = pid {
            self.running.remove(pid);
        }
        let status = status.map_err(|error| format!("lost the tool sandbox: {error}"))?;
        if let Some(bound) = bounds.exceeded() {
            self.capture.sandbox_notice(&bound);
        }
        Ok(exit_code(status))
    }

    /// Starts the sandbox, holds it before the tool runs while its processes
    /// are put under `bounds`, then lets it go. bubblewrap reports its
    /// namespace's first process on `--info-fd` and waits on `--block-fd`,
    /// so nothing the tool forks can escape the bounds, and the sandbox is
    /// spawned without a `fork` of cairn's large address space (no code runs
    /// between fork and exec).
    async fn start(
        &self,
        bwrap: &Path,
        layout: &ToolLayout,
        cwd: &str,
        program: &Path,
        request: &ToolRequest,
        bounds: &ProcessBounds,
    ) -> Result<tokio::process::Child, String> {
        let broken = |error: std::io::Error| format!("cannot start the tool sandbox `{}`: {error}", bwrap.display());
        let (info_read, info_write) = cloexec_pipe().map_err(broken)?;
        let (block_read, block_write) = cloexec_pipe().map_err(broken)?;
        let mut command = tokio::process::Command::new(bwrap);
        command
            .arg("--info-fd")
            .arg(info_write.as_raw_fd().to_string())
            .arg("--block-fd")
            .arg(block_read.as_raw_fd().to_string())
            .args(bwrap::arguments(self, layout, cwd))
            .arg(program)
            .args(&request.args)
            .env_clear()
            .envs(self.environment(request))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = {
            // The two pipe ends are inheritable only while this sandbox is
            // spawned, so that no other process cairn starts gets them.
            static SPAWNING: Mutex<()> = Mutex::new(());
            let _spawning = SPAWNING.lock().unwrap_or_else(PoisonError::into_inner);
            inheritable(&info_write)
                .and_then(|()| inheritable(&block_read))
                .map_err(broken)?;
            command.spawn().map_err(broken)?
        };
        drop((info_write, block_read));
        let info = tokio::task::spawn_blocking(move || {
            let mut info = String::new();
            let _ = std::fs::File::from(info_read).read_to_string(&mut info);
            info
        })
        .await
        .unwrap_or_default();
        // No report: bubblewrap failed before making the namespace, and
        // says why on stderr, which the log shows.
        if let Some(first) = child_pid(&info) {
            let held = child
                .id()
                .into_iter()
                .chain([first])
                .try_for_each(|pid| bounds.hold(pid));
            if let Err(error) = held {
                // Dead before its block pipe closes: an unbounded tool never runs.
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!("cannot bound the tool sandbox's processes: {error}"));
            }
            std::fs::File::from(block_write).write_all(b"1").map_err(broken)?;
        }
        Ok(child)
    }

    /// Copies one of the tool's pipes into the stage's log until it closes.
    async fn copy_into_log(&self, pipe: Option<impl tokio::io::AsyncRead + Unpin>, source: LogSource) {
        if let Some(mut pipe) = pipe {
            let mut sink = self.capture.stream(source);
            let _ = tokio::io::copy(&mut pipe, &mut sink).await;
        }
    }

    /// The declared environment, the request's on top, and what every tool
    /// needs where the stage did not set it: a `PATH` of the granted tools,
    /// a `HOME` and `TMPDIR` in `/tmp`, and the pinned time for builds that
    /// stamp it. Granted secrets are there by name, as the stage would read
    /// them from `host.secret`.
    fn environment(&self, request: &ToolRequest) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        env.extend(self.secrets.iter().map(|(name, value)| (name.clone(), value.clone())));
        env.extend(request.env.iter().cloned());
        let defaults = [
            ("PATH", TOOLS_BIN.to_owned()),
            ("HOME", "/tmp".to_owned()),
            ("TMPDIR", "/tmp".to_owned()),
        ];
        for (key, value) in defaults {
            env.entry(key.to_owned()).or_insert(value);
        }
        if let Some(epoch) = self.source_date_epoch {
            env.entry("SOURCE_DATE_EPOCH".to_owned()).or_insert(epoch.to_string());
        }
        env
    }
}

/// Why `tool` may not run in stage `stage`, granted `granted`, and the line
/// that would grant it.
pub(crate) fn not_granted(stage: &str, granted: &[&str], tool: &str) -> String {
    let quoted: Vec<String> = granted.iter().map(|name| format!("\"{name}\"")).collect();
    let has = if quoted.is_empty() {
        "none".to_owned()
    } else {
        quoted.join(", ")
    };
    let wanted = quoted
        .iter()
        .cloned()
        .chain([format!("\"{tool}\"")])
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "the tool `{tool}` is not granted to stage `{stage}` (it has {has})\nhint: add it to the stage: `tools = [{wanted}]`"
    )
}

/// A pipe whose ends close on exec.
fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(std::io::Error::from)
}

/// Lets `fd` pass to the next process spawned.
fn inheritable(fd: &OwnedFd) -> std::io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(std::io::Error::from)
}

/// The `child-pid` of bubblewrap's `--info-fd` report.
fn child_pid(info: &str) -> Option<u32> {
    let after = &info[info.find("\"child-pid\"")? + "\"child-pid\"".len()..];
    let digits: String = after
        .trim_start_matches([':', ' ', '\n', '\t'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A status as a shell reports it: the exit code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

/// `bwrap`, found on the host's `PATH` and tried once per process with the
/// namespaces a tool run asks for: a host where it is missing or cannot
/// make them gets one clear error, never a tool run unsandboxed.
async fn sandbox_program() -> Result<&'static Path, String> {
    static PROGRAM: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    PROGRAM
        .get_or_init(|| async { find_and_try_bwrap().await })
        .await
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// What installs bubblewrap, for the messages that ask for it.
pub const INSTALL_HINT: &str = "host tools run under bubblewrap: install it (`apt-get install bubblewrap` on Debian and Ubuntu, \
     `dnf install bubblewrap` on Fedora); cairn never runs a tool unsandboxed";

async fn find_and_try_bwrap() -> Result<PathBuf, String> {
    let program = sandbox_path().ok_or_else(|| format!("`bwrap` is not on the PATH\nhint: {INSTALL_HINT}"))?;
    let probe = tokio::process::Command::new(&program)
        .args(bwrap::base_arguments())
        .args(["--", "/bin/sh", "-c", ":"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|error| format!("cannot run `{}`: {error}\nhint: {INSTALL_HINT}", program.display()))?;
    if probe.status.success() {
        return Ok(program);
    }
    Err(format!(
        "`{}` cannot make the namespaces a tool runs in: {}\n\
         hint: user namespaces may be disabled (`sysctl kernel.unprivileged_userns_clone=1`, or \
         `kernel.apparmor_restrict_unprivileged_userns=0` on Ubuntu), or cairn runs in a container \
         that forbids them; cairn never runs a tool unsandboxed",
        program.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    ))
}

/// The `bwrap` tools run under: `CAIRN_BWRAP` when set (a packager
/// pointing at a build of its own), else the first on the host's `PATH`.
pub fn sandbox_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CAIRN_BWRAP") {
        return Some(PathBuf::from(path));
    }
    which::which("bwrap").ok()
}
