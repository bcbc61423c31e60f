//! Which shared cache a run uses, and opening it.

use std::sync::Arc;

use cairn_pipeline::Pipeline;
use cairn_remote::nats::NatsBackend;
use cairn_remote::{RemoteError, RemoteSettings, SettingsError, SharedCache};

/// What the command line asked of the shared cache.
#[derive(Clone, Debug, Default)]
pub struct SharedCacheRequest {
    /// `--remote` or `CAIRN_REMOTE`; over the pipeline's `[remote] url`.
    pub url: Option<String>,
    /// `--remote-read-only`: only read, whatever the pipeline says.
    pub read_only: bool,
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
        let replicas = from_file.map_or(1, |remote| remote.replicas.max(1) as usize);
        RemoteSettings::from_env(url, read_only, replicas).map(Some)
    }

    /// Connects to the shared cache asked for, if any.
    pub async fn open(&self, pipeline: Option<&Pipeline>) -> Result<Option<Arc<SharedCache>>, SharedCacheError> {
        let Some(settings) = self.settings(pipeline)? else {
            return Ok(None);
        };
        let backend = NatsBackend::open(&settings).await?;
        Ok(Some(Arc::new(SharedCache::new(Arc::new(backend), settings.read_only))))
    }
}
