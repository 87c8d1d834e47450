//! What a follower does to its log besides appending: where it fetches
//! from, Kafka's truncation rule after a leader change, restarting the log
//! at the leader's log start, and taking the leader's high watermark.

use crate::log::leader_epochs::UNDEFINED_OFFSET;

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
