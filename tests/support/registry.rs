//! A real OCI registry for tests: Debian's `docker-registry` (CNCF
//! distribution 2.8) started on a free loopback port with a config file and
//! storage of its own, optionally behind htpasswd basic auth, and stopped
//! when the test drops it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// A running registry.
pub struct TestRegistry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub host: String,
    folder: tempfile::TempDir,
}

impl TestRegistry {
    /// A registry anyone may push to and pull from.
    pub fn start() -> Self {
        Self::launch(&[])
    }

    /// A registry that wants one of `users` (name, password) for everything.
    pub fn with_users(users: &[(&str, &str)]) -> Self {
        Self::launch(users)
    }

    fn launch(users: &[(&str, &str)]) -> Self {
        let folder = tempfile::tempdir().expect("a folder for the registry");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            folder.path().join("storage").display()
        );
        if !users.is_empty() {
            let htpasswd: String = users
                .iter()
                .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 5).expect("bcrypt hashes")))
                .collect();
            std::fs::write(folder.path().join("htpasswd"), htpasswd).expect("the htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: cairn-tests\n    path: {}\n",
                folder.path().join("htpasswd").display()
            ));
        }
        let config_path = folder.path().join("config.yml");
        std::fs::write(&config_path, config).expect("the registry config");
        let child = super::spawn_server(
            Command::new("docker-registry").arg("serve").arg(&config_path),
            &folder.path().join("registry.log"),
            "install it with `apt-get install docker-registry` (.ci/run does)",
        );
        let mut registry = TestRegistry {
            child: Some(child),
            host,
            folder,
        };
        registry.wait_until_ready();
        registry
    }

    fn wait_until_ready(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::wait_for_server(
                "docker-registry",
                &mut child,
                || http_status(&self.host, "/v2/").is_some(),
                || self.log(),
            );
            self.child = Some(child);
        }
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("registry.log")).unwrap_or_default()
    }

    /// Stops the registry (as if the network went away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the registry stores the blob `digest` (`sha256:...`).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn storage(&self) -> PathBuf {
        self.folder.path().join("storage")
    }

    /// `oci://HOST/PATH`.
    pub fn reference(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.host)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The status code of `GET path`, if anything answers.
fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Flips one byte in the middle of a file the registry (or a layout) stores.
pub fn tamper(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let mut permissions = std::fs::metadata(path).expect("metadata").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(path, permissions).expect("writable");
    std::fs::write(path, bytes).expect("the tampered file");
}

/// A plain-HTTP client for checking what the registry holds, byte for byte.
pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Self {
        // reqwest is built without a default TLS provider (cairn installs ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            client: reqwest::Client::new(),
        }
    }
}

impl Http {
    /// `GET url` with `accept`: status, `Docker-Content-Digest`, body.
    pub fn get(&self, url: &str, accept: &str) -> (u16, Option<String>, Vec<u8>) {
        self.runtime.block_on(async {
            let response = self
                .client
                .get(url)
                .header("Accept", accept)
                .send()
                .await
                .expect("the registry answers");
            let status = response.status().as_u16();
            let digest = response
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            (status, digest, response.bytes().await.expect("a body").to_vec())
        })
    }

    /// Uploads a blob the two-step way the distribution spec describes.
    pub fn push_blob(&self, host: &str, repository: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", hex(&sha2_digest(bytes)));
        self.runtime.block_on(async {
            let started = self
                .client
                .post(format!("http://{host}/v2/{repository}/blobs/uploads/"))
                .send()
                .await
                .expect("the upload starts");
            assert_eq!(started.status().as_u16(), 202, "starting an upload");
            let location = started.headers()["Location"].to_str().expect("a location").to_owned();
            let location = if location.starts_with('/') {
                format!("http://{host}{location}")
            } else {
                location
            };
            let separator = if location.contains('?') { '&' } else { '?' };
            let finished = self
                .client
                .put(format!("{location}{separator}digest={digest}"))
                .header("Content-Type", "application/octet-stream")
                .body(bytes.to_vec())
                .send()
                .await
                .expect("the upload finishes");
            assert_eq!(finished.status().as_u16(), 201, "finishing an upload");
        });
        digest
    }

    /// Puts a manifest under `tag`.
    pub fn push_manifest(&self, host: &str, repository: &str, tag: &str, manifest: &[u8]) {
        self.runtime.block_on(async {
            let response = self
                .client
                .put(format!("http://{host}/v2/{repository}/manifests/{tag}"))
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest.to_vec())
                .send()
                .await
                .expect("the manifest upload");
            assert_eq!(response.status().as_u16(), 201, "{:?}", response.text().await);
        });
    }
}

/// The sha256 of `bytes`.
pub fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A stand-in for a registry behind a token-checking gateway: each
/// connection's first request must carry `Authorization: Bearer TOKEN`
/// (else 401 with a bearer challenge); accepted connections are piped to the
/// real registry.
pub struct BearerGateway {
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl BearerGateway {
    /// Starts a gateway in front of `registry` accepting `token`; it lives as long as the test process.
    pub fn start(registry: &str, token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let host = listener.local_addr().expect("an address").to_string();
        let (registry, expected, realm) = (
            registry.to_owned(),
            format!("bearer {token}"),
            format!("http://{host}/token"),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (registry, expected, realm) = (registry.clone(), expected.clone(), realm.clone());
                std::thread::spawn(move || serve(client, &registry, &expected, &realm));
            }
        });
        BearerGateway { host }
    }
}

fn serve(mut client: TcpStream, registry: &str, expected: &str, realm: &str) {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let authorized = text.lines().any(|line| {
        line.strip_prefix("authorization:")
            .is_some_and(|value| value.trim() == expected)
    });
    if !authorized {
        let _ = write!(
            client,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"cairn-tests\"\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(registry) else {
        return;
    };
    if upstream.write_all(&head).is_err() {
        return;
    }
    let (Ok(mut client_reader), Ok(mut upstream_writer)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_reader, &mut upstream_writer);
        let _ = upstream_writer.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}
