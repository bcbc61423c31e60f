//! `std:run`: runs one command of host tools in the tool sandbox, the stage
//! behind a pipeline's `run = "..."`. Its `args` are the command's argv (a
//! `run` string arrives as `sh -ec STRING`); `with.cwd` sets the working
//! directory. A non-zero exit fails the stage, naming the command.

use cairn_sdk::tools::Command;
use cairn_sdk::{Invocation, Outcome, Stage};

struct Run;

/// The longest command quoted in a summary or an error.
const MAX_SHOWN: usize = 80;

impl Stage for Run {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let Some((tool, args)) = invocation.args.split_first() else {
            return Err("std:run has no command: set `run = \"...\"` or `args = [\"tool\", ...]`".into());
        };
        let shown = shown(&invocation.args);
        let mut command = Command::new(tool).args(args);
        if let Some(cwd) = invocation.config("cwd") {
            command = command.cwd(cwd);
        }
        match command.status()? {
            0 => Ok(Outcome::new()
                .summary(format!("`{shown}` succeeded"))
                .output("status", 0)),
            127 => Err(format!(
                "`{shown}` exited with status 127: a command was not found\n\
                 hint: only the tools the stage grants are on its PATH; add the missing one to `tools = [...]`"
            )
            .into()),
            status => Err(format!("`{shown}` exited with status {status}").into()),
        }
    }
}

/// The command as it would be typed: a `sh -c` string as itself, an argv
/// joined by spaces; cut to [`MAX_SHOWN`] characters.
fn shown(argv: &[String]) -> String {
    let text = match argv {
        [shell, flag, script] if shell == "sh" && (flag == "-c" || flag == "-ec") => script.clone(),
        _ => argv.join(" "),
    };
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or_default();
    let text = if lines.next().is_some() {
        format!("{first} …")
    } else {
        first.to_owned()
    };
    if text.chars().count() > MAX_SHOWN {
        format!("{}…", text.chars().take(MAX_SHOWN).collect::<String>())
    } else {
        text
    }
}

cairn_sdk::export!(Run);
