//! `tideline topic consume`: records to stdout, from chosen offsets or as a
//! member of a group, until the end of the partitions (or `--num`, or
//! forever with `--follow`).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::template::{Printer, RecordView};
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
    let group_id = args
        .group
        .clone()
        .unwrap_or_else(|| "tideline-cli".to_string());
    let config = context.options.rdkafka_config_with(&[
        ("group.id", &group_id),
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", reset),
        // Offsets are stored after a record is printed, and committed then.
        ("enable.auto.offset.store", "false"),
        (
            "enable.auto.commit",
            if args.group.is_some() {
                "true"
            } else {
                "false"
            },
        ),
    ]);
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
        let offset = match start.unwrap_or(Start::Earliest) {
            Start::Earliest => Offset::Beginning,
            Start::Latest => Offset::End,
            Start::At(o) => Offset::Offset(o),
            Start::Tail(n) => Offset::OffsetTail(n),
            Start::Timestamp(ts) => Offset::Offset(ts),
        };
        for &p in &partitions {
            assignment
                .add_partition_offset(&args.topic, p, offset)
                .map_err(kafka_error)?;
        }
        if let Some(Start::Timestamp(_)) = start {
            assignment = consumer
                .offsets_for_times(assignment, context.options.timeout)
                .map_err(kafka_error)?;
            // A timestamp after the last record gives no offset: the end.
            for mut element in assignment.elements() {
                if !matches!(element.offset(), Offset::Offset(_)) {
                    let _ = element.set_offset(Offset::End);
                }
            }
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
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .map_err(kafka_error)?;
    }
    Ok(EXIT_OK)
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
