//! Host programs: run a tool the pipeline granted (`tools = ["cargo"]`) and
//! get its exit status. The tool runs in a Linux sandbox that shows it what
//! the stage sees (`/src`, `/in`, `/out`, `/tmp`, the declared environment);
//! its output becomes the stage's log.

use crate::bindings::cairn::stage::tools;

/// A tool to run, built fluently and started with [`Command::status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    tool: String,
    args: Vec<String>,
    cwd: Option<String>,
    env: Vec<(String, String)>,
}

impl Command {
    /// A run of `tool`, by the name the pipeline grants it under.
    pub fn new(tool: impl Into<String>) -> Self {
        Self {
            tool: tool.into(),
            ..Self::default()
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the working directory, as the stage sees it (`/src/crate`).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets a variable on top of the stage's declared environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the tool to its end. `Ok` holds its exit status (128 + N when
    /// signal N ended it); `Err` says why it could not start (not granted,
    /// no sandbox on the host).
    pub fn status(&self) -> crate::Result<i32> {
        let options = tools::RunOptions {
            cwd: self.cwd.clone(),
            env: self.env.clone(),
        };
        tools::run(&self.tool, &self.args, &options).map_err(Into::into)
    }
}
