//! Finding and running the external tools a stage build needs, and saying
//! exactly how to install one that is missing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BuildError, Language};

/// A tool a language's build runs.
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    /// Its program name (`clang`, `componentize-py`).
    pub program: &'static str,
    /// The environment variable that overrides where it is.
    pub override_env: &'static str,
    /// How to install it, as a sentence (`install it with ...`).
    pub install: &'static str,
    /// The language that needs it.
    pub language: Language,
    /// What to say when it runs and fails.
    pub failure_hint: Option<&'static str>,
}

impl Tool {
    /// Where the tool is: the override, else the first of `extra_dirs`
    /// that has it, else `PATH`.
    pub fn find(&self, extra_dirs: &[PathBuf]) -> Result<PathBuf, BuildError> {
        if let Some(path) = std::env::var_os(self.override_env).filter(|path| !path.is_empty()) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(self.missing(format!(
                    "{} points at `{}`, which does not exist",
                    self.override_env,
                    path.display()
                )))
            };
        }
        let path_dirs = std::env::var_os("PATH").unwrap_or_default();
        extra_dirs
            .iter()
            .cloned()
            .chain(std::env::split_paths(&path_dirs))
            .map(|dir| dir.join(self.program))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| self.missing(format!("`{}` is not on PATH", self.program)))
    }

    fn missing(&self, why: String) -> BuildError {
        BuildError::ToolMissing {
            language: self.language,
            tool: self.program,
            why,
            install: self.install,
        }
    }

    /// Runs `program` with `args` in `folder`; all its output is shown on
    /// stderr, and a failure names the command.
    pub fn run(&self, program: &Path, args: &[OsString], folder: &Path) -> Result<(), BuildError> {
        let status = Command::new(program)
            .args(args)
            .current_dir(folder)
            // stdout belongs to cairn (`--json` events, a piped tool's output).
            .stdout(std::io::stderr())
            .status()
            .map_err(|source| BuildError::Io {
                path: program.to_owned(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(BuildError::ToolFailed {
                language: self.language,
                command: std::iter::once(program.as_os_str().to_owned())
                    .chain(args.iter().cloned())
                    .map(|arg| arg.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
                status,
                hint: self.failure_hint,
            })
        }
    }
}

/// What identifies an installed tool cheaply: its resolved path, size and
/// modification time (an upgrade changes them), so deciding that a build is
/// still current does not start the tool.
pub fn identity(path: &Path) -> Vec<u8> {
    let resolved = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let stamp = std::fs::metadata(&resolved)
        .ok()
        .map(|metadata| {
            let modified = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            format!("{} {}.{}", metadata.len(), modified.as_secs(), modified.subsec_nanos())
        })
        .unwrap_or_default();
    format!("{} {stamp}", resolved.display()).into_bytes()
}
