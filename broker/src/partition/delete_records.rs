//! DeleteRecords on a leader (Kafka's `Partition.deleteRecordsOnLeader`):
//! moving the log start forward to a requested offset, and the low
//! watermark the request then waits for (`lowWatermarkIfLeader`).
//!
//! The leader moves its own log start at once. Followers take it from the
//! `log_start_offset` of their fetch responses (`follower`), and report
//! theirs in their fetch requests (`leadership`). The low watermark is the
//! smallest log start among the leader and the followers on live brokers:
//! once it reaches the requested offset, no replica that may lead next
//! still serves the deleted records. The caller waits for it on
//! [`Partition::subscribe_replica_log_starts`] and checkpoints the new log
//! start before answering (`manager`).

use crate::error::ResponseError;

use super::append::off_worker_if;
use super::Partition;

/// The request's offset that means "the high watermark" (Kafka's
/// `DeleteRecordsRequest.HIGH_WATERMARK`).
pub const HIGH_WATERMARK: i64 = -1;

/// What DeleteRecords did on the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedRecords {
    /// The offset records were deleted below (the high watermark for -1).
    pub offset: i64,
    /// Whether the log start moved: the checkpoint must be written.
    pub moved: bool,
}

impl Partition {
    /// Deletes the records below `offset` (-1: below the high watermark)
    /// on the leader, by moving the log start there; an offset at or below
    /// the log start changes nothing. Refused with NOT_LEADER_OR_FOLLOWER
    /// off the leader, POLICY_VIOLATION when `cleanup.policy` lacks
    /// `delete` (a compacted topic keeps the latest value of every key),
    /// and OFFSET_OUT_OF_RANGE below -1 or above the high watermark.
    pub fn delete_records(&self, offset: i64) -> Result<DeletedRecords, ResponseError> {
        let mut log = self.log.lock();
        // Checked under `log`, so no role change comes between the check
        // and the move.
        if !self.replica.lock().is_leader {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        if !log.config().cleanup_delete {
            return Err(ResponseError::PolicyViolation);
        }
        let high_watermark = self.high_watermark();
        let offset = match offset {
            HIGH_WATERMARK => high_watermark,
            o if o < 0 => return Err(ResponseError::OffsetOutOfRange),
            o => o,
        };
        // Deleting segment files may wait for the device.
        let moved = off_worker_if(true, || log.advance_log_start(offset, high_watermark))
            .map_err(|_| ResponseError::OffsetOutOfRange)?;
        let end = log.log_end_offset();
        drop(log);
        if moved {
            tracing::info!(partition = %self.tp, log_start_offset = offset, "DeleteRecords advanced the log start offset");
            // Followers learn the new log start from their next fetch
            // response, which this wakes.
            self.notify(end);
            self.replica_log_starts_changed();
        }
        Ok(DeletedRecords { offset, moved })
    }

    /// On a leader: the smallest log start offset among this replica and
    /// every follower on a broker for which `is_live` holds. A follower that
    /// has not fetched since this broker became leader counts as unknown
    /// (-1), which holds the low watermark down until it does.
    pub fn low_watermark(&self, is_live: impl Fn(i32) -> bool) -> Result<i64, ResponseError> {
        let log_start = self.log_start_offset();
        let st = self.replica.lock();
        if !st.is_leader {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        Ok(st
            .followers
            .iter()
            .filter(|(id, _)| is_live(**id))
            .map(|(_, f)| f.log_start_offset)
            .fold(log_start, i64::min))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::LogConfig;
    use crate::metadata::records::PartitionRecord;
    use crate::partition::LogManager;

    const ME: i32 = 1;

    fn led_partition(
        dir: &std::path::Path,
        config: LogConfig,
        n: i64,
        replicas: Vec<i32>,
    ) -> (LogManager, Arc<Partition>) {
        crate::partition::testing::led_partition(dir, ME, config, n, replicas)
    }

    #[test]
    fn the_leader_moves_its_log_start_up_to_the_high_watermark_and_never_back() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = led_partition(dir.path(), LogConfig::default(), 10, vec![ME]);
        assert_eq!(partition.high_watermark(), 10);
        assert_eq!(
            partition.delete_records(4),
            Ok(DeletedRecords {
                offset: 4,
                moved: true
            })
        );
        assert_eq!(partition.log_start_offset(), 4);
        assert_eq!(
            partition.delete_records(2),
            Ok(DeletedRecords {
                offset: 2,
                moved: false
            }),
            "below the log start: a no-op that succeeds"
        );
        assert_eq!(partition.log_start_offset(), 4);
        assert_eq!(
            partition.delete_records(11),
            Err(ResponseError::OffsetOutOfRange)
        );
        assert_eq!(
            partition.delete_records(-2),
            Err(ResponseError::OffsetOutOfRange)
        );
        assert_eq!(
            partition.delete_records(HIGH_WATERMARK),
            Ok(DeletedRecords {
                offset: 10,
                moved: true
            }),
            "-1 means the high watermark"
        );
        assert_eq!(partition.log_start_offset(), 10);
        assert_eq!(partition.low_watermark(|_| true), Ok(10), "no followers");
    }

    #[test]
    fn records_above_the_high_watermark_are_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        // Follower 2 has fetched nothing: the high watermark stays at 0.
        let (_manager, partition) =
            led_partition(dir.path(), LogConfig::default(), 10, vec![ME, 2]);
        assert_eq!(partition.high_watermark(), 0);
        assert_eq!(
            partition.delete_records(5),
            Err(ResponseError::OffsetOutOfRange)
        );
        assert_eq!(partition.log_start_offset(), 0);
    }

    #[test]
    fn delete_records_needs_the_leader_and_a_delete_policy() {
        let dir = tempfile::tempdir().unwrap();
        let compacted = LogConfig {
            cleanup_compact: true,
            cleanup_delete: false,
            ..LogConfig::default()
        };
        let (_manager, partition) = led_partition(dir.path(), compacted, 10, vec![ME]);
        assert_eq!(
            partition.delete_records(5),
            Err(ResponseError::PolicyViolation)
        );
        partition.set_config(&LogConfig {
            cleanup_compact: true,
            cleanup_delete: true,
            ..LogConfig::default()
        });
        assert!(partition.delete_records(5).is_ok(), "compact,delete");

        let mut record = PartitionRecord::new(vec![2, ME]);
        record.leader_epoch = 1;
        partition.apply_record(&record, ME, 0);
        assert_eq!(
            partition.delete_records(6),
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(
            partition.low_watermark(|_| true),
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(partition.log_start_offset(), 5);
    }

    #[test]
    fn the_low_watermark_is_the_smallest_log_start_of_the_live_replicas() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) =
            led_partition(dir.path(), LogConfig::default(), 10, vec![ME, 2, 3]);
        for follower in [2, 3] {
            partition.record_follower_fetch(follower, 10, 0, 0).unwrap();
        }
        assert_eq!(partition.high_watermark(), 10);
        let mut changes = partition.subscribe_replica_log_starts();
        partition.delete_records(6).unwrap();
        assert!(changes.has_changed().unwrap(), "the leader's moved");
        assert_eq!(partition.low_watermark(|_| true), Ok(0));

        changes.mark_unchanged();
        partition.record_follower_fetch(2, 10, 6, 0).unwrap();
        assert!(changes.has_changed().unwrap(), "follower 2's moved");
        assert_eq!(partition.low_watermark(|_| true), Ok(0), "3 is behind");
        assert_eq!(
            partition.low_watermark(|b| b != 3),
            Ok(6),
            "a broker that is not live does not count"
        );
        changes.mark_unchanged();
        partition.record_follower_fetch(3, 10, 0, 0).unwrap();
        assert!(!changes.has_changed().unwrap(), "nothing moved");
        partition.record_follower_fetch(3, 10, 6, 0).unwrap();
        assert_eq!(partition.low_watermark(|_| true), Ok(6));
    }
}
