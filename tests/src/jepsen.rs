//! A Jepsen-style workload and checker for acknowledged writes.
//!
//! Several librdkafka producers (`acks=all`, idempotence on) each write
//! unique values `w<producer>-<sequence>` round-robin over the partitions
//! while a test injects faults. Every delivery report is kept: a value is
//! *acknowledged* when the broker confirmed it, *indeterminate* when the
//! client gave up on it (it may or may not have been written).
//!
//! The checker then reads every partition from its start to its high
//! watermark and reports:
//! - **lost**: acknowledged but absent;
//! - **duplicated**: present more than once (reported with the partition
//!   and offsets it was read at, to tell a stored duplicate from a
//!   re-read);
//! - **reordered**: a producer's values out of sequence order within a
//!   partition (the idempotent producer keeps per-partition order).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::Offset;

use crate::clients::{consume_range, consumer_config, reliable_producer_config, watermarks};
use crate::{TestProducer, TestRecord};

/// What one producer sent and how each send ended.
struct ProducerHistory {
    values: Vec<(String, i32)>,
    producer: TestProducer,
}

/// The running workload.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<ProducerHistory>>,
}

/// Everything the producers learned.
#[derive(Debug, Default)]
pub struct History {
    /// Value → partition, for every acknowledged value.
    pub acknowledged: BTreeMap<String, i32>,
    /// Values the client gave up on (timed out or failed): may be present.
    pub indeterminate: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub acknowledged: usize,
    pub indeterminate: usize,
    pub read: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub reordered: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acknowledged {}, indeterminate {}, read {}, lost {}, duplicated {}, reordered {}",
            self.acknowledged,
            self.indeterminate,
            self.read,
            self.lost.len(),
            self.duplicated.len(),
            self.reordered.len()
        )?;
        // The first few of each anomaly, so a failure says where to look.
        for (kind, list) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("reordered", &self.reordered),
        ] {
            if !list.is_empty() {
                let shown = &list[..list.len().min(5)];
                write!(f, "; {kind}: {}", shown.join(", "))?;
            }
        }
        Ok(())
    }
}

impl Workload {
    /// Starts `producers` producer threads writing to `partitions`
    /// partitions of `topic` through `bootstrap`.
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, producers: usize) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..producers)
            .map(|id| {
                let stop = stop.clone();
                let bootstrap = bootstrap.to_string();
                let topic = topic.to_string();
                std::thread::spawn(move || produce(id, &bootstrap, &topic, partitions, &stop))
            })
            .collect();
        Workload { stop, threads }
    }

    /// Stops producing, waits for every outstanding delivery report, and
    /// returns the history.
    pub fn stop(self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        let mut history = History::default();
        for thread in self.threads {
            let h = thread.join().expect("producer thread");
            for (i, outcome) in h.producer.outcomes().into_iter().enumerate() {
                let (value, partition) = &h.values[i];
                match outcome {
                    Some(Ok(delivered)) => {
                        assert_eq!(delivered.partition, *partition);
                        history.acknowledged.insert(value.clone(), *partition);
                    }
                    _ => history.indeterminate += 1,
                }
            }
        }
        history
    }
}

fn produce(
    id: usize,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    stop: &AtomicBool,
) -> ProducerHistory {
    let mut config = reliable_producer_config(bootstrap);
    config
        .set("message.timeout.ms", "30000")
        .set("request.timeout.ms", "5000");
    let producer = TestProducer::new(&config);
    let mut values = Vec::new();
    let mut sequence = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let partition = (sequence % partitions as u64) as i32;
        let value = format!("w{id}-{sequence:08}");
        producer.send(topic, Some(partition), &TestRecord::value(value.clone()));
        values.push((value, partition));
        sequence += 1;
        // Bound the backlog while the cluster is unavailable.
        while producer.outstanding() > 2000 && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    producer.flush(Duration::from_secs(60));
    ProducerHistory { values, producer }
}

/// (producer, sequence) of a workload value `w<producer>-<sequence>`.
fn parse_value(value: &str) -> Option<(&str, u64)> {
    let (producer, sequence) = value.split_once('-')?;
    if !producer.starts_with('w') {
        return None;
    }
    Some((producer, sequence.parse().ok()?))
}

/// Reads every partition of `topic` and compares it with `history`.
pub fn check(bootstrap: &str, topic: &str, partitions: i32, history: &History) -> Report {
    let ends: Vec<(i32, i64)> = (0..partitions)
        .map(|p| (p, watermarks(bootstrap, topic, p).1))
        .collect();
    let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    let consumed = consume_range(
        &consumer_config(bootstrap),
        topic,
        &starts,
        &ends,
        Duration::from_secs(180),
    );
    let mut report = Report {
        acknowledged: history.acknowledged.len(),
        indeterminate: history.indeterminate,
        ..Report::default()
    };
    // Value → where it was read (partition, offset).
    let mut seen: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    for (partition, records) in &consumed {
        // Producer → last sequence seen in this partition.
        let mut last: HashMap<String, u64> = HashMap::new();
        for r in records {
            report.read += 1;
            let value = String::from_utf8(r.value.clone().unwrap_or_default()).unwrap_or_default();
            // Other records in the topic (written before the workload) are
            // not the workload's business.
            let Some((producer, sequence)) = parse_value(&value) else {
                continue;
            };
            seen.entry(value.clone())
                .or_default()
                .push((*partition, r.offset));
            if let Some(previous) = last.insert(producer.to_string(), sequence) {
                if sequence <= previous {
                    report.reordered.push(format!(
                        "{value} after sequence {previous} in partition {partition}"
                    ));
                }
            }
        }
    }
    for (value, places) in &seen {
        if places.len() > 1 {
            report
                .duplicated
                .push(format!("{value} at (partition, offset) {places:?}"));
        }
    }
    for value in history.acknowledged.keys() {
        if !seen.contains_key(value) {
            report.lost.push(value.clone());
        }
    }
    report
}
