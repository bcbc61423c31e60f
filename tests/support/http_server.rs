//! Real HTTP and HTTPS servers for the network tests: hyper on a free
//! loopback port, in a thread of its own, recording every request it gets
//! and stopped when the test drops it. HTTPS uses a certificate signed by a
//! test CA made with rcgen, which cairn trusts only when told (`--ca-cert`).
//!
//! Routes:
//! - `GET /health`: 200 `{"status":"ok","version":"1.2.3"}`;
//! - `/status/N`: answers N;
//! - `/redirect?to=URL`: 302 to URL;
//! - `/flaky/N/...`: 503 for the first N requests to that path, then 200;
//! - `/slow`: answers after 30 s;
//! - `/not-json`: 200 with a body that is not JSON;
//! - `/auth`: 200 when `Authorization` is the server's expected value, else 401;
//! - any `PUT` or `POST`: 201 (the body is recorded); a `GET` of a path
//!   something was `PUT` at answers the last body put there, as an
//!   artifact server or a static site would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A test certificate authority and the server certificate it signed for
/// `localhost` and `127.0.0.1`.
pub struct TestCa {
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: Vec<u8>,
    folder: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cairn test CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("the CA certificate");
        let server_key = rcgen::KeyPair::generate().expect("a server key");
        let server = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server parameters")
            .signed_by(&server_key, &ca)
            .expect("the server certificate");
        let folder = tempfile::tempdir().expect("a folder for the CA file");
        std::fs::write(folder.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        std::fs::write(folder.path().join("server.pem"), server.pem()).expect("write server.pem");
        std::fs::write(folder.path().join("server-key.pem"), server_key.serialize_pem()).expect("write server-key.pem");
        Self {
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
            folder,
        }
    }

    /// The CA certificate as a PEM file, for `--ca-cert`.
    pub fn ca_file(&self) -> PathBuf {
        self.folder.path().join("ca.pem")
    }

    /// The server's certificate and key as PEM files, for servers that
    /// read them (nats-server).
    pub fn server_files(&self) -> (PathBuf, PathBuf) {
        (
            self.folder.path().join("server.pem"),
            self.folder.path().join("server-key.pem"),
        )
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key.clone().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .expect("a server TLS configuration");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A running server.
pub struct TestServer {
    pub address: SocketAddr,
    scheme: &'static str,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the routes need to know.
#[derive(Default)]
struct Settings {
    expected_auth: Option<String>,
}

impl TestServer {
    /// Plain HTTP.
    pub fn http() -> Self {
        Self::http_at("127.0.0.1:0")
    }

    /// Plain HTTP on `address`: a server taken down and brought back
    /// binds the address it had.
    pub fn http_at(address: &str) -> Self {
        let listener = std::net::TcpListener::bind(address).expect("a loopback port");
        Self::start_on(listener, None, Settings::default())
    }

    /// The body last `PUT` at `path`, if any.
    pub fn stored(&self, path: &str) -> Option<Vec<u8>> {
        self.received()
            .into_iter()
            .rev()
            .find(|request| request.method == "PUT" && request.path == path)
            .map(|request| request.body)
    }

    /// HTTPS with `ca`'s server certificate.
    pub fn https(ca: &TestCa) -> Self {
        Self::start(Some(ca.acceptor()), Settings::default())
    }

    /// HTTPS whose `/auth` wants `Authorization: {expected}`.
    pub fn https_with_auth(ca: &TestCa, expected: &str) -> Self {
        Self::start(
            Some(ca.acceptor()),
            Settings {
                expected_auth: Some(expected.to_owned()),
            },
        )
    }

    /// `scheme://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }

    fn start(tls: Option<tokio_rustls::TlsAcceptor>, settings: Settings) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        Self::start_on(listener, tls, settings)
    }

    fn start_on(listener: std::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, settings: Settings) -> Self {
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let address = listener.local_addr().expect("the port");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new((
            Arc::clone(&received),
            settings,
            Mutex::new(BTreeMap::<String, u32>::new()),
        ));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a server runtime");
            runtime.block_on(serve(listener, tls, state, stopped));
        });
        Self {
            address,
            scheme,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type State = Arc<(Arc<Mutex<Vec<Received>>>, Settings, Mutex<BTreeMap<String, u32>>)>;

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: State,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = Arc::clone(&state);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| respond(request, Arc::clone(&state)));
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    // A client that rejects the certificate closes here.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

async fn respond(request: Request<Incoming>, state: State) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (received, settings, flaky) = &*state;
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |path| path.to_string());
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect::<BTreeMap<_, _>>();
    let body = request.into_body().collect().await?.to_bytes().to_vec();
    let record = Received {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        body,
    };
    received.lock().expect("not poisoned").push(record);
    let reply = |status: u16, body: &str| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("a response")
    };
    let route = path.split('?').next().unwrap_or_default();
    Ok(match (method.as_str(), route) {
        ("GET", "/health") => reply(200, r#"{"status":"ok","version":"1.2.3"}"#),
        ("GET", "/not-json") => reply(200, "<html>maintenance</html>"),
        ("GET", "/slow") => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            reply(200, "late")
        }
        ("GET", "/redirect") => {
            let to = path.split_once("?to=").map_or("/", |(_, to)| to);
            Response::builder()
                .status(302)
                .header("location", to)
                .body(Full::new(Bytes::new()))
                .expect("a response")
        }
        ("GET", "/auth") => match (&settings.expected_auth, headers.get("authorization")) {
            (Some(expected), Some(got)) if expected == got => reply(200, r#"{"authorized":true}"#),
            _ => reply(401, r#"{"authorized":false}"#),
        },
        (_, route) if route.starts_with("/status/") => {
            let status = route["/status/".len()..].parse().unwrap_or(500);
            reply(status, &format!("status {status}"))
        }
        (_, route) if route.starts_with("/flaky/") => {
            let failures: u32 = route["/flaky/".len()..]
                .split('/')
                .next()
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            let mut seen = flaky.lock().expect("not poisoned");
            let count = seen.entry(route.to_owned()).or_default();
            *count += 1;
            if *count <= failures {
                reply(503, "warming up")
            } else {
                reply(200, r#"{"status":"ok"}"#)
            }
        }
        ("PUT" | "POST", _) => reply(201, "stored"),
        ("GET", _) => {
            let stored = received
                .lock()
                .expect("not poisoned")
                .iter()
                .rev()
                .find(|request| request.method == "PUT" && request.path == path)
                .map(|request| request.body.clone());
            match stored {
                Some(body) => Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::from(body)))
                    .expect("a response"),
                None => reply(404, "no such route"),
            }
        }
        _ => reply(404, "no such route"),
    })
}

/// The file name under `folder` a test writes a secret into (the
/// `--secrets-file` format).
pub fn secrets_file(folder: &Path, pairs: &[(&str, &str)]) -> PathBuf {
    let path = folder.join("secrets.env");
    let text: String = pairs.iter().map(|(name, value)| format!("{name}={value}\n")).collect();
    std::fs::write(&path, text).expect("write the secrets file");
    path
}
