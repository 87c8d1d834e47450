//! One consumer-group member in its own process, so a test can SIGKILL it
//! (a crash the broker only notices by the missing heartbeats) or SIGTERM it
//! (a clean close that leaves the group).
//!
//! ```text
//! tideline-group-member BOOTSTRAP TOPIC GROUP [key=value ...]
//! ```
//! Extra `key=value` arguments are librdkafka properties (for example
//! `partition.assignment.strategy=cooperative-sticky`,
//! `group.instance.id=a`, `session.timeout.ms=6000`).
//!
//! Each record is "processed" by printing it, then committed synchronously,
//! so a crash redelivers at most the one record per partition printed but
//! not yet committed. Lines on stdout:
//!
//! ```text
//! ASSIGNMENT <p,p,...>        the full assignment after every rebalance
//! RECORD <partition> <offset> <key>
//! COMMITTED <partition> <next offset>
//! ERROR <message>             a consumer error (fatal ones end in "fenced" etc.)
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::ClientContext;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct PrintingContext;

impl ClientContext for PrintingContext {}

impl ConsumerContext for PrintingContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            println!("REBALANCE_ERROR {e}");
            return;
        }
        let mut partitions: Vec<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        partitions.sort();
        let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
        println!("ASSIGNMENT {}", list.join(","));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: tideline-group-member BOOTSTRAP TOPIC GROUP [key=value ...]");
        std::process::exit(2);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args[0])
        .set("group.id", &args[2])
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("allow.auto.create.topics", "false");
    for kv in &args[3..] {
        let (k, v) = kv.split_once('=').expect("extra arguments are key=value");
        config.set(k, v);
    }
    let consumer: BaseConsumer<PrintingContext> = config
        .create_with_context(PrintingContext)
        .expect("create consumer");
    consumer.subscribe(&[&args[1]]).expect("subscribe");
    let auto_commit = config.get("enable.auto.commit") == Some("true");
    while !STOP.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => println!("ERROR {e}"),
            Some(Ok(m)) => {
                let key = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                println!("RECORD {} {} {key}", m.partition(), m.offset());
                if !auto_commit {
                    match consumer.commit_message(&m, CommitMode::Sync) {
                        Ok(()) => println!("COMMITTED {} {}", m.partition(), m.offset() + 1),
                        Err(e) => eprintln!("commit failed: {e}"),
                    }
                }
            }
        }
    }
    // Dropping the consumer closes it: it leaves the group (unless static).
    drop(consumer);
    println!("CLOSED");
}
