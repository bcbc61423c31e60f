//! Arguments more than one command takes: where the pipeline is, how
//! registries are reached, `KEY=VALUE` pairs. Kept apart so the commands
//! depend on this and not on one another.

use std::path::PathBuf;

use cairn::oci::registry::Settings;
use cairn::run;
use clap::Args;

/// Where the pipeline is: `-C DIR` and `-f FILE`, shared by every pipeline command.
#[derive(Debug, Args)]
pub(crate) struct PipelineLocation {
    /// The pipeline file (default: cairn.toml in the directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Run as if started in DIR.
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    directory: Option<PathBuf>,
}

impl PipelineLocation {
    pub(crate) fn path(&self) -> PathBuf {
        run::pipeline_file(self.directory.as_deref(), self.file.as_deref())
    }
}

/// How registries are reached: shared by every command that talks to one.
#[derive(Debug, Args, Default)]
pub(crate) struct RegistryArgs {
    /// Speak plain HTTP to HOST[:PORT] (repeatable). Loopback registries always get plain HTTP.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "CAIRN_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure: Vec<String>,
}

impl RegistryArgs {
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            insecure: self.insecure.clone(),
        }
    }
}

/// `KEY=VALUE` on the command line.
pub(crate) fn parse_pair<T: From<String>>(text: &str) -> Result<(String, T), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), T::from(value.to_owned()))),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}
