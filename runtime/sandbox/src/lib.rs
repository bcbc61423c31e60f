//! One stage, run in a capability sandbox.
//!
//! A [`Sandbox`] lists exactly what a stage may see and how far it may go;
//! nothing else of the host reaches it. Each capability is granted in a
//! module of its own (files here, [`clock`], [`random`], [`network`]), each
//! bound is enforced in one place ([`limits`], [`outputs`], the timer in
//! [`run`]), and whatever happens inside comes back as a [`StageRun`]: the
//! outcome or a [`StageFailure`], the masked log, the annotations and the
//! outputs directory.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod clock;
mod compiled_cache;
mod errors;
mod failure;
mod host_api;
mod host_tools;
mod limits;
mod logs;
mod network;
mod outputs;
mod random;
pub mod runtime;
mod secret_mask;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use cairn_core::{BoundExceeded, Clock, Limits, Outcome};
pub use compiled_cache::verify_entry as verify_compiled_entry;
pub(crate) use failure::CAPTURED_FRAMES;
pub use failure::StageFailure;
pub use host_tools::{INSTALL_HINT as TOOL_SANDBOX_HINT, MAX_PROCESSES, ToolGrant, sandbox_path as tool_sandbox_path};
pub use logs::CapturedLog;
pub use network::{Trust, TrustError};
pub use outputs::{OutputError, OutputTotals};
pub use random::{Random, seed};
pub use runtime::{LoadedComponent, Runtime, RuntimeError};
pub use secret_mask::MASK;

use cairn_core::observer::{Annotation, LogSource, StageObserver};
use cairn_core::scratch::{ScratchFolder, ScratchSpace};
use host_api::{HostApi, StagePre};
use limits::MemoryLimiter;
use logs::LogCapture;
use network::{HttpClient, HttpGrant, HttpHooks};
use secret_mask::SecretMask;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What the pipeline asks of a stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The stage's name, for messages (`lint`, `build[target=x86]`).
    pub stage: String,
    /// Arguments: `invocation.args` for a stage, `argv[1..]` for a command.
    pub args: Vec<String>,
    /// The `with` table, handed to stages (commands do not see it).
    pub config: BTreeMap<String, String>,
}

/// The outcome with every secret value masked, names and values alike.
fn masked_outcome(outcome: Outcome, mask: &SecretMask) -> Outcome {
    if mask.is_empty() {
        return outcome;
    }
    Outcome {
        summary: outcome.summary.map(|summary| mask.mask(&summary)),
        outputs: outcome
            .outputs
            .into_iter()
            .map(|(key, value)| (mask.mask(&key), mask.mask(&value)))
            .collect(),
    }
}

/// Everything a stage may see, and its bounds. Anything not listed here is
/// out of the stage's reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The call itself.
    pub invocation: Invocation,
    /// Environment variables; nothing of the host's is inherited.
    pub env: BTreeMap<String, String>,
    /// A host folder shown read-only at `/src`.
    pub src: Option<PathBuf>,
    /// Host folders shown read-only at `/in/<name>`.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Secret values by name, for `host.secret`; masked in every log line.
    pub secrets: BTreeMap<String, String>,
    /// HTTP origins (`https://host[:port][/path]`) the stage may send
    /// requests to, and `host:port` pairs its sockets may connect to. Any
    /// entry also gives its host tools the network (a tool's grant is all
    /// or nothing).
    pub network: Vec<String>,
    /// `Authorization` header values by origin (as written in `network`),
    /// added by the host to the stage's requests for that origin. The stage
    /// never sees them; they are masked like secrets.
    pub http_auth: BTreeMap<String, String>,
    /// Host programs the stage may run through `cairn:stage/tools`.
    pub tools: Vec<ToolGrant>,
    /// Host folders shown read-write at a path of the caller's choosing:
    /// `cairn stage run --dir`, for a WASI program used as a tool on the
    /// caller's files. Pipelines never grant one: a stage's effects go to
    /// `/out`, where they can be cached.
    pub dirs: Vec<(PathBuf, String)>,
    /// Which clock the stage reads.
    pub clock: Clock,
    /// Which random source the stage reads.
    pub random: Random,
    /// How far it may go.
    pub limits: Limits,
}

impl Sandbox {
    /// A sandbox granting nothing but `/out` and `/tmp`, with default bounds,
    /// a pinned clock and randomness seeded from `seed`.
    pub fn new(stage: impl Into<String>, seed: [u8; 32]) -> Self {
        Self {
            invocation: Invocation {
                stage: stage.into(),
                ..Invocation::default()
            },
            env: BTreeMap::new(),
            src: None,
            inputs: BTreeMap::new(),
            secrets: BTreeMap::new(),
            network: Vec::new(),
            http_auth: BTreeMap::new(),
            tools: Vec::new(),
            dirs: Vec::new(),
            clock: Clock::default(),
            random: Random::Seeded(seed),
            limits: Limits::default(),
        }
    }
}

/// A failure to set up the sandbox: the stage never ran.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A folder to be shown to the stage cannot be opened.
    #[error("cannot show `{host}` to the stage at `{guest}`")]
    Mount {
        /// The host folder.
        host: PathBuf,
        /// Where the stage would see it.
        guest: String,
        /// What the operating system said.
        #[source]
        source: wasmtime::Error,
    },
    /// An input name that cannot be a folder name.
    #[error("`{0}` cannot name an input folder: use letters, digits, `-`, `_`, `.`, `[`, `]` or `=`")]
    InputName(String),
    /// The stage's scratch folders cannot be created.
    #[error("cannot create the stage's scratch folders in `{path}`")]
    Scratch {
        /// Where cairn tried.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A `network` entry that cannot be resolved.
    #[error("network grant `{entry}`: {reason}")]
    Network {
        /// The entry as written.
        entry: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// Everything a stage run produced.
#[derive(Debug)]
pub struct StageRun {
    /// The outcome, or why the stage failed.
    pub result: Result<Outcome, StageFailure>,
    /// The masked, bounded log.
    pub log: CapturedLog,
    /// Diagnostics the stage attached to its inputs.
    pub annotations: Vec<Annotation>,
    /// Annotations beyond the kept maximum.
    pub dropped_annotations: u64,
    /// Counts of `/out`, when the stage succeeded.
    pub output_totals: OutputTotals,
    /// From instantiation to return.
    pub duration: Duration,
    /// The part of `duration` instantiating took (all of it when the stage
    /// never got past instantiating).
    pub instantiation: Duration,
    outputs: ScratchFolder,
}

impl StageRun {
    /// The host folder holding what the stage wrote to `/out`. It is emptied
    /// (and kept for a later stage) when the run is dropped; move it or its
    /// contents out first to keep them.
    pub fn outputs(&self) -> &Path {
        self.outputs.path()
    }
}

/// The data of a stage's store.
pub(crate) struct StageState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    host: HostApi,
    http: WasiHttpCtx,
    http_hooks: HttpHooks,
}

impl WasiHttpView for StageState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The data of a preview1 program's store: the same WASI context, seen
/// through preview1's functions.
pub(crate) struct ModuleState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// Adds everything a stage may import: WASI 0.2 with `wasi:http`'s
/// outgoing handler, `cairn:stage/host` and `cairn:stage/tools`.
pub(crate) fn add_to_linker(linker: &mut Linker<StageState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    host_api::host::add_to_linker::<StageState, HasSelf<HostApi>>(linker, |state| &mut state.host)?;
    host_api::tools::add_to_linker::<StageState, HasSelf<HostApi>>(linker, |state| &mut state.host)?;
    Ok(())
}

/// Adds `wasi_snapshot_preview1`, for core modules run as they are.
pub(crate) fn add_to_module_linker(linker: &mut wasmtime::Linker<ModuleState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |state| &mut state.wasi)
}

/// How a component is entered, checked against its exports when it is loaded.
pub(crate) enum Entry {
    /// A component's export.
    Component(ComponentEntry),
    /// A preview1 core module's `_start`, run on wasmtime's own preview1
    /// implementation (no adapter in between).
    Module(wasmtime::InstancePre<ModuleState>),
}

/// The export a component is entered through.
pub(crate) enum ComponentEntry {
    /// `cairn:stage/stage`'s `run`.
    Stage(StagePre<StageState>),
    /// `wasi:cli/run`.
    Command(CommandPre<StageState>),
}

impl Entry {
    /// The entry point of a pre-instantiated component, if it has one.
    pub(crate) fn stage(pre: wasmtime::component::InstancePre<StageState>) -> wasmtime::Result<Self> {
        StagePre::new(pre).map(|pre| Entry::Component(ComponentEntry::Stage(pre)))
    }

    /// The `wasi:cli/run` export of a pre-instantiated component, if it has one.
    pub(crate) fn command(pre: wasmtime::component::InstancePre<StageState>) -> wasmtime::Result<Self> {
        CommandPre::new(pre).map(|pre| Entry::Component(ComponentEntry::Command(pre)))
    }
}

/// Runs one stage. `scratch` is where its `/out` and `/tmp` are created.
pub(crate) async fn run(
    engine: &Engine,
    entry: &Entry,
    sandbox: &Sandbox,
    scratch: &Arc<ScratchSpace>,
    http_client: &Arc<HttpClient>,
    observer: Arc<dyn StageObserver>,
) -> Result<StageRun, SandboxError> {
    let scratch_error = scratch_error(scratch.dir());
    let outputs = scratch.folder("out").map_err(scratch_error)?;
    let tmp = scratch.folder("tmp").map_err(scratch_error)?;

    let mask = Arc::new(SecretMask::new(&masked_values(sandbox)));
    let capture = Arc::new(LogCapture::new(
        Arc::clone(&observer),
        Arc::clone(&mask),
        sandbox.limits.max_log,
    ));
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(capture.stream(LogSource::Stdout))
        .stderr(capture.stream(LogSource::Stderr))
        .arg(&sandbox.invocation.stage)
        .args(&sandbox.invocation.args);
    for (key, value) in &sandbox.env {
        builder.env(key, value);
    }
    let needed = needed_folders(sandbox, scratch)?;
    let root = root_skeleton(scratch.dir())?;
    grant_files(
        &mut builder,
        sandbox,
        &root,
        needed.as_ref(),
        outputs.path(),
        tmp.path(),
    )?;
    clock::grant(&mut builder, sandbox.clock, !sandbox.network.is_empty());
    random::grant(&mut builder, sandbox.random);
    let origins = network::grant(&mut builder, &sandbox.network, Arc::clone(&capture)).await?;
    let http_grant = HttpGrant {
        credentials: http_credentials(sandbox, &origins)?,
        origins,
        max_bytes: sandbox.limits.max_output,
    };

    let limiter = MemoryLimiter::new(sandbox.limits.memory);
    let limits = sandbox.limits;
    let watched = (outputs.path().to_owned(), tmp.path().to_owned());
    let running = Arc::new(host_tools::Running::default());
    let started = Instant::now();
    let instantiated = std::sync::OnceLock::new();
    let (result, annotations, dropped_annotations) = match entry {
        Entry::Module(pre) => {
            let state = ModuleState {
                wasi: builder.build_p1(),
                limiter,
            };
            let mut store = new_store(engine, state, |state| &mut state.limiter);
            let result = supervise(call_module(pre, &mut store, &instantiated), limits, watched).await;
            (result, Vec::new(), 0)
        }
        Entry::Component(entry) => {
            let state = StageState {
                wasi: builder.build(),
                table: ResourceTable::new(),
                limiter,
                http: WasiHttpCtx::new(),
                http_hooks: HttpHooks::new(http_grant, Arc::clone(http_client), Arc::clone(&capture)),
                host: HostApi::new(
                    Arc::clone(&capture),
                    observer,
                    sandbox.secrets.clone(),
                    sandbox.invocation.stage.clone(),
                    // Only a stage granted tools can run any: no other
                    // pays for copying its grants.
                    (!sandbox.tools.is_empty()).then(|| host_tools::Tools {
                        granted: sandbox.tools.clone(),
                        stage: sandbox.invocation.stage.clone(),
                        src: sandbox.src.clone(),
                        inputs: sandbox.inputs.clone(),
                        out: outputs.path().to_owned(),
                        tmp: tmp.path().to_owned(),
                        env: sandbox.env.clone(),
                        secrets: sandbox.secrets.clone(),
                        network: !sandbox.network.is_empty(),
                        limits,
                        source_date_epoch: match sandbox.clock {
                            Clock::Pinned { source_date_epoch } => Some(source_date_epoch),
                            Clock::Real => None,
                        },
                        capture: Arc::clone(&capture),
                        running: Arc::clone(&running),
                    }),
                ),
            };
            let mut store = new_store(engine, state, |state| &mut state.limiter);
            let result = supervise(
                call(entry, &mut store, &sandbox.invocation, &instantiated),
                limits,
                watched,
            )
            .await;
            let state = store.into_data();
            (result, state.host.annotations, state.host.dropped_annotations)
        }
    };
    // However the stage ended (a bound, a trap), no tool it started lives on.
    running.kill_all();
    let duration = started.elapsed();
    let instantiation = instantiated.get().map_or(duration, |at| at.duration_since(started));
    drop(tmp);

    let (result, output_totals) = match result {
        Ok(outcome) => match outputs::check(outputs.path(), &mask) {
            Ok(totals) if totals.entries > limits.max_entries => (
                Err(BoundExceeded::Entries {
                    limit: limits.max_entries,
                    folder: "/out",
                    created: totals.entries,
                }
                .into()),
                totals,
            ),
            Ok(totals) if totals.bytes > limits.max_output.0 => (
                Err(BoundExceeded::Output {
                    limit: limits.max_output,
                    written: cairn_core::units::ByteSize(totals.bytes),
                }
                .into()),
                totals,
            ),
            Ok(totals) => (Ok(outcome), totals),
            Err(error) => (Err(error.into()), OutputTotals::default()),
        },
        Err(failure) => (Err(failure), OutputTotals::default()),
    };
    // Whatever the stage returns reaches events, the cache and downstream
    // references: no granted secret's value may be in it.
    let log = capture.finish();
    let result = result
        .map(|outcome| masked_outcome(outcome, &mask))
        .map_err(|failure| failure.with_log(&log).masked(&mask));
    Ok(StageRun {
        result,
        log,
        annotations,
        dropped_annotations,
        output_totals,
        duration,
        instantiation,
        outputs,
    })
}

/// Every value the stage's words must not carry: granted secrets, and the
/// credentials the host adds to its requests (named by their origin).
fn masked_values(sandbox: &Sandbox) -> BTreeMap<String, String> {
    let mut values = sandbox.secrets.clone();
    for (origin, value) in &sandbox.http_auth {
        values.insert(format!("the credential for {origin}"), value.clone());
    }
    values
}

/// The `http_auth` entries as origins: each must name an origin the stage
/// is granted, so that a credential never goes anywhere else.
fn http_credentials(
    sandbox: &Sandbox,
    granted: &[cairn_core::Origin],
) -> Result<Vec<(cairn_core::Origin, http::HeaderValue)>, SandboxError> {
    sandbox
        .http_auth
        .iter()
        .map(|(entry, value)| {
            let error = |reason: String| SandboxError::Network {
                entry: entry.clone(),
                reason,
            };
            let origin = cairn_core::Origin::parse(entry).map_err(error)?;
            if !granted.contains(&origin) {
                return Err(error(format!(
                    "`http_auth` names it, but `network` does not grant it: add `network = [\"{origin}\"]`"
                )));
            }
            // The value is never echoed: it holds a secret.
            let mut header = http::HeaderValue::from_str(value).map_err(|_| {
                error("its credential is not a valid header value (a line break or a control character?)".to_owned())
            })?;
            header.set_sensitive(true);
            Ok((origin, header))
        })
        .collect()
}

/// Turns a failure to make something in `scratch` into the sandbox's error.
fn scratch_error(scratch: &Path) -> impl Fn(std::io::Error) -> SandboxError + Copy + '_ {
    move |source| SandboxError::Scratch {
        path: scratch.to_owned(),
        source,
    }
}

/// When the stage needs other stages, a read-only folder holding an empty
/// folder per needed stage, shown at `/in` so that the stage can list what
/// it was handed; each `/in/<name>` is a preopen of its own, which path
/// resolution prefers as the longer prefix.
fn needed_folders(sandbox: &Sandbox, scratch: &Arc<ScratchSpace>) -> Result<Option<ScratchFolder>, SandboxError> {
    if sandbox.inputs.is_empty() {
        return Ok(None);
    }
    let scratch_error = scratch_error(scratch.dir());
    let folder = scratch.folder("in").map_err(scratch_error)?;
    for name in sandbox.inputs.keys() {
        if !valid_input_name(name) {
            return Err(SandboxError::InputName(name.clone()));
        }
        std::fs::create_dir(folder.path().join(name)).map_err(scratch_error)?;
    }
    Ok(Some(folder))
}

/// A store bounded by `limits`' memory and preempted at every epoch tick,
/// so that the timer and the output watcher (and other stages) get to run
/// while a guest spins.
fn new_store<T: 'static>(
    engine: &Engine,
    data: T,
    limiter: impl FnMut(&mut T) -> &mut MemoryLimiter + Send + Sync + 'static,
) -> Store<T> {
    let mut store = Store::new(engine, data);
    let mut limiter = limiter;
    store.limiter(move |data| limiter(data) as &mut dyn ResourceLimiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store
}

/// Runs `call` until it returns or a bound stops it: the time bound, or
/// `/out` or `/tmp` (`watched`) outgrowing the output bound.
async fn supervise(
    call: impl Future<Output = Result<Outcome, StageFailure>>,
    limits: Limits,
    watched: (PathBuf, PathBuf),
) -> Result<Outcome, StageFailure> {
    let (out, tmp) = watched;
    tokio::select! {
        result = call => result,
        () = tokio::time::sleep(limits.timeout) => Err(BoundExceeded::Time(limits.timeout).into()),
        bound = outputs::watch(out, tmp, limits.max_output, limits.max_entries) => Err(bound.into()),
    }
}

/// The folder shown read-only at `/`: empty but for the (empty) folders the
/// other preopens cover, so that a program that lists `/` or changes into it
/// (pytest does) finds the sandbox's layout and nothing of the host. Made
/// once per scratch folder and shared by every stage; path resolution
/// prefers the longer preopen, so `/src/x` still reaches `/src`.
fn root_skeleton(scratch: &Path) -> Result<PathBuf, SandboxError> {
    let root = scratch.join("root-v1");
    if root.join("tmp").is_dir() {
        return Ok(root);
    }
    let scratch_error = scratch_error(scratch);
    let building = tempfile::Builder::new()
        .prefix("root-")
        .tempdir_in(scratch)
        .map_err(scratch_error)?;
    for folder in ["src", "in", "out", "tmp"] {
        std::fs::create_dir(building.path().join(folder)).map_err(scratch_error)?;
    }
    match std::fs::rename(building.path(), &root) {
        Ok(()) => {
            // Renamed away: nothing is left for the guard to remove.
            let _ = building.keep();
        }
        // Another stage made it first.
        Err(_) if root.join("tmp").is_dir() => {}
        Err(error) => return Err(scratch_error(error)),
    }
    Ok(root)
}

/// `/` (a skeleton), `/src`, `/in` and `/in/<name>` read-only, `/out` and
/// `/tmp` writable; nothing else.
fn grant_files(
    builder: &mut WasiCtxBuilder,
    sandbox: &Sandbox,
    root: &Path,
    needed: Option<&ScratchFolder>,
    out: &Path,
    tmp: &Path,
) -> Result<(), SandboxError> {
    let mut mount = |host: &Path, guest: String, perms: FsPerms| {
        builder
            .preopened_dir(host, &guest, perms)
            .map(drop)
            .map_err(|source| SandboxError::Mount {
                host: host.to_owned(),
                guest,
                source,
            })
    };
    mount(root, "/".to_owned(), FsPerms::ReadOnly)?;
    if let Some(src) = &sandbox.src {
        mount(src, "/src".to_owned(), FsPerms::ReadOnly)?;
    }
    if let Some(needed) = needed {
        mount(needed.path(), "/in".to_owned(), FsPerms::ReadOnly)?;
    }
    for (name, host) in &sandbox.inputs {
        mount(host, format!("/in/{name}"), FsPerms::ReadOnly)?;
    }
    mount(out, "/out".to_owned(), FsPerms::ReadWrite)?;
    mount(tmp, "/tmp".to_owned(), FsPerms::ReadWrite)?;
    for (host, guest) in &sandbox.dirs {
        mount(host, guest.clone(), FsPerms::ReadWrite)?;
    }
    if sandbox.src.is_some() {
        builder.initial_cwd("/src");
    }
    Ok(())
}

/// Input names become folder names under `/in`: no separators, no `..`.
fn valid_input_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '[' | ']' | '=' | ','))
}

/// Instantiates the component and calls its entry point.
async fn call(
    entry: &ComponentEntry,
    store: &mut Store<StageState>,
    invocation: &Invocation,
    instantiated: &std::sync::OnceLock<Instant>,
) -> Result<Outcome, StageFailure> {
    match entry {
        ComponentEntry::Stage(pre) => {
            let stage = pre
                .instantiate_async(&mut *store)
                .await
                .map_err(StageFailure::from_wasmtime)?;
            let _ = instantiated.set(Instant::now());
            let request = host_api::types::Invocation {
                stage: invocation.stage.clone(),
                args: invocation.args.clone(),
                config: invocation.config.clone().into_iter().collect(),
            };
            match stage.call_run(&mut *store, &request).await {
                Ok(Ok(outcome)) => {
                    let outcome = Outcome {
                        summary: outcome.summary,
                        outputs: outcome.outputs.into_iter().collect(),
                    };
                    outputs::check_outcome(&outcome)?;
                    Ok(outcome)
                }
                Ok(Err(message)) => Err(StageFailure::Returned(bounded(message))),
                Err(error) => Err(match StageFailure::from_wasmtime(error) {
                    StageFailure::Exit(code) => StageFailure::ExitedInsteadOfReturning(code),
                    other => other,
                }),
            }
        }
        ComponentEntry::Command(pre) => {
            let command = pre
                .instantiate_async(&mut *store)
                .await
                .map_err(StageFailure::from_wasmtime)?;
            let _ = instantiated.set(Instant::now());
            match command.wasi_cli_run().call_run(&mut *store).await {
                Ok(Ok(())) => Ok(Outcome::default()),
                Ok(Err(())) => Err(StageFailure::Exit(1)),
                Err(error) => match StageFailure::from_wasmtime(error) {
                    StageFailure::Exit(0) => Ok(Outcome::default()),
                    other => Err(other),
                },
            }
        }
    }
}

/// Instantiates a preview1 program and calls its `_start`. Its `proc_exit`
/// status arrives whole (preview1 carries any number).
async fn call_module(
    pre: &wasmtime::InstancePre<ModuleState>,
    store: &mut Store<ModuleState>,
    instantiated: &std::sync::OnceLock<Instant>,
) -> Result<Outcome, StageFailure> {
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(StageFailure::from_wasmtime)?;
    let _ = instantiated.set(Instant::now());
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(StageFailure::from_wasmtime)?;
    match start.call_async(&mut *store, ()).await {
        Ok(()) => Ok(Outcome::default()),
        Err(error) => match StageFailure::from_wasmtime(error) {
            StageFailure::Exit(0) => Ok(Outcome::default()),
            other => Err(other),
        },
    }
}

/// The most of a stage's returned error kept: it is shown, stored in
/// events and reports, and a runaway one must not take the host's memory.
const MAX_ERROR: usize = 64 * 1024;

/// `message` cut to [`MAX_ERROR`] bytes (at a character boundary), saying
/// how much was cut.
fn bounded(mut message: String) -> String {
    if message.len() <= MAX_ERROR {
        return message;
    }
    let mut cut = MAX_ERROR;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = message.len() - cut;
    message.truncate(cut);
    message.push_str(&format!("… ({dropped} more bytes)"));
    message
}
