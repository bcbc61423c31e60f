//! The network a stage sees: nothing, unless the pipeline lists entries in
//! `network = [...]`.
//!
//! An HTTP origin (`https://deploy.example.com`) admits `wasi:http`
//! requests to it ([`http`]); a `host:port` pair admits sockets. Socket
//! grants are resolved to addresses once, before the stage starts, and every
//! socket operation is checked against them. A refused connection or request
//! is also logged with the line to add, since the stage itself usually
//! reports no more than "permission denied".

mod http;
mod trust;

pub(crate) use http::{HttpClient, HttpGrant, HttpHooks};
pub use trust::{Trust, TrustError};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use cairn_core::{NetworkEntry, Origin};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::SandboxError;
use super::logs::LogCapture;

/// Reads `entries`, resolves the `host:port` ones and installs them as the
/// only addresses the stage's sockets may reach. Returns the HTTP origins,
/// for [`HttpHooks`].
pub(crate) async fn grant(
    builder: &mut WasiCtxBuilder,
    entries: &[String],
    capture: Arc<LogCapture>,
) -> Result<Vec<Origin>, SandboxError> {
    let mut allowed = HashSet::new();
    let mut origins = Vec::new();
    for entry in entries {
        match NetworkEntry::parse(entry).map_err(|reason| SandboxError::Network {
            entry: entry.clone(),
            reason,
        })? {
            NetworkEntry::Http(origin) => origins.push(origin),
            NetworkEntry::Socket(address) => allowed.extend(resolve(&address).await?),
        }
    }
    let allowed = Arc::new(allowed);
    // TCP and UDP stay enabled as protocols so that a refusal comes from the
    // address check below, which can say what to grant.
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(!allowed.is_empty());
    builder.socket_addr_check(move |address, purpose| {
        let permitted = match purpose {
            SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                allowed.contains(&address)
            }
            // The implicit bind before a connect or a send: a local ephemeral
            // port, which reaches nothing by itself. Allowed even without
            // grants, so that the connect that follows is the operation
            // refused, with a message naming its address.
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => address.ip().is_unspecified() && address.port() == 0,
            // Stages are clients: no listening, no accepting.
            _ => false,
        };
        if !permitted && matches!(purpose, SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend) {
            capture.sandbox_notice(&format!(
                "network: the stage tried to reach {address}, which it was not granted\n\
                 hint: add `network = [\"{address}\"]` to the stage to allow it"
            ));
        }
        Box::pin(async move { permitted })
    });
    Ok(origins)
}

async fn resolve(entry: &str) -> Result<Vec<SocketAddr>, SandboxError> {
    let error = |reason: String| SandboxError::Network {
        entry: entry.to_owned(),
        reason,
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host(entry)
        .await
        .map_err(|lookup| error(format!("cannot resolve it: {lookup}")))?
        .collect();
    if addresses.is_empty() {
        return Err(error("it resolves to no address".to_owned()));
    }
    Ok(addresses)
}
