//! The bubblewrap command line that shows a tool what a wasm stage sees:
//! the system's `/usr` and the granted tools' trees (at their host paths)
//! read-only, `/src` and
//! `/in/<stage>` read-only, `/out` and `/tmp` writable, a `PATH` of the
//! granted tools only, and fresh namespaces for everything else.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{ToolGrant, Tools};

/// Where the granted tools' `PATH` folder is, inside the sandbox.
pub(crate) const TOOLS_BIN: &str = "/tools/bin";

/// Top-level folders of the host that are (or link into) the system's
/// programs and libraries. On a merged-`/usr` system they are links, and
/// are recreated as links.
const SYSTEM_FOLDERS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Files of `/etc` a granted network needs to resolve names and check
/// certificates. Nothing else of `/etc` (no `passwd`) is shown.
const NETWORK_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
];

/// Where each granted tool is inside the sandbox, and the mounts that put
/// it there. A tool's installation tree (or a lone tool's file) is shown at
/// its host path, read-only: toolchains find their own files by the paths
/// they were installed at (an interpreter's prefix, a library's run path).
/// Tools sharing a tree share its mount.
pub(crate) struct ToolLayout {
    /// Tool name → its executable's path inside the sandbox.
    pub(crate) inside: BTreeMap<String, PathBuf>,
    mounts: Vec<PathBuf>,
}

impl ToolLayout {
    pub(crate) fn new(tools: &[ToolGrant]) -> Self {
        let mut inside = BTreeMap::new();
        let mut mounts: Vec<PathBuf> = Vec::new();
        for tool in tools {
            let shown = match &tool.root {
                Some(root) => Some(root),
                None if is_system(&tool.executable) => None,
                None => Some(&tool.executable),
            };
            if let Some(shown) = shown
                && !mounts.iter().any(|mounted| shown.starts_with(mounted))
            {
                mounts.retain(|mounted| !mounted.starts_with(shown));
                mounts.push(shown.clone());
            }
            inside.insert(tool.name.clone(), tool.executable.clone());
        }
        Self { inside, mounts }
    }
}

/// Whether the system folders (shown to every tool) already hold `path`.
fn is_system(path: &Path) -> bool {
    SYSTEM_FOLDERS.iter().any(|folder| path.starts_with(folder))
}

/// The namespaces, the system folders, `/proc` and `/dev`: what every tool
/// run starts from (and what the probe of a host's bubblewrap tries). The
/// system folders' layout is read once per process, not once per tool run.
pub(crate) fn base_arguments() -> &'static [OsString] {
    static ARGUMENTS: std::sync::OnceLock<Vec<OsString>> = std::sync::OnceLock::new();
    ARGUMENTS.get_or_init(read_base_arguments)
}

fn read_base_arguments() -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    for folder in SYSTEM_FOLDERS {
        let host = Path::new(folder);
        match std::fs::read_link(host) {
            Ok(target) => args.extend([OsString::from("--symlink"), target.into(), folder.into()]),
            Err(_) if host.is_dir() => args.extend(["--ro-bind", folder, folder].map(OsString::from)),
            Err(_) => {}
        }
    }
    args.extend(["--proc", "/proc", "--dev", "/dev"].map(OsString::from));
    args
}

/// The arguments to `bwrap` (everything before the tool's own argv).
pub(crate) fn arguments(tools: &Tools, layout: &ToolLayout, cwd: &str) -> Vec<OsString> {
    let mut args = base_arguments().to_vec();
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        args.extend(items.iter().map(|item| item.as_ref().to_owned()));
    };
    if tools.network {
        push(&[&"--share-net"]);
    }
    if tools.network {
        for file in NETWORK_FILES {
            push(&[&"--ro-bind-try", file, file]);
        }
    }
    if let Some(src) = &tools.src {
        push(&[&"--ro-bind", src, &"/src"]);
    }
    if !tools.inputs.is_empty() {
        push(&[&"--dir", &"/in"]);
        for (name, host) in &tools.inputs {
            push(&[&"--ro-bind", host, &format!("/in/{name}")]);
        }
    }
    push(&[&"--bind", &tools.out, &"/out", &"--bind", &tools.tmp, &"/tmp"]);
    for shown in &layout.mounts {
        push(&[&"--ro-bind", shown, shown]);
    }
    push(&[&"--dir", &TOOLS_BIN]);
    for (name, path) in &layout.inside {
        push(&[&"--symlink", path, &format!("{TOOLS_BIN}/{name}")]);
    }
    push(&[&"--chdir", &cwd, &"--"]);
    args
}
