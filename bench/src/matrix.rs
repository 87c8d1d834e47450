//! `--mode matrix`: a fixed set of benchmark cells, each repeated, on
//! brokers this tool starts itself, summarised as Markdown tables (median
//! and min–max, broker CPU seconds per GB) so that one run compares a
//! change with the last.
//!
//! The cells:
//!
//! * **single**: one fresh broker per cell; 100 B and 1 KiB records ×
//!   1/6/60 partitions × acks 1/all: produce `--cell-megabytes`, then read
//!   it back. With `--soak-gigabytes` the same cells run again on one broker
//!   that has first written that much (retention keeps the disk bounded), so
//!   the data has outgrown the page cache: the "long-running" rows.
//! * **cluster**: a `--local-cluster 3`; 1 KiB records, 6 partitions,
//!   acks=all, RF=1 against RF=3.
//! * **latency**: the same kind of cluster with `__consumer_offsets` and
//!   1,000 idle RF=3 partitions present; fixed-rate 100 B produce with
//!   `linger.ms=0` and a group consumer, 2,000 and 20,000 msg/s, RF=1 and
//!   RF=3 (and 1 KiB at half the cluster's measured RF=3 maximum when the
//!   cluster cells ran): produce→ack and end-to-end p50/p99/p99.9.
//!
//! Every broker gets a new data directory under `--work-dir`, removed when
//! it stops.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;

use crate::args::Args;
use crate::processes::BrokerProcess;
use crate::report::Report;

const GB: f64 = 1e9;
const MB: f64 = 1e6;

/// What `--cells` may name.
pub const CELL_GROUPS: [&str; 3] = ["single", "cluster", "latency"];

pub fn run(args: &Args) -> Result<String> {
    let bin = broker_bin(args)?;
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("tideline-matrix"));
    std::fs::create_dir_all(&work_dir)?;
    let wants = |group: &str| args.cells.is_empty() || args.cells.iter().any(|c| c == group);
    let mut out = String::new();
    writeln!(
        out,
        "Broker `{}`, {} repetitions per cell, {} MB per throughput cell; median (min–max).\n",
        bin.display(),
        args.repetitions,
        args.cell_megabytes
    )?;
    if wants("single") {
        let fresh = single_cells(args, &bin, &work_dir, None)?;
        out.push_str(&single_table("Single node, fresh broker per cell", &fresh));
        if args.soak_gigabytes > 0.0 {
            let long = single_cells(args, &bin, &work_dir, Some(args.soak_gigabytes))?;
            let title = format!(
                "Single node, long-running (after writing {} GB)",
                args.soak_gigabytes
            );
            out.push_str(&single_table(&title, &long));
        }
    }
    let mut rf3_max_msgs = None;
    if wants("cluster") {
        let (table, rf3) = cluster_cells(args, &bin, &work_dir)?;
        out.push_str(&table);
        rf3_max_msgs = Some(rf3);
    }
    if wants("latency") {
        out.push_str(&latency_cells(args, &bin, &work_dir, rf3_max_msgs)?);
    }
    if let Some(path) = &args.output {
        std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(out)
}

/// `--broker-bin`, or `tideline-broker` next to this binary.
fn broker_bin(args: &Args) -> Result<PathBuf> {
    if let Some(bin) = &args.broker_bin {
        return Ok(bin.clone());
    }
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("tideline-broker");
    anyhow::ensure!(
        sibling.exists(),
        "no broker next to {}: pass --broker-bin PATH (build it with cargo build --release -p tideline-broker)",
        me.display()
    );
    Ok(sibling)
}

/// One run of the tool itself, with `argv` as its flags.
fn bench(bootstrap: &str, argv: &[String]) -> Result<Report> {
    let mut full = vec![
        "tideline-bench".to_string(),
        "--bootstrap".to_string(),
        bootstrap.to_string(),
    ];
    full.extend_from_slice(argv);
    let args = Args::try_parse_from(&full)?;
    args.validate()?;
    let admin = crate::cluster::admin_client(&args)?;
    match args.mode {
        crate::args::Mode::Consume => crate::run_consume(&args, &admin),
        _ => crate::run_produce(&args, &admin),
    }
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The median and range of some repetitions.
#[derive(Debug, Clone, Copy, Default)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    fn show(&self, decimals: usize) -> String {
        if self.min == self.max {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} ({:.*}–{:.*})",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

struct SingleCell {
    size: usize,
    partitions: i32,
    acks: &'static str,
    produce_mb_s: Spread,
    produce_cpu_s_gb: Spread,
    consume_mb_s: Spread,
    consume_cpu_s_gb: Spread,
}

fn single_cells(
    args: &Args,
    bin: &std::path::Path,
    work_dir: &std::path::Path,
    soak_gb: Option<f64>,
) -> Result<Vec<SingleCell>> {
    // A long-running broker deletes old segments quickly, so the soak and
    // the cells never fill the disk.
    let overrides = strings(&["log.retention.check.interval.ms=5000"]);
    let mut shared = match soak_gb {
        Some(gb) => {
            let broker = BrokerProcess::single(bin, work_dir, &overrides)?;
            soak(&broker.bootstrap, gb)?;
            Some(broker)
        }
        None => None,
    };
    let mut cells = Vec::new();
    for size in [100usize, 1024] {
        for partitions in [1, 6, 60] {
            for acks in ["1", "all"] {
                let fresh = match shared {
                    Some(_) => None,
                    None => Some(BrokerProcess::single(bin, work_dir, &overrides)?),
                };
                let broker = shared.as_ref().or(fresh.as_ref()).expect("a broker");
                let messages = (args.cell_megabytes * MB / size as f64).max(1.0) as u64;
                let (mut p_rate, mut p_cpu, mut c_rate, mut c_cpu) =
                    (vec![], vec![], vec![], vec![]);
                for rep in 0..args.repetitions {
                    let topic = format!("m-{size}-{partitions}-{acks}-{rep}");
                    let before = broker.cpu_seconds()?;
                    let produced = bench(
                        &broker.bootstrap,
                        &strings(&[
                            "--topic",
                            &topic,
                            "--partitions",
                            &partitions.to_string(),
                            "--message-size",
                            &size.to_string(),
                            "--acks",
                            acks,
                            "--messages",
                            &messages.to_string(),
                            "--consumers",
                            "0",
                            "--no-keys",
                        ]),
                    )?;
                    let middle = broker.cpu_seconds()?;
                    let consumed = bench(
                        &broker.bootstrap,
                        &strings(&["--topic", &topic, "--mode", "consume", "--consumers", "1"]),
                    )?;
                    let after = broker.cpu_seconds()?;
                    let p = produced.produce.as_ref().context("a produce report")?;
                    let c = consumed.consume.as_ref().context("a consume report")?;
                    let p_secs = p.elapsed.as_secs_f64();
                    p_rate.push(p.acked_bytes as f64 / MB / p_secs);
                    p_cpu.push((middle - before) / (p.acked_bytes as f64 / GB));
                    let c_secs = c.window.map(|w| w.as_secs_f64()).unwrap_or(f64::NAN);
                    c_rate.push(c.bytes as f64 / MB / c_secs);
                    c_cpu.push((after - middle) / (c.bytes as f64 / GB));
                    if soak_gb.is_some() {
                        delete_topic(&broker.bootstrap, &topic)?;
                    }
                }
                if let Some(fresh) = fresh {
                    fresh.stop()?;
                }
                cells.push(SingleCell {
                    size,
                    partitions,
                    acks,
                    produce_mb_s: Spread::of(&p_rate),
                    produce_cpu_s_gb: Spread::of(&p_cpu),
                    consume_mb_s: Spread::of(&c_rate),
                    consume_cpu_s_gb: Spread::of(&c_cpu),
                });
            }
        }
    }
    if let Some(broker) = shared.take() {
        broker.stop()?;
    }
    Ok(cells)
}

/// Writes `gb` of 1 KiB records to a topic whose retention keeps 2 GB, so
/// the page cache has long been outgrown and writeback is in steady state.
fn soak(bootstrap: &str, gb: f64) -> Result<()> {
    let messages = (gb * GB / 1024.0) as u64;
    bench(
        bootstrap,
        &strings(&[
            "--topic",
            "soak",
            "--partitions",
            "6",
            "--message-size",
            "1024",
            "--acks",
            "1",
            "--messages",
            &messages.to_string(),
            "--consumers",
            "0",
            "--no-keys",
            "--topic-config",
            "retention.bytes=350000000",
            "--topic-config",
            "segment.bytes=104857600",
        ]),
    )?;
    Ok(())
}

fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let args = Args::try_parse_from(["tideline-bench", "--bootstrap", bootstrap])?;
    let admin = crate::cluster::admin_client(&args)?;
    crate::cluster::delete_topic(&admin, topic)
}

fn single_table(title: &str, cells: &[SingleCell]) -> String {
    let mut out = format!("### {title}\n\n");
    out.push_str(
        "| record | partitions | acks | produce MB/s | produce CPU s/GB | consume MB/s | consume CPU s/GB |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for c in cells {
        let _ = writeln!(
            out,
            "| {} B | {} | {} | {} | {} | {} | {} |",
            c.size,
            c.partitions,
            c.acks,
            c.produce_mb_s.show(0),
            c.produce_cpu_s_gb.show(2),
            c.consume_mb_s.show(0),
            c.consume_cpu_s_gb.show(2),
        );
    }
    out.push('\n');
    out
}

/// RF=1 against RF=3 on a local cluster; returns the table and RF=3's
/// median throughput in 1 KiB messages per second.
fn cluster_cells(
    args: &Args,
    bin: &std::path::Path,
    work_dir: &std::path::Path,
) -> Result<(String, f64)> {
    let cluster = BrokerProcess::local_cluster(bin, work_dir, 3)?;
    let messages = (args.cell_megabytes * MB / 1024.0) as u64;
    let mut rows = Vec::new();
    for rf in [1, 3] {
        let (mut rate, mut cpu) = (vec![], vec![]);
        for rep in 0..args.repetitions {
            let topic = format!("rf{rf}-{rep}");
            let before = cluster.cpu_seconds()?;
            let report = bench(
                &cluster.bootstrap,
                &strings(&[
                    "--topic",
                    &topic,
                    "--partitions",
                    "6",
                    "--replication-factor",
                    &rf.to_string(),
                    "--message-size",
                    "1024",
                    "--acks",
                    "all",
                    "--messages",
                    &messages.to_string(),
                    "--consumers",
                    "0",
                    "--no-keys",
                ]),
            )?;
            let after = cluster.cpu_seconds()?;
            let p = report.produce.as_ref().context("a produce report")?;
            rate.push(p.acked_bytes as f64 / MB / p.elapsed.as_secs_f64());
            cpu.push((after - before) / (p.acked_bytes as f64 / GB));
        }
        rows.push((rf, Spread::of(&rate), Spread::of(&cpu)));
    }
    cluster.stop()?;
    let mut out = String::from(
        "### 3-node local cluster, 1 KiB records, 6 partitions, acks=all\n\n\
         | RF | produce MB/s | cluster CPU s/GB | vs RF=1 |\n|---|---|---|---|\n",
    );
    let rf1 = rows[0].1.median;
    for (rf, rate, cpu) in &rows {
        let _ = writeln!(
            out,
            "| {rf} | {} | {} | {:.2} |",
            rate.show(0),
            cpu.show(2),
            rate.median / rf1
        );
    }
    out.push('\n');
    let rf3_msgs = rows[1].1.median * MB / 1024.0;
    Ok((out, rf3_msgs))
}

fn latency_cells(
    args: &Args,
    bin: &std::path::Path,
    work_dir: &std::path::Path,
    rf3_max_msgs: Option<f64>,
) -> Result<String> {
    let cluster = BrokerProcess::local_cluster(bin, work_dir, 3)?;
    // 1,000 idle RF=3 partitions the brokers replicate between them.
    bench(
        &cluster.bootstrap,
        &strings(&[
            "--topic",
            "idle",
            "--partitions",
            "1000",
            "--replication-factor",
            "3",
            "--messages",
            "1",
            "--consumers",
            "0",
        ]),
    )?;
    let mut cells: Vec<(usize, f64, i32)> = Vec::new();
    for rate in [2_000.0, 20_000.0] {
        for rf in [1, 3] {
            cells.push((100, rate, rf));
        }
    }
    if let Some(max) = rf3_max_msgs {
        cells.push((1024, (max / 2.0).round(), 3));
    }
    let seconds = args.latency_seconds.to_string();
    let mut out = String::from(
        "### Fixed-rate latency, 3-node local cluster (`__consumer_offsets`, 1,000 idle RF=3 partitions, group consumer, linger.ms=0, acks=all), ms\n\n\
         | record | msg/s | RF | ack p50 | ack p99 | ack p99.9 | e2e p50 | e2e p99 | e2e p99.9 |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (size, rate, rf) in cells {
        let mut figures: [Vec<f64>; 6] = Default::default();
        for rep in 0..args.repetitions {
            let topic = format!("lat-{size}-{rate}-{rf}-{rep}");
            let report = bench(
                &cluster.bootstrap,
                &strings(&[
                    "--topic",
                    &topic,
                    "--partitions",
                    "1",
                    "--replication-factor",
                    &rf.to_string(),
                    "--message-size",
                    &size.to_string(),
                    "--acks",
                    "all",
                    "--linger-ms",
                    "0",
                    "--rate",
                    &rate.to_string(),
                    "--duration",
                    &seconds,
                    "--consumers",
                    "1",
                    "--group",
                ]),
            )?;
            let ack = &report
                .produce
                .as_ref()
                .context("a produce report")?
                .ack_latency_us;
            let e2e = report
                .consume
                .as_ref()
                .and_then(|c| c.e2e_latency_us.as_ref())
                .context("end-to-end latencies")?;
            for (i, q) in [0.5, 0.99, 0.999].into_iter().enumerate() {
                figures[i].push(quantile_ms(ack, q));
                figures[3 + i].push(quantile_ms(e2e, q));
            }
        }
        let shown: Vec<String> = figures.iter().map(|f| Spread::of(f).show(2)).collect();
        let _ = writeln!(out, "| {size} B | {rate} | {rf} | {} |", shown.join(" | "));
    }
    cluster.stop()?;
    out.push('\n');
    Ok(out)
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_quantile(q) as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_are_medians_with_their_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0, 3.0, 4.0]).median, 2.5);
        assert_eq!(s.show(1), "2.0 (1.0–3.0)");
        assert_eq!(Spread::of(&[5.0]).show(0), "5");
    }
}
