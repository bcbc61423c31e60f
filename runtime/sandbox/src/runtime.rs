//! The host: one wasmtime engine, the linker every stage is checked against,
//! and the components loaded so far.
//!
//! A [`Runtime`] is made once per process and shared by every stage run. It
//! compiles each distinct component once (or deserializes it from the
//! compiled cache), checks its imports and entry point once, and keeps a
//! pre-instantiated handle so that running a stage costs an instantiation,
//! not a compilation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use crate::compiled_cache::{Code, CompiledCache};
use crate::errors::error_chain;
use crate::network::{HttpClient, Trust};
use crate::{Entry, ModuleState, Sandbox, SandboxError, StageRun, StageState};
use cairn_component::{BinaryFormat, ComponentKind, Digest, LoadError, check_is_preview1_command};
use cairn_core::cache_dir::{CacheDir, CacheDirError};
use cairn_core::observer::StageObserver;
use cairn_core::once_map::OnceMap;
use cairn_core::scratch::ScratchSpace;

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
    scratch: Arc<ScratchSpace>,
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
            scratch: ScratchSpace::new(cache.scratch()?),
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
        self.load_known(digest, async move { Ok(bytes) }).await
    }

    /// [`Runtime::load`] for bytes whose digest is already known, awaiting
    /// `bytes` only when the compiled cache does not have them: a stage
    /// whose component's digest is remembered by its stamp starts without
    /// reading (and hashing) 14 to 18 MB of JavaScript or Python engine.
    /// The caller vouches that the bytes have the digest `digest`.
    pub async fn load_known<F>(&self, digest: Digest, bytes: F) -> Result<Arc<LoadedComponent>, LoadError>
    where
        F: Future<Output = Result<Arc<[u8]>, LoadError>> + Send,
    {
        self.loaded
            .get_or_try_init(digest, || async {
                let (engine, linkers, compiled) = (self.engine.clone(), self.linkers.clone(), self.compiled.clone());
                let cached = blocking(move || {
                    let cached = compiled.as_ref()?.load(&engine, &digest)?;
                    Some(ready(&engine, &linkers, digest, cached.code, cached.source_size, false))
                })
                .await;
                if let Some(loaded) = cached {
                    return loaded.map(Arc::new);
                }
                let bytes = bytes.await?;
                let (engine, linkers, compiled) = (self.engine.clone(), self.linkers.clone(), self.compiled.clone());
                blocking(move || compile(&engine, &linkers, compiled.as_ref(), digest, &bytes))
                    .await
                    .map(Arc::new)
            })
            .await
    }

    /// This runtime, its stages taking their `/out` and `/tmp` from
    /// `scratch`, which the caller's own scratch folders share.
    pub fn sharing_scratch(mut self, scratch: Arc<ScratchSpace>) -> Self {
        self.scratch = scratch;
        self
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

/// Decodes and compiles `bytes` (named `digest`), saves the compiled code
/// in `cache`, and readies it. A plain function of its arguments, so nothing
/// the compiled-cache key does not cover can slip into what gets cached. A
/// core module is saved only once it has passed the preview1 check, so code
/// found in the cache need not be checked again.
fn compile(
    engine: &Engine,
    linkers: &Linkers,
    cache: Option<&CompiledCache>,
    digest: Digest,
    bytes: &[u8],
) -> Result<LoadedComponent, LoadError> {
    let compile_error = |error: wasmtime::Error| LoadError::Compile(error_chain(&error));
    let code = match BinaryFormat::detect(bytes).ok_or(LoadError::NotWasm)? {
        BinaryFormat::CoreModule => {
            check_is_preview1_command(bytes)?;
            Code::Module(wasmtime::Module::new(engine, bytes).map_err(compile_error)?)
        }
        BinaryFormat::Component => Code::Component(Component::new(engine, bytes).map_err(compile_error)?),
    };
    let size = bytes.len() as u64;
    if let Some(cache) = cache
        && let Err(error) = cache.store(&digest, &code, size)
    {
        tracing::warn!(%error, "cannot save the compiled code; it will be compiled again next time");
    }
    ready(engine, linkers, digest, code, size, true)
}

/// Checks compiled code's imports against what cairn provides and finds its
/// entry point: a component ready to instantiate.
fn ready(
    engine: &Engine,
    linkers: &Linkers,
    digest: Digest,
    code: Code,
    size: u64,
    compiled_now: bool,
) -> Result<LoadedComponent, LoadError> {
    let imports_error = |error: wasmtime::Error| LoadError::Imports(error_chain(&error));
    let (kind, entry) = match code {
        Code::Module(module) => {
            let pre = linkers.module.instantiate_pre(&module).map_err(imports_error)?;
            (ComponentKind::Preview1Command, Entry::Module(pre))
        }
        Code::Component(component) => {
            let pre = linkers.component.instantiate_pre(&component).map_err(imports_error)?;
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
            (kind, entry)
        }
    };
    Ok(LoadedComponent {
        digest,
        kind,
        size: usize::try_from(size).unwrap_or(usize::MAX),
        compiled_now,
        entry,
    })
}

/// `work` on a thread that may block, its panic carried over.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
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
