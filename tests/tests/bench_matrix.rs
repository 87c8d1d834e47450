//! The short version of the performance matrix (`tideline-bench --mode
//! matrix`, whose full run is a README command): small cells on the debug
//! broker, so the command keeps working and its tables keep meaning what
//! they say, and one round of the transaction coordinator failover mode.
//! Figures are not asserted — speed is the benchmark's business.

use std::path::Path;
use std::process::Command;

use tideline_tests::broker::broker_bin;

/// Runs `tideline-bench` with `flags` on the debug broker, its brokers'
/// data under `work`; its standard output, once it succeeded.
fn run_bench(flags: &[&str], work: &Path) -> String {
    let bench = broker_bin().with_file_name("tideline-bench");
    let out = Command::new(&bench)
        .args(flags)
        .arg("--broker-bin")
        .arg(broker_bin())
        .arg("--work-dir")
        .arg(work)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {}: {e} (cargo build --workspace --bins)",
                bench.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tideline-bench {flags:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_matrix_runs_its_cells_on_brokers_it_starts_and_prints_their_tables() {
    let work = tempfile::tempdir().unwrap();
    let stdout = run_bench(
        &[
            "--mode",
            "matrix",
            "--cells",
            "compression,cluster",
            "--repetitions",
            "1",
            "--cell-megabytes",
            "2",
        ],
        work.path(),
    );
    // One row per codec; the cell columns are MB/s, CPU s/GB, stored ratio.
    let row = |first: &str| -> Vec<f64> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {first} |")))
            .unwrap_or_else(|| panic!("no `{first}` row in:\n{stdout}"));
        line.split('|')
            .skip(2)
            .filter(|c| !c.trim().is_empty())
            .map(|c| {
                let median = c.split_whitespace().next().unwrap_or("");
                median
                    .parse()
                    .unwrap_or_else(|_| panic!("`{c}` in `{line}`"))
            })
            .collect()
    };
    // Stored as sent: a little framing over the payload. Recompressed into
    // zstd: the payload's compressible half is gone from the disk.
    let producer = row("producer");
    assert!(
        producer[0] > 0.0 && (1.0..1.1).contains(&producer[2]),
        "{producer:?}"
    );
    assert!(row("zstd")[2] < 0.8, "zstd stores less: {stdout}");
    for codec in ["lz4", "snappy", "gzip"] {
        assert!(row(codec)[0] > 0.0, "{codec}: {stdout}");
    }
    // Both replication factors ran on the local cluster.
    let (rf1, rf3) = (row("1"), row("3"));
    assert!(rf1[0] > 0.0 && rf3[0] > 0.0, "{stdout}");
    assert!(
        std::fs::read_dir(work.path()).unwrap().next().is_none(),
        "the brokers' data directories are removed"
    );
}

/// The short version of `--mode txn-failover` (the README runs ten
/// rounds): one round on three debug brokers the tool starts. The killed
/// coordinator's commit must be finished by another broker and every
/// record seen exactly once; the times are the benchmark's business.
#[test]
fn the_failover_mode_kills_a_coordinator_mid_commit_and_reports_the_takeover() {
    let work = tempfile::tempdir().unwrap();
    let stdout = run_bench(
        &[
            "--mode",
            "txn-failover",
            "--topic",
            "fo",
            "--repetitions",
            "1",
            "--records-per-txn",
            "20",
            "--message-size",
            "100",
            "--partitions",
            "3",
        ],
        work.path(),
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| 0 |"))
        .unwrap_or_else(|| panic!("no round row in:\n{stdout}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // | round | coordinator | killed after | answers | state found |
    // CompleteCommit | commit returned | visible | records seen | duplicates |
    for (i, what) in [(4, "takeover"), (6, "completion"), (8, "visibility")] {
        assert!(cells[i].parse::<f64>().is_ok(), "no {what} time: {row}");
    }
    assert_eq!((cells[9], cells[10]), ("20", "0"), "{row}");
    // The debug broker takes longer than the first kill delay to commit.
    assert!(
        stdout.contains("interrupted the commit in 1 of 1 rounds")
            && stdout.contains("every record is visible to read_committed: in 1 of 1,"),
        "{stdout}"
    );
}
