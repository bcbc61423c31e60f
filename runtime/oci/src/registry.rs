//! Talking to an OCI distribution registry (through `oci-client`): fetch a
//! manifest, stream a component blob with its size bounded and its digest
//! checked, push an artifact without re-uploading blobs the registry has.
//!
//! Plain HTTP is used only for loopback registries and the hosts the user
//! names with `--insecure-registry`; everything else is HTTPS.

use std::sync::Once;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::OciError;
use super::artifact::{self, Artifact, Layer, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_SIZE};
use super::credentials::{self, Credential, Found};

/// How registries may be reached.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Hosts (`host:port`) spoken to over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
}

impl Settings {
    /// Whether `host` is spoken to over plain HTTP.
    pub fn plain_http(&self, host: &str) -> bool {
        is_loopback(host) || self.insecure.iter().any(|insecure| insecure == host)
    }
}

/// Whether `host` (with or without a port) is this machine.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// One registry, with the credentials cairn found for it.
pub struct Registry {
    host: String,
    client: Client,
    credentials: Found,
    plain_http: bool,
}

impl Registry {
    /// A client for `host`, with its credentials looked up (nothing is sent yet).
    pub fn connect(host: &str, settings: &Settings) -> Result<Self, OciError> {
        install_crypto_provider();
        let plain_http = settings.plain_http(host);
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![host.to_owned()])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("cairn/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Ok(Registry {
            host: host.to_owned(),
            client: Client::new(config),
            credentials: credentials::lookup(host)?,
            plain_http,
        })
    }

    /// The manifest `tag_or_digest` names in `repository`, byte for byte
    /// (the caller checks it against the digest it expects).
    pub async fn manifest(&self, repository: &str, tag_or_digest: &str, what: &str) -> Result<Vec<u8>, OciError> {
        let reference = self.reference(repository, tag_or_digest);
        let (bytes, _) = self
            .client
            .pull_manifest_raw(
                &reference,
                &self.auth(),
                &[MANIFEST_MEDIA_TYPE, artifact::INDEX_MEDIA_TYPE],
            )
            .await
            .map_err(|error| self.error(error, what))?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(OciError::NotAComponent {
                reference: what.to_owned(),
                problem: format!("its manifest is {} bytes, too large for a wasm artifact", bytes.len()),
            });
        }
        Ok(bytes.to_vec())
    }

    /// The component blob `layer`, streamed: refused as soon as it grows
    /// past its declared size, and checked against its digest at the end.
    pub async fn component(&self, repository: &str, layer: &Layer, what: &str) -> Result<Vec<u8>, OciError> {
        let reference = self.reference(repository, &layer.digest.to_string());
        let descriptor = OciDescriptor {
            media_type: artifact::LAYER_MEDIA_TYPE.to_owned(),
            digest: layer.digest.to_string(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth())
            .await;
        let mut stream = self
            .client
            .pull_blob_stream(&reference, &descriptor)
            .await
            .map_err(|error| self.error(error, what))?;
        let capacity = usize::try_from(layer.size).unwrap_or(0).min(64 << 20);
        let mut bytes = Vec::with_capacity(capacity);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // oci-client checks the digest too, and reports a mismatch as
                // an I/O error at the end; the check below names it.
                Err(error)
                    if error
                        .get_ref()
                        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>()) =>
                {
                    break;
                }
                Err(error) => {
                    return Err(OciError::Registry {
                        host: self.host.clone(),
                        problem: format!("the download of `{what}` broke off: {error}"),
                    });
                }
            };
            if (bytes.len() + chunk.len()) as u64 > layer.size {
                return Err(OciError::DigestMismatch {
                    what: format!("the component of `{what}`"),
                    expected: format!("{} ({} bytes)", layer.digest, layer.size),
                    actual: "more bytes than that".to_owned(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        artifact::check_layer(&bytes, layer, what)?;
        Ok(bytes)
    }

    /// Pushes `artifact` (with `component`, its layer) and tags it `tag`.
    pub async fn push(
        &self,
        repository: &str,
        tag: &str,
        artifact: &Artifact,
        component: &[u8],
        what: &str,
    ) -> Result<(), OciError> {
        let reference = self.reference(repository, tag);
        let auth = self.auth();
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &auth)
            .await;
        for (descriptor, bytes) in [
            (&artifact.layer_descriptor, component),
            (&artifact.config_descriptor, artifact.config.as_slice()),
        ] {
            let present = self
                .client
                .blob_exists(&reference, &descriptor.digest)
                .await
                .map_err(|error| self.error(error, what))?;
            if !present {
                self.client
                    .push_blob(&reference, bytes.to_vec(), &descriptor.digest)
                    .await
                    .map_err(|error| self.error(error, what))?;
            }
        }
        let content_type = reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        self.client
            .push_manifest_raw(&reference, artifact.manifest.clone(), content_type)
            .await
            .map_err(|error| self.error(error, what))?;
        Ok(())
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(self.host.clone(), repository.to_owned(), tag_or_digest.to_owned())
        } else {
            Reference::with_tag(self.host.clone(), repository.to_owned(), tag_or_digest.to_owned())
        }
    }

    fn auth(&self) -> RegistryAuth {
        match &self.credentials.credential {
            Credential::Anonymous => RegistryAuth::Anonymous,
            Credential::Basic { username, password } => RegistryAuth::Basic(username.clone(), password.clone()),
            Credential::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }

    /// Turns what oci-client says into what the user needs to know.
    fn error(&self, error: OciDistributionError, what: &str) -> OciError {
        let not_found = || OciError::NotFound {
            reference: what.to_owned(),
            place: format!("the registry `{}`", self.host),
        };
        match error {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                self.unauthorized()
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|error| &error.code).collect();
                if codes
                    .iter()
                    .any(|code| matches!(code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    self.unauthorized()
                } else if codes.iter().any(|code| {
                    matches!(
                        code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found()
                } else {
                    OciError::Registry {
                        host: self.host.clone(),
                        problem: envelope
                            .errors
                            .iter()
                            .map(|error| format!("{:?}: {}", error.code, error.message))
                            .collect::<Vec<_>>()
                            .join("; "),
                    }
                }
            }
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
            OciDistributionError::ServerError { code: 401 | 403, .. } => self.unauthorized(),
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => OciError::DigestMismatch {
                what: format!("what the registry sent for `{what}`"),
                expected,
                actual,
            },
            OciDistributionError::RequestError(error)
                if error
                    .status()
                    .is_some_and(|status| status.as_u16() == 401 || status.as_u16() == 403) =>
            {
                self.unauthorized()
            }
            OciDistributionError::RequestError(error)
                if error.status().is_some_and(|status| status.as_u16() == 404) =>
            {
                not_found()
            }
            OciDistributionError::RequestError(error) => {
                let mut problem = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    problem.push_str(": ");
                    problem.push_str(&cause.to_string());
                    source = cause.source();
                }
                if error.is_connect() || error.is_timeout() || error.is_request() {
                    OciError::Unreachable {
                        host: self.host.clone(),
                        problem,
                        hint: (!self.plain_http).then(|| {
                            format!(
                                "cairn speaks HTTPS to `{}`; if that registry serves plain HTTP, pass `--insecure-registry {}`",
                                self.host, self.host
                            )
                        }),
                    }
                } else {
                    OciError::Registry {
                        host: self.host.clone(),
                        problem,
                    }
                }
            }
            other => OciError::Registry {
                host: self.host.clone(),
                problem: other.to_string(),
            },
        }
    }

    fn unauthorized(&self) -> OciError {
        let hint = match self.credentials.credential {
            Credential::Anonymous => format!(
                "log in with `cairn login {} --username USER --password-stdin` (or `docker login {}`)",
                self.host, self.host
            ),
            _ => format!(
                "check the user, password and their rights; `cairn login {}` replaces the stored credentials",
                self.host
            ),
        };
        OciError::Unauthorized {
            host: self.host.clone(),
            credentials: self.credentials.describe(),
            hint,
        }
    }
}

/// rustls needs one process-wide crypto provider; cairn uses ring.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Checks credentials the way `docker login` does: ask `/v2/` with them, or
/// the token service its challenge names. Returns why they were refused.
pub async fn check_login(host: &str, settings: &Settings, credential: &Credential) -> Result<(), OciError> {
    install_crypto_provider();
    let scheme = if settings.plain_http(host) { "http" } else { "https" };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| OciError::Registry {
            host: host.to_owned(),
            problem: error.to_string(),
        })?;
    let unreachable = |error: reqwest::Error| OciError::Unreachable {
        host: host.to_owned(),
        problem: error.to_string(),
        hint: (scheme == "https").then(|| {
            format!(
                "cairn speaks HTTPS to `{host}`; if that registry serves plain HTTP, pass `--insecure-registry {host}`"
            )
        }),
    };
    let refused = |how: String| OciError::Unauthorized {
        host: host.to_owned(),
        credentials: how,
        hint: "check the user and password (or token) and try again".to_owned(),
    };
    let ping = client
        .get(format!("{scheme}://{host}/v2/"))
        .send()
        .await
        .map_err(unreachable)?;
    if ping.status().is_success() {
        return Ok(());
    }
    let challenge = ping
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let describe = match credential {
        Credential::Basic { username, .. } => format!("the credentials of user `{username}`"),
        Credential::Bearer(_) => "the token".to_owned(),
        Credential::Anonymous => "anonymous access".to_owned(),
    };
    let with_credential = |request: reqwest::RequestBuilder| match credential {
        Credential::Basic { username, password } => request.basic_auth(username, Some(password)),
        Credential::Bearer(token) => request.bearer_auth(token),
        Credential::Anonymous => request,
    };
    let bearer_realm = challenge
        .strip_prefix("Bearer ")
        .or_else(|| challenge.strip_prefix("bearer "))
        .map(challenge_parameters);
    let response = match (bearer_realm, credential) {
        (Some(parameters), Credential::Basic { username, .. }) => {
            let realm = parameters
                .iter()
                .find(|(key, _)| key == "realm")
                .map(|(_, value)| value.clone())
                .unwrap_or_default();
            let mut query = vec![("account".to_owned(), username.clone())];
            query.extend(parameters.into_iter().filter(|(key, _)| key == "service"));
            with_credential(client.get(realm).query(&query))
                .send()
                .await
                .map_err(unreachable)?
        }
        _ => with_credential(client.get(format!("{scheme}://{host}/v2/")))
            .send()
            .await
            .map_err(unreachable)?,
    };
    if response.status().is_success() {
        Ok(())
    } else {
        Err(refused(format!("{describe} (HTTP {})", response.status())))
    }
}

/// `realm="...",service="..."` → pairs.
fn challenge_parameters(text: &str) -> Vec<(String, String)> {
    let mut parameters = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        parameters.push((key, value.to_owned()));
        rest = remaining.trim_start_matches(',').trim();
    }
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_named_hosts_get_plain_http() {
        let settings = Settings {
            insecure: vec!["registry.internal:5000".into()],
        };
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(settings.plain_http(host), "{host}");
        }
        for host in ["ghcr.io", "10.0.0.1:5000", "registry.internal", "localhost.example.com"] {
            assert!(!settings.plain_http(host), "{host}");
        }
        assert!(settings.plain_http("registry.internal:5000"));
    }

    #[test]
    fn bearer_challenges_are_split_into_parameters() {
        let parameters =
            challenge_parameters(r#"realm="https://auth.example/token",service="registry.example",scope="x""#);
        assert_eq!(
            parameters,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "x".into()),
            ]
        );
    }
}
