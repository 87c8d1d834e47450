//! What a follower does to its log besides appending: where it fetches
//! from, Kafka's truncation rule after a leader change, restarting the log
//! at the leader's log start, and taking the leader's high watermark and
//! log start.

use crate::log::leader_epochs::UNDEFINED_OFFSET;

use super::append::off_worker_if;
use super::Partition;

impl Partition {
    /// The newest leader epoch this log has batches of, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.log.lock().leader_epochs().latest_epoch()
    }

    /// A fetch that brought nothing new still carries the leader's high
    /// watermark: take it, capped by our log end. Returns our log end.
    pub fn take_leader_high_watermark(&self, leader_high_watermark: i64) -> i64 {
        let end = self.log_end_offset();
        if leader_high_watermark >= 0 {
            self.set_high_watermark(leader_high_watermark.min(end));
        }
        end
    }

    /// A fetch response from the leader of `leader_epoch` carries its log
    /// start: records below it were deleted there (DeleteRecords,
    /// retention), so this replica deletes them too, up to its own high
    /// watermark (Kafka's `LeaderOffsetIncremented`). Returns whether the
    /// log start moved (the caller checkpoints it).
    pub fn take_leader_log_start(&self, leader_epoch: i32, leader_log_start: i64) -> bool {
        let mut log = self.log.lock();
        if leader_log_start <= log.log_start_offset() {
            return false;
        }
        {
            let st = self.replica.lock();
            if st.is_leader || st.leader_epoch != leader_epoch {
                return false; // the fetch was answered by a leader that is gone
            }
        }
        let high_watermark = self.high_watermark().min(log.log_end_offset());
        let offset = leader_log_start.min(high_watermark);
        // Deleting segment files may wait for the device. (Capped as it is,
        // the offset cannot be refused.)
        let moved =
            off_worker_if(true, || log.advance_log_start(offset, high_watermark)).unwrap_or(false);
        let end = log.log_end_offset();
        drop(log);
        if moved {
            tracing::debug!(partition = %self.tp, log_start_offset = offset, "took the leader's log start offset");
            self.notify(end);
            self.replica_log_starts_changed();
        }
        moved
    }

    /// Kafka's follower truncation rule, for an OffsetsForLeaderEpoch answer
    /// (`leader_epoch`, `leader_end_offset`) to our question about
    /// `asked_epoch`. Returns whether the log now agrees with the leader
    /// (false: ask again with the new latest epoch).
    pub fn truncate_to_leader(
        &self,
        asked_epoch: i32,
        leader_epoch: i32,
        leader_end_offset: i64,
    ) -> std::io::Result<bool> {
        let mut log = self.log.lock();
        let log_end = log.log_end_offset();
        let (target, done) = if leader_end_offset == UNDEFINED_OFFSET {
            // The leader knows nothing of our epoch: keep what is committed.
            (self.high_watermark(), true)
        } else if leader_epoch == asked_epoch {
            (leader_end_offset.min(log_end), true)
        } else {
            let (ours, our_end) = log.leader_epochs().end_offset_for(leader_epoch, log_end);
            if ours == leader_epoch {
                (leader_end_offset.min(our_end), true)
            } else {
                // We never had the leader's epoch: cut to where ours below it ended and ask again.
                (our_end.min(log_end), false)
            }
        };
        if target < log_end {
            log.truncate_to(target)?;
            let end = log.log_end_offset();
            tracing::warn!(
                partition = %self.tp,
                from = log_end,
                to = end,
                leader_epoch,
                "truncated a diverged follower log to agree with the leader"
            );
            drop(log);
            self.set_high_watermark(self.high_watermark().min(end));
            self.notify(end);
        }
        Ok(done || target >= log_end)
    }

    /// Our log ends before the leader's log start (retention moved on while
    /// we were away): empty it and start again at `leader_start`.
    pub fn restart_at_leader_start(&self, leader_start: i64) -> std::io::Result<()> {
        let result = tokio::task::block_in_place(|| {
            self.log.lock().truncate_fully_and_start_at(leader_start)
        });
        self.set_high_watermark(leader_start);
        result
    }
}

#[cfg(test)]
mod tests {
    use crate::config::LogConfig;
    use crate::log::batch::test_support::{assign, batch};
    use crate::log::TopicPartition;
    use crate::metadata::records::PartitionRecord;
    use crate::partition::testing::make_leader;
    use crate::partition::{Append, LogManager};

    const ME: i32 = 1;

    #[test]
    fn a_follower_takes_its_leaders_log_start_up_to_its_own_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), 0, true).unwrap();
        let (partition, _) = manager
            .open_partition(
                &TopicPartition::new("t", 0),
                uuid::Uuid::new_v4(),
                LogConfig::default(),
            )
            .unwrap();
        let mut record = PartitionRecord::new(vec![2, ME]);
        record.leader_epoch = 4;
        partition.apply_record(&record, ME, 0);
        // What the leader of epoch 4 stored at 0..10, committed below 6.
        for offset in 0..10 {
            let mut fetched = batch(&[b"v"], 0, (-1, -1, -1));
            assign(&mut fetched, offset, 4, None);
            let replicated = Append::Replication {
                records: &fetched,
                leader_epoch: 4,
                fetch_offset: offset,
                leader_high_watermark: 6,
            };
            partition.append(replicated).unwrap();
        }
        assert_eq!(partition.high_watermark(), 6);

        let changes = partition.subscribe_replica_log_starts();
        assert!(
            !partition.take_leader_log_start(3, 4),
            "an answer from an older leader"
        );
        assert!(partition.take_leader_log_start(4, 8));
        assert_eq!(
            partition.log_start_offset(),
            6,
            "capped by our high watermark"
        );
        assert!(changes.has_changed().unwrap());
        assert!(!partition.take_leader_log_start(4, 5), "never back");
        partition.take_leader_high_watermark(10);
        assert!(partition.take_leader_log_start(4, 8));
        assert_eq!(partition.log_start_offset(), 8);
        assert!(partition
            .read_log(|log| log.read(7, 100, true, i64::MAX))
            .is_err());

        make_leader(&partition, ME, 5, vec![ME, 2]);
        assert!(
            !partition.take_leader_log_start(5, 9),
            "a leader moves its own log start"
        );
    }
}
