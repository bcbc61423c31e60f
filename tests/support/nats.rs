//! A real NATS server with JetStream for tests: the upstream `nats-server`
//! (`.ci/run` installs it), started on a free loopback port with a store of
//! its own, optionally wanting a user and password, and stopped when the
//! test drops it.

use std::net::TcpListener;
use std::process::{Child, Command};

/// A running server.
pub struct TestNats {
    child: Option<Child>,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    folder: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl TestNats {
    /// A server anyone may use.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A server that wants `user` and `password`.
    pub fn with_user(user: &str, password: &str) -> Self {
        Self::launch(Some(format!("user: \"{user}\"\n  password: \"{password}\"")))
    }

    /// A server that wants `token`.
    pub fn with_token(token: &str) -> Self {
        Self::launch(Some(format!("token: \"{token}\"")))
    }

    /// A server that admits the user whose NKey's public key is `public`.
    pub fn with_nkey(public: &str) -> Self {
        Self::launch(Some(format!("users: [ {{ nkey: \"{public}\" }} ]")))
    }

    /// A server in operator mode (accounts and users proven by signed
    /// JWTs, as NATS deployments managed with `nsc` are) with one account;
    /// the credentials file of one of its users, and of a user of an
    /// account the server does not know, in `folder`.
    pub fn with_operator(folder: &std::path::Path) -> (Self, std::path::PathBuf, std::path::PathBuf) {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
            "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
        });
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
        );
        let creds = |issuer: &nkeys::KeyPair, name: &str| {
            let user = nkeys::KeyPair::new_user();
            let user_jwt = jwt(
                issuer,
                &user.public_key(),
                serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
            );
            let path = folder.join(name);
            std::fs::write(
                &path,
                format!(
                    "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
                     -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
                    user.seed().expect("a seed")
                ),
            )
            .expect("write the credentials");
            path
        };
        let ours = creds(&account, "user.creds");
        let stranger = creds(&nkeys::KeyPair::new_account(), "stranger.creds");
        // The server's own account, which JetStream needs in this mode.
        let system = nkeys::KeyPair::new_account();
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            serde_json::json!({"type": "account", "version": 2}),
        );
        let config = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {system}\nresolver: MEMORY\nresolver_preload: {{\n  \
             {account}: \"{account_jwt}\"\n  {system}: \"{system_jwt}\"\n}}\n",
            account = account.public_key(),
            system = system.public_key(),
        );
        (Self::launch_with(free_port(), &config), ours, stranger)
    }

    /// A server that speaks only TLS, with the certificate and key in
    /// these PEM files.
    pub fn with_tls(certificate: &std::path::Path, key: &std::path::Path) -> Self {
        Self::launch_with(
            free_port(),
            &format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                certificate.display(),
                key.display()
            ),
        )
    }

    fn launch(authorization: Option<String>) -> Self {
        let authorization = authorization
            .map(|authorization| format!("authorization {{\n  {authorization}\n}}\n"))
            .unwrap_or_default();
        Self::launch_with(free_port(), &authorization)
    }

    /// A server on `port` whose config ends with `extra`.
    fn launch_with(port: u16, extra: &str) -> Self {
        let folder = tempfile::tempdir().expect("a folder for the server");
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\nhttp: 0\njetstream {{\n  store_dir: \"{}\"\n}}\n{extra}",
            folder.path().join("store").display()
        );
        let config_path = folder.path().join("nats.conf");
        std::fs::write(&config_path, config).expect("the server's config");
        let child = super::spawn_server(
            Command::new("nats-server").arg("-c").arg(&config_path),
            &folder.path().join("nats.log"),
            "`cargo xtask setup` installs it (.ci/run does)",
        );
        let mut server = TestNats {
            child: Some(child),
            url: format!("nats://127.0.0.1:{port}"),
            folder,
        };
        server.wait_until_ready();
        server
    }

    /// Stops the server as a crash would (`kill -9`).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_until_ready(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::wait_for_server(
                "nats-server",
                &mut child,
                || self.log().contains("Server is ready"),
                || self.log(),
            );
            self.child = Some(child);
        }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("nats.log")).unwrap_or_default()
    }

    /// Runs `work` with a client of the server, as another program would
    /// use it (to look at or tamper with what cairn stored).
    pub fn with_client<T>(&self, work: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
        with_client(&self.url, work)
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn with_client<T>(url: &str, work: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("a client connects");
        work(async_nats::jetstream::new(client)).await
    })
}

/// A cluster of servers routed to each other, with JetStream replicated
/// among them.
pub struct TestCluster {
    /// The servers, `n1`, `n2`, ... in order.
    pub nodes: Vec<TestNats>,
    /// Every server's URL, comma-separated, as cairn takes a cluster.
    pub url: String,
}

impl TestCluster {
    /// Starts `size` servers and waits until JetStream has a leader.
    pub fn start(size: usize) -> Self {
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let nodes: Vec<TestNats> = ports
            .iter()
            .enumerate()
            .map(|(index, (port, cluster_port))| {
                let routes: Vec<String> = ports
                    .iter()
                    .filter(|(_, other)| other != cluster_port)
                    .map(|(_, other)| format!("\"nats-route://127.0.0.1:{other}\""))
                    .collect();
                let extra = format!(
                    "server_name: \"n{}\"\ncluster {{\n  name: \"cairn-test\"\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{}]\n}}\n",
                    index + 1,
                    routes.join(", ")
                );
                TestNats::launch_with(*port, &extra)
            })
            .collect();
        let url = nodes.iter().map(|node| node.url.clone()).collect::<Vec<_>>().join(",");
        let cluster = Self { nodes, url };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // Ready when a stream replicated on every server can be made (the
        // servers know each other), not only when one answers.
        let replicated = async |jetstream: async_nats::jetstream::Context| {
            let made = jetstream
                .create_stream(async_nats::jetstream::stream::Config {
                    name: "ready".to_owned(),
                    num_replicas: size,
                    ..Default::default()
                })
                .await
                .is_ok();
            made && jetstream.delete_stream("ready").await.is_ok()
        };
        while !cluster.with_client(replicated) {
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster elected no JetStream leader:\n{}",
                cluster.nodes[0].log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        cluster
    }

    /// Runs `work` with a client of a live server of the cluster.
    pub fn with_client<T>(&self, work: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
        let live = self
            .nodes
            .iter()
            .find(|node| node.child.is_some())
            .expect("a live server");
        with_client(&live.url, work)
    }

    /// The name (`n2`) of the server leading `stream`, once it has one.
    pub fn leader_of(&self, stream: &str) -> Option<String> {
        self.with_client(async |jetstream| {
            let mut stream = jetstream.get_stream(stream).await.ok()?;
            let info = stream.info().await.ok()?;
            info.cluster.as_ref().and_then(|cluster| cluster.leader.clone())
        })
    }

    /// Kills (`-9`) the server named `name`.
    pub fn kill(&mut self, name: &str) {
        let index: usize = name.trim_start_matches('n').parse::<usize>().expect("a server name") - 1;
        self.nodes[index].kill();
    }
}

/// A NATS JWT: `claims` about `subject`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, claims: serde_json::Value) -> String {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mut body = serde_json::json!({
        "iat": issued,
        "iss": issuer.public_key(),
        "name": subject,
        "sub": subject,
        "nats": claims,
    });
    body["jti"] = serde_json::Value::String(blake3::hash(body.to_string().as_bytes()).to_hex().to_uppercase());
    let signed = format!(
        "{}.{}",
        encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        encode(body.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("signed");
    format!("{signed}.{}", encode(&signature))
}
