//! Host tools granted to stages (`tools = [...]`): found on the host when a
//! run is planned, and named in the stage key by what they are rather than
//! where they are.
//!
//! A tool's identity is the digest of its executable and, where it belongs
//! to an installation tree (a rustup toolchain, a Node prefix), of that
//! tree: a rustup toolchain by its channel manifest (which pins the digest
//! of every component it installed) and its component list, any other tree
//! by its contents. Hashing is remembered by file stamp in the cache
//! (`tools-v2.json`), so a no-op run stats files (three for a rustup
//! toolchain, each file of another tree) and hashes nothing. Paths never
//! enter an identity: the same toolchain at another path, or on another
//! machine, gives the same key.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cairn_core::Digest;
use cairn_core::cache_dir::{CacheDir, write_atomically};
use cairn_pipeline::{Diagnostic, Pipeline, ToolName};
use cairn_sandbox::ToolGrant;

/// A granted tool, found and identified.
#[derive(Clone, Debug)]
pub struct ResolvedTool {
    /// Where it is on this host, for the sandbox.
    pub grant: ToolGrant,
    /// What it is, for the key.
    pub identity: Digest,
}

/// The tools of every stage of a run, and the identity of the sandbox they
/// run in.
#[derive(Debug, Default)]
pub struct StageTools {
    /// Each stage's tools, parallel to the pipeline's stages (empty for
    /// stages not selected or granting none).
    pub by_stage: Vec<Vec<ResolvedTool>>,
    /// The digest of the `bwrap` executable, when some stage has tools.
    pub sandbox: Option<Digest>,
}

/// Why the stages' tools cannot be granted.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// Tools that are not on this host: each at its place in the pipeline
    /// file, rendered compiler style.
    #[error("{rendered}")]
    NotFound {
        /// The diagnostics, rendered.
        rendered: String,
    },
    /// The sandbox tools run in is missing or unreadable.
    #[error("{message}\nhint: {}", cairn_sandbox::TOOL_SANDBOX_HINT)]
    Sandbox {
        /// What is wrong with it.
        message: String,
    },
}

/// Finds and identifies the tools of the `selected` stages.
pub fn resolve(pipeline: &Pipeline, selected: &[bool], cache: &CacheDir) -> Result<StageTools, ToolsError> {
    let wanted = pipeline
        .stages
        .iter()
        .zip(selected)
        .any(|(stage, selected)| *selected && !stage.tools.is_empty());
    if !wanted {
        return Ok(StageTools {
            by_stage: vec![Vec::new(); pipeline.stages.len()],
            sandbox: None,
        });
    }
    let mut memo = Memo::load(cache);
    let mut problems = Vec::new();
    let mut found: BTreeMap<&str, ResolvedTool> = BTreeMap::new();
    let mut by_stage = Vec::with_capacity(pipeline.stages.len());
    for (stage, selected) in pipeline.stages.iter().zip(selected) {
        let mut tools = Vec::new();
        for tool in stage.tools.iter().filter(|_| *selected) {
            if let Some(resolved) = found.get(tool.name.as_str()) {
                tools.push(resolved.clone());
                continue;
            }
            match resolve_one(tool, &pipeline.root, &mut memo) {
                Ok(resolved) => {
                    found.insert(&tool.name, resolved.clone());
                    tools.push(resolved);
                }
                Err(problem) => problems.push(problem),
            }
        }
        by_stage.push(tools);
    }
    let sandbox = match cairn_sandbox::tool_sandbox_path() {
        Some(bwrap) => match memo.file_digest(&bwrap) {
            Ok(digest) => Some(digest),
            Err(error) => {
                return Err(ToolsError::Sandbox {
                    message: format!("cannot read the tool sandbox `{}`: {error}", bwrap.display()),
                });
            }
        },
        None => {
            return Err(ToolsError::Sandbox {
                message: "stages of this pipeline run host tools, and `bwrap` is not on the PATH".to_owned(),
            });
        }
    };
    memo.save(cache);
    if !problems.is_empty() {
        let count = problems.len();
        let mut rendered: String = problems.iter().map(|problem| pipeline.file.render(problem)).collect();
        rendered.push_str(&format!(
            "{count} tool{} cannot be granted",
            if count == 1 { "" } else { "s" }
        ));
        return Err(ToolsError::NotFound { rendered });
    }
    Ok(StageTools { by_stage, sandbox })
}

/// One tool: found, its toolchain found, identified.
fn resolve_one(tool: &ToolName, pipeline_root: &Path, memo: &mut Memo) -> Result<ResolvedTool, Diagnostic> {
    let name = tool.name.rsplit('/').next().unwrap_or(&tool.name).to_owned();
    let located = if tool.name.contains('/') {
        let path = pipeline_root.join(&tool.name);
        if !path.is_file() {
            return Err(
                Diagnostic::error(format!("the tool `{}` does not exist", tool.name), tool.span.clone())
                    .with_hint("a tool's path is relative to the folder of the pipeline file"),
            );
        }
        path
    } else {
        which::which(&tool.name).map_err(|_| {
            Diagnostic::error(
                format!("the tool `{}` is not on the PATH", tool.name),
                tool.span.clone(),
            )
            .with_hint(format!(
                "install it, or grant it by path relative to this file (`./bin/{}`)",
                tool.name
            ))
        })?
    };
    let unreadable = |error: std::io::Error, path: &Path| {
        Diagnostic::error(
            format!("cannot read the tool `{}` at `{}`: {error}", tool.name, path.display()),
            tool.span.clone(),
        )
    };
    let canonical = std::fs::canonicalize(&located).map_err(|error| unreadable(error, &located))?;
    let executable = match VersionManager::behind(&canonical, &name) {
        Some(manager) => memo
            .which(&manager, &name, pipeline_root)
            .map_err(|message| Diagnostic::error(message, tool.span.clone()))?,
        None => canonical,
    };
    let root = toolchain_root(&executable);
    let mut hasher = blake3::Hasher::new_derive_key("cairn 2026 tool identity");
    let digest = memo
        .file_digest(&executable)
        .map_err(|error| unreadable(error, &executable))?;
    hasher.update(digest.as_bytes());
    if let Some(root) = &root {
        let digest = memo.tree_digest(root).map_err(|error| unreadable(error, root))?;
        hasher.update(digest.as_bytes());
    }
    Ok(ResolvedTool {
        grant: ToolGrant { name, executable, root },
        identity: Digest::from_hasher(&hasher),
    })
}

/// A version manager whose shims stand on the `PATH` for the real tools and
/// pick a version each time they run, from files and variables the sandbox
/// does not have: a sandboxed tool must be the version's own executable.
#[derive(Debug, PartialEq, Eq)]
enum VersionManager {
    /// rustup installs each tool as a link to itself.
    Rustup {
        /// The `rustup` executable.
        program: PathBuf,
    },
    /// pyenv installs a script per tool in `$PYENV_ROOT/shims`.
    Pyenv {
        /// `$PYENV_ROOT`.
        root: PathBuf,
    },
}

impl VersionManager {
    /// The manager whose shim `canonical` (the tool `name`, links followed) is.
    fn behind(canonical: &Path, name: &str) -> Option<Self> {
        let file = canonical.file_name()?;
        if name != "rustup" && (file == "rustup" || file == "rustup-init") {
            return Some(VersionManager::Rustup {
                program: canonical.to_owned(),
            });
        }
        let shims = canonical.parent()?;
        let root = shims.parent()?;
        (shims.file_name()? == "shims" && root.join("libexec/pyenv").is_file())
            .then(|| VersionManager::Pyenv { root: root.to_owned() })
    }

    /// The command that answers which executable the shim runs.
    fn which_command(&self, name: &str) -> std::process::Command {
        match self {
            VersionManager::Rustup { program } => {
                let mut command = std::process::Command::new(program);
                command.args(["which", name]);
                command
            }
            VersionManager::Pyenv { root } => {
                let mut command = std::process::Command::new(root.join("libexec/pyenv"));
                command.args(["which", name]).env("PYENV_ROOT", root);
                command
            }
        }
    }

    /// The variable and the files the manager decides by, from `folder` up.
    fn deciding(&self, folder: &Path) -> (String, Vec<PathBuf>) {
        let (variable, mut files, local) = match self {
            VersionManager::Rustup { program } => {
                let home = std::env::var_os("RUSTUP_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".rustup")))
                    .unwrap_or_default();
                (
                    "RUSTUP_TOOLCHAIN",
                    vec![program.clone(), home.join("settings.toml")],
                    &["rust-toolchain", "rust-toolchain.toml"][..],
                )
            }
            VersionManager::Pyenv { root } => ("PYENV_VERSION", vec![root.join("version")], &[".python-version"][..]),
        };
        for ancestor in folder.ancestors() {
            files.extend(local.iter().map(|name| ancestor.join(name)));
        }
        (std::env::var(variable).unwrap_or_default(), files)
    }
}

/// The installation tree of `executable` when it lies in the `bin` folder
/// of one (`TREE/bin/cargo` beside `TREE/lib`), except for the system's own
/// folders, which every tool sees anyway and which are far too large to
/// identify. A `bin` with no `lib` beside it (`~/.cargo/bin`) is not a tree.
fn toolchain_root(executable: &Path) -> Option<PathBuf> {
    let bin = executable.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    let root = bin.parent()?;
    let system = [Path::new("/"), Path::new("/usr"), Path::new("/usr/local")];
    (!system.contains(&root) && root.join("lib").is_dir()).then(|| root.to_owned())
}

/// What changes when a file is replaced or edited in place, without reading it.
type Stamp = [u64; 5];

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    std::fs::metadata(path).map(|metadata| stamp_of(&metadata))
}

fn stamp_of(metadata: &std::fs::Metadata) -> Stamp {
    [
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        (metadata.mtime() as u64).wrapping_mul(1_000_000_000) + metadata.mtime_nsec() as u64,
        (metadata.ctime() as u64).wrapping_mul(1_000_000_000) + metadata.ctime_nsec() as u64,
    ]
}

/// A stamp that is all zeros for a file that does not exist.
fn stamp_or_missing(path: &Path) -> Stamp {
    stamp(path).unwrap_or_default()
}

/// What was hashed or looked up, by what it was hashed from.
#[derive(Default, Serialize, Deserialize)]
struct Memo {
    /// A file's digest, by its path, while its stamp holds.
    files: BTreeMap<PathBuf, (Stamp, Digest)>,
    /// A tree's identity, by its path, while the digest of its files'
    /// stamps holds.
    trees: BTreeMap<PathBuf, (Digest, Digest)>,
    /// The executable a version manager's shim runs, by question, while
    /// the files that decide the answer keep their stamps.
    shims: BTreeMap<String, (Vec<Stamp>, PathBuf)>,
    #[serde(skip)]
    changed: bool,
}

/// The memo's file in the cache; bump the version when its format changes.
const MEMO_FILE: &str = "tools-v2.json";

impl Memo {
    fn load(cache: &CacheDir) -> Self {
        std::fs::read(cache.root().join(MEMO_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save(&self, cache: &CacheDir) {
        if !self.changed {
            return;
        }
        let saved = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&cache.root().join(MEMO_FILE), &bytes));
        if let Err(error) = saved {
            tracing::debug!(%error, "cannot remember tool digests; the next run hashes them again");
        }
    }

    fn file_digest(&mut self, path: &Path) -> std::io::Result<Digest> {
        let now = stamp(path)?;
        if let Some((then, digest)) = self.files.get(path)
            && *then == now
        {
            return Ok(*digest);
        }
        let digest = cairn_cas::open_regular(path).and_then(cairn_cas::hash_open)?;
        self.files.insert(path.to_owned(), (now, digest));
        self.changed = true;
        Ok(digest)
    }

    /// A rustup toolchain by its manifest and component list (rustup
    /// rewrites both whenever it changes the toolchain), any other tree by
    /// every file in it, hashed again only when some file's stamp changed.
    fn tree_digest(&mut self, root: &Path) -> std::io::Result<Digest> {
        let manifest = root.join("lib/rustlib/multirust-channel-manifest.toml");
        let components = root.join("lib/rustlib/components");
        let rustup = manifest.is_file();
        let now = if rustup {
            let mut stamps = blake3::Hasher::new();
            for path in [root, &manifest, &components] {
                for value in stamp_or_missing(path) {
                    stamps.update(&value.to_le_bytes());
                }
            }
            Digest::from_hasher(&stamps)
        } else {
            let mut stamps = blake3::Hasher::new();
            walk_tree(root, root, &mut |relative, _, metadata| {
                stamps.update(relative.as_os_str().as_encoded_bytes());
                for value in stamp_of(metadata) {
                    stamps.update(&value.to_le_bytes());
                }
                Ok(())
            })?;
            Digest::from_hasher(&stamps)
        };
        if let Some((then, digest)) = self.trees.get(root)
            && *then == now
        {
            return Ok(*digest);
        }
        let mut hasher = blake3::Hasher::new_derive_key("cairn 2026 toolchain tree");
        if rustup {
            hasher.update(b"rustup");
            hasher.update(&std::fs::read(&manifest)?);
            hasher.update(&std::fs::read(&components).unwrap_or_default());
        } else {
            hash_tree(root, &mut hasher)?;
        }
        let digest = Digest::from_hasher(&hasher);
        self.trees.insert(root.to_owned(), (now, digest));
        self.changed = true;
        Ok(digest)
    }

    /// The executable `manager` runs for `name` in `pipeline_root` (where a
    /// `rust-toolchain.toml` or `.python-version` may pick another version).
    fn which(&mut self, manager: &VersionManager, name: &str, pipeline_root: &Path) -> Result<PathBuf, String> {
        let root = std::fs::canonicalize(pipeline_root).unwrap_or_else(|_| pipeline_root.to_owned());
        let (variable, deciding) = manager.deciding(&root);
        let question = format!("{manager:?}\0{name}\0{}\0{variable}", root.display());
        let now: Vec<Stamp> = deciding.iter().map(|path| stamp_or_missing(path)).collect();
        if let Some((then, answer)) = self.shims.get(&question)
            && *then == now
            && answer.is_file()
        {
            return Ok(answer.clone());
        }
        let output = manager
            .which_command(name)
            .current_dir(&root)
            .output()
            .map_err(|error| format!("cannot ask which `{name}` its shim runs: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "`{name}` on the PATH is a version manager's shim, which runs none here: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let answer = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let answer = std::fs::canonicalize(&answer).map_err(|error| format!("`{}`: {error}", answer.display()))?;
        self.shims.insert(question, (now, answer.clone()));
        self.changed = true;
        Ok(answer)
    }
}

/// Calls `visit` with each entry under `folder`, in name order, depth
/// first: its path relative to `root`, its path, and its metadata (links
/// not followed).
fn walk_tree(
    root: &Path,
    folder: &Path,
    visit: &mut dyn FnMut(&Path, &Path, &std::fs::Metadata) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(folder)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let metadata = std::fs::symlink_metadata(&path)?;
        let relative = path.strip_prefix(root).unwrap_or(&path);
        visit(relative, &path, &metadata)?;
        if metadata.is_dir() {
            walk_tree(root, &path, visit)?;
        }
    }
    Ok(())
}

/// Every entry under `root`: its relative path, its kind, and its bytes (a
/// file's, executable bit included) or target (a link's, never followed).
fn hash_tree(root: &Path, hasher: &mut blake3::Hasher) -> std::io::Result<()> {
    walk_tree(root, root, &mut |relative, path, metadata| {
        let relative = relative.as_os_str().as_encoded_bytes();
        hasher.update(&(relative.len() as u64).to_le_bytes());
        hasher.update(relative);
        if metadata.is_symlink() {
            hasher.update(b"L");
            hasher.update(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
        } else if metadata.is_dir() {
            hasher.update(b"D");
        } else if metadata.is_file() {
            hasher.update(if metadata.mode() & 0o111 != 0 { b"X" } else { b"F" });
            let digest = cairn_cas::open_regular(path).and_then(cairn_cas::hash_open)?;
            hasher.update(digest.as_bytes());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchain_roots_skip_the_system_folders() {
        let tree = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(tree.path().join("bin")).expect("bin");
        std::fs::create_dir_all(tree.path().join("lib")).expect("lib");
        assert_eq!(
            toolchain_root(&tree.path().join("bin/cargo")),
            Some(tree.path().to_owned())
        );
        std::fs::remove_dir(tree.path().join("lib")).expect("no lib");
        assert_eq!(
            toolchain_root(&tree.path().join("bin/cargo")),
            None,
            "a bin alone is no tree"
        );
        assert_eq!(toolchain_root(Path::new("/usr/bin/node")), None);
        assert_eq!(toolchain_root(Path::new("/usr/local/bin/node")), None);
        assert_eq!(toolchain_root(Path::new("/work/ci/lint.sh")), None);
    }

    #[test]
    fn shims_are_recognised_by_what_they_are() {
        assert_eq!(
            VersionManager::behind(Path::new("/root/.cargo/bin/rustup"), "cargo"),
            Some(VersionManager::Rustup {
                program: "/root/.cargo/bin/rustup".into()
            })
        );
        assert_eq!(
            VersionManager::behind(Path::new("/root/.cargo/bin/rustup"), "rustup"),
            None
        );
        assert_eq!(VersionManager::behind(Path::new("/usr/bin/cargo"), "cargo"), None);
        let pyenv = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(pyenv.path().join("libexec")).expect("libexec");
        std::fs::write(pyenv.path().join("libexec/pyenv"), "").expect("pyenv");
        assert_eq!(
            VersionManager::behind(&pyenv.path().join("shims/python3"), "python3"),
            Some(VersionManager::Pyenv {
                root: pyenv.path().to_owned()
            })
        );
    }

    #[test]
    fn a_tree_digest_follows_content_not_place() {
        let first = tempfile::tempdir().expect("temp dir");
        let second = tempfile::tempdir().expect("temp dir");
        for root in [first.path(), second.path()] {
            std::fs::create_dir_all(root.join("bin")).expect("bin");
            std::fs::write(root.join("bin/tool"), "#!/bin/sh\n").expect("tool");
        }
        let digest = |root: &Path| {
            let mut hasher = blake3::Hasher::new();
            hash_tree(root, &mut hasher).expect("hash");
            hasher.finalize()
        };
        assert_eq!(digest(first.path()), digest(second.path()));
        std::fs::write(second.path().join("bin/tool"), "#!/bin/sh\nexit 1\n").expect("edit");
        assert_ne!(digest(first.path()), digest(second.path()));
    }
}
