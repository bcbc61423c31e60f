//! `wasi:http` for stages: every outgoing request is checked against the
//! stage's granted origins, given the credentials the pipeline attached to
//! its origin (which the stage never sees), and sent by the host, TLS
//! included. Responses count against the stage's output bound and every
//! wait is bounded.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::trust::Trust;
use crate::logs::LogCapture;
use cairn_core::Origin;
use cairn_core::units::ByteSize;

/// How long a connection may take to open (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a response's headers may take after the request is sent; a
/// stage's `RequestOptions` may ask for less, never more.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a response body may stall between two chunks.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The host's HTTP client, shared by every stage of a process so that
/// connections are reused; built on the first request.
pub(crate) struct HttpClient {
    trust: Trust,
    client: OnceLock<Client<Connector, WasiBody>>,
}

impl HttpClient {
    pub(crate) fn new(trust: Trust) -> Self {
        Self {
            trust,
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> &Client<Connector, WasiBody> {
        self.client.get_or_init(|| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(CONNECT_TIMEOUT));
            http.set_nodelay(true);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*self.trust.client_config()).clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector)
        })
    }
}

/// What one stage's HTTP requests may do.
pub(crate) struct HttpGrant {
    /// The origins (and path prefixes) it may reach.
    pub(crate) origins: Vec<Origin>,
    /// `Authorization` values the host adds to requests an origin admits,
    /// marked sensitive (hyper never logs them).
    pub(crate) credentials: Vec<(Origin, HeaderValue)>,
    /// The stage's output bound, which responses count against.
    pub(crate) max_bytes: ByteSize,
}

/// The `wasi:http` hooks of one stage run.
pub(crate) struct HttpHooks {
    origins: Arc<[Origin]>,
    credentials: Arc<[(Origin, HeaderValue)]>,
    client: Arc<HttpClient>,
    capture: Arc<LogCapture>,
    budget: Arc<Budget>,
}

impl HttpHooks {
    pub(crate) fn new(grant: HttpGrant, client: Arc<HttpClient>, capture: Arc<LogCapture>) -> Self {
        Self {
            origins: grant.origins.into(),
            credentials: grant.credentials.into(),
            client,
            capture,
            budget: Arc::new(Budget {
                left: AtomicU64::new(grant.max_bytes.0),
                limit: grant.max_bytes,
            }),
        }
    }

    /// The refusal of a request to an origin not granted, logged with the
    /// line that would grant it.
    fn refuse(&self, uri: &http::Uri) {
        let requested = Origin::of(uri);
        let narrowed = match &requested {
            Some(requested) if self.origins.iter().any(|granted| granted.same_origin(requested)) => {
                " (its origin is granted for another path only)"
            }
            _ => "",
        };
        let origin = requested.map_or_else(|| uri.to_string(), |origin| origin.to_string());
        self.capture.sandbox_notice(&format!(
            "network: the stage sent a request to {origin}{path}, which it was not granted{narrowed}\n\
             hint: add `network = [\"{origin}\"]` to the stage to allow it",
            path = uri.path(),
        ));
    }
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        let uri = request.uri().clone();
        if !self.origins.iter().any(|origin| origin.admits(&uri)) {
            self.refuse(&uri);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Some((_, value)) = self.credentials.iter().find(|(origin, _)| origin.admits(&uri)) {
            request.headers_mut().insert(http::header::AUTHORIZATION, value.clone());
        }
        // The client writes its own `Host` from the URI.
        request.headers_mut().remove(http::header::HOST);
        let client = Arc::clone(&self.client);
        let capture = Arc::clone(&self.capture);
        let budget = Arc::clone(&self.budget);
        let options = options.unwrap_or_default();
        let headers_timeout = options
            .first_byte_timeout
            .map_or(HEADERS_TIMEOUT, |asked| asked.min(HEADERS_TIMEOUT))
            + options
                .connect_timeout
                .map_or(CONNECT_TIMEOUT, |asked| asked.min(CONNECT_TIMEOUT));
        let idle_timeout = options
            .between_bytes_timeout
            .map_or(IDLE_TIMEOUT, |asked| asked.min(IDLE_TIMEOUT));
        Box::new(async move {
            let response = match tokio::time::timeout(headers_timeout, client.client().request(request)).await {
                Err(_) => return Err(HttpError::HttpResponseTimeout),
                Ok(Err(error)) => return Err(transport_error(&error, &uri, &capture)),
                Ok(Ok(response)) => response,
            };
            let response = response.map(|body| {
                BoundedBody {
                    body,
                    budget,
                    capture,
                    idle_timeout,
                    idle: Box::pin(tokio::time::sleep(idle_timeout)),
                }
                .boxed_unsync()
            });
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// The error code a stage sees for a request that got no response; a TLS
/// failure is also logged in words, since the code alone cannot say that a
/// private CA is missing.
fn transport_error(error: &hyper_util::client::legacy::Error, uri: &http::Uri, capture: &LogCapture) -> HttpError {
    let mut chain = Vec::new();
    let mut tls = false;
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        tls |= is_tls(cause);
        source = cause.source();
    }
    let text = chain.join(": ");
    let origin = Origin::of(uri).map_or_else(|| uri.to_string(), |origin| origin.to_string());
    if tls {
        capture.sandbox_notice(&format!(
            "network: TLS with {origin} failed: {text}\n\
             hint: for a server whose certificate a private CA signed, pass `--ca-cert FILE` \
             (or set CAIRN_CA_CERT) to cairn"
        ));
        return HttpError::TlsCertificateError;
    }
    if error.is_connect() {
        if chain
            .iter()
            .any(|cause| cause.contains("dns") || cause.contains("lookup"))
        {
            return HttpError::DnsError {
                rcode: Some(text),
                info_code: None,
            };
        }
        return HttpError::ConnectionRefused;
    }
    HttpError::HttpProtocolError
}

/// Whether `error` is rustls's, bare or wrapped in I/O errors (as the TLS
/// stream and the connector report it; an I/O error's `source` skips the
/// error it wraps, so the chain alone never shows it).
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| is_tls(inner))
}

/// How many response bytes a stage may still receive.
struct Budget {
    left: AtomicU64,
    limit: ByteSize,
}

/// A response body counted against the stage's bound and stopped when it
/// stalls.
struct BoundedBody {
    body: hyper::body::Incoming,
    budget: Arc<Budget>,
    capture: Arc<LogCapture>,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.body).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |data| data.len() as u64);
                let within = self
                    .budget
                    .left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(size))
                    .is_ok();
                if !within {
                    self.capture.sandbox_notice(&format!(
                        "network: the stage's responses exceeded its output bound of {}",
                        self.budget.limit
                    ));
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(None))));
                }
                let deadline = tokio::time::Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(HttpError::from(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle.as_mut().poll(context) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
