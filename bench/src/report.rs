//! Results: what a run measured, and its rendering as the human-readable
//! report (stdout), the optional JSON line, and the once-a-second progress
//! line (stderr).
//!
//! Everything printed here is derived from counters and histograms filled in
//! during the run; nothing is estimated.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::args::{Acks, Args, Mode};
use crate::committer::CommitReport;
use crate::consumer::ConsumeStats;
use crate::producer::ProduceStats;
use crate::reassign::ReassignReport;
use crate::rss::RssReport;

pub struct ProduceReport {
    pub sent: u64,
    pub acked: u64,
    pub acked_bytes: u64,
    pub errors: u64,
    pub unacked: u64,
    /// From the start of sending until the last message was handed to
    /// librdkafka.
    pub sending: Duration,
    /// From the start of sending until the last producer's flush returned;
    /// throughput figures are over this span.
    pub elapsed: Duration,
    pub ack_latency_us: Histogram<u64>,
    pub first_errors: Vec<String>,
}

pub struct ConsumeReport {
    pub consumed: u64,
    pub bytes: u64,
    /// Messages that should have been read (acked in produce mode; present
    /// in the topic at start-up in consume mode).
    pub expected: u64,
    /// Whether every partition was read up to its target end offset.
    pub caught_up: bool,
    /// From the start of the phase to the last message received.
    pub window: Option<Duration>,
    pub e2e_latency_us: Option<Histogram<u64>>,
    pub errors: u64,
    pub first_errors: Vec<String>,
}

#[derive(Default)]
pub struct Report {
    pub partitions: i32,
    pub produce: Option<ProduceReport>,
    pub consume: Option<ConsumeReport>,
    pub commit: Option<CommitReport>,
    pub reassign: Option<ReassignReport>,
    pub rss: Option<RssReport>,
}

const MB: f64 = 1_000_000.0;

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".to_string();
    }
    format!(
        "p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} (mean {:.3}, {} samples)",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.mean() / 1_000.0,
        h.len()
    )
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "samples": h.len(),
        "mean_ms": h.mean() / 1_000.0,
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p99_9_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report {
    pub fn print_text(&self, args: &Args) {
        println!("tideline-bench {}", env!("CARGO_PKG_VERSION"));
        println!(
            "config: mode {} | bootstrap {} | topic {} ({} partitions)",
            args.mode.as_str(),
            args.bootstrap,
            args.topic,
            self.partitions
        );
        match args.group_id() {
            Some(g) => println!("        {} consumers in group {g}", args.consumers),
            None => println!("        {} consumers, manual assignment", args.consumers),
        }
        if args.mode == Mode::Produce {
            let amount = match args.duration {
                Some(d) => format!("for {d} s"),
                None => format!("{} messages", args.messages),
            };
            let rate = if args.rate > 0.0 {
                format!("target {} msg/s", args.rate)
            } else {
                "unthrottled".to_string()
            };
            println!(
                "        {} producers, {amount}, {rate}, {} B messages, keys {}",
                args.producers,
                args.message_size,
                if args.no_keys { "off" } else { "on" }
            );
            println!(
                "        acks {}, compression {}, linger.ms {}, batch.size {}",
                args.acks.as_str(),
                args.compression.as_str(),
                args.linger_ms,
                args.batch_size
            );
        }

        if let Some(p) = &self.produce {
            println!(
                "produce: {:.0} msg/s, {:.2} MB/s ({} acked of {} sent; sending took {:.2} s, \
                 all acks in after {:.2} s; {} errors{})",
                per_sec(p.acked, p.elapsed),
                per_sec(p.acked_bytes, p.elapsed) / MB,
                p.acked,
                p.sent,
                p.sending.as_secs_f64(),
                p.elapsed.as_secs_f64(),
                p.errors,
                if p.unacked > 0 {
                    format!(", {} never acknowledged", p.unacked)
                } else {
                    String::new()
                }
            );
            if args.rate > 0.0 {
                println!(
                    "send rate: {:.0} msg/s offered (target {})",
                    per_sec(p.sent, p.sending),
                    args.rate
                );
            }
            let note = if args.acks == Acks::Zero {
                " (acks=0: until librdkafka has written the request)"
            } else {
                ""
            };
            println!("ack latency ms{note}: {}", latency_line(&p.ack_latency_us));
            for e in &p.first_errors {
                println!("  produce error: {e}");
            }
        }
        if let Some(c) = &self.consume {
            if let Some(h) = &c.e2e_latency_us {
                println!("end-to-end latency ms: {}", latency_line(h));
            }
            let window = c.window.unwrap_or_default();
            println!(
                "consume: {:.0} msg/s, {:.2} MB/s ({} messages in {:.2} s, start to last receive)",
                per_sec(c.consumed, window),
                per_sec(c.bytes, window) / MB,
                c.consumed,
                window.as_secs_f64()
            );
            if !c.caught_up {
                println!(
                    "consume shortfall: {} of {} expected messages not received before the drain timeout ({} s)",
                    c.expected.saturating_sub(c.consumed),
                    c.expected,
                    args.drain_timeout
                );
            }
            if c.errors > 0 {
                println!("consume errors: {}", c.errors);
            }
            for e in &c.first_errors {
                println!("  consume error: {e}");
            }
        }
        if let Some(c) = &self.commit {
            println!(
                "commit: {:.0} commits/s, {:.0} offsets/s ({} commits of {} partitions in {:.2} s; {} errors)",
                per_sec(c.commits, c.elapsed),
                per_sec(c.records, c.elapsed),
                c.commits,
                self.partitions,
                c.elapsed.as_secs_f64(),
                c.errors
            );
            println!("commit latency ms: {}", latency_line(&c.latency_us));
            for e in &c.first_errors {
                println!("  commit error: {e}");
            }
        }
        if let Some(r) = &self.reassign {
            println!(
                "reassign: {} partition(s) moved to {:?} in {:.2} s (throttle: {})",
                r.partitions,
                r.target,
                r.elapsed.as_secs_f64(),
                r.throttle
                    .map_or("none".to_string(), |t| format!("{t} bytes/s per broker"))
            );
        }
        if let Some(r) = &self.rss {
            println!(
                "broker RSS MiB (pid {}): idle {:.1}, peak {:.1} (sampled 1/s), final {:.1}, VmHWM {:.1}",
                r.pid,
                mib(r.idle_kib),
                mib(r.peak_kib),
                mib(r.final_kib),
                mib(r.hwm_kib)
            );
        }
    }

    pub fn to_json(&self, args: &Args) -> Value {
        let produce = self.produce.as_ref().map(|p| {
            json!({
                "sent": p.sent,
                "acked": p.acked,
                "errors": p.errors,
                "unacked": p.unacked,
                "sending_s": p.sending.as_secs_f64(),
                "elapsed_s": p.elapsed.as_secs_f64(),
                "offered_msgs_per_sec": per_sec(p.sent, p.sending),
                "msgs_per_sec": per_sec(p.acked, p.elapsed),
                "mb_per_sec": per_sec(p.acked_bytes, p.elapsed) / MB,
                "ack_latency": latency_json(&p.ack_latency_us),
                "first_errors": p.first_errors,
            })
        });
        let consume = self.consume.as_ref().map(|c| {
            let window = c.window.unwrap_or_default();
            json!({
                "consumed": c.consumed,
                "expected": c.expected,
                "caught_up": c.caught_up,
                "window_s": window.as_secs_f64(),
                "msgs_per_sec": per_sec(c.consumed, window),
                "mb_per_sec": per_sec(c.bytes, window) / MB,
                "e2e_latency": c.e2e_latency_us.as_ref().map(latency_json),
                "errors": c.errors,
                "first_errors": c.first_errors,
            })
        });
        let commit = self.commit.as_ref().map(|c| {
            json!({
                "commits": c.commits,
                "offsets": c.records,
                "errors": c.errors,
                "elapsed_s": c.elapsed.as_secs_f64(),
                "commits_per_sec": per_sec(c.commits, c.elapsed),
                "latency": latency_json(&c.latency_us),
                "first_errors": c.first_errors,
            })
        });
        let reassign = self.reassign.as_ref().map(|r| {
            json!({
                "target": r.target,
                "partitions": r.partitions,
                "throttle_bytes_per_sec": r.throttle,
                "elapsed_s": r.elapsed.as_secs_f64(),
            })
        });
        let rss = self.rss.map(|r| {
            json!({
                "pid": r.pid,
                "idle_mib": mib(r.idle_kib),
                "peak_mib": mib(r.peak_kib),
                "final_mib": mib(r.final_kib),
                "hwm_mib": mib(r.hwm_kib),
                "samples": r.samples,
            })
        });
        json!({
            "config": {
                "mode": args.mode.as_str(),
                "bootstrap": args.bootstrap,
                "topic": args.topic,
                "partitions": self.partitions,
                "message_size": args.message_size,
                "acks": args.acks.as_str(),
                "compression": args.compression.as_str(),
                "producers": args.producers,
                "messages": if args.duration.is_some() { None } else { Some(args.messages) },
                "duration_s": args.duration,
                "rate": args.rate,
                "consumers": args.consumers,
                "group": args.group_id(),
                "linger_ms": args.linger_ms,
                "batch_size": args.batch_size,
                "keys": !args.no_keys,
            },
            "produce": produce,
            "consume": consume,
            "commit": commit,
            "reassign": reassign,
            "broker_rss": rss,
        })
    }
}

/// Once-a-second progress line on stderr; rewritten in place on a terminal.
pub struct Progress {
    start: Instant,
    tty: bool,
    last_tick: Instant,
    last_acked: u64,
    last_acked_bytes: u64,
    last_consumed: u64,
    printed: bool,
}

impl Progress {
    pub fn new(start: Instant) -> Self {
        Progress {
            start,
            tty: std::io::stderr().is_terminal(),
            last_tick: start,
            last_acked: 0,
            last_acked_bytes: 0,
            last_consumed: 0,
            printed: false,
        }
    }

    /// Prints a line if a second has passed since the previous one.
    pub fn tick(&mut self, produce: Option<&ProduceStats>, consume: Option<&ConsumeStats>) {
        let now = Instant::now();
        let interval = now - self.last_tick;
        if interval < Duration::from_secs(1) {
            return;
        }
        self.last_tick = now;

        let mut line = format!("[{:>6.1}s]", (now - self.start).as_secs_f64());
        let mut errors = 0;
        if let Some(p) = produce {
            let acked = p.acked.load(Ordering::Relaxed);
            let bytes = p.acked_bytes.load(Ordering::Relaxed);
            errors += p.errors.load(Ordering::Relaxed);
            line += &format!(
                " produce {:>9.0} msg/s {:>8.2} MB/s | acked {:>11}",
                per_sec(acked - self.last_acked, interval),
                per_sec(bytes - self.last_acked_bytes, interval) / MB,
                acked
            );
            self.last_acked = acked;
            self.last_acked_bytes = bytes;
        }
        if let Some(c) = consume {
            let consumed = c.consumed.load(Ordering::Relaxed);
            errors += c.errors.load(Ordering::Relaxed);
            line += &format!(
                " | consume {:>9.0} msg/s | consumed {:>11}",
                per_sec(consumed - self.last_consumed, interval),
                consumed
            );
            self.last_consumed = consumed;
        }
        line += &format!(" | errors {errors}");

        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let _ = write!(stderr, "\r{line}\x1b[K");
            let _ = stderr.flush();
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        self.printed = true;
    }

    /// Ends the in-place line so the report starts on a fresh one.
    pub fn finish(&self) {
        if self.tty && self.printed {
            eprintln!();
        }
    }
}
