//! A consume-transform-produce process for the exactly-once checker (see
//! `tideline_tests::eos`): it copies every record of an input topic to the
//! same partition of an output topic, `PER_TXN` records per transaction,
//! committing the consumed offsets inside the transaction
//! (`send_offsets_to_transaction`). A seeded share of transactions is
//! aborted on purpose and redone. A test SIGKILLs it at any moment and
//! starts it again: the new instance fences the old one and resumes from
//! the group's committed offsets.
//!
//! ```text
//! tideline-eos-copier BOOTSTRAP INPUT OUTPUT GROUP TXN_ID PER_TXN ABORT_PERCENT SEED
//!                     [--plain] [--crash-after N]
//! ```
//! `--plain` copies without a transaction (produce, then commit the
//! offsets): the checker must catch the duplicates that leaves after a
//! crash. `--crash-after N` exits without committing after producing the
//! Nth batch, a deterministic crash between the two steps.
//!
//! Each output value is `<input value>|<tag>`, the tag naming the instance
//! and batch that wrote it. Lines on stdout:
//!
//! ```text
//! READY
//! COMMITTED <tag> <records>
//! ABORTED <tag> <records>    aborted on purpose: these records must never be visible
//! DONE                       every input record is committed
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    bootstrap: String,
    input: String,
    output: String,
    group: String,
    txn_id: String,
    per_txn: usize,
    abort_percent: u64,
    seed: u64,
    plain: bool,
    crash_after: Option<usize>,
}

fn parse() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 8 {
        eprintln!("usage: tideline-eos-copier BOOTSTRAP INPUT OUTPUT GROUP TXN_ID PER_TXN ABORT_PERCENT SEED [--plain] [--crash-after N]");
        std::process::exit(2);
    }
    let crash_after = args
        .iter()
        .position(|a| a == "--crash-after")
        .map(|i| args[i + 1].parse().expect("--crash-after N"));
    Args {
        bootstrap: args[0].clone(),
        input: args[1].clone(),
        output: args[2].clone(),
        group: args[3].clone(),
        txn_id: args[4].clone(),
        per_txn: args[5].parse().expect("PER_TXN"),
        abort_percent: args[6].parse().expect("ABORT_PERCENT"),
        seed: args[7].parse().expect("SEED"),
        plain: args.iter().any(|a| a == "--plain"),
        crash_after,
    }
}

/// A small deterministic generator (so a run can be repeated).
struct Rng(u64);

impl Rng {
    fn percent(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % 100
    }
}

fn main() {
    let a = parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("group.id", &a.group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &a.bootstrap)
        .set("linger.ms", "1")
        .set("enable.idempotence", "true");
    if !a.plain {
        producer_config
            .set("transactional.id", &a.txn_id)
            .set("transaction.timeout.ms", "20000");
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config.create().expect("producer");
    if !a.plain {
        producer
            .init_transactions(TIMEOUT)
            .expect("init_transactions");
    }

    // Every input partition, from the group's committed offsets.
    let metadata = consumer
        .fetch_metadata(Some(&a.input), TIMEOUT)
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut wanted = TopicPartitionList::new();
    for p in &partitions {
        wanted.add_partition(&a.input, *p);
    }
    let committed = consumer
        .committed_offsets(wanted, TIMEOUT)
        .expect("committed offsets");
    let mut assignment = TopicPartitionList::new();
    // The next offset to copy per partition, followed here: librdkafka's
    // position is unknown for a partition nothing was read from yet.
    let mut next_to_copy: BTreeMap<i32, i64> = BTreeMap::new();
    for p in &partitions {
        let start = match committed.find_partition(&a.input, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        next_to_copy.insert(*p, if let Offset::Offset(o) = start { o } else { 0 });
        assignment
            .add_partition_offset(&a.input, *p, start)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    println!("READY");

    let instance = std::process::id();
    let mut rng = Rng(a.seed ^ instance as u64);
    let mut batch_number = 0usize;
    let mut idle_since = Instant::now();
    loop {
        // One batch: up to PER_TXN records, whatever arrives within a moment.
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        while records.len() < a.per_txn && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => records.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                )),
                Some(Err(e)) => eprintln!("consumer error: {e}"),
                None => {}
            }
        }
        if records.is_empty() {
            if caught_up(&consumer, &a.input, &next_to_copy)
                && idle_since.elapsed() > Duration::from_secs(1)
            {
                println!("DONE");
                return;
            }
            continue;
        }
        idle_since = Instant::now();
        for (p, offset, _, _) in &records {
            next_to_copy.insert(*p, offset + 1);
        }
        batch_number += 1;
        let tag = format!("{instance}-{batch_number}");
        // Where each partition's batch starts and where it ends.
        let mut first: BTreeMap<i32, i64> = BTreeMap::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, offset, _, _) in &records {
            first.entry(*p).or_insert(*offset);
            next.insert(*p, offset + 1);
        }
        if !a.plain {
            producer.begin_transaction().expect("begin_transaction");
        }
        for (p, _, key, value) in &records {
            let mut out = value.clone();
            out.extend_from_slice(format!("|{tag}").as_bytes());
            let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to(&a.output)
                .partition(*p)
                .payload(&out);
            if let Some(k) = key {
                record = record.key(k);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("send: {e}"),
                }
            }
        }
        if a.crash_after == Some(batch_number) {
            producer.flush(TIMEOUT).expect("flush");
            eprintln!("crashing after batch {batch_number} as asked");
            std::process::exit(1);
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in &next {
            offsets
                .add_partition_offset(&a.input, *p, Offset::Offset(*o))
                .unwrap();
        }
        if a.plain {
            producer.flush(TIMEOUT).expect("flush");
            consumer
                .commit(&offsets, CommitMode::Sync)
                .expect("commit offsets");
            println!("COMMITTED {tag} {}", records.len());
            continue;
        }
        let abort = rng.percent() < a.abort_percent;
        let outcome = if abort {
            // Written first, so the aborted records are in the log for
            // read_committed to hide (librdkafka drops unsent ones on abort).
            producer.flush(TIMEOUT).expect("flush");
            Err(None)
        } else {
            finish(&producer, &consumer, &offsets)
        };
        match outcome {
            Ok(()) => println!("COMMITTED {tag} {}", records.len()),
            Err(reason) => {
                if let Some(e) = reason {
                    eprintln!("transaction {tag} failed, aborting: {e}");
                }
                producer
                    .abort_transaction(TIMEOUT)
                    .expect("abort_transaction");
                if abort {
                    println!("ABORTED {tag} {}", records.len());
                }
                // Read the batch again.
                for (p, o) in &first {
                    consumer
                        .seek(&a.input, *p, Offset::Offset(*o), TIMEOUT)
                        .expect("seek back");
                    next_to_copy.insert(*p, *o);
                }
            }
        }
    }
}

/// Sends the offsets to the transaction and commits it; a failure that
/// needs an abort comes back as `Err`, a fatal one ends the process (the
/// test starts a new instance, as an orchestrator would).
fn finish(
    producer: &ThreadedProducer<DefaultProducerContext>,
    consumer: &BaseConsumer,
    offsets: &TopicPartitionList,
) -> Result<(), Option<KafkaError>> {
    let metadata = consumer.group_metadata().expect("group metadata");
    let step = producer
        .send_offsets_to_transaction(offsets, &metadata, TIMEOUT)
        .and_then(|()| producer.commit_transaction(TIMEOUT));
    match step {
        Ok(()) => Ok(()),
        Err(KafkaError::Transaction(e)) if e.is_fatal() => {
            eprintln!("fatal transaction error: {e}");
            std::process::exit(3);
        }
        Err(e) => Err(Some(e)),
    }
}

/// Every partition's next offset to copy is at its end.
fn caught_up(consumer: &BaseConsumer, topic: &str, next_to_copy: &BTreeMap<i32, i64>) -> bool {
    next_to_copy.iter().all(|(p, next)| {
        match consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
            Ok((_, high)) => *next >= high,
            Err(_) => false,
        }
    })
}
