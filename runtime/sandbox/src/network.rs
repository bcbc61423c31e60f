//! The network a stage sees: nothing, unless the pipeline lists
//! `host:port` pairs in `network = [...]`.
//!
//! Grants are resolved to addresses once, before the stage starts, and every
//! socket operation is checked against them. A refused connection is also
//! logged with the line to add, since the stage itself usually reports no
//! more than "permission denied".

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::SandboxError;
use super::logs::LogCapture;

/// Resolves `entries` (`host:port`) and installs them as the only addresses
/// the stage may reach.
pub(crate) async fn grant(
    builder: &mut WasiCtxBuilder,
    entries: &[String],
    capture: Arc<LogCapture>,
) -> Result<(), SandboxError> {
    let mut allowed = HashSet::new();
    for entry in entries {
        allowed.extend(resolve(entry).await?);
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
    Ok(())
}

async fn resolve(entry: &str) -> Result<Vec<SocketAddr>, SandboxError> {
    let error = |reason: String| SandboxError::Network {
        entry: entry.to_owned(),
        reason,
    };
    let has_port = entry
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(error(
            "it needs a port, like `example.com:443` or `[::1]:8080`".to_owned(),
        ));
    }
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host(entry)
        .await
        .map_err(|lookup| error(format!("cannot resolve it: {lookup}")))?
        .collect();
    if addresses.is_empty() {
        return Err(error("it resolves to no address".to_owned()));
    }
    Ok(addresses)
}
