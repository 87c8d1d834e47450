//! Small helpers shared by the subsystems.

use std::io;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// (used, total) bytes of the filesystem holding `path`.
pub fn disk_usage(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat is a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    let total = stat.f_blocks as u64 * block;
    let free = stat.f_bfree as u64 * block;
    Some((total - free, total))
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
