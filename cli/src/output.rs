//! Output: aligned tables for people, JSON or YAML for scripts. A command
//! builds one serializable value and says how to draw it as a table; this
//! module picks what `--format` asks for.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::error::{CliError, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
    /// A kcat-style record template (`topic consume` only).
    Template(String),
}

impl Format {
    pub fn parse(text: &str) -> Format {
        match text {
            "table" | "text" => Format::Table,
            "json" => Format::Json,
            "yaml" => Format::Yaml,
            template => Format::Template(template.to_string()),
        }
    }

    /// For commands that print tables: a template is a usage error.
    pub fn structured(&self) -> Result<&Format> {
        match self {
            Format::Template(t) => Err(CliError::usage(
                format!("--format {t}: expected table, json or yaml"),
                "templates (%t %p %o %k %s %T %h) apply to `topic consume` only",
            )),
            f => Ok(f),
        }
    }
}

/// Prints `value` as JSON or YAML, or as the text `table` draws.
pub fn emit<T: Serialize>(
    format: &Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<()> {
    let text = match format.structured()? {
        Format::Json => {
            serde_json::to_string_pretty(value).expect("output values serialize") + "\n"
        }
        Format::Yaml => serde_yaml::to_string(value).expect("output values serialize"),
        _ => table(),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

/// Columns separated by two spaces, each as wide as its widest cell, as
/// kubectl and rpk print them.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1,2,3`
pub fn ids(list: &[i32]) -> String {
    list.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Bytes in KiB/MiB/GiB for tables (JSON keeps the exact number).
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress on stderr: rewritten in place on a terminal, one line per
/// update otherwise (so logs of a CI job show it too).
pub fn progress(line: &str) {
    let mut stderr = std::io::stderr().lock();
    if stderr.is_terminal() {
        let _ = write!(stderr, "\r\x1b[2K{line}");
    } else {
        let _ = writeln!(stderr, "{line}");
    }
    let _ = stderr.flush();
}

/// Ends an in-place progress line.
pub fn progress_done() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["NAME", "PARTITIONS"]);
        t.row(vec!["orders".into(), "12".into()]);
        t.row(vec!["a".into(), "1".into()]);
        assert_eq!(t.render(), "NAME    PARTITIONS\norders  12\na       1\n");
    }

    #[test]
    fn only_consume_takes_a_template() {
        assert_eq!(Format::parse("json"), Format::Json);
        assert!(Format::parse("%s\\n").structured().is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
