//! `tideline topic produce`: one record per line (or per `--delimiter`) of
//! stdin, sent with librdkafka so batching, compression, acks and retries
//! behave as in every librdkafka producer (and `-X` tunes them).

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::template::{decode, JsonRecord};
use crate::args::{Compression, Encoding, InputFormat, ProduceArgs};
use crate::error::{CliError, Result, EXIT_OK};
use crate::properties::split_pair;
use crate::Context;

/// Counts deliveries; keeps the first failure to report.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("not poisoned");
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// One record to send.
struct Outgoing {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

pub async fn run(context: &mut Context, args: ProduceArgs) -> Result<i32> {
    // A clear UNKNOWN_TOPIC_OR_PARTITION now, rather than librdkafka
    // retrying until its message timeout.
    context
        .admin()
        .await?
        .topics(std::slice::from_ref(&args.topic))
        .await?;

    let delimiter = unescape(&args.delimiter, "--delimiter")?;
    let key_delimiter = args
        .key_delimiter
        .as_deref()
        .map(|d| unescape(d, "--key-delimiter"))
        .transpose()?;
    let static_headers = args
        .headers
        .iter()
        .map(|h| split_pair(h, "-H").map(|(k, v)| (k, Some(v.into_bytes()))))
        .collect::<Result<Vec<_>>>()?;
    let acks = match args.acks.as_str() {
        "all" | "-1" => "all",
        "0" => "0",
        "1" => "1",
        other => {
            return Err(CliError::usage(
                format!("--acks {other}: expected 0, 1 or all"),
                "all waits for every in-sync replica",
            ))
        }
    };
    let compression = match args.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    };
    let config = context.options.rdkafka_config_with(&[
        ("acks", acks),
        ("compression.type", compression),
        // A CLI should not retry for librdkafka's default five minutes.
        ("message.timeout.ms", "30000"),
    ]);
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .map_err(|e| CliError::usage(format!("-X: {e}"), "check the -X properties"))?;

    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut bytes: u64 = 0;
    // Large reads: piping a file in costs fewer syscalls.
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let mut chunk = Vec::new();
    while next_record(&mut input, &delimiter, &mut chunk)? {
        let mut record = match args.input {
            InputFormat::Text => split_key(&chunk, key_delimiter.as_deref()),
            InputFormat::Json => {
                if chunk.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                from_json(&chunk, args.encoding)?
            }
        };
        record.headers.extend(static_headers.iter().cloned());
        if record.partition.is_none() {
            record.partition = args.partition;
        }
        bytes += record.value.as_ref().map_or(0, |v| v.len()) as u64
            + record.key.as_ref().map_or(0, |k| k.len()) as u64;
        send(&producer, &args.topic, &record, sent)?;
        sent += 1;
    }
    producer.flush(Duration::from_secs(60)).map_err(|e| {
        CliError::failed(
            format!("producing to {}: {e}", args.topic),
            "check `tideline cluster health`",
        )
    })?;
    let deliveries = producer.context();
    let failed = deliveries.failed.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {} of {sent} records ({bytes} bytes) to {} in {elapsed:.2} s",
        deliveries.delivered.load(Ordering::Relaxed),
        args.topic
    );
    if failed > 0 {
        let first = deliveries.first_error.lock().expect("not poisoned").clone();
        return Err(CliError::failed(
            format!(
                "producing to {}: {failed} records failed, the first with: {}",
                args.topic,
                first.unwrap_or_default()
            ),
            "check `tideline cluster health` and the topic's max.message.bytes",
        ));
    }
    Ok(EXIT_OK)
}

/// How many records are queued between two polls for delivery reports
/// (each poll reads the clock and takes the queue's lock).
const POLL_EVERY: u64 = 1024;

fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    record: &Outgoing,
    sent: u64,
) -> Result<()> {
    let headers = (!record.headers.is_empty()).then(|| {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        headers
    });
    loop {
        let mut base: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(topic);
        if let Some(headers) = &headers {
            base = base.headers(headers.clone());
        }
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(p) = record.partition {
            base = base.partition(p);
        }
        if let Some(ts) = record.timestamp {
            base = base.timestamp(ts);
        }
        match producer.send(base) {
            Ok(()) => {
                if sent.is_multiple_of(POLL_EVERY) {
                    producer.poll(Duration::ZERO);
                }
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // The local queue is full: serve deliveries, then retry.
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => {
                return Err(CliError::failed(
                    format!("producing to {topic}: {e}"),
                    "check the partition number and the record size",
                ))
            }
        }
    }
}

/// Reads the next record into `chunk`, without its delimiter. False at the
/// end of input.
fn next_record(input: &mut impl BufRead, delimiter: &[u8], chunk: &mut Vec<u8>) -> Result<bool> {
    chunk.clear();
    let read_error =
        |e: std::io::Error| CliError::failed(format!("reading stdin: {e}"), "check the input");
    if let [byte] = delimiter {
        let n = input.read_until(*byte, chunk).map_err(read_error)?;
        if n == 0 {
            return Ok(false);
        }
        if chunk.last() == Some(byte) {
            chunk.pop();
        }
        return Ok(true);
    }
    // A longer delimiter: read byte by byte from the buffer until it ends
    // the chunk.
    let mut any = false;
    let mut byte = [0u8];
    loop {
        if input.read(&mut byte).map_err(read_error)? == 0 {
            return Ok(any);
        }
        any = true;
        chunk.push(byte[0]);
        if chunk.ends_with(delimiter) {
            chunk.truncate(chunk.len() - delimiter.len());
            return Ok(true);
        }
    }
}

fn split_key(chunk: &[u8], key_delimiter: Option<&[u8]>) -> Outgoing {
    let (key, value) = match key_delimiter.and_then(|d| find(chunk, d).map(|at| (at, d.len()))) {
        Some((at, len)) => (Some(chunk[..at].to_vec()), chunk[at + len..].to_vec()),
        None => (None, chunk.to_vec()),
    };
    Outgoing {
        key,
        value: Some(value),
        headers: Vec::new(),
        partition: None,
        timestamp: None,
    }
}

fn from_json(line: &[u8], encoding: Encoding) -> Result<Outgoing> {
    let record: JsonRecord = serde_json::from_slice(line).map_err(|e| {
        CliError::usage(
            format!("--input json: {e}: {:.60}", String::from_utf8_lossy(line)),
            r#"each line must be an object like {"key":"k","value":"v","headers":[{"key":"h","value":"x"}]}"#,
        )
    })?;
    Ok(Outgoing {
        key: record
            .key
            .as_deref()
            .map(|k| decode(k, encoding))
            .transpose()?,
        value: record
            .value
            .as_deref()
            .map(|v| decode(v, encoding))
            .transpose()?,
        headers: record
            .headers
            .into_iter()
            .map(|h| {
                Ok((
                    h.key,
                    h.value
                        .as_deref()
                        .map(|v| decode(v, encoding))
                        .transpose()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?,
        partition: record.partition,
        timestamp: record.timestamp,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `\n`, `\t`, `\r`, `\0`, `\\` and `\xNN` in a delimiter, as kcat reads them.
pub fn unescape(text: &str, flag: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16).map_err(|_| {
                    CliError::usage(
                        format!("{flag} {text}: \\x needs two hex digits"),
                        "write a byte as \\x1f",
                    )
                })?;
                out.push(byte);
            }
            _ => {
                return Err(CliError::usage(
                    format!("{flag} {text}: unknown escape"),
                    "escapes are \\n \\t \\r \\0 \\\\ and \\xNN",
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(CliError::usage(
            format!("{flag} is empty"),
            "give at least one byte",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_at_the_delimiter_and_the_key_delimiter() {
        let mut input: &[u8] = b"k1:v1\nplain\nlast";
        let mut chunk = Vec::new();
        let mut records = Vec::new();
        while next_record(&mut input, b"\n", &mut chunk).unwrap() {
            let r = split_key(&chunk, Some(b":"));
            records.push((r.key, r.value.unwrap()));
        }
        assert_eq!(
            records,
            vec![
                (Some(b"k1".to_vec()), b"v1".to_vec()),
                (None, b"plain".to_vec()),
                (None, b"last".to_vec())
            ]
        );

        let mut input: &[u8] = b"a||b||";
        let mut parts = Vec::new();
        while next_record(&mut input, b"||", &mut chunk).unwrap() {
            parts.push(chunk.clone());
        }
        assert_eq!(parts, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn delimiters_take_kcat_escapes() {
        assert_eq!(unescape("\\n", "-D").unwrap(), b"\n");
        assert_eq!(unescape("\\x00;", "-D").unwrap(), b"\x00;");
        assert!(unescape("\\q", "-D").is_err());
        assert!(unescape("\\xZZ", "-D").is_err());
    }
}
