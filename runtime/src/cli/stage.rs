//! `cairn stage run` and `cairn stage inspect`: one component, no pipeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use cairn::cas::Store;
use cairn::component;
use cairn::component::Digest;
use cairn::component_source::ComponentSources;
use cairn::oci::resolve::RemoteComponents;
use cairn::oci::{Location, OciReference};
use cairn::pipeline::Uses;
use cairn::sandbox::{self, Clock, Random};
use cairn::stage_build::{self, Language};
use cairn::units::{ByteSize, HumanDuration};
use cairn::{CacheDir, Invocation, Limits, Runtime, Sandbox, output_dir, scaffold};

use super::Status;
use cairn::report::{Style, elapsed, paint};

use super::args::{RegistryArgs, parse_pair};
use super::terminal::StageLogPrinter;

#[derive(Debug, Subcommand)]
pub(crate) enum StageCommand {
    /// Run one component in the sandbox: a stage, a WASI command, or a preview1 module.
    Run(Box<RunArgs>),
    /// Print what a component is, imports and exports.
    Inspect(InspectArgs),
    /// Build a stage folder (Rust, JavaScript, Python or C) into a component.
    Build(BuildArgs),
    /// Create a stage folder that builds and runs as is.
    New(NewArgs),
}

impl StageCommand {
    pub(crate) fn execute(
        self,
        verbose: u8,
        trust: impl FnOnce() -> anyhow::Result<cairn::Trust>,
    ) -> anyhow::Result<Status> {
        match self {
            StageCommand::Run(args) => args.execute(verbose, trust()?),
            StageCommand::Inspect(args) => args.execute(),
            StageCommand::Build(args) => args.execute(),
            StageCommand::New(args) => args.execute(),
        }
    }
}

/// Which clock the stage reads.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClockArg {
    /// Wall clock fixed at `SOURCE_DATE_EPOCH` (0 when unset).
    Pinned,
    /// The host's clock.
    Real,
}

/// Which randomness the stage reads.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RandomArg {
    /// Deterministic, seeded from the component and the invocation.
    Seeded,
    /// The host's cryptographic generator.
    Secure,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A component or preview1 module (`.wasm`), a stage folder, `std:NAME`, or `oci://...`.
    component: String,

    /// Show this folder to the stage, read-only, at /src.
    #[arg(long, value_name = "DIR")]
    src: Option<PathBuf>,

    /// Show a folder to the stage, read-only, at /in/NAME (repeatable).
    #[arg(long = "in", value_name = "NAME=DIR", value_parser = parse_pair::<PathBuf>)]
    inputs: Vec<(String, PathBuf)>,

    /// Show a host folder to the program read-write, at GUEST (default: the
    /// same path), as `wasmtime run --dir` does (repeatable). Only here:
    /// pipeline stages write to /out.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    dirs: Vec<(PathBuf, String)>,

    /// Move what the stage writes to /out here (merged into an existing folder).
    /// Default: cairn-out/NAME, replaced on each successful run.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Set an environment variable for the stage (repeatable); nothing is inherited.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_pair::<String>)]
    env: Vec<(String, String)>,

    /// Set a `with` config entry for a stage component (repeatable).
    #[arg(long = "with", value_name = "KEY=VALUE", value_parser = parse_pair::<String>)]
    config: Vec<(String, String)>,

    /// Grant the secret NAME, read from cairn's environment variable NAME (repeatable).
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,

    /// Allow HTTP requests to an origin (`https://host[:port][/path]`) or
    /// sockets to HOST:PORT (repeatable); no network otherwise.
    #[arg(long, value_name = "ORIGIN|HOST:PORT")]
    network: Vec<String>,

    /// The clock the stage reads.
    #[arg(long, value_enum, default_value_t = ClockArg::Pinned)]
    clock: ClockArg,

    /// The randomness the stage reads.
    #[arg(long, value_enum, default_value_t = RandomArg::Seeded)]
    random: RandomArg,

    /// Stop the stage after this long.
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(Limits::default().timeout))]
    timeout: HumanDuration,

    /// Most linear memory the stage may use.
    #[arg(long, value_name = "SIZE", default_value_t = Limits::default().memory)]
    memory: ByteSize,

    /// Most the stage may write to /out (and, separately, to /tmp).
    #[arg(long, value_name = "SIZE", default_value_t = Limits::default().max_output)]
    max_output: ByteSize,

    /// Most log output kept and shown; the rest is counted and dropped.
    #[arg(long, value_name = "SIZE", default_value_t = Limits::default().max_log)]
    max_log: ByteSize,

    /// Most entries (files, folders, links) the stage may create in /out
    /// (and, separately, in /tmp).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_entries)]
    max_entries: u64,

    /// The stage's name in messages and in cairn-out/ (default: the file's name).
    #[arg(long)]
    name: Option<String>,

    #[command(flatten)]
    registry: RegistryArgs,

    /// Arguments for the component, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

impl RunArgs {
    fn execute(self, verbose: u8, trust: cairn::Trust) -> anyhow::Result<Status> {
        let cache = CacheDir::from_env()?;
        let (bytes, default_name) = read_component(&self.component, &cache, &self.registry)?;
        let name = self.name.clone().unwrap_or(default_name);
        let secrets = self
            .secrets
            .iter()
            .map(|secret| {
                std::env::var(secret)
                    .map(|value| (secret.clone(), value))
                    .with_context(|| {
                        format!("the secret `{secret}` was granted, but cairn's environment has no variable `{secret}`")
                    })
            })
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
        for (_, dir) in self
            .src
            .iter()
            .map(|src| ("src", src))
            .chain(self.inputs.iter().map(|(n, d)| (n.as_str(), d)))
        {
            if !dir.is_dir() {
                bail!("`{}` is not a folder", dir.display());
            }
        }
        let clock = match self.clock {
            ClockArg::Real => Clock::Real,
            ClockArg::Pinned => Clock::Pinned {
                source_date_epoch: cairn::run::source_date_epoch()?,
            },
        };
        let invocation = Invocation {
            stage: name.clone(),
            args: self.args,
            config: self.config.into_iter().collect(),
        };
        let env: BTreeMap<String, String> = self.env.into_iter().collect();
        let random = match self.random {
            RandomArg::Secure => Random::Secure,
            RandomArg::Seeded => Random::Seeded(sandbox::seed(Digest::of(&bytes), &invocation, &env)),
        };
        let sandbox = Sandbox {
            invocation,
            env,
            src: self.src,
            inputs: self.inputs.into_iter().collect(),
            secrets,
            network: self.network,
            // Credentials the stage never sees are a pipeline's grant,
            // whose secrets cairn run resolves.
            http_auth: BTreeMap::new(),
            // Host tools are granted by pipelines, where they are planned
            // and keyed; a lone component runs with none.
            tools: Vec::new(),
            dirs: self.dirs,
            clock,
            random,
            limits: Limits {
                timeout: self.timeout.0,
                memory: self.memory,
                max_output: self.max_output,
                max_log: self.max_log,
                max_entries: self.max_entries,
            },
        };

        let executor = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        executor.block_on(async {
            let runtime = Runtime::with_trust(&cache, trust)?;
            let component = runtime
                .load(bytes.into())
                .await
                .with_context(|| format!("cannot load `{}`", self.component))?;
            tracing::debug!(kind = %component.kind(), compiled = component.compiled_now(), "loaded");
            let observer = Arc::new(StageLogPrinter { verbose: verbose > 0 });
            let run = tokio::select! {
                run = runtime.run(&component, &sandbox, observer) => run?,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("{} stage `{name}` interrupted; its outputs were discarded", paint("error:", Style::Error));
                    return Ok(Status::Interrupted);
                }
            };
            if run.log.dropped_bytes > 0 {
                eprintln!(
                    "{} {} of log output beyond the limit were dropped",
                    paint("warn:", Style::Warn),
                    ByteSize(run.log.dropped_bytes)
                );
            }
            let elapsed = elapsed(run.duration);
            match &run.result {
                Ok(outcome) => {
                    let destination = match &self.out {
                        Some(out) => {
                            output_dir::merge(run.outputs(), out)?;
                            out.clone()
                        }
                        None => {
                            let destination = Path::new("cairn-out").join(&name);
                            output_dir::replace(run.outputs(), &destination, None)?;
                            destination
                        }
                    };
                    eprintln!("{} stage `{name}` succeeded in {elapsed}", paint("ok:", Style::Success));
                    if let Some(summary) = &outcome.summary {
                        eprintln!("  {summary}");
                    }
                    for (key, value) in &outcome.outputs {
                        eprintln!("  output {key} = {value}");
                    }
                    if run.output_totals.files > 0 {
                        eprintln!(
                            "  {} files ({}) in {}",
                            run.output_totals.files,
                            ByteSize(run.output_totals.bytes),
                            destination.display()
                        );
                    }
                    Ok(Status::Success)
                }
                Err(failure) => {
                    eprintln!("{} stage `{name}` {failure}", paint("error:", Style::Error));
                    if let Some(hint) = failure.hint() {
                        eprintln!("{}", paint(&format!("hint: {hint}"), Style::Hint));
                    }
                    Ok(Status::StageFailed)
                }
            }
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A component or preview1 module (`.wasm`), a stage folder, `std:NAME`, or `oci://...`.
    component: String,

    /// Print the component's whole WIT world instead of a summary.
    #[arg(long)]
    wit: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

impl InspectArgs {
    fn execute(self) -> anyhow::Result<Status> {
        let cache = CacheDir::from_env()?;
        let (bytes, _) = read_component(&self.component, &cache, &self.registry)?;
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let runtime = Runtime::new(&cache)?;
        let loaded = executor
            .block_on(runtime.load(Arc::from(bytes.as_slice())))
            .with_context(|| format!("cannot load `{}`", self.component))?;
        let description = component::describe(&component::to_component(&bytes)?)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot decode the interface of `{}`", self.component))?;
        if self.wit {
            super::terminal::print_out(&description.wit)?;
            return Ok(Status::Success);
        }
        println!("component  {} ({})", self.component, ByteSize(loaded.size() as u64));
        println!("digest     {}", loaded.digest());
        println!("kind       {}", loaded.kind());
        println!("world      {}", loaded.kind().world());
        println!("imports");
        for import in &description.imports {
            println!("  {import}");
        }
        println!("exports");
        for export in &description.exports {
            println!("  {export}");
        }
        Ok(Status::Success)
    }
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The stage folder.
    #[arg(default_value = ".")]
    folder: PathBuf,

    /// Where to write the component (default: FOLDER-NAME.wasm in the current folder).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

impl BuildArgs {
    fn execute(self) -> anyhow::Result<Status> {
        let cache = CacheDir::from_env()?;
        let folder = self
            .folder
            .canonicalize()
            .with_context(|| format!("cannot read the stage folder `{}`", self.folder.display()))?;
        let built = stage_build::build(&cache, &folder)
            .with_context(|| format!("cannot build the stage folder `{}`", self.folder.display()))?;
        let output = self.output.unwrap_or_else(|| {
            let name = folder
                .file_name()
                .map_or_else(|| "stage".into(), |name| name.to_os_string());
            PathBuf::from(name).with_extension("wasm")
        });
        cairn::cache_dir::write_atomically(&output, &built.bytes)
            .with_context(|| format!("cannot write `{}`", output.display()))?;
        eprintln!(
            "{} built the {} stage `{}` into {} ({}, {}){}",
            paint("ok:", Style::Success),
            built.language,
            self.folder.display(),
            output.display(),
            ByteSize(built.bytes.len() as u64),
            Digest::of(&built.bytes),
            if built.reused {
                ", unchanged since the last build"
            } else {
                ""
            }
        );
        Ok(Status::Success)
    }
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The stage's name: its folder and package name.
    name: String,

    /// The language to write it in.
    #[arg(long = "lang", value_name = "LANGUAGE", value_parser = clap::builder::PossibleValuesParser::new(["rust", "js", "python", "c"]))]
    language: String,

    /// Create the folder inside DIR.
    #[arg(short = 'C', long = "directory", value_name = "DIR", default_value = ".")]
    directory: PathBuf,
}

impl NewArgs {
    fn execute(self) -> anyhow::Result<Status> {
        let language: Language = self.language.parse().map_err(anyhow::Error::msg)?;
        let folder = scaffold::create(&self.directory, &self.name, language)?;
        eprintln!(
            "{} created the {language} stage `{}`; build it with `cairn stage build {}`, \
             or use it from a pipeline with `uses = \"./{}\"`",
            paint("ok:", Style::Success),
            self.name,
            folder.display(),
            self.name
        );
        Ok(Status::Success)
    }
}

/// The bytes of a component named on the command line (a `.wasm` file, a
/// stage folder, `std:NAME`, or an OCI reference, pulled by what it names),
/// and a default stage name for it.
fn read_component(text: &str, cache: &CacheDir, registry: &RegistryArgs) -> anyhow::Result<(Vec<u8>, String)> {
    let is_path = !text.starts_with("std:") && !OciReference::is_oci(text);
    if is_path && !Path::new(text).exists() {
        bail!("cannot read the component `{text}`: there is no such file or folder");
    }
    // Any file is taken as a component here, whatever its extension: the
    // bytes decide.
    let uses = if is_path && Path::new(text).is_file() {
        Uses::File(text.into())
    } else {
        Uses::parse(text, Path::new("."))?
    };
    let name = match &uses {
        Uses::File(path) | Uses::SourceFolder(path) => path.file_stem().map(|stem| stem.to_string_lossy().into_owned()),
        Uses::Standard(name) => Some(name.clone()),
        Uses::Output { path, .. } => Path::new(path)
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned()),
        Uses::Oci(reference) => match &reference.location {
            Location::Registry { repository, .. } => repository.rsplit('/').next().map(str::to_owned),
            Location::Layout { .. } => reference.tag.clone(),
        },
    };
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let store = Arc::new(Store::open(cache)?);
    let sources =
        ComponentSources::new(cache.clone()).with_remote(RemoteComponents::unpinned(registry.settings()), store);
    let bytes = executor
        .block_on(sources.bytes(&uses))
        .with_context(|| format!("cannot read the component `{text}`"))?;
    Ok((bytes.to_vec(), name.unwrap_or_else(|| "stage".to_owned())))
}

/// `HOST[::GUEST]`, as wasmtime's `--dir` takes it.
fn parse_dir(text: &str) -> Result<(PathBuf, String), String> {
    let (host, guest) = text.split_once("::").unwrap_or((text, text));
    if host.is_empty() || guest.is_empty() {
        return Err(format!("`{text}` is not HOST[::GUEST]"));
    }
    if !Path::new(host).is_dir() {
        return Err(format!("`{host}` is not a folder"));
    }
    Ok((PathBuf::from(host), guest.to_owned()))
}
