//! The shared cache on NATS JetStream: blobs in an object store named by
//! their blake3 digest, action and build entries in key-value buckets
//! written with create (first writer wins). JetStream keeps, replicates and
//! fails over; this is a thin client.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv, object_store};
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use cairn_core::Digest;

use super::settings::{Credentials, RemoteSettings};
use super::{Backend, BackendStatus, BucketStatus, GcPolicy, GcReport, RemoteError, Table, Written};

/// The object store of blobs.
pub const BLOBS_BUCKET: &str = "cairn-blobs";
/// The key-value bucket of action cache entries.
pub const ACTIONS_BUCKET: &str = "cairn-actions";
/// The key-value bucket of stage folder builds.
pub const BUILDS_BUCKET: &str = "cairn-builds";

/// The object store's chunk size (async-nats' default): blobs up to it are
/// one chunk.
const CHUNK_SIZE: usize = 128 * 1024;

/// How long a connection attempt may take before the server is called
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a NATS server with JetStream, and the cache's buckets.
pub struct NatsBackend {
    server: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    blobs: object_store::ObjectStore,
    /// The object store's stream, for reading a one-chunk object with a
    /// single request.
    blob_stream: jetstream::stream::Stream,
    actions: kv::Store,
    builds: kv::Store,
}

/// Connects as `settings` say: credentials and TLS applied, the cairn
/// client named, and a refusal of the credentials told apart from an
/// unreachable server.
pub async fn connect(settings: &RemoteSettings) -> Result<async_nats::Client, RemoteError> {
    let server = settings.url.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name("cairn")
        .connection_timeout(CONNECT_TIMEOUT);
    options = match &settings.credentials {
        Credentials::None => options,
        Credentials::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
        Credentials::Token(token) => options.token(token.clone()),
        Credentials::CredsFile(path) => options
            .credentials_file(path)
            .await
            .map_err(|error| RemoteError::Connect {
                server: server.clone(),
                reason: format!(
                    "cannot read the credentials file `{}` (CAIRN_NATS_CREDS): {error}",
                    path.display()
                ),
            })?,
        Credentials::NkeyFile(path) => {
            let seed = std::fs::read_to_string(path).map_err(|error| RemoteError::Connect {
                server: server.clone(),
                reason: format!(
                    "cannot read the NKey seed `{}` (CAIRN_NATS_NKEY): {error}",
                    path.display()
                ),
            })?;
            options.nkey(seed.trim().to_owned())
        }
    };
    if settings.requires_tls() {
        options = options.require_tls(true);
    }
    if let Some(ca) = &settings.tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &settings.tls.client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let servers = settings
        .url
        .split(',')
        .map(|server| server.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| RemoteError::Connect {
            server: server.clone(),
            reason: error.to_string(),
        })?;
    options.connect(servers).await.map_err(|error| {
        use async_nats::ConnectErrorKind as Kind;
        match error.kind() {
            Kind::AuthorizationViolation | Kind::Authentication => RemoteError::Unauthorized {
                server,
                reason: format!(
                    "{error} (check {})",
                    match settings.credentials {
                        Credentials::None => "whether the server needs credentials: CAIRN_NATS_USER and CAIRN_NATS_PASSWORD, CAIRN_NATS_TOKEN, CAIRN_NATS_CREDS or CAIRN_NATS_NKEY",
                        Credentials::UserPassword { .. } => "CAIRN_NATS_USER and CAIRN_NATS_PASSWORD",
                        Credentials::Token(_) => "CAIRN_NATS_TOKEN",
                        Credentials::CredsFile(_) => "the file CAIRN_NATS_CREDS names",
                        Credentials::NkeyFile(_) => "the seed CAIRN_NATS_NKEY names",
                    }
                ),
            },
            Kind::Tls => RemoteError::Connect {
                server,
                reason: format!("{error} (a private CA's certificate goes in CAIRN_NATS_CA)"),
            },
            // A certificate the system's roots do not vouch for surfaces as
            // an I/O error of the handshake.
            _ if error.to_string().contains("certificate") => RemoteError::Connect {
                server,
                reason: format!("{error} (a private CA's certificate goes in CAIRN_NATS_CA)"),
            },
            _ => RemoteError::Connect {
                server,
                reason: error.to_string(),
            },
        }
    })
}

impl NatsBackend {
    /// Connects and opens the cache's buckets, creating those missing with
    /// `settings.replicas` copies of each message.
    pub async fn open(settings: &RemoteSettings) -> Result<Self, RemoteError> {
        let client = connect(settings).await?;
        let jetstream = jetstream::new(client.clone());
        let server = settings.url.clone();
        let failed = |doing: &str, error: &dyn std::fmt::Display| RemoteError::operation(&server, doing, error);
        let blobs = match jetstream.get_object_store(BLOBS_BUCKET).await {
            Ok(store) => store,
            Err(_) => jetstream
                .create_object_store(object_store::Config {
                    bucket: BLOBS_BUCKET.to_owned(),
                    description: Some("cairn: blobs by blake3 digest".to_owned()),
                    num_replicas: settings.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|error| failed("create the blob store", &error))?,
        };
        let actions = key_value(
            &jetstream,
            ACTIONS_BUCKET,
            "cairn: stage key -> result",
            Duration::ZERO,
            settings.replicas,
        )
        .await
        .map_err(|error| failed("open the actions bucket", &error))?;
        let builds = key_value(
            &jetstream,
            BUILDS_BUCKET,
            "cairn: stage folder -> component",
            Duration::ZERO,
            settings.replicas,
        )
        .await
        .map_err(|error| failed("open the builds bucket", &error))?;
        let blob_stream = jetstream
            .get_stream(format!("OBJ_{BLOBS_BUCKET}"))
            .await
            .map_err(|error| failed("open the blob store", &error))?;
        Ok(Self {
            server,
            client,
            jetstream,
            blobs,
            blob_stream,
            actions,
            builds,
        })
    }

    /// The worker pool's queue on the same server, its stream and buckets
    /// created with `replicas` copies when missing.
    pub async fn work_queue(&self, replicas: usize) -> Result<super::work::WorkQueue, RemoteError> {
        super::work::WorkQueue::open(self.server.clone(), self.client.clone(), replicas).await
    }

    /// Writes a blob of one chunk as the object store lays it out (its
    /// chunk, then its metadata rolled up), both published at once and
    /// their acknowledgements awaited together: one round trip, where the
    /// object store's writer takes three (it reads the object's metadata
    /// first, then waits for each acknowledgement in turn). Only called
    /// for blobs the server lacks, so there are no old chunks to purge.
    async fn put_small_blob(&self, digest: &Digest, bytes: Vec<u8>) -> Result<(), RemoteError> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let failed = |error: &dyn std::fmt::Display| self.failed(format!("write blob {}", digest.short()), error);
        let name = digest.to_hex();
        let written = SystemTime::now();
        let nuid = format!(
            "{}{}",
            &name[..16],
            written
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let meta = serde_json::json!({
            "name": name,
            "bucket": BLOBS_BUCKET,
            "nuid": nuid,
            "size": bytes.len(),
            "chunks": usize::from(!bytes.is_empty()),
            "mtime": humantime::format_rfc3339_nanos(written).to_string(),
            "digest": format!("SHA-256={}", base64::engine::general_purpose::URL_SAFE.encode(sha2::Sha256::digest(&bytes))),
            "options": { "max_chunk_size": CHUNK_SIZE },
        });
        let chunk = match bytes.is_empty() {
            true => None,
            false => Some(
                self.jetstream
                    .publish(format!("$O.{BLOBS_BUCKET}.C.{nuid}"), bytes.into())
                    .await
                    .map_err(|error| failed(&error))?,
            ),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        let meta = self
            .jetstream
            .publish_with_headers(
                format!(
                    "$O.{BLOBS_BUCKET}.M.{}",
                    base64::engine::general_purpose::URL_SAFE.encode(&name)
                ),
                headers,
                meta.to_string().into(),
            )
            .await
            .map_err(|error| failed(&error))?;
        if let Some(chunk) = chunk {
            chunk.await.map_err(|error| failed(&error))?;
        }
        meta.await.map_err(|error| failed(&error))?;
        Ok(())
    }

    fn table(&self, table: Table) -> &kv::Store {
        match table {
            Table::Actions => &self.actions,
            Table::Builds => &self.builds,
        }
    }

    fn failed(&self, doing: impl Into<String>, error: impl std::fmt::Display) -> RemoteError {
        RemoteError::operation(&self.server, doing, error)
    }

    async fn stream_status(
        &self,
        stream: &str,
        name: &str,
        holds: &str,
        entries: u64,
    ) -> Result<BucketStatus, RemoteError> {
        let mut handle = self
            .jetstream
            .get_stream(stream)
            .await
            .map_err(|error| self.failed(format!("read the stream {stream}"), error))?;
        let info = handle
            .info()
            .await
            .map_err(|error| self.failed(format!("read the stream {stream}"), error))?;
        Ok(BucketStatus {
            name: name.to_owned(),
            holds: holds.to_owned(),
            entries,
            bytes: info.state.bytes,
            replicas: info.config.num_replicas,
        })
    }

    /// The blobs as listed, the deleted left out.
    async fn list_blobs(&self) -> Result<Vec<object_store::ObjectInfo>, RemoteError> {
        let mut list = self
            .blobs
            .list()
            .await
            .map_err(|error| self.failed("list the blobs", error))?;
        let mut blobs = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|error| self.failed("list the blobs", error))?;
            if !info.deleted {
                blobs.push(info);
            }
        }
        Ok(blobs)
    }

    async fn count_keys(&self, table: Table) -> Result<u64, RemoteError> {
        let keys = match self.table(table).keys().await {
            Ok(keys) => keys,
            Err(error) => return Err(self.failed(format!("list the {} entries", table.name()), error)),
        };
        Ok(keys.filter(|key| std::future::ready(key.is_ok())).count().await as u64)
    }
}

/// Opens the key-value bucket `bucket`, creating it when missing with
/// one value per key, entries kept `max_age` (zero: for ever) on
/// `replicas` servers.
pub(crate) async fn key_value(
    jetstream: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, async_nats::Error> {
    if let Ok(store) = jetstream.get_key_value(bucket).await {
        return Ok(store);
    }
    Ok(jetstream
        .create_key_value(kv::Config {
            bucket: bucket.to_owned(),
            description: description.to_owned(),
            history: 1,
            max_age,
            num_replicas: replicas,
            ..Default::default()
        })
        .await?)
}

/// When an object was written.
fn written(info: &object_store::ObjectInfo) -> SystemTime {
    info.modified.map_or(SystemTime::UNIX_EPOCH, SystemTime::from)
}

#[async_trait]
impl Backend for NatsBackend {
    fn server(&self) -> &str {
        &self.server
    }

    async fn entry(&self, table: Table, key: &Digest) -> Result<Option<Vec<u8>>, RemoteError> {
        self.table(table)
            .get(key.to_hex())
            .await
            .map(|value| value.map(|bytes| bytes.to_vec()))
            .map_err(|error| self.failed(format!("read the {} entry {}", table.name(), key.short()), error))
    }

    async fn create_entry(&self, table: Table, key: &Digest, value: Vec<u8>) -> Result<Written, RemoteError> {
        match self.table(table).create(key.to_hex(), value.into()).await {
            Ok(_) => Ok(Written::Stored),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Written::AlreadyThere),
            Err(error) => Err(self.failed(format!("write the {} entry {}", table.name(), key.short()), error)),
        }
    }

    async fn remove_entry(&self, table: Table, key: &Digest) -> Result<(), RemoteError> {
        self.table(table)
            .purge(key.to_hex())
            .await
            .map_err(|error| self.failed(format!("remove the {} entry {}", table.name(), key.short()), error))
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, RemoteError> {
        match self.blobs.info(digest.to_hex()).await {
            Ok(info) => Ok(!info.deleted),
            Err(error) if error.kind() == object_store::InfoErrorKind::NotFound => Ok(false),
            Err(error) => Err(self.failed(format!("look for blob {}", digest.short()), error)),
        }
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, RemoteError> {
        let failed = |error: &dyn std::fmt::Display| self.failed(format!("read blob {}", digest.short()), error);
        let info = match self.blobs.info(digest.to_hex()).await {
            Ok(info) if !info.deleted => info,
            Ok(_) => return Ok(None),
            Err(error) if error.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(failed(&error)),
        };
        // Most blobs (sources, trees, logs) fit in one chunk: one request
        // reads it, where the object store's reader would create a
        // consumer on the server (which lingers for 30 s: a run of
        // thousands of stages would pile them up).
        if info.chunks <= 1 {
            if info.size == 0 {
                return Ok(Some(Vec::new()));
            }
            let chunk = self
                .blob_stream
                .get_last_raw_message_by_subject(&format!("$O.{BLOBS_BUCKET}.C.{}", info.nuid))
                .await
                .map_err(|error| failed(&error))?;
            return Ok(Some(chunk.payload.to_vec()));
        }
        let mut object = match self.blobs.get(digest.to_hex()).await {
            Ok(object) => object,
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(failed(&error)),
        };
        let mut bytes = Vec::with_capacity(info.size);
        object.read_to_end(&mut bytes).await.map_err(|error| failed(&error))?;
        Ok(Some(bytes))
    }

    async fn put_blob(&self, digest: &Digest, bytes: Vec<u8>) -> Result<(), RemoteError> {
        if bytes.len() <= CHUNK_SIZE {
            return self.put_small_blob(digest, bytes).await;
        }
        self.blobs
            .put(digest.to_hex().as_str(), &mut bytes.as_slice())
            .await
            .map(drop)
            .map_err(|error| self.failed(format!("write blob {}", digest.short()), error))
    }

    async fn remove_blob(&self, digest: &Digest) -> Result<(), RemoteError> {
        self.blobs
            .delete(digest.to_hex())
            .await
            .map_err(|error| self.failed(format!("remove blob {}", digest.short()), error))
    }

    async fn status(&self) -> Result<BackendStatus, RemoteError> {
        let blobs = self.list_blobs().await?.len() as u64;
        let actions = self.count_keys(Table::Actions).await?;
        let builds = self.count_keys(Table::Builds).await?;
        let buckets = vec![
            self.stream_status(&format!("OBJ_{BLOBS_BUCKET}"), BLOBS_BUCKET, "blobs", blobs)
                .await?,
            self.stream_status(&format!("KV_{ACTIONS_BUCKET}"), ACTIONS_BUCKET, "actions", actions)
                .await?,
            self.stream_status(&format!("KV_{BUILDS_BUCKET}"), BUILDS_BUCKET, "builds", builds)
                .await?,
        ];
        Ok(BackendStatus {
            server: self.server.clone(),
            version: Some(self.client.server_info().version),
            buckets,
        })
    }

    async fn collect_garbage(&self, policy: GcPolicy) -> Result<GcReport, RemoteError> {
        let now = SystemTime::now();
        let too_old = |written: SystemTime| {
            policy
                .max_age
                .is_some_and(|age| now.duration_since(written).unwrap_or_default() > age)
        };
        let mut report = GcReport::default();
        let mut blobs = self.list_blobs().await?;
        blobs.sort_by_key(written);
        let mut total: u64 = blobs.iter().map(|info| info.size as u64).sum();
        for info in blobs {
            let over = policy.max_bytes.is_some_and(|max| total > max);
            if !(too_old(written(&info)) || over) {
                continue;
            }
            self.blobs
                .delete(&info.name)
                .await
                .map_err(|error| self.failed(format!("remove blob {}", info.name), error))?;
            report.blobs += 1;
            report.bytes += info.size as u64;
            total -= info.size as u64;
        }
        // Entries go by age; one whose blobs went is removed by the first
        // reader that misses them.
        if policy.max_age.is_some() {
            for table in [Table::Actions, Table::Builds] {
                let store = self.table(table);
                let keys: Vec<String> = match store.keys().await {
                    Ok(keys) => keys.filter_map(|key| std::future::ready(key.ok())).collect().await,
                    Err(error) => return Err(self.failed(format!("list the {} entries", table.name()), error)),
                };
                for key in keys {
                    let entry = store
                        .entry(key.clone())
                        .await
                        .map_err(|error| self.failed(format!("read the {} entry {key}", table.name()), error))?;
                    if entry.is_some_and(|entry| too_old(SystemTime::from(entry.created))) {
                        store
                            .purge(&key)
                            .await
                            .map_err(|error| self.failed(format!("remove the {} entry {key}", table.name()), error))?;
                        report.entries += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}
