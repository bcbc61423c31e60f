//! The threads a run's parallel work shares: walking the workspace, reading
//! the state and the pipeline beside it, matching globs, looking up file
//! digests and settling cached stages.
//!
//! Twice the cores (4 to 16), because most of that work waits in the
//! kernel (a `stat` per file, more when the disk is cold) rather than
//! computing. One pool for all of it, so a run never has two sets of
//! threads competing for the cores, started when first needed and without
//! waiting for each thread to come up (which takes milliseconds on a busy
//! machine): work is handed out as threads come free.

use std::sync::OnceLock;

/// The pool; `None` if its threads could not be started.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        rayon::ThreadPoolBuilder::new()
            .num_threads((cores * 2).clamp(4, 16))
            .thread_name(|index| format!("cairn-{index}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs `work` on the pool, so that its parallel iterators and joins do too
/// (or where it is called, on rayon's global pool, if the pool could not be
/// started).
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}
