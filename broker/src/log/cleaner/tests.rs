use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::disk::AppendOrigin;
use crate::log::partition_log::ReadError;
use crate::log::segment::Segment;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const RETENTION: i64 = 10_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 1,
        cleanup_compact: true,
        cleanup_delete: false,
        delete_retention_ms: RETENTION,
        ..LogConfig::default()
    }
}

/// A batch of `(key, value)` records built by kafka-protocol's encoder.
fn encode(
    records: &[(&str, Option<&str>)],
    timestamp: i64,
    compression: Compression,
    producer: (i64, i16, i32),
) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Without a producer the sequences still run on from -1, so
            // the encoder keeps the records in one batch with base -1.
            sequence: producer.2.wrapping_add(i as i32),
            timestamp: timestamp + i as i64,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

type Seen = Vec<(i64, String, Option<String>)>;

/// Every record readable from the log start, decoded.
fn read_all(log: &PartitionLog) -> Seen {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let slice = match log.read(offset, usize::MAX, true, i64::MAX) {
            Ok(Some(slice)) => slice,
            Ok(None) => break,
            Err(ReadError::OffsetOutOfRange { .. }) => break,
            Err(e) => panic!("{e}"),
        };
        let bytes = slice.read().unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            let header = BatchHeader::parse(&bytes[pos..]).unwrap();
            let total = header.total_size();
            batch::validate(&bytes[pos..pos + total]).unwrap();
            let mut buf = Bytes::copy_from_slice(&bytes[pos..pos + total]);
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            for r in set.records {
                if r.offset >= offset {
                    out.push((
                        r.offset,
                        String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                        r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    ));
                }
            }
            offset = header.last_offset() + 1;
            pos += total;
        }
    }
    out
}

/// Keys k0..k9 updated `rounds` times, 5 records a batch, alternating
/// gzip and uncompressed batches; returns what was written.
fn fill(log: &mut PartitionLog, rounds: usize, ts: i64) -> Seen {
    let mut written = Vec::new();
    let mut n = 0;
    for round in 0..rounds {
        for _ in 0..2 {
            let records: Vec<(String, String)> = (0..5)
                .map(|i| {
                    (
                        format!("k{}", (n * 3 + i) % 10),
                        format!("v{round}-{n}-{i}"),
                    )
                })
                .collect();
            let refs: Vec<(&str, Option<&str>)> = records
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            let compression = if n % 2 == 0 {
                Compression::Gzip
            } else {
                Compression::None
            };
            let info = log
                .append(
                    &encode(&refs, ts, compression, (-1, -1, -1)),
                    0,
                    AppendOrigin::Client,
                    ts,
                )
                .unwrap();
            for (i, (k, v)) in records.into_iter().enumerate() {
                written.push((info.base_offset + i as i64, k, Some(v)));
            }
            n += 1;
        }
    }
    written
}

/// The latest record per key among `written` below `end`, plus every
/// record at or after `end`.
fn expected(written: &Seen, end: i64) -> Seen {
    let mut latest: HashMap<&str, i64> = HashMap::new();
    for (offset, key, _) in written.iter().filter(|r| r.0 < end) {
        latest.insert(key, *offset);
    }
    written
        .iter()
        .filter(|(offset, key, _)| *offset >= end || latest[key.as_str()] == *offset)
        .cloned()
        .collect()
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open_for_test(dir, config(), false).0
}

#[test]
fn keeps_the_latest_value_per_key_with_offsets_and_the_active_segment_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let written = fill(&mut log, 20, 1000);
    assert!(log.segment_count() > 3);
    let active_base = log.cleaner_snapshot().active_base;
    let size_before = log.size_bytes();
    let log = Mutex::new(log);
    let stats = clean(&log, None, 5000, None, false)
        .unwrap()
        .expect("dirty");
    assert_eq!(stats.cleaned_to, active_base);
    assert!(stats.records_removed > 0);

    let log = log.into_inner();
    assert!(log.size_bytes() < size_before);
    // Some batches lost part of their records and were rewritten, in
    // both codecs, keeping their offset range.
    let mut partial = [false; 2];
    for s in log.cleaner_snapshot().segments {
        for_each_batch(&s, |h, _| {
            if h.records_count > 0 && h.records_count < h.last_offset_delta + 1 {
                partial[h.compression() as usize] = true;
            }
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(partial, [true, true]);
    assert_eq!(read_all(&log), expected(&written, active_base));
    // Nothing new is dirty: the next pass has nothing to do.
    let log = Mutex::new(log);
    assert!(clean(&log, Some(stats.cleaned_to), 6000, None, false)
        .unwrap()
        .is_none());
    // Reopening (clean or after a crash) reads the same.
    drop(log);
    let (log, _) = PartitionLog::open_for_test(dir.path(), config(), false);
    assert_eq!(read_all(&log), expected(&written, active_base));
    // A fetch inside a compacted gap gets the next surviving batch.
    let slice = log.read(1, 1, true, i64::MAX).unwrap().unwrap();
    let header = BatchHeader::parse(&slice.read().unwrap()).unwrap();
    assert!(header.last_offset() >= 1);

    // More updates: the small cleaned segments are grouped this time.
    let mut log = log;
    let mut all = written.clone();
    all.extend(fill(&mut log, 20, 7000));
    let active_base = log.cleaner_snapshot().active_base;
    let log = Mutex::new(log);
    let again = clean(&log, Some(stats.cleaned_to), 8000, None, false)
        .unwrap()
        .expect("dirty again");
    assert!(again.segments_after < again.segments_before, "{again:?}");
    assert_eq!(read_all(&log.lock()), expected(&all, active_base));
}

#[test]
fn tombstones_survive_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut written = fill(&mut log, 4, 1000);
    let info = log
        .append(
            &encode(
                &[("k3", None), ("k4", None)],
                2000,
                Compression::Gzip,
                (-1, -1, -1),
            ),
            0,
            AppendOrigin::Client,
            2000,
        )
        .unwrap();
    written.push((info.base_offset, "k3".into(), None));
    written.push((info.base_offset + 1, "k4".into(), None));
    written.extend(fill(&mut log, 4, 3000));
    log.roll().unwrap();
    let log = Mutex::new(log);
    let stats = clean(&log, None, 3500, None, false).unwrap().unwrap();
    assert_eq!(stats.next_tombstone_expiry, None);
    // k3/k4 were rewritten after their tombstones: those are superseded.
    let seen = read_all(&log.lock());
    assert_eq!(seen, expected(&written, i64::MAX));
    assert!(!seen.iter().any(|r| r.2.is_none()));

    // Tombstones that are the latest for their key.
    let info = log
        .lock()
        .append(
            &encode(&[("k1", None)], 4000, Compression::None, (-1, -1, -1)),
            0,
            AppendOrigin::Client,
            4000,
        )
        .unwrap();
    written.push((info.base_offset, "k1".into(), None));
    log.lock().roll().unwrap();
    let stats = clean(&log, Some(stats.cleaned_to), 4500, None, true)
        .unwrap()
        .unwrap();
    assert_eq!(stats.next_tombstone_expiry, Some(4000 + RETENTION));
    let seen = read_all(&log.lock());
    assert!(seen.contains(&(info.base_offset, "k1".into(), None)));
    assert_eq!(seen, expected(&written, i64::MAX));
    // Still within delete.retention.ms: kept.
    let early = clean(
        &log,
        Some(stats.cleaned_to),
        4000 + RETENTION,
        stats.next_tombstone_expiry,
        false,
    )
    .unwrap();
    assert!(early.is_none(), "not due yet");
    let forced = clean(&log, Some(stats.cleaned_to), 4000 + RETENTION, None, true)
        .unwrap()
        .unwrap();
    assert!(read_all(&log.lock()).contains(&(info.base_offset, "k1".into(), None)));
    assert_eq!(forced.next_tombstone_expiry, Some(4000 + RETENTION));
    // Past it, the pass is due and removes the tombstone.
    let late = clean(
        &log,
        Some(forced.cleaned_to),
        4001 + RETENTION,
        forced.next_tombstone_expiry,
        false,
    )
    .unwrap()
    .expect("tombstone expiry makes the pass due");
    assert!(late.next_tombstone_expiry.is_none());
    let seen = read_all(&log.lock());
    assert!(!seen.iter().any(|r| r.1 == "k1"));
    let mut remaining = expected(&written, i64::MAX);
    remaining.retain(|r| r.1 != "k1");
    assert_eq!(seen, remaining);
}

#[test]
fn min_compaction_lag_and_the_active_segment_bound_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.min_compaction_lag_ms = 1000;
    let (mut log, _) = PartitionLog::open_for_test(dir.path(), cfg, false);
    let old = fill(&mut log, 6, 1000);
    log.roll().unwrap();
    let young_start = log.log_end_offset();
    let young = fill(&mut log, 6, 5000);
    let log = Mutex::new(log);
    let stats = clean(&log, None, 5500, None, false).unwrap().unwrap();
    assert_eq!(stats.cleaned_to, young_start);
    let mut all = old.clone();
    all.extend(young);
    assert_eq!(read_all(&log.lock()), expected(&all, young_start));
}

#[test]
fn the_dirty_ratio_and_max_compaction_lag_decide_when_a_pass_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.min_cleanable_dirty_ratio = 0.9;
    let (mut log, _) = PartitionLog::open_for_test(dir.path(), cfg.clone(), false);
    fill(&mut log, 6, 1000);
    log.roll().unwrap();
    let log = Mutex::new(log);
    // Everything is dirty: the ratio (1.0) is over 0.9.
    let first = clean(&log, None, 2000, None, false).unwrap().unwrap();
    let checkpoint = first.cleaned_to;
    // A little more data: dirty / cleanable stays under 0.9, no pass.
    fill(&mut log.lock(), 1, 3000);
    log.lock().roll().unwrap();
    assert!(clean(&log, Some(checkpoint), 4000, None, false)
        .unwrap()
        .is_none());
    // max.compaction.lag.ms forces it once the oldest dirty batch is older.
    cfg.max_compaction_lag_ms = 5000;
    log.lock().set_config(cfg);
    assert!(clean(&log, Some(checkpoint), 7000, None, false)
        .unwrap()
        .is_none());
    let forced = clean(&log, Some(checkpoint), 9000, None, false).unwrap();
    assert!(
        forced.is_some(),
        "a dirty batch past max.compaction.lag.ms is due"
    );
}

#[test]
fn the_last_batch_of_each_producer_survives_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(
        &encode(
            &[("a", Some("1")), ("b", Some("1"))],
            0,
            Compression::Gzip,
            (9, 0, 0),
        ),
        0,
        AppendOrigin::Client,
        0,
    )
    .unwrap();
    log.append(
        &encode(
            &[("a", Some("2")), ("b", Some("2"))],
            0,
            Compression::Gzip,
            (9, 0, 2),
        ),
        0,
        AppendOrigin::Client,
        0,
    )
    .unwrap();
    log.append(
        &encode(
            &[("a", Some("3")), ("b", Some("3"))],
            0,
            Compression::None,
            (-1, -1, -1),
        ),
        0,
        AppendOrigin::Client,
        0,
    )
    .unwrap();
    log.roll().unwrap();
    let log = Mutex::new(log);
    clean(&log, None, 10, None, true).unwrap().unwrap();
    let mut log = log.into_inner();
    let mut batches = Vec::new();
    for s in log.cleaner_snapshot().segments {
        for_each_batch(&s, |h, _| {
            batches.push(h);
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].base_offset, 2);
    assert_eq!(batches[0].records_count, 0);
    assert_eq!(batches[0].last_offset(), 3);
    assert_eq!(batches[0].last_sequence(), 3);
    // The producer state rebuilt from the log still knows the producer.
    log.close(0).unwrap();
    std::fs::remove_file(
        dir.path()
            .join(super::super::partition_log::PRODUCER_SNAPSHOT),
    )
    .unwrap();
    drop(log);
    let mut log = open(dir.path());
    let retry = log
        .append(
            &encode(
                &[("a", Some("2")), ("b", Some("2"))],
                0,
                Compression::Gzip,
                (9, 0, 2),
            ),
            0,
            AppendOrigin::Client,
            0,
        )
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 2);
}

#[test]
fn an_emptied_segment_does_not_block_time_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.segment_bytes = 150;
    cfg.cleanup_delete = true;
    cfg.retention_ms = 1000;
    let (mut log, _) = PartitionLog::open_for_test(dir.path(), cfg, false);
    let keys = ["k0", "k1", "k2", "k3", "k4"];
    for value in ["old", "new"] {
        let records: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (*k, Some(value))).collect();
        log.append(
            &encode(&records, 0, Compression::None, (-1, -1, -1)),
            0,
            AppendOrigin::Client,
            0,
        )
        .unwrap();
        log.roll().unwrap();
    }
    log.append(
        &encode(
            &[("x", Some("y"))],
            100_000,
            Compression::None,
            (-1, -1, -1),
        ),
        0,
        AppendOrigin::Client,
        0,
    )
    .unwrap();
    let active_base = log.cleaner_snapshot().active_base;
    let log = Mutex::new(log);
    let stats = clean(&log, None, 2000, None, true).unwrap().unwrap();
    assert_eq!(stats.segments_after, 2, "{stats:?}");
    let mut log = log.into_inner();
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.apply_retention(5000).unwrap(), 2);
    assert_eq!(log.log_start_offset(), active_base);
}

/// Runs the cleaner's write step for the first group and returns the
/// replaced segments and the written (fsynced) output.
fn write_first_group(log: &PartitionLog, now: i64) -> (Vec<SegmentSnapshot>, Segment) {
    let mut snapshot = log.cleaner_snapshot();
    // One group covering the whole cleanable range.
    snapshot.config.segment_bytes = u32::MAX as u64;
    let plan = plan(&snapshot, None, now, None, true).unwrap().unwrap();
    assert_eq!(plan.groups.len(), 1);
    let map = build_offset_map(&plan).unwrap();
    let mut stats = CleanStats::default();
    let group = plan.groups[0].clone();
    assert!(group.len() > 1);
    let mut txns = compact::TxnProgress::default();
    let out = write_group(&plan, &group, &map, &mut txns, &mut stats).unwrap();
    (group, out)
}

#[test]
fn a_crash_before_or_during_the_swap_loses_nothing() {
    for stage in ["cleaned", "swap", "swap-after-delete"] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let written = fill(&mut log, 20, 1000);
        log.flush(0).unwrap();
        let active_base = log.cleaner_snapshot().active_base;
        let (group, mut out) = write_first_group(&log, 5000);

        let stem = segment::file_stem(out.base_offset);
        match stage {
            "cleaned" => {}
            "swap" => {
                out.rename_log(dir.path().join(format!("{stem}.log.swap")))
                    .unwrap();
            }
            _ => {
                out.rename_log(dir.path().join(format!("{stem}.log.swap")))
                    .unwrap();
                for s in &group {
                    let stem = segment::file_stem(s.base_offset);
                    for ext in ["log", "index", "timeindex"] {
                        remove_if_exists(&dir.path().join(format!("{stem}.{ext}"))).unwrap();
                    }
                }
            }
        }
        drop(out);
        drop(log); // the crash: nothing closed
        let (log, _) = PartitionLog::open_for_test(dir.path(), config(), false);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")),
            "{stage}: {names:?}"
        );
        let seen = read_all(&log);
        let want = if stage == "cleaned" {
            written.clone()
        } else {
            expected(&written, active_base)
        };
        assert_eq!(seen, want, "{stage}");
        assert_eq!(log.log_end_offset(), written.last().unwrap().0 + 1);
        // A full pass afterwards reaches the same result as without a crash.
        let log = Mutex::new(log);
        clean(&log, None, 5000, None, true).unwrap().unwrap();
        assert_eq!(
            read_all(&log.lock()),
            expected(&written, active_base),
            "{stage}"
        );
    }
}

/// A transactional batch of `(key, value)` records at time 0.
fn txn_batch(log: &mut PartitionLog, records: &[(&str, Option<&str>)], producer: (i64, i16, i32)) {
    let bytes = encode(records, 0, Compression::None, producer);
    let bytes = crate::log::batch::test_support::transactional(bytes);
    log.append(&bytes, 0, AppendOrigin::Client, 0).unwrap();
}

/// Ends `producer_id`'s transaction with a marker written at time 0, and
/// replicated (the cleaner leaves an unreplicated one alone).
fn end_txn(log: &mut PartitionLog, producer_id: i64, commit: bool) {
    let marker = crate::log::control::TxnMarker {
        commit,
        coordinator_epoch: 0,
    };
    log.append_marker(producer_id, 0, marker, 0, 0).unwrap();
    log.prune_replicated_transactions(log.log_end_offset());
}

/// Every batch before the active segment: (base offset, control, records).
fn batches(log: &PartitionLog) -> Vec<(i64, bool, i32)> {
    let mut out = Vec::new();
    for s in log.cleaner_snapshot().segments {
        for_each_batch(&s, |h, _| {
            out.push((h.base_offset, h.is_control(), h.records_count));
            Ok(())
        })
        .unwrap();
    }
    out
}

#[test]
fn aborted_records_go_and_markers_that_close_nothing_follow_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    txn_batch(&mut log, &[("a", Some("1")), ("b", Some("1"))], (5, 0, 0)); // 0-1
    end_txn(&mut log, 5, true); // 2: commits records later superseded
    txn_batch(&mut log, &[("c", Some("x"))], (6, 0, 0)); // 3
    end_txn(&mut log, 6, false); // 4: aborts
    txn_batch(&mut log, &[("a", Some("2")), ("b", Some("2"))], (5, 0, 2)); // 5-6
    end_txn(&mut log, 5, true); // 7
    txn_batch(&mut log, &[("d", Some("1"))], (6, 0, 1)); // 8
    end_txn(&mut log, 6, true); // 9
    log.roll().unwrap();
    let end = log.log_end_offset();
    assert_eq!(log.aborted_transactions(0, end), vec![(6, 3)]);

    // First pass: the aborted and superseded records go, every marker stays.
    let log = Mutex::new(log);
    let first = clean(&log, None, 1000, None, true).unwrap().unwrap();
    assert_eq!(
        batches(&log.lock()),
        vec![
            (2, true, 1),
            (4, true, 1),
            (5, false, 2),
            (7, true, 1),
            (8, false, 1),
            (9, true, 1)
        ]
    );
    assert_eq!(
        first.next_tombstone_expiry,
        Some(RETENTION),
        "the markers that close nothing are due then"
    );
    assert_eq!(log.lock().aborted_transactions(0, end), vec![(6, 3)]);

    // Not yet past delete.retention.ms: nothing changes.
    assert!(clean(
        &log,
        Some(first.cleaned_to),
        RETENTION,
        first.next_tombstone_expiry,
        false
    )
    .unwrap()
    .is_none());
    // Past it: the markers of 2 and 4 go, the abort's index entry with it.
    let now = RETENTION + 1;
    let second = clean(
        &log,
        Some(first.cleaned_to),
        now,
        first.next_tombstone_expiry,
        false,
    )
    .unwrap()
    .expect("the markers are due");
    assert_eq!(second.records_removed, 2);
    assert_eq!(
        batches(&log.lock()),
        vec![(5, false, 2), (7, true, 1), (8, false, 1), (9, true, 1)]
    );
    assert_eq!(log.lock().aborted_transactions(0, end), vec![]);

    // A crash: the index is rebuilt from the markers left, the same.
    let log = log.into_inner();
    drop(log);
    let txnindex = dir
        .path()
        .join(format!("{}.txnindex", segment::file_stem(0)));
    std::fs::remove_file(txnindex).ok();
    let (log, _) = PartitionLog::open_for_test(dir.path(), config(), false);
    assert_eq!(log.aborted_transactions(0, end), vec![]);
    assert_eq!(log.last_stable_offset(end), end);
    let values: Vec<(i64, String)> = read_all(&log)
        .into_iter()
        .filter(|(o, _, _)| ![7, 9].contains(o))
        .map(|(o, k, _)| (o, k))
        .collect();
    assert_eq!(
        values,
        vec![(5, "a".into()), (6, "b".into()), (8, "d".into())]
    );
}

#[test]
fn a_known_producers_last_marker_stays_and_an_expired_producer_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    txn_batch(&mut log, &[("k", Some("1"))], (7, 0, 0)); // 0
    end_txn(&mut log, 7, true); // 1
    log.append(
        &encode(&[("k", Some("2"))], 0, Compression::None, (-1, -1, -1)),
        0,
        AppendOrigin::Client,
        0,
    )
    .unwrap(); // 2: supersedes the transaction's record
    log.roll().unwrap();
    let log = Mutex::new(log);
    let first = clean(&log, None, 1000, None, true).unwrap().unwrap();
    let now = RETENTION * 2;
    clean(&log, Some(first.cleaned_to), now, None, true).unwrap();
    assert_eq!(
        batches(&log.lock()),
        vec![(1, true, 1), (2, false, 1)],
        "the marker holds producer 7's epoch"
    );

    // Producer 7 is idle past producer.id.expiration.ms: forgotten, and
    // its marker goes with the next pass.
    assert_eq!(log.lock().remove_expired_producers(now, 1000), 1);
    assert_eq!(log.lock().producer_count(), 0);
    clean(&log, Some(first.cleaned_to), now, None, true).unwrap();
    assert_eq!(batches(&log.lock()), vec![(2, false, 1)]);
}
