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

    fn launch(authorization: Option<String>) -> Self {
        let folder = tempfile::tempdir().expect("a folder for the server");
        let port = free_port();
        let mut config = format!(
            "listen: \"127.0.0.1:{port}\"\nhttp: 0\njetstream {{\n  store_dir: \"{}\"\n}}\n",
            folder.path().join("store").display()
        );
        if let Some(authorization) = authorization {
            config.push_str(&format!("authorization {{\n  {authorization}\n}}\n"));
        }
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let client = async_nats::connect(&self.url).await.expect("a client connects");
            work(async_nats::jetstream::new(client)).await
        })
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
