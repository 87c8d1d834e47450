//! A fault-injecting TCP proxy.
//!
//! Network faults between a client and the broker (connections dying in the
//! middle of a request, stalls) are what exercise retries, idempotence and
//! the broker's handling of half-finished requests. Real networks produce
//! them rarely and unpredictably; this proxy produces them on demand.
//!
//! Kafka clients connect to the bootstrap address only to fetch Metadata and
//! then connect to the address each broker *advertises*. To route a client
//! through the proxy the broker must therefore advertise the proxy's address
//! (`advertised.listeners=PLAINTEXT://<proxy addr>`); see
//! [`Proxy::start_for_broker`] which wires that up.
//!
//! Implementation: plain threads. An accept thread connects each client to
//! the target and starts two pump threads (one per direction). Every live
//! connection pair is registered so that [`Proxy::cut_all`] can sever them
//! all at once with a TCP reset.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Broker, BrokerOpts};

struct Conn {
    id: u64,
    /// Where the connection came from (which broker, for source-bound
    /// broker traffic).
    peer: IpAddr,
    client: TcpStream,
    upstream: TcpStream,
}

/// Decides per connection source whether the proxy forwards it.
pub type Admission = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

struct Shared {
    target: Mutex<SocketAddr>,
    admit: Option<Admission>,
    conns: Mutex<Vec<Conn>>,
    paused: AtomicBool,
    stopping: AtomicBool,
    next_id: AtomicU64,
    accepted: AtomicUsize,
}

/// A TCP proxy from [`Proxy::addr`] to a target address.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free 127.0.0.1 port and forwards every connection to
    /// `target`. The target need not be up yet: connections made while it
    /// is down are accepted and immediately closed.
    pub fn start(target: SocketAddr) -> Proxy {
        Proxy::start_admitting(target, None)
    }

    /// Like [`Proxy::start`], but a connection is only forwarded while
    /// `admit(source address)` says so; refused sources see their
    /// connection closed at once (see [`Proxy::cut_from`] for live ones).
    pub fn start_admitting(target: SocketAddr, admit: Option<Admission>) -> Proxy {
        let listener = crate::bind_unique_port();
        let addr = listener.local_addr().expect("proxy local_addr");
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            admit,
            conns: Mutex::new(Vec::new()),
            paused: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            accepted: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept_thread = std::thread::Builder::new()
            .name(format!("proxy-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn proxy accept thread");
        Proxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Starts a proxy and a broker behind it: the broker listens on a port
    /// of its own but advertises the proxy's address, so clients that
    /// bootstrap from [`Proxy::bootstrap`] send all their traffic through
    /// the proxy. `opts` may carry further overrides.
    pub fn start_for_broker(opts: BrokerOpts) -> (Broker, Proxy) {
        let port = opts.kafka_port.unwrap_or_else(crate::free_port);
        let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port)));
        let opts = opts.kafka_port(port).set(
            "advertised.listeners",
            format!("PLAINTEXT://{}", proxy.addr),
        );
        (Broker::start(opts), proxy)
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:<proxy port>"` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Changes where new connections go.
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = target;
    }

    /// How many client connections have been accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many connections are currently being forwarded.
    pub fn live_connections(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    /// Severs every current connection abruptly (TCP RST to both sides,
    /// whatever was in flight is lost). New connections are still accepted.
    /// Returns how many connections were cut.
    pub fn cut_all(&self) -> usize {
        let conns: Vec<Conn> = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for c in &conns {
            abort(&c.client);
            abort(&c.upstream);
        }
        conns.len()
    }

    /// Severs the current connections whose source `cut` selects (a new
    /// network partition). Returns how many were cut.
    pub fn cut_from(&self, cut: impl Fn(IpAddr) -> bool) -> usize {
        let mut conns = self.shared.conns.lock().unwrap();
        let (doomed, kept): (Vec<Conn>, Vec<Conn>) = std::mem::take(&mut *conns)
            .into_iter()
            .partition(|c| cut(c.peer));
        *conns = kept;
        for c in &doomed {
            abort(&c.client);
            abort(&c.upstream);
        }
        doomed.len()
    }

    /// Stops forwarding bytes in both directions (connections stay open, as
    /// in a network partition that drops no packets but delivers none).
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Resumes forwarding after [`Proxy::pause`].
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.paused.store(false, Ordering::SeqCst);
        self.cut_all();
        // Wake the accept thread so it notices `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

/// Sets SO_LINGER to zero so that closing the socket sends RST rather than
/// FIN, then shuts it down so every thread blocked on it wakes up.
fn abort(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is valid for the lifetime of `stream`, and we pass a
    // pointer to a properly initialised `linger` with its exact size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = incoming else { continue };
        let Ok(peer) = client.peer_addr().map(|a| a.ip()) else {
            continue;
        };
        if shared.admit.as_ref().is_some_and(|admit| !admit(peer)) {
            abort(&client);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let target = *shared.target.lock().unwrap();
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            // Target down: the client sees its connection closed at once.
            abort(&client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let registered = (|| {
            Some(Conn {
                id,
                peer,
                client: client.try_clone().ok()?,
                upstream: upstream.try_clone().ok()?,
            })
        })();
        let Some(conn) = registered else { continue };
        shared.conns.lock().unwrap().push(conn);
        for (from, to) in [
            (client.try_clone(), upstream.try_clone()),
            (upstream.try_clone(), client.try_clone()),
        ] {
            let (Ok(from), Ok(to)) = (from, to) else {
                continue;
            };
            let s = shared.clone();
            let _ = std::thread::Builder::new()
                .name(format!("proxy-pump-{id}"))
                .spawn(move || pump(id, from, to, s));
        }
    }
}

fn pump(id: u64, mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        while shared.paused.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // One side finished or failed: close the whole pair, as a real
    // connection would be closed end to end.
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.conns.lock().unwrap().retain(|c| c.id != id);
}
