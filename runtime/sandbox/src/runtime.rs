//! The host: one wasmtime engine, the linker every stage is checked against,
//! and the components loaded so far.
//!
//! A [`Runtime`] is made once per process and shared by every stage run. It
//! compiles each distinct component once (or deserializes it from the
//! compiled cache), checks its imports and entry point once, and keeps a
//! pre-instantiated handle so that running a stage costs an instantiation,
//! not a compilation.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use crate::compiled_cache::{Compiled, CompiledCache};
use crate::errors::error_chain;
use crate::network::{HttpClient, Trust};
use crate::{Entry, ModuleState, Sandbox, SandboxError, StageRun, StageState};
use cairn_component::{BinaryFormat, ComponentKind, Digest, LoadError, check_is_preview1_command};
use cairn_core::cache_dir::{CacheDir, CacheDirError};
use cairn_core::observer::StageObserver;
use cairn_core::once_map::OnceMap;

/// How often the epoch advances: the granularity of preemption, and so of
/// how promptly a runaway stage notices its deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A failure to start the host itself.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime rejected the engine configuration or the WASI linker.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// The cache folder is unusable.
    #[error(transparent)]
    Cache(#[from] CacheDirError),
}

/// A component ready to run: compiled, its imports checked against what
/// cairn provides, and its entry point found.
pub struct LoadedComponent {
    digest: Digest,
    kind: ComponentKind,
    size: usize,
    compiled_now: bool,
    entry: Entry,
}

impl LoadedComponent {
    /// The blake3 digest of the bytes it was loaded from.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Stage, command, or adapted preview1 module.
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    /// The size of the bytes it was loaded from.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this load ran Cranelift (false: the compiled cache had it).
    pub fn compiled_now(&self) -> bool {
        self.compiled_now
    }
}

/// The host that runs stages.
pub struct Runtime {
    engine: Engine,
    linkers: Linkers,
    compiled: Option<CompiledCache>,
    scratch: PathBuf,
    loaded: OnceMap<Digest, Arc<LoadedComponent>>,
    http: Arc<HttpClient>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime keeping compiled components and scratch space in `cache`,
    /// whose HTTPS requests trust the platform's certificate authorities.
    pub fn new(cache: &CacheDir) -> Result<Self, RuntimeError> {
        Self::with_trust(cache, Trust::default())
    }

    /// [`Runtime::new`], trusting `trust`'s authorities for HTTPS.
    pub fn with_trust(cache: &CacheDir, trust: Trust) -> Result<Self, RuntimeError> {
        let engine = engine()?;
        let linkers = Linkers::new(&engine).map_err(|error| RuntimeError::Engine(error_chain(&error)))?;
        Ok(Self {
            compiled: Some(CompiledCache::new(&cache.compiled(), &engine)),
            scratch: cache.scratch()?,
            linkers,
            loaded: OnceMap::default(),
            http: Arc::new(HttpClient::new(trust)),
            _ticker: EpochTicker::start(engine.clone())
                .map_err(|error| RuntimeError::Engine(format!("cannot start the epoch thread: {error}")))?,
            engine,
        })
    }

    /// Loads a component (or a preview1 module) from its bytes. Each distinct
    /// file is compiled at most once per machine and checked once per
    /// process; later loads of the same bytes return the same component.
    pub async fn load(&self, bytes: Arc<[u8]>) -> Result<Arc<LoadedComponent>, LoadError> {
        let digest = Digest::of(&bytes);
        self.loaded
            .get_or_try_init(digest, || async {
                let engine = self.engine.clone();
                let linkers = self.linkers.clone();
                let compiled = self.compiled.clone();
                tokio::task::spawn_blocking(move || load(&engine, &linkers, compiled.as_ref(), digest, &bytes))
                    .await
                    .map_err(|error| LoadError::Compile(format!("the compiler thread failed: {error}")))?
                    .map(Arc::new)
            })
            .await
    }

    /// Runs a loaded component in the sandbox `sandbox` describes, reporting
    /// what it logs to `observer` as it happens.
    pub async fn run(
        &self,
        component: &LoadedComponent,
        sandbox: &Sandbox,
        observer: Arc<dyn StageObserver>,
    ) -> Result<StageRun, SandboxError> {
        crate::run(
            &self.engine,
            &component.entry,
            sandbox,
            &self.scratch,
            &self.http,
            observer,
        )
        .await
    }
}

/// The engine configuration every stage runs under.
fn engine() -> Result<Engine, RuntimeError> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(crate::CAPTURED_FRAMES));
    Engine::new(&config).map_err(|error| RuntimeError::Engine(error_chain(&error)))
}

/// What components and preview1 modules are linked against: WASI 0.2 with
/// `cairn:stage/host`, and WASI preview1.
#[derive(Clone)]
struct Linkers {
    component: Linker<StageState>,
    module: wasmtime::Linker<ModuleState>,
}

impl Linkers {
    fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut component = Linker::new(engine);
        crate::add_to_linker(&mut component)?;
        let mut module = wasmtime::Linker::new(engine);
        crate::add_to_module_linker(&mut module)?;
        Ok(Self { component, module })
    }
}

/// Decodes, compiles (or deserializes) and checks one component or
/// preview1 module. A plain function of its arguments, so nothing the
/// compiled-cache key does not cover can slip into what gets cached.
fn load(
    engine: &Engine,
    linkers: &Linkers,
    cache: Option<&CompiledCache>,
    digest: Digest,
    bytes: &[u8],
) -> Result<LoadedComponent, LoadError> {
    let format = BinaryFormat::detect(bytes).ok_or(LoadError::NotWasm)?;
    let (kind, entry, compiled_now) = match format {
        BinaryFormat::CoreModule => {
            check_is_preview1_command(bytes)?;
            let (module, compiled_now) = compile(cache, digest, || wasmtime::Module::new(engine, bytes), engine)?;
            let pre = linkers
                .module
                .instantiate_pre(&module)
                .map_err(|error| LoadError::Imports(error_chain(&error)))?;
            (ComponentKind::Preview1Command, Entry::Module(pre), compiled_now)
        }
        BinaryFormat::Component => {
            let (component, compiled_now) = compile(cache, digest, || Component::new(engine, bytes), engine)?;
            let pre = linkers
                .component
                .instantiate_pre(&component)
                .map_err(|error| LoadError::Imports(error_chain(&error)))?;
            let kind = classify(engine, &component)?;
            let entry = match kind {
                ComponentKind::Stage => Entry::stage(pre),
                _ => Entry::command(pre),
            }
            .map_err(|error| LoadError::WrongSignature {
                export: if kind == ComponentKind::Stage {
                    "run"
                } else {
                    "wasi:cli/run"
                }
                .to_owned(),
                world: kind.world(),
                reason: error_chain(&error),
            })?;
            (kind, entry, compiled_now)
        }
    };
    Ok(LoadedComponent {
        digest,
        kind,
        size: bytes.len(),
        compiled_now,
        entry,
    })
}

/// The compiled form of the bytes named `digest`, from the cache or from
/// `compile` (then saved); and whether Cranelift ran.
fn compile<C: Compiled>(
    cache: Option<&CompiledCache>,
    digest: Digest,
    compile: impl FnOnce() -> wasmtime::Result<C>,
    engine: &Engine,
) -> Result<(C, bool), LoadError> {
    if let Some(compiled) = cache.and_then(|cache| cache.load(engine, &digest)) {
        return Ok((compiled, false));
    }
    let compiled = compile().map_err(|error| LoadError::Compile(error_chain(&error)))?;
    if let Some(cache) = cache
        && let Err(error) = cache.store(&digest, &compiled)
    {
        tracing::warn!(%error, "cannot save the compiled code; it will be compiled again next time");
    }
    Ok((compiled, true))
}

/// Decides from the component's exports how it is entered.
fn classify(engine: &Engine, component: &Component) -> Result<ComponentKind, LoadError> {
    let component_type = component.component_type();
    let exports: Vec<&str> = component_type.exports(engine).map(|(name, _)| name).collect();
    if exports.contains(&"run") {
        Ok(ComponentKind::Stage)
    } else if exports.iter().any(|name| name.starts_with("wasi:cli/run@0.2")) {
        Ok(ComponentKind::Command)
    } else {
        Err(LoadError::NoEntryPoint {
            exports: if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            },
        })
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own,
/// which keeps ticking even when every executor thread is busy in a guest.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("cairn-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
