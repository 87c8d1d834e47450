//! `tideline topic consume`: records to stdout, from chosen offsets or as a
//! member of a group, until the end of the partitions (or `--num`, or
//! forever with `--follow`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::template::{Printer, RecordView};
use crate::admin::metadata::TopicInfo;
use crate::admin::offsets::{leaders, TopicPartition, EARLIEST, LATEST};
use crate::admin::Admin;
use crate::args::ConsumeArgs;
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::progress;
use crate::Context;

/// Where consumption starts, as `--offset` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    At(i64),
    /// N records before the end.
    Tail(i64),
    Timestamp(i64),
}

pub fn parse_start(text: &str) -> Result<Start> {
    let bad = || {
        CliError::usage(
            format!("--offset {text}: expected earliest, latest, N, -N or @TIMESTAMP_MS"),
            "for example --offset earliest, --offset 1000, --offset -10 or --offset @1700000000000",
        )
    };
    Ok(match text {
        "earliest" | "beginning" | "oldest" => Start::Earliest,
        "latest" | "end" | "newest" => Start::Latest,
        t if t.starts_with('@') => Start::Timestamp(t[1..].parse().map_err(|_| bad())?),
        t if t.starts_with('-') => Start::Tail(t[1..].parse().map_err(|_| bad())?),
        t => Start::At(t.parse().map_err(|_| bad())?),
    })
}

pub async fn run(context: &mut Context, args: ConsumeArgs) -> Result<i32> {
    let printer = Printer::new(&context.format, args.encoding)?;
    let start = args.offset.as_deref().map(parse_start).transpose()?;
    let topic = context
        .admin()
        .await?
        .topics(std::slice::from_ref(&args.topic))
        .await?
        .remove(0);
    let partitions: Vec<i32> = match args.partition {
        Some(p) if !topic.partitions.iter().any(|tp| tp.partition == p) => {
            return Err(CliError::usage(
                format!("topic {} has no partition {p}", args.topic),
                format!("its partitions are 0..{}", topic.partitions.len()),
            ))
        }
        Some(p) => vec![p],
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };

    // Without a group, the start of each partition is resolved here, with
    // the leaders known from the metadata answer: left to librdkafka, a
    // logical offset costs a separate lookup before the first fetch.
    let starts = match args.group {
        None => {
            let admin = context.admin().await?;
            start_offsets(admin, &topic, &partitions, start.unwrap_or(Start::Earliest)).await?
        }
        Some(_) => BTreeMap::new(),
    };
    let reset = match (&args.group, start) {
        (Some(_), Some(Start::Latest)) => "latest",
        (Some(_), None | Some(Start::Earliest)) => "earliest",
        (Some(_), Some(_)) => {
            return Err(CliError::usage(
                "with --group, --offset only says where a group without committed offsets starts",
                "use --offset earliest or latest with --group, or move the group with `tideline group seek`",
            ))
        }
        (None, _) => "earliest",
    };
    let auto_commit = if args.group.is_some() {
        "true"
    } else {
        "false"
    };
    let mut config = context.options.rdkafka_config_with(&[
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", reset),
        // Offsets are stored after a record is printed, and committed then.
        ("enable.auto.offset.store", "false"),
        ("enable.auto.commit", auto_commit),
        // librdkafka (2.4+) waits fetch.queue.backoff.ms, 1 s by default,
        // before fetching again once queued.min.messages are buffered: a
        // pause a second long whenever stdout falls behind. A CLI that
        // streams to stdout wants the next fetch as soon as there is room.
        ("fetch.queue.backoff.ms", "10"),
    ]);
    // librdkafka's consumer needs a group id even to read assigned
    // partitions; without --group nothing is committed under it.
    config.set("group.id", args.group.as_deref().unwrap_or("tideline-cli"));
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| CliError::usage(format!("-X: {e}"), "check the -X properties"))?;
    let kafka_error = |e: KafkaError| {
        CliError::failed(
            format!("consuming {}: {e}", args.topic),
            "check `tideline cluster health` and the topic's partitions",
        )
    };

    if args.group.is_some() {
        consumer.subscribe(&[&args.topic]).map_err(kafka_error)?;
    } else {
        let mut assignment = TopicPartitionList::new();
        for (p, offset) in starts {
            assignment
                .add_partition_offset(&args.topic, p, Offset::Offset(offset))
                .map_err(kafka_error)?;
        }
        consumer.assign(&assignment).map_err(kafka_error)?;
    }

    let mut stdout = std::io::stdout().lock();
    let show_progress = !stdout.is_terminal() && std::io::stderr().is_terminal();
    let mut buffer = Vec::with_capacity(1 << 16);
    let mut printed: u64 = 0;
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut last_progress = Instant::now();
    let limit = args.num.unwrap_or(u64::MAX);
    let mut closed = false;
    while printed < limit {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            closed |= flush(&mut stdout, &mut buffer);
            if !args.follow && reached_end(&consumer, &at_end, args.group.is_some(), &partitions) {
                break;
            }
            continue;
        };
        match result {
            Ok(message) => {
                at_end.remove(&message.partition());
                let headers = message
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
                    .unwrap_or_default();
                printer.write(
                    &RecordView {
                        topic: message.topic(),
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp: message.timestamp().to_millis().unwrap_or(-1),
                        key: message.key(),
                        value: message.payload(),
                        headers,
                    },
                    &mut buffer,
                );
                printed += 1;
                if args.group.is_some() {
                    consumer
                        .store_offset_from_message(&message)
                        .map_err(kafka_error)?;
                }
                if buffer.len() >= 1 << 16 {
                    closed |= flush(&mut stdout, &mut buffer);
                }
            }
            Err(KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                if !args.follow
                    && reached_end(&consumer, &at_end, args.group.is_some(), &partitions)
                {
                    break;
                }
            }
            Err(e) => return Err(kafka_error(e)),
        }
        if closed {
            break;
        }
        if show_progress && last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&format!("consumed {printed} records"));
            last_progress = Instant::now();
        }
    }
    flush(&mut stdout, &mut buffer);
    if show_progress {
        progress(&format!("consumed {printed} records"));
    }
    if args.group.is_some() && printed > 0 {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            // The periodic commit already took everything printed.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) | Ok(()) => {}
            Err(e) => return Err(kafka_error(e)),
        }
    }
    Ok(EXIT_OK)
}

/// The first offset to read in each of `partitions` of `topic`.
async fn start_offsets(
    admin: &mut Admin,
    topic: &TopicInfo,
    partitions: &[i32],
    start: Start,
) -> Result<BTreeMap<i32, i64>> {
    let wanted: Vec<(TopicPartition, i32)> = leaders(std::slice::from_ref(topic))
        .into_iter()
        .filter(|((_, p), _)| partitions.contains(p))
        .collect();
    let by_partition = |offsets: BTreeMap<TopicPartition, i64>| -> BTreeMap<i32, i64> {
        offsets.into_iter().map(|((_, p), o)| (p, o)).collect()
    };
    Ok(match start {
        Start::At(offset) => partitions.iter().map(|&p| (p, offset)).collect(),
        Start::Earliest => by_partition(admin.list_offsets(&wanted, EARLIEST).await?),
        Start::Latest => by_partition(admin.list_offsets(&wanted, LATEST).await?),
        Start::Tail(n) => {
            let earliest = by_partition(admin.list_offsets(&wanted, EARLIEST).await?);
            let latest = by_partition(admin.list_offsets(&wanted, LATEST).await?);
            latest
                .into_iter()
                .map(|(p, end)| (p, (end - n).max(earliest.get(&p).copied().unwrap_or(0))))
                .collect()
        }
        Start::Timestamp(ts) => {
            let latest = by_partition(admin.list_offsets(&wanted, LATEST).await?);
            // A timestamp after the last record gives -1: the end.
            by_partition(admin.list_offsets(&wanted, ts).await?)
                .into_iter()
                .map(|(p, o)| (p, if o < 0 { latest[&p] } else { o }))
                .collect()
        }
    })
}

/// Whether every partition being read has reported its end since its last
/// record. A group member checks its current assignment, which is empty
/// until the group has assigned it partitions.
fn reached_end(
    consumer: &BaseConsumer,
    at_end: &BTreeSet<i32>,
    group: bool,
    assigned: &[i32],
) -> bool {
    if group {
        let Ok(assignment) = consumer.assignment() else {
            return false;
        };
        let elements = assignment.elements();
        !elements.is_empty() && elements.iter().all(|e| at_end.contains(&e.partition()))
    } else {
        assigned.iter().all(|p| at_end.contains(p))
    }
}

/// Writes what is buffered; true when stdout is closed (`| head`), which
/// ends consumption quietly.
fn flush(stdout: &mut impl Write, buffer: &mut Vec<u8>) -> bool {
    if buffer.is_empty() {
        return false;
    }
    let closed = stdout
        .write_all(buffer)
        .and_then(|_| stdout.flush())
        .is_err();
    buffer.clear();
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_kcat_and_rpk_write_them() {
        assert_eq!(parse_start("earliest").unwrap(), Start::Earliest);
        assert_eq!(parse_start("latest").unwrap(), Start::Latest);
        assert_eq!(parse_start("42").unwrap(), Start::At(42));
        assert_eq!(parse_start("-10").unwrap(), Start::Tail(10));
        assert_eq!(
            parse_start("@1700000000000").unwrap(),
            Start::Timestamp(1700000000000)
        );
        assert!(parse_start("soon").is_err());
        assert!(parse_start("@x").is_err());
    }
}
