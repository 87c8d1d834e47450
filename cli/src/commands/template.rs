//! How `topic consume` prints a record: kcat's `-f` templates
//! (`%t %p %o %k %s %T %h`, plus `%S`/`%K` lengths), one JSON object per
//! line, or one YAML document per record. With `--encoding base64` keys,
//! values and header values are base64, so any bytes survive JSON and a
//! `consume --format json | produce --input json` copy.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::args::Encoding;
use crate::error::{CliError, Result};
use crate::output::Format;

/// A consumed record, borrowed from the client's buffers.
pub struct RecordView<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// The JSON shape of a record, for output and for `produce --input json`.
#[derive(Serialize, Deserialize, Default)]
pub struct JsonRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub headers: Vec<JsonHeader>,
}

#[derive(Serialize, Deserialize)]
pub struct JsonHeader {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

pub fn encode(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Text => String::from_utf8_lossy(bytes).into_owned(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

pub fn decode(text: &str, encoding: Encoding) -> Result<Vec<u8>> {
    match encoding {
        Encoding::Text => Ok(text.as_bytes().to_vec()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| {
                CliError::usage(
                    format!("not base64 ({e}): {text:.40}"),
                    "drop --encoding base64 for plain text input",
                )
            }),
    }
}

pub enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    KeyLength,
    Value,
    ValueLength,
    Timestamp,
    Headers,
}

/// A compiled output format.
pub enum Printer {
    Template(Vec<Piece>, Encoding),
    Json(Encoding),
    Yaml(Encoding),
}

impl Printer {
    /// The printer for `--format`; `table` (the default) prints each value
    /// on its own line, as kcat does.
    pub fn new(format: &Format, encoding: Encoding) -> Result<Printer> {
        Ok(match format {
            Format::Table => Printer::Template(compile("%s\\n")?, encoding),
            Format::Json => Printer::Json(encoding),
            Format::Yaml => Printer::Yaml(encoding),
            Format::Template(t) => Printer::Template(compile(t)?, encoding),
        })
    }

    pub fn write(&self, record: &RecordView<'_>, out: &mut Vec<u8>) {
        match self {
            Printer::Template(pieces, encoding) => {
                for piece in pieces {
                    write_piece(piece, record, *encoding, out);
                }
            }
            Printer::Json(encoding) => {
                serde_json::to_writer(&mut *out, &json_record(record, *encoding))
                    .expect("records serialize");
                out.push(b'\n');
            }
            Printer::Yaml(encoding) => {
                out.extend_from_slice(b"---\n");
                out.extend_from_slice(
                    serde_yaml::to_string(&json_record(record, *encoding))
                        .expect("records serialize")
                        .as_bytes(),
                );
            }
        }
    }
}

fn json_record(record: &RecordView<'_>, encoding: Encoding) -> JsonRecord {
    JsonRecord {
        topic: Some(record.topic.to_string()),
        partition: Some(record.partition),
        offset: Some(record.offset),
        timestamp: Some(record.timestamp),
        key: record.key.map(|k| encode(k, encoding)),
        value: record.value.map(|v| encode(v, encoding)),
        headers: record
            .headers
            .iter()
            .map(|(k, v)| JsonHeader {
                key: k.to_string(),
                value: v.map(|v| encode(v, encoding)),
            })
            .collect(),
    }
}

fn write_bytes(bytes: &[u8], encoding: Encoding, out: &mut Vec<u8>) {
    match encoding {
        Encoding::Text => out.extend_from_slice(bytes),
        Encoding::Base64 => out.extend_from_slice(encode(bytes, encoding).as_bytes()),
    }
}

fn write_piece(piece: &Piece, r: &RecordView<'_>, encoding: Encoding, out: &mut Vec<u8>) {
    let length = |b: Option<&[u8]>| b.map_or(-1, |b| b.len() as i64).to_string();
    match piece {
        Piece::Literal(bytes) => out.extend_from_slice(bytes),
        Piece::Topic => out.extend_from_slice(r.topic.as_bytes()),
        Piece::Partition => out.extend_from_slice(r.partition.to_string().as_bytes()),
        Piece::Offset => out.extend_from_slice(r.offset.to_string().as_bytes()),
        Piece::Timestamp => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
        Piece::Key => write_bytes(r.key.unwrap_or_default(), encoding, out),
        Piece::Value => write_bytes(r.value.unwrap_or_default(), encoding, out),
        Piece::KeyLength => out.extend_from_slice(length(r.key).as_bytes()),
        Piece::ValueLength => out.extend_from_slice(length(r.value).as_bytes()),
        Piece::Headers => {
            for (i, (k, v)) in r.headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                write_bytes(v.unwrap_or_default(), encoding, out);
            }
        }
    }
}

/// Parses a kcat template: `%x` placeholders and `\n \r \t \0 \\` escapes.
fn compile(template: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let piece = match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('K') => Piece::KeyLength,
                    Some('s') => Piece::Value,
                    Some('S') => Piece::ValueLength,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    other => {
                        return Err(CliError::usage(
                            format!(
                                "--format: unknown placeholder %{}",
                                other.map(String::from).unwrap_or_default()
                            ),
                            "placeholders are %t %p %o %k %K %s %S %T %h and %%",
                        ))
                    }
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
            }
            '\\' => match chars.next() {
                Some('n') => literal.push(b'\n'),
                Some('r') => literal.push(b'\r'),
                Some('t') => literal.push(b'\t'),
                Some('0') => literal.push(0),
                Some('\\') => literal.push(b'\\'),
                Some(other) => {
                    literal.push(b'\\');
                    let mut buf = [0; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
                None => literal.push(b'\\'),
            },
            other => {
                let mut buf = [0; 4];
                literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RecordView<'static> {
        RecordView {
            topic: "orders",
            partition: 3,
            offset: 42,
            timestamp: 1700000000000,
            key: Some(b"k1"),
            value: Some(b"v\x00\xff"),
            headers: vec![("a", Some(b"1")), ("b", None)],
        }
    }

    fn print(format: &str, encoding: Encoding) -> Vec<u8> {
        let mut out = Vec::new();
        Printer::new(&Format::parse(format), encoding)
            .unwrap()
            .write(&record(), &mut out);
        out
    }

    #[test]
    fn kcat_placeholders_print_the_record() {
        assert_eq!(
            print("%t %p %o %T %k %K %S %h\\n", Encoding::Text),
            b"orders 3 42 1700000000000 k1 2 3 a=1,b=\n"
        );
        assert_eq!(print("%s", Encoding::Text), b"v\x00\xff");
        assert_eq!(print("100%%", Encoding::Text), b"100%");
        assert_eq!(print("%k:%s", Encoding::Base64), b"azE=:dgD/");
        assert!(Printer::new(&Format::parse("%q"), Encoding::Text).is_err());
    }

    #[test]
    fn json_records_round_trip_any_bytes_in_base64() {
        let line = print("json", Encoding::Base64);
        let parsed: JsonRecord = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            decode(parsed.value.as_deref().unwrap(), Encoding::Base64).unwrap(),
            b"v\x00\xff"
        );
        assert_eq!(parsed.headers[1].value, None);
        assert_eq!(parsed.offset, Some(42));
    }
}
