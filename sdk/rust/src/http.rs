//! HTTP requests from a stage, through `wasi:http`.
//!
//! The host sends them: it admits only the origins the pipeline grants in
//! `network = [...]`, does TLS (a stage needs no TLS stack and no root
//! certificates), and adds the `Authorization` header `http_auth` attaches
//! to an origin, which the stage never sees. A request to an origin not
//! granted fails with [`ErrorKind::Refused`], and cairn's log names the line
//! to add.
//!
//! ```ignore
//! use cairn_sdk::http::Request;
//!
//! let response = Request::get("https://deploy.example.com/health").send()?;
//! if response.status != 200 {
//!     return Err(format!("unhealthy: {}", response.text()).into());
//! }
//! ```

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::{OutputStream, StreamError};

/// How many redirects [`Request::send`] follows before giving up.
const MAX_REDIRECTS: usize = 10;

/// One HTTP request, built up and then sent.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Payload,
    timeout: Option<Duration>,
    follow_redirects: bool,
}

/// What a request sends: bytes in memory, or a file streamed from where it
/// is (an artifact may be larger than the stage's memory).
#[derive(Clone, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    File { path: PathBuf, size: u64 },
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Bytes(bytes) => bytes.len() as u64,
            Payload::File { size, .. } => *size,
        }
    }
}

/// A response, its body read whole.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The URL that answered, after any redirects.
    pub url: String,
}

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure, for retry decisions.
    pub kind: ErrorKind,
    /// What happened, in words, naming the method and URL.
    pub message: String,
}

/// The kinds of [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The host refused the request: its origin is not granted.
    Refused,
    /// The URL cannot be sent (no scheme, no host, a bad header).
    Invalid,
    /// The server could not be reached: connection refused, DNS, TLS.
    Unreachable,
    /// The server took too long.
    Timeout,
    /// Anything else the transport reported.
    Other,
}

impl Error {
    /// Whether trying again later might succeed (the server was down or
    /// slow), as opposed to a request that can never work.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Other
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Request {
    /// A request with any method (`GET`, `PUT`, `PROPFIND`...).
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Payload::Bytes(Vec::new()),
            timeout: None,
            follow_redirects: true,
        }
    }

    /// A `GET` request.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: &str) -> Self {
        Self::new("PUT", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body (and its `content-length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Payload::Bytes(body.into());
        self
    }

    /// Sends the file at `path` as the body, read in chunks as it goes
    /// out, never whole into memory; its size is the `content-length`.
    pub fn body_file(mut self, path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_owned();
        let size = std::fs::metadata(&path)?.len();
        self.body = Payload::File { path, size };
        Ok(self)
    }

    /// Bounds the wait for the connection and for the response's first
    /// byte, and any pause while its body arrives. The host bounds them too.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether `send` follows redirects (it does by default, up to ten;
    /// each new URL must be granted too). A 303 becomes a `GET`.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(&self) -> Result<Response, Error> {
        let mut request = self.clone();
        for _ in 0..=MAX_REDIRECTS {
            let response = request.send_once()?;
            let location = response.header("location").map(str::to_owned);
            match (self.follow_redirects, response.status, location) {
                (true, 301 | 302 | 303 | 307 | 308, Some(location)) => {
                    if response.status == 303
                        || (response.status != 307 && response.status != 308 && request.method == "POST")
                    {
                        request.method = "GET".to_owned();
                        request.body = Payload::Bytes(Vec::new());
                    }
                    request.url = resolve(&request.url, &location);
                }
                _ => return Ok(response),
            }
        }
        Err(self.error(ErrorKind::Other, format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn error(&self, kind: ErrorKind, what: String) -> Error {
        Error {
            kind,
            message: format!("{} {}: {what}", self.method, self.url),
        }
    }

    fn send_once(&self) -> Result<Response, Error> {
        let parts = UrlParts::parse(&self.url).map_err(|what| self.error(ErrorKind::Invalid, what))?;
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
            .collect();
        if self.body.len() > 0 || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            headers.push(("content-length".to_owned(), self.body.len().to_string().into_bytes()));
        }
        let fields = Fields::from_list(&headers)
            .map_err(|error| self.error(ErrorKind::Invalid, format!("a header is not allowed: {error:?}")))?;
        let request = OutgoingRequest::new(fields);
        let invalid = |what: &str| self.error(ErrorKind::Invalid, what.to_owned());
        request
            .set_method(&method(&self.method))
            .map_err(|()| invalid("the method is not valid"))?;
        request
            .set_scheme(Some(&parts.scheme))
            .map_err(|()| invalid("the scheme is not valid"))?;
        request
            .set_authority(Some(&parts.authority))
            .map_err(|()| invalid("the host is not valid"))?;
        request
            .set_path_with_query(Some(&parts.path))
            .map_err(|()| invalid("the path is not valid"))?;
        let options = self.timeout.map(|timeout| {
            let options = RequestOptions::new();
            let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            // A host may not support one of them; the others still apply.
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        let body = request.body().map_err(|()| invalid("the body cannot be written"))?;
        let pending = outgoing_handler::handle(request, options).map_err(|code| self.failed(&code))?;
        // A server may answer before it has read the body (a 401, a 413),
        // and a request that fails fails its body too: either way the
        // response (or its error) says more than the write, so it decides.
        let written = self.write_body(body);
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(self.failed(&code)),
            Some(Err(())) | None => {
                return Err(written
                    .err()
                    .unwrap_or_else(|| self.error(ErrorKind::Other, "the response was lost".to_owned())));
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| self.error(ErrorKind::Other, "the body cannot be read".to_owned()))?;
        let body = self.read_body(&incoming)?;
        drop(incoming);
        Ok(Response {
            status,
            headers,
            body,
            url: self.url.clone(),
        })
    }

    fn write_body(&self, body: OutgoingBody) -> Result<(), Error> {
        if self.body.len() > 0 {
            let stream = body
                .write()
                .map_err(|()| self.error(ErrorKind::Other, "the body cannot be written".to_owned()))?;
            match &self.body {
                Payload::Bytes(bytes) => self.write_all(&stream, bytes)?,
                Payload::File { path, .. } => {
                    let unreadable = |error: std::io::Error| {
                        self.error(ErrorKind::Invalid, format!("reading {}: {error}", path.display()))
                    };
                    let mut file = std::fs::File::open(path).map_err(unreadable)?;
                    let mut chunk = vec![0; 256 * 1024];
                    loop {
                        let read = file.read(&mut chunk).map_err(unreadable)?;
                        if read == 0 {
                            break;
                        }
                        self.write_all(&stream, &chunk[..read])?;
                    }
                }
            }
            stream
                .blocking_flush()
                .map_err(|error| self.stream_failed("sending the body", error))?;
        }
        OutgoingBody::finish(body, None).map_err(|code| self.failed(&code))
    }

    /// Writes `bytes` as fast as the host takes them.
    fn write_all(&self, stream: &OutputStream, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let ready = stream
                .check_write()
                .map_err(|error| self.stream_failed("sending the body", error))?;
            if ready == 0 {
                stream.subscribe().block();
                continue;
            }
            let length = bytes.len().min(usize::try_from(ready).unwrap_or(usize::MAX));
            stream
                .write(&bytes[..length])
                .map_err(|error| self.stream_failed("sending the body", error))?;
            bytes = &bytes[length..];
        }
        Ok(())
    }

    fn read_body(&self, incoming: &IncomingBody) -> Result<Vec<u8>, Error> {
        let stream = incoming
            .stream()
            .map_err(|()| self.error(ErrorKind::Other, "the body cannot be read".to_owned()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => return Ok(body),
                Err(error) => return Err(self.stream_failed("reading the response", error)),
            }
        }
    }

    fn stream_failed(&self, doing: &str, error: StreamError) -> Error {
        match error {
            StreamError::Closed => self.error(ErrorKind::Other, format!("{doing}: the connection closed")),
            StreamError::LastOperationFailed(cause) => {
                let detail = cause.to_debug_string();
                let kind = if detail.contains("Timeout") {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Other
                };
                self.error(kind, format!("{doing}: {detail}"))
            }
        }
    }

    fn failed(&self, code: &ErrorCode) -> Error {
        let (kind, what) = describe(code);
        self.error(kind, what)
    }
}

/// The kind and words of a `wasi:http` error code.
fn describe(code: &ErrorCode) -> (ErrorKind, String) {
    match code {
        ErrorCode::HttpRequestDenied => (
            ErrorKind::Refused,
            "refused by cairn: the stage is not granted this origin (the log names the `network` line to add)"
                .to_owned(),
        ),
        ErrorCode::ConnectionRefused => (ErrorKind::Unreachable, "connection refused".to_owned()),
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            (ErrorKind::Unreachable, "the host name cannot be resolved".to_owned())
        }
        ErrorCode::TlsCertificateError | ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => (
            ErrorKind::Unreachable,
            "TLS failed (the log says why; a private CA is trusted with `cairn --ca-cert FILE`)".to_owned(),
        ),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            (ErrorKind::Timeout, "the server did not answer in time".to_owned())
        }
        ErrorCode::HttpResponseBodySize(_) => (
            ErrorKind::Other,
            "the response is larger than the stage's output bound".to_owned(),
        ),
        ErrorCode::HttpRequestUriInvalid => (ErrorKind::Invalid, "the URL is not valid".to_owned()),
        other => (ErrorKind::Other, format!("{other:?}")),
    }
}

/// Reads `Name: value` lines (as `curl -H` takes them, one a line; blank
/// lines skipped), the way standard stages take headers in `with`.
pub fn header_lines(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("the header line `{line}` is not `Name: value`"))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

/// A URL split the way `wasi:http` takes it.
struct UrlParts {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl UrlParts {
    fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "the URL has no scheme (write `https://` or `http://`)".to_owned())?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("`{other}` URLs cannot be requested, only http and https")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err("the URL names no host".to_owned());
        }
        let path = match path {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            path,
        })
    }
}

/// `location` (absolute, or relative to `base`) as an absolute URL.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..authority_end]);
    if let Some(network_path) = location.strip_prefix("//") {
        return format!("{scheme}://{network_path}");
    }
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let path = rest[authority_end..].split(['?', '#']).next().unwrap_or_default();
    let folder = path.rfind('/').map_or("/", |slash| &path[..=slash]);
    format!("{origin}{folder}{location}")
}
