//! The exactly-once checker: runs the `tideline-eos-copier` process (a
//! consume-transform-produce pipeline on librdkafka's transactions) and
//! judges what it left behind.
//!
//! The verdict compares the input topic (every record, read uncommitted)
//! with the output topic as a read_committed consumer sees it: every input
//! value must appear exactly once, and no record the copier aborted on
//! purpose (its `ABORTED <tag>` lines) may be visible. The caller checks
//! the group's committed offsets against the input's end.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::clients::consumer;
use crate::consumer_config;
use crate::member::Member;

/// Where the copier binary is: next to the broker binary.
pub fn copier_bin() -> PathBuf {
    crate::broker::broker_bin().with_file_name("tideline-eos-copier")
}

/// How one copier instance is started.
#[derive(Clone)]
pub struct CopierOpts {
    pub bootstrap: String,
    pub input: String,
    pub output: String,
    pub group: String,
    pub txn_id: String,
    pub per_txn: usize,
    pub abort_percent: u64,
    pub seed: u64,
    /// Copy without transactions (to show the checker catches duplicates).
    pub plain: bool,
    /// Exit without committing after producing this batch.
    pub crash_after: Option<usize>,
}

impl CopierOpts {
    pub fn spawn(&self, name: &str) -> Member {
        let bin = copier_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --workspace --bins`",
            bin.display()
        );
        let mut command = Command::new(bin);
        command.args([
            &self.bootstrap,
            &self.input,
            &self.output,
            &self.group,
            &self.txn_id,
            &self.per_txn.to_string(),
            &self.abort_percent.to_string(),
            &self.seed.to_string(),
        ]);
        if self.plain {
            command.arg("--plain");
        }
        if let Some(n) = self.crash_after {
            command.args(["--crash-after", &n.to_string()]);
        }
        Member::spawn_command(name, command)
    }
}

/// What a copier instance printed.
pub fn count_lines(copier: &Member, prefix: &str) -> usize {
    copier
        .lines()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// The tags of batches the copier aborted on purpose.
pub fn aborted_tags(copiers: &[&Member]) -> HashSet<String> {
    copiers
        .iter()
        .flat_map(|c| c.lines())
        .filter_map(|l| l.strip_prefix("ABORTED ").map(|rest| rest.to_string()))
        .filter_map(|rest| rest.split(' ').next().map(str::to_string))
        .collect()
}

/// The checker's findings.
#[derive(Debug, Default)]
pub struct Verdict {
    pub input_records: usize,
    pub output_records: usize,
    /// Input values with no committed copy.
    pub missing: Vec<String>,
    /// Input values committed more than once, with their count.
    pub duplicated: Vec<(String, usize)>,
    /// Output records of batches that were aborted.
    pub aborted_visible: Vec<String>,
}

impl Verdict {
    pub fn exactly_once(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.aborted_visible.is_empty()
    }
}

/// Compares `input` with what read_committed consumers see of `output`.
pub fn check(
    bootstrap: &str,
    input: &str,
    output: &str,
    partitions: i32,
    aborted: &HashSet<String>,
) -> Verdict {
    let inputs = read_all(bootstrap, input, partitions, "read_uncommitted");
    let outputs = read_all(bootstrap, output, partitions, "read_committed");
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    let mut verdict = Verdict {
        input_records: inputs.len(),
        output_records: outputs.len(),
        ..Verdict::default()
    };
    for value in &outputs {
        let (original, tag) = value.rsplit_once('|').unwrap_or((value, ""));
        if aborted.contains(tag) {
            verdict.aborted_visible.push(value.clone());
        }
        *copies.entry(original.to_string()).or_default() += 1;
    }
    for value in &inputs {
        match copies.get(value) {
            None => verdict.missing.push(value.clone()),
            Some(1) => {}
            Some(n) => verdict.duplicated.push((value.clone(), *n)),
        }
    }
    verdict
}

/// Every value of a topic up to the end its isolation level sees.
fn read_all(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    crate::clients::visible(bootstrap, topic, partitions, isolation)
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

/// The group's committed offset per partition of `topic` (-1: none).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let mut config = consumer_config(bootstrap);
    config.set("group.id", group);
    let c = consumer(&config);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let found = c
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match found.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}
