//! Small helpers shared by the subsystems.

use std::io;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Removes a file; one that is not there is no error.
pub fn remove_if_exists(path: &std::path::Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The local address broker-to-broker connections originate from
/// (`outbound.bind.host`), set once at start-up; unset lets the OS choose.
static OUTBOUND_BIND: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

pub fn set_outbound_bind(host: std::net::IpAddr) {
    let _ = OUTBOUND_BIND.set(host);
}

/// Connects to a peer broker or controller at `address` (host:port), from
/// `outbound.bind.host` when it is set.
pub async fn connect_to_peer(address: &str) -> io::Result<tokio::net::TcpStream> {
    let Some(local) = OUTBOUND_BIND.get().copied() else {
        return tokio::net::TcpStream::connect(address).await;
    };
    let mut last_error = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{address} did not resolve"),
    );
    for remote in tokio::net::lookup_host(address).await? {
        let socket = if remote.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        match socket.connect(remote).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}
