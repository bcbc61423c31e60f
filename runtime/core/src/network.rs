//! What a `network = [...]` entry grants, read the same way by the pipeline
//! (to reject a bad entry at its line), the stage key and the sandbox.
//!
//! An entry with a scheme (`https://deploy.example.com`) grants HTTP
//! requests to that origin through `wasi:http`, optionally narrowed to a
//! path prefix; a bare `host:port` grants raw sockets to that address.

use std::fmt;

/// One parsed `network` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkEntry {
    /// `http://` or `https://` requests to one origin.
    Http(Origin),
    /// `host:port`: sockets, resolved when the stage starts.
    Socket(String),
}

impl NetworkEntry {
    /// Reads an entry as written in `cairn.toml`; the error says what is
    /// wrong with it and how it should look.
    pub fn parse(entry: &str) -> Result<Self, String> {
        if entry.contains("://") {
            return Origin::parse(entry).map(NetworkEntry::Http);
        }
        let has_port = entry
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if has_port {
            Ok(NetworkEntry::Socket(entry.to_owned()))
        } else {
            Err(
                "write an HTTP origin like `https://example.com`, or a host and port for sockets like \
                 `example.com:5432`"
                    .to_owned(),
            )
        }
    }
}

/// An HTTP origin a stage may send requests to: scheme, host and port, and
/// a path prefix when the grant names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lower-case; IPv6 addresses keep their brackets.
    pub host: String,
    /// The port, the scheme's default when the entry leaves it out.
    pub port: u16,
    /// A path prefix without a trailing `/` (empty: the whole origin).
    pub path: String,
}

impl Origin {
    /// Reads `scheme://host[:port][/path]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|error| format!("`{text}` is not a URL: {error}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => "http",
            Some("https") => "https",
            _ => {
                return Err(format!(
                    "`{text}`: only `http://` and `https://` origins can be granted"
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| format!("`{text}` names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{text}` holds credentials: grant the origin alone and give the credential with `http_auth`"
            ));
        }
        if uri.query().is_some() || text.contains('#') {
            return Err(format!(
                "`{text}`: an origin grant takes a path prefix, not a query or a fragment"
            ));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("`{text}` names no host"));
        }
        let port = authority.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Self {
            scheme: scheme.to_owned(),
            host,
            port,
            path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Whether a request to `uri` falls under this grant: the same scheme,
    /// host and port, and a path equal to the prefix or below it (`/api`
    /// admits `/api` and `/api/v1`, not `/apis`).
    pub fn admits(&self, uri: &http::Uri) -> bool {
        let Some(request) = Origin::of(uri) else {
            return false;
        };
        if !self.same_origin(&request) {
            return false;
        }
        let path = uri.path();
        self.path.is_empty()
            || path == self.path
            || path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Whether both have the same scheme, host and port, whatever their paths.
    pub fn same_origin(&self, other: &Origin) -> bool {
        (&self.scheme, &self.host, self.port) == (&other.scheme, &other.host, other.port)
    }

    /// The origin (no path) a request goes to, for messages and hints.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        let port = authority.port_u16().unwrap_or(match scheme {
            "https" => 443,
            _ => 80,
        });
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            host: authority.host().to_ascii_lowercase(),
            port,
            path: String::new(),
        })
    }
}

/// Written as a grant would be, the default port left out.
impl fmt::Display for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        write!(formatter, "{}://{}", self.scheme, self.host)?;
        if self.port != default_port {
            write!(formatter, ":{}", self.port)?;
        }
        formatter.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> http::Uri {
        text.parse().expect("a URI")
    }

    #[test]
    fn entries_are_origins_or_sockets() {
        assert_eq!(
            NetworkEntry::parse("db.internal:5432"),
            Ok(NetworkEntry::Socket("db.internal:5432".into()))
        );
        let NetworkEntry::Http(origin) = NetworkEntry::parse("HTTPS://Deploy.Example.com/api/").expect("valid") else {
            panic!("an origin");
        };
        assert_eq!(
            (origin.host.as_str(), origin.port, origin.path.as_str()),
            ("deploy.example.com", 443, "/api")
        );
        assert_eq!(origin.to_string(), "https://deploy.example.com/api");
        assert!(NetworkEntry::parse("example.com").is_err());
        assert!(NetworkEntry::parse("ftp://example.com").is_err());
        assert!(
            NetworkEntry::parse("https://user:pw@example.com")
                .unwrap_err()
                .contains("http_auth")
        );
        assert!(NetworkEntry::parse("https://example.com/?q=1").is_err());
    }

    #[test]
    fn a_grant_admits_its_origin_and_path_prefix_only() {
        let origin = Origin::parse("http://127.0.0.1:8080/api").expect("valid");
        assert!(origin.admits(&uri("http://127.0.0.1:8080/api")));
        assert!(origin.admits(&uri("http://127.0.0.1:8080/api/v1?x=1")));
        assert!(!origin.admits(&uri("http://127.0.0.1:8080/apis")));
        assert!(!origin.admits(&uri("http://127.0.0.1:8080/")));
        assert!(!origin.admits(&uri("https://127.0.0.1:8080/api")));
        assert!(!origin.admits(&uri("http://127.0.0.1:8081/api")));
        let whole = Origin::parse("https://example.com").expect("valid");
        assert!(whole.admits(&uri("https://EXAMPLE.com:443/anything")));
        assert!(!whole.admits(&uri("https://example.com.evil:443/")));
        assert_eq!(
            Origin::parse("http://[::1]:80").expect("valid").to_string(),
            "http://[::1]"
        );
    }
}
