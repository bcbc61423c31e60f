//! Where the shared cache is and how cairn proves who it is there.
//!
//! The server comes from `--remote`, `CAIRN_REMOTE` or `[remote] url`; the
//! credentials only from the environment and files they name, never from
//! the command line or the URL, where process lists and shell histories
//! would keep them.

use std::path::PathBuf;

/// How cairn proves who it is to the server.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Nothing: a server that lets anyone in.
    #[default]
    None,
    /// `CAIRN_NATS_USER` and `CAIRN_NATS_PASSWORD`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `CAIRN_NATS_TOKEN`.
    Token(String),
    /// `CAIRN_NATS_CREDS`: a credentials file (a JWT and an NKey seed).
    CredsFile(PathBuf),
    /// `CAIRN_NATS_NKEY`: a file holding an NKey seed.
    NkeyFile(PathBuf),
}

impl std::fmt::Debug for Credentials {
    // Never the secret itself.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::None => "none",
            Self::UserPassword { .. } => "user and password",
            Self::Token(_) => "token",
            Self::CredsFile(_) => "credentials file",
            Self::NkeyFile(_) => "NKey seed file",
        })
    }
}

/// TLS beyond the system's roots.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// `CAIRN_NATS_CA`: a PEM file of the private CA the server's
    /// certificate is signed by.
    pub ca: Option<PathBuf>,
    /// `CAIRN_NATS_CERT` and `CAIRN_NATS_KEY`: a client certificate, for
    /// servers that verify their clients.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Everything needed to use a shared cache.
#[derive(Clone, Debug)]
pub struct RemoteSettings {
    /// `nats://HOST:PORT` (or `tls://`), without credentials; a cluster's
    /// servers comma-separated.
    pub url: String,
    /// Read hits, never write (`--remote-read-only`: pull requests from
    /// forks must not fill a cache others trust).
    pub read_only: bool,
    /// On how many servers of a cluster each bucket keeps its data.
    pub replicas: usize,
    /// Who cairn is.
    pub credentials: Credentials,
    /// Which certificates to trust and show.
    pub tls: Tls,
}

/// Settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A URL that is not `nats://` or `tls://`.
    #[error("`{url}` is not a NATS server: write `nats://HOST:PORT` (or `tls://HOST:PORT`)")]
    Scheme {
        /// What was given.
        url: String,
    },
    /// A URL carrying a user, password or token.
    #[error(
        "the shared cache's URL carries credentials, which would show in process lists and shell history; \
         give the URL without them and set CAIRN_NATS_USER and CAIRN_NATS_PASSWORD (or CAIRN_NATS_TOKEN) instead"
    )]
    CredentialsInUrl,
    /// A variable that must come with another.
    #[error("{set} is set but {missing} is not; set both")]
    Incomplete {
        /// The one set.
        set: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// Two ways of proving who cairn is at once.
    #[error("{first} and {second} are both set; choose one way to authenticate")]
    Conflicting {
        /// One.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// A file a variable names is missing.
    #[error("{variable} names `{path}`, which cannot be read: {source}")]
    File {
        /// The variable.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl RemoteSettings {
    /// Settings for `url`, with credentials from the process's environment.
    pub fn from_env(url: &str, read_only: bool, replicas: usize) -> Result<Self, SettingsError> {
        Self::new(url, read_only, replicas, |name| std::env::var(name).ok())
    }

    /// Settings for `url`, with credentials from what `var` reads.
    pub fn new(
        url: &str,
        read_only: bool,
        replicas: usize,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let url = url.trim();
        // A cluster may be named by several of its servers, comma-separated.
        for server in url.split(',').map(str::trim) {
            let Some((scheme, rest)) = server.split_once("://") else {
                return Err(SettingsError::Scheme { url: server.to_owned() });
            };
            if !matches!(scheme, "nats" | "tls") {
                return Err(SettingsError::Scheme { url: server.to_owned() });
            }
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                return Err(SettingsError::CredentialsInUrl);
            }
        }
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        let file = |variable: &'static str| -> Result<Option<PathBuf>, SettingsError> {
            let Some(path) = var(variable).map(PathBuf::from) else {
                return Ok(None);
            };
            std::fs::metadata(&path).map_err(|source| SettingsError::File {
                variable,
                path: path.clone(),
                source,
            })?;
            Ok(Some(path))
        };
        let mut chosen: Vec<(&'static str, Credentials)> = Vec::new();
        if let Some((user, password)) = pair(
            ("CAIRN_NATS_USER", var("CAIRN_NATS_USER")),
            ("CAIRN_NATS_PASSWORD", var("CAIRN_NATS_PASSWORD")),
        )? {
            chosen.push(("CAIRN_NATS_USER", Credentials::UserPassword { user, password }));
        }
        if let Some(token) = var("CAIRN_NATS_TOKEN") {
            chosen.push(("CAIRN_NATS_TOKEN", Credentials::Token(token)));
        }
        if let Some(path) = file("CAIRN_NATS_CREDS")? {
            chosen.push(("CAIRN_NATS_CREDS", Credentials::CredsFile(path)));
        }
        if let Some(path) = file("CAIRN_NATS_NKEY")? {
            chosen.push(("CAIRN_NATS_NKEY", Credentials::NkeyFile(path)));
        }
        if let [(first, _), (second, _), ..] = chosen.as_slice() {
            return Err(SettingsError::Conflicting { first, second });
        }
        let client = pair(
            ("CAIRN_NATS_CERT", file("CAIRN_NATS_CERT")?),
            ("CAIRN_NATS_KEY", file("CAIRN_NATS_KEY")?),
        )?;
        Ok(Self {
            url: url.to_owned(),
            read_only,
            replicas: replicas.clamp(1, 5),
            credentials: chosen.pop().map(|(_, credentials)| credentials).unwrap_or_default(),
            tls: Tls {
                ca: file("CAIRN_NATS_CA")?,
                client,
            },
        })
    }

    /// Whether the connection must be TLS.
    pub fn requires_tls(&self) -> bool {
        self.url.starts_with("tls://") || self.tls.ca.is_some() || self.tls.client.is_some()
    }
}

/// Two variables that go together: both set, or neither.
fn pair<A, B>(
    (first, a): (&'static str, Option<A>),
    (second, b): (&'static str, Option<B>),
) -> Result<Option<(A, B)>, SettingsError> {
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (Some(_), None) => Err(SettingsError::Incomplete {
            set: first,
            missing: second,
        }),
        (None, Some(_)) => Err(SettingsError::Incomplete {
            set: second,
            missing: first,
        }),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, vars: &[(&str, &str)]) -> Result<RemoteSettings, SettingsError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        RemoteSettings::new(url, false, 1, |name| {
            vars.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn credentials_come_from_the_environment_never_the_url() {
        let error = settings("nats://alice:s3cret@127.0.0.1:4222", &[]).unwrap_err();
        assert!(error.to_string().contains("CAIRN_NATS_USER"), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let chosen = settings(
            "nats://127.0.0.1:4222",
            &[("CAIRN_NATS_USER", "alice"), ("CAIRN_NATS_PASSWORD", "s3cret")],
        )
        .unwrap();
        assert!(matches!(chosen.credentials, Credentials::UserPassword { .. }));
        assert!(!format!("{chosen:?}").contains("s3cret"));
    }

    #[test]
    fn half_or_doubled_credentials_are_named() {
        let error = settings("nats://h:1", &[("CAIRN_NATS_USER", "alice")]).unwrap_err();
        assert!(error.to_string().contains("CAIRN_NATS_PASSWORD is not"), "{error}");
        let error = settings(
            "nats://h:1",
            &[
                ("CAIRN_NATS_TOKEN", "t"),
                ("CAIRN_NATS_USER", "a"),
                ("CAIRN_NATS_PASSWORD", "p"),
            ],
        )
        .unwrap_err();
        assert!(error.to_string().contains("choose one"), "{error}");
        let error = settings("nats://h:1", &[("CAIRN_NATS_CREDS", "/nonexistent/x.creds")]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("CAIRN_NATS_CREDS names `/nonexistent/x.creds`"),
            "{error}"
        );
        let error = settings("http://h:1", &[]).unwrap_err();
        assert!(error.to_string().contains("nats://HOST:PORT"), "{error}");
        assert!(settings("nats://a:1, nats://b:2", &[]).is_ok());
        let error = settings("nats://a:1,nats://u:p@b:2", &[]).unwrap_err();
        assert!(!error.to_string().contains("u:p"), "{error}");
        let error = settings("nats://a:1,http://b:2", &[]).unwrap_err();
        assert!(error.to_string().contains("http://b:2"), "{error}");
    }
}
