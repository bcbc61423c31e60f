//! Which shared cache a run uses, and opening it (with the worker pool's
//! queue, when stages are sent to workers).

use std::sync::Arc;

use cairn_pipeline::Pipeline;
use cairn_remote::nats::NatsBackend;
use cairn_remote::work::WorkQueue;
use cairn_remote::{RemoteError, RemoteSettings, SettingsError, SharedCache};

/// What the command line asked of the shared cache.
#[derive(Clone, Debug, Default)]
pub struct SharedCacheRequest {
    /// `--remote` or `CAIRN_REMOTE`; over the pipeline's `[remote] url`.
    pub url: Option<String>,
    /// `--remote-read-only`: only read, whatever the pipeline says.
    pub read_only: bool,
    /// `--workers`: send stages to the worker pool, whatever the pipeline
    /// says (its `[remote] execute` asks the same).
    pub workers: bool,
    /// On how many servers what cairn creates is kept, over the
    /// pipeline's `[remote] replicas` (`cairn worker --replicas`).
    pub replicas: Option<usize>,
}

/// A shared cache opened, and the worker pool's queue when one is used.
pub struct Opened {
    /// The shared cache.
    pub cache: Arc<SharedCache>,
    /// The queue stages are sent through (`--workers`), or workers pull
    /// from (`cairn worker`).
    pub queue: Option<Arc<WorkQueue>>,
}

/// A shared cache that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedCacheError {
    /// The settings are wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The server cannot be used.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Workers asked for without a server to reach them through.
    #[error(
        "stages can be sent to workers only through a shared cache: give --remote nats://HOST:PORT, set \
         CAIRN_REMOTE, or add `[remote] url` to cairn.toml"
    )]
    WorkersWithoutRemote,
}

impl SharedCacheRequest {
    /// The settings this request and `pipeline`'s `[remote]` make, if a
    /// shared cache is asked for at all.
    pub fn settings(&self, pipeline: Option<&Pipeline>) -> Result<Option<RemoteSettings>, SettingsError> {
        let from_file = pipeline.map(|pipeline| &pipeline.remote);
        let Some(url) = self
            .url
            .as_deref()
            .or_else(|| from_file.and_then(|remote| remote.url.as_deref()))
        else {
            return Ok(None);
        };
        let read_only = self.read_only || from_file.is_some_and(|remote| remote.read_only);
        let replicas = self
            .replicas
            .unwrap_or_else(|| from_file.map_or(1, |remote| remote.replicas.max(1) as usize));
        RemoteSettings::from_env(url, read_only, replicas).map(Some)
    }

    /// Connects to the shared cache asked for, if any, and opens the
    /// worker pool's queue when workers are asked for (`--workers`,
    /// `[remote] execute`) or `queue` is set (`cairn worker`).
    pub async fn open(&self, pipeline: Option<&Pipeline>, queue: bool) -> Result<Option<Opened>, SharedCacheError> {
        let workers = queue || self.workers || pipeline.is_some_and(|pipeline| pipeline.remote.execute);
        let Some(settings) = self.settings(pipeline)? else {
            return match workers {
                true => Err(SharedCacheError::WorkersWithoutRemote),
                false => Ok(None),
            };
        };
        let backend = NatsBackend::open(&settings).await?;
        let queue = match workers {
            true => Some(Arc::new(backend.work_queue(settings.replicas).await?)),
            false => None,
        };
        Ok(Some(Opened {
            cache: Arc::new(SharedCache::new(Arc::new(backend), settings.read_only)),
            queue,
        }))
    }
}
