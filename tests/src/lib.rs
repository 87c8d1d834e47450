//! Harness for Tideline's end-to-end tests.
//!
//! Every test in `tests/tests/*.rs` talks to a *real* `tideline-broker`
//! process through *real* Kafka clients (librdkafka via the `rdkafka` crate,
//! kafka-python and confluent-kafka via `python3`). Nothing here links the
//! broker crate: the broker is a black box that is expected to behave like
//! Apache Kafka, and the tests are written against Kafka's documented
//! behaviour rather than against our implementation.
//!
//! The pieces:
//!
//! - [`broker`]: start/stop/kill/pause/restart a broker process on free ports
//!   with its own temporary data directory, wait for `/readyz`, and show the
//!   broker's log when a test fails.
//! - [`cluster`]: several brokers forming one cluster (a metadata quorum
//!   over their controller listeners), optionally with every link behind a
//!   fault-injecting proxy so tests can partition the network.
//! - [`proxy`]: a TCP proxy that can sever every connection at once, so a
//!   test can inject network faults between a client and the broker.
//! - [`clients`]: rdkafka configuration builders and produce/consume helpers
//!   that record exactly what was acknowledged and what came back.
//! - [`data`]: deterministic generation of awkward records (null and empty
//!   keys/values, headers with null values, varied sizes).
//! - [`wire`]: a minimal raw Kafka-protocol connection for malformed or
//!   hand-built requests that no well-behaved client would send.
//! - [`disk`]: reading the broker's on-disk segments (Kafka's layout and
//!   batch format) so tests can inspect and damage them.
//! - [`tmpfs`]: a size-limited real file system to fill up (a full disk).
//! - [`http`]: a tiny HTTP/1.0 GET used for `/readyz` and `/metrics`.
//! - [`jepsen`]: a Jepsen-style workload (producers writing unique values
//!   under faults) and a checker for lost, duplicated and reordered records.
//! - [`member`]: consumer-group members as separate processes (the
//!   `tideline-group-member` binary), so a test can SIGKILL one.
//! - [`eos`]: the exactly-once checker and its consume-transform-produce
//!   process (the `tideline-eos-copier` binary).

pub mod broker;
pub mod cli;
pub mod clients;
pub mod cluster;
pub mod data;
pub mod disk;
pub mod eos;
pub mod fake_kube;
pub mod http;
pub mod jepsen;
pub mod member;
pub mod operator_process;
pub mod proxy;
pub mod rendered_cluster;
pub mod tmpfs;
pub mod wire;

pub use broker::{Broker, BrokerOpts};
pub use clients::{
    admin_client, block_on, consume_all, consumer_config, create_topic, producer_config,
    topic_as_seen_by_rdkafka, ConsumedRecord, Delivered, TestProducer,
};
pub use data::TestRecord;
pub use proxy::Proxy;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and dropping the listener, so another
/// process could in principle grab it before the broker binds it; on a test
/// machine that race is rare enough to accept.
pub fn free_port() -> u16 {
    let listener = bind_unique_port();
    listener.local_addr().expect("local_addr").port()
}

/// A listener on 127.0.0.1 whose port this test process has never handed
/// out before. Listeners the harness keeps (proxies, the fake API server)
/// must come from here too: the kernel readily gives a port just released
/// by [`free_port`] to the next bind of port 0, which would then steal the
/// port a broker is about to bind.
pub fn bind_unique_port() -> TcpListener {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return listener;
        }
    }
}

/// Polls `cond` every 50 ms until it returns `Some`, or panics with `what`
/// after `timeout`. Tests use this instead of sleeping for fixed times.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds since the Unix epoch (Kafka's timestamp unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as i64
}

/// A topic name unique within this test process, so tests sharing a broker
/// never collide and names are recognisable in broker logs.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
