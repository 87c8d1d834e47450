//! `--mode matrix`: a fixed set of benchmark cells, each repeated, on
//! brokers this tool starts itself, summarised as Markdown tables (median
//! and min–max, broker CPU seconds per GB) so that one run compares a
//! change with the last.
//!
//! The cells:
//!
//! * **single**: one fresh broker per cell; 100 B and 1 KiB records ×
//!   1/6/60 partitions × acks 1/all: produce `--cell-megabytes`, then read
//!   it back. With `--soak-gigabytes` one broker then writes that much to 6
//!   and to 60 partitions, keeping more than the page cache holds, compared
//!   with the disk's buffered-write ceiling measured in the same run (the
//!   "sustained" rows), and runs the same cells again (the "long-running"
//!   rows).
//! * **compression**: one broker; 1 KiB uncompressed records to topics with
//!   `compression.type` producer/lz4/snappy/zstd/gzip: the cost of
//!   recompressing on the broker, and the bytes it stores.
//! * **cluster**: a `--local-cluster 3`; 1 KiB records, 6 partitions,
//!   acks=all, RF=1 against RF=3.
//! * **latency**: the same kind of cluster with `__consumer_offsets` and
//!   1,000 idle RF=3 partitions present; fixed-rate 100 B produce with
//!   `linger.ms=0` and a group consumer, 2,000 and 20,000 msg/s, RF=1 and
//!   RF=3, and 1 KiB at half of the maximum the same set-up sustains
//!   (measured first): produce→ack and end-to-end p50/p99/p99.9.
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

pub fn run(args: &Args) -> Result<String> {
    let bin = broker_bin(args)?;
    let work_dir = work_dir(args)?;
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
            let (table, broker) = sustained_cells(&bin, &work_dir, args.soak_gigabytes, &fresh)?;
            out.push_str(&table);
            let long = single_cells(args, &bin, &work_dir, Some(&broker))?;
            broker.stop()?;
            let title = format!(
                "Single node, long-running (the same broker, after the sustained writes of {} GB each)",
                args.soak_gigabytes
            );
            out.push_str(&single_table(&title, &long));
        }
    }
    if wants("compression") {
        out.push_str(&compression_cells(args, &bin, &work_dir)?);
    }
    if wants("cluster") {
        out.push_str(&cluster_cells(args, &bin, &work_dir)?);
    }
    if wants("latency") {
        out.push_str(&latency_cells(args, &bin, &work_dir)?);
    }
    if let Some(path) = &args.output {
        std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(out)
}

/// `--broker-bin`, or `tideline-broker` next to this binary.
/// `--work-dir`, or a directory under the system's temporary one.
pub fn work_dir(args: &Args) -> Result<PathBuf> {
    let dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("tideline-matrix"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `--broker-bin`, or `tideline-broker` next to this binary.
pub fn broker_bin(args: &Args) -> Result<PathBuf> {
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

/// One run of the tool itself with `flags` (separated by spaces).
fn bench(bootstrap: &str, flags: &str) -> Result<Report> {
    let argv = ["tideline-bench", "--bootstrap", bootstrap]
        .into_iter()
        .chain(flags.split_whitespace());
    let args = Args::try_parse_from(argv).with_context(|| format!("bench flags `{flags}`"))?;
    args.validate()?;
    let admin = crate::cluster::admin_client(&args)?;
    match args.mode {
        crate::args::Mode::Consume => crate::run_consume(&args, &admin),
        _ => crate::run_produce(&args, &admin),
    }
}

/// One measured produce run: payload MB/s and the brokers' CPU seconds
/// per GB of acknowledged payload.
struct Measured {
    mb_s: f64,
    cpu_s_gb: f64,
    acked_bytes: u64,
}

fn measured_produce(broker: &BrokerProcess, flags: &str) -> Result<Measured> {
    let before = broker.cpu_seconds()?;
    let report = bench(&broker.bootstrap, flags)?;
    let cpu = broker.cpu_seconds()? - before;
    let p = report.produce.as_ref().context("a produce report")?;
    Ok(Measured {
        mb_s: p.acked_bytes as f64 / MB / p.elapsed.as_secs_f64(),
        cpu_s_gb: cpu / (p.acked_bytes as f64 / GB),
        acked_bytes: p.acked_bytes,
    })
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

/// Broker settings of the single-node cells: old segments go quickly, so
/// the soak and the cells never fill the disk.
const SINGLE_OVERRIDES: [&str; 1] = ["log.retention.check.interval.ms=5000"];

/// The single-node cells, each on a fresh broker, or all on `shared`.
fn single_cells(
    args: &Args,
    bin: &std::path::Path,
    work_dir: &std::path::Path,
    shared: Option<&BrokerProcess>,
) -> Result<Vec<SingleCell>> {
    let overrides = SINGLE_OVERRIDES.map(String::from);
    let mut cells = Vec::new();
    for size in [100usize, 1024] {
        for partitions in [1, 6, 60] {
            for acks in ["1", "all"] {
                let fresh = match shared {
                    Some(_) => None,
                    None => Some(BrokerProcess::single(bin, work_dir, &overrides)?),
                };
                let broker = shared.or(fresh.as_ref()).expect("a broker");
                let messages = (args.cell_megabytes * MB / size as f64).max(1.0) as u64;
                let (mut p_rate, mut p_cpu, mut c_rate, mut c_cpu) =
                    (vec![], vec![], vec![], vec![]);
                for rep in 0..args.repetitions {
                    let topic = format!("m-{size}-{partitions}-{acks}-{rep}");
                    let produced = measured_produce(
                        broker,
                        &format!("--topic {topic} --partitions {partitions} --message-size {size} --acks {acks} --messages {messages} --consumers 0 --no-keys"),
                    )?;
                    p_rate.push(produced.mb_s);
                    p_cpu.push(produced.cpu_s_gb);
                    let middle = broker.cpu_seconds()?;
                    let consumed = bench(
                        &broker.bootstrap,
                        &format!("--topic {topic} --mode consume --consumers 1"),
                    )?;
                    let after = broker.cpu_seconds()?;
                    let c = consumed.consume.as_ref().context("a consume report")?;
                    let c_secs = c.window.map(|w| w.as_secs_f64()).unwrap_or(f64::NAN);
                    c_rate.push(c.bytes as f64 / MB / c_secs);
                    c_cpu.push((after - middle) / (c.bytes as f64 / GB));
                    if shared.is_some() {
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
    Ok(cells)
}

/// The sustained-write rows: first the page-cache ceiling of this disk
/// (buffered 1 MiB writes of up to 12 GB, then fdatasync, as `dd
/// conv=fdatasync` measures it), then `gb` of 1 KiB records produced to 6
/// and to 60 partitions of one broker, each topic keeping as much as the
/// machine's memory (at most half the free disk), so the page cache is
/// outgrown and writeback runs throughout. (A small retention would delete
/// segments before their dirty pages are ever written back.) Returns the
/// table and the broker, which then runs the long-running cells.
fn sustained_cells(
    bin: &std::path::Path,
    work_dir: &std::path::Path,
    gb: f64,
    fresh: &[SingleCell],
) -> Result<(String, BrokerProcess)> {
    let ceiling = page_cache_ceiling(work_dir, gb.min(12.0))?;
    let broker = BrokerProcess::single(bin, work_dir, &SINGLE_OVERRIDES.map(String::from))?;
    let mut out = format!(
        "### Sustained 1 KiB produce (acks=1) past the page cache; the disk's buffered-write ceiling measured first: {ceiling:.0} MB/s\n\n\
         | partitions | GB written | produce MB/s | of the ceiling | broker CPU s/GB | vs fresh broker |\n\
         |---|---|---|---|---|---|\n"
    );
    for partitions in [6, 60] {
        let messages = (gb * GB / 1024.0) as u64;
        let keep = memory_bytes()?.min(free_disk_bytes(work_dir)? / 2);
        let retention = keep / partitions as u64;
        let topic = format!("soak-{partitions}");
        let soak = measured_produce(
            &broker,
            &format!("--topic {topic} --partitions {partitions} --message-size 1024 --acks 1 --messages {messages} --consumers 0 --no-keys --topic-config retention.bytes={retention} --topic-config segment.bytes=268435456"),
        )?;
        let (rate, cpu_gb) = (soak.mb_s, soak.cpu_s_gb);
        let fresh_cpu = fresh
            .iter()
            .find(|c| c.size == 1024 && c.partitions == partitions && c.acks == "1")
            .map(|c| c.produce_cpu_s_gb.median);
        let versus = fresh_cpu.map_or("–".to_string(), |f| {
            format!("{:+.0} %", (cpu_gb / f - 1.0) * 100.0)
        });
        let _ = writeln!(
            out,
            "| {partitions} | {:.0} | {rate:.0} | {:.0} % | {cpu_gb:.2} | {versus} |",
            soak.acked_bytes as f64 / GB,
            rate / ceiling * 100.0
        );
        delete_topic(&broker.bootstrap, &topic)?;
    }
    out.push('\n');
    Ok((out, broker))
}

/// MB/s of buffered 1 MiB writes of `gb` followed by fdatasync.
fn page_cache_ceiling(work_dir: &std::path::Path, gb: f64) -> Result<f64> {
    use std::io::Write;
    let path = work_dir.join("page-cache-ceiling");
    let chunk = vec![0u8; 1 << 20];
    let chunks = (gb * GB / chunk.len() as f64) as u64;
    let start = std::time::Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..chunks {
        file.write_all(&chunk)?;
    }
    file.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(chunks as f64 * chunk.len() as f64 / MB / secs)
}

fn memory_bytes() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no MemTotal in /proc/meminfo")?;
    Ok(kib * 1024)
}

fn free_disk_bytes(dir: &std::path::Path) -> Result<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let args = Args::try_parse_from(["tideline-bench", "--bootstrap", bootstrap])?;
    let admin = crate::cluster::admin_client(&args)?;
    crate::cluster::delete_topic(&admin, topic)
}

/// Broker-side recompression: uncompressed 1 KiB records (the bench's
/// payloads: a timestamp and filler) produced to topics whose
/// `compression.type` names a codec, against `producer` (stored as sent).
fn compression_cells(
    args: &Args,
    bin: &std::path::Path,
    work_dir: &std::path::Path,
) -> Result<String> {
    let broker = BrokerProcess::single(bin, work_dir, &SINGLE_OVERRIDES.map(String::from))?;
    let messages = (args.cell_megabytes * MB / 1024.0) as u64;
    let mut out = String::from(
        "### Broker-side compression, single node, 1 KiB uncompressed records, 6 partitions, acks=1\n\n\
         | topic compression.type | produce MB/s | broker CPU s/GB | stored bytes per produced byte |\n\
         |---|---|---|---|\n",
    );
    for codec in ["producer", "lz4", "snappy", "zstd", "gzip"] {
        let (mut rate, mut cpu, mut ratio) = (vec![], vec![], vec![]);
        for rep in 0..args.repetitions {
            let topic = format!("c-{codec}-{rep}");
            let run = measured_produce(
                &broker,
                &format!("--topic {topic} --partitions 6 --message-size 1024 --acks 1 --messages {messages} --consumers 0 --no-keys --topic-config compression.type={codec}"),
            )?;
            rate.push(run.mb_s);
            cpu.push(run.cpu_s_gb);
            ratio.push(broker.stored_bytes(&topic)? as f64 / run.acked_bytes as f64);
            delete_topic(&broker.bootstrap, &topic)?;
        }
        let _ = writeln!(
            out,
            "| {codec} | {} | {} | {} |",
            Spread::of(&rate).show(0),
            Spread::of(&cpu).show(2),
            Spread::of(&ratio).show(3)
        );
    }
    broker.stop()?;
    out.push('\n');
    Ok(out)
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

/// RF=1 against RF=3 on a local cluster.
fn cluster_cells(args: &Args, bin: &std::path::Path, work_dir: &std::path::Path) -> Result<String> {
    let cluster = BrokerProcess::local_cluster(bin, work_dir, 3)?;
    let messages = (args.cell_megabytes * MB / 1024.0) as u64;
    let mut rows = Vec::new();
    for rf in [1, 3] {
        let (mut rate, mut cpu) = (vec![], vec![]);
        for rep in 0..args.repetitions {
            let topic = format!("rf{rf}-{rep}");
            let run = measured_produce(
                &cluster,
                &format!("--topic {topic} --partitions 6 --replication-factor {rf} --message-size 1024 --acks all --messages {messages} --consumers 0 --no-keys"),
            )?;
            rate.push(run.mb_s);
            cpu.push(run.cpu_s_gb);
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
    Ok(out)
}

fn latency_cells(args: &Args, bin: &std::path::Path, work_dir: &std::path::Path) -> Result<String> {
    let cluster = BrokerProcess::local_cluster(bin, work_dir, 3)?;
    // 1,000 idle RF=3 partitions the brokers replicate between them.
    bench(
        &cluster.bootstrap,
        "--topic idle --partitions 1000 --replication-factor 3 --messages 1 --consumers 0",
    )?;
    let mut cells: Vec<(usize, f64, i32)> = Vec::new();
    for rate in [2_000.0, 20_000.0] {
        for rf in [1, 3] {
            cells.push((100, rate, rf));
        }
    }
    // 1 KiB at half of what this very set-up (one RF=3 partition, a group
    // consumer, linger.ms=0) sustains at most, measured first.
    let max_messages = (args.cell_megabytes * MB / 1024.0) as u64;
    let max = bench(
        &cluster.bootstrap,
        &format!("--topic lat-max --partitions 1 --replication-factor 3 --message-size 1024 --acks all --linger-ms 0 --messages {max_messages} --consumers 1 --group"),
    )?;
    let max = max.produce.as_ref().context("a produce report")?;
    let max_msgs = max.acked as f64 / max.elapsed.as_secs_f64();
    cells.push((1024, (max_msgs / 2.0).round(), 3));
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
                &format!("--topic {topic} --partitions 1 --replication-factor {rf} --message-size {size} --acks all --linger-ms 0 --rate {rate} --duration {seconds} --consumers 1 --group"),
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
