//! One partition's replication state on this broker: its role and ISR as the
//! metadata gives them, and on a leader what each follower's fetches said.
//! Plain data and the rules on it (the high watermark the ISR allows, who
//! lags); the partition holds it under its `replica` lock.

use std::collections::HashMap;

/// One partition's replication state on this broker, mirrored from the
/// metadata image plus what only the leader knows (follower progress).
#[derive(Debug)]
pub struct ReplicaState {
    /// The leader in the image, -1 when offline or unknown.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub is_leader: bool,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas being added by a reassignment (their fetches are throttled).
    pub adding: Vec<i32>,
    /// Leader only: what each follower's fetches told us.
    pub followers: HashMap<i32, FollowerProgress>,
    /// Leader only: the log end when this leader's epoch began; a follower
    /// rejoins the ISR only once it has everything before it.
    pub epoch_start_offset: i64,
    /// Leader only: an ISR change sent to the controller and not yet seen
    /// in the metadata. Until then the high watermark counts both the old
    /// and the proposed ISR (Kafka's "maximal ISR").
    pub pending_isr: Option<Vec<i32>>,
}

impl Default for ReplicaState {
    fn default() -> Self {
        ReplicaState {
            leader: -1,
            leader_epoch: -1,
            partition_epoch: -1,
            is_leader: false,
            replicas: Vec::new(),
            isr: Vec::new(),
            adding: Vec::new(),
            followers: HashMap::new(),
            epoch_start_offset: 0,
            pending_isr: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FollowerProgress {
    /// The follower's log end offset: its last fetch offset (-1: unknown).
    pub log_end_offset: i64,
    /// The follower's log start offset, from its last fetch (-1: unknown);
    /// the low watermark DeleteRecords waits for is the smallest of these.
    pub log_start_offset: i64,
    /// Last time the follower had everything the leader had (ms).
    pub last_caught_up_ms: i64,
    /// The leader's log end and the time of the follower's previous fetch:
    /// a fetch reaching that offset proves it was caught up back then.
    pub last_fetch_leader_end: i64,
    pub last_fetch_ms: i64,
}

impl FollowerProgress {
    pub fn new(now_ms: i64, in_sync: bool) -> Self {
        FollowerProgress {
            log_end_offset: -1,
            log_start_offset: -1,
            last_caught_up_ms: if in_sync { now_ms } else { 0 },
            last_fetch_leader_end: -1,
            last_fetch_ms: 0,
        }
    }

    /// Kafka's `Replica.updateFetchState`.
    pub fn on_fetch(&mut self, fetch_offset: i64, leader_end: i64, now_ms: i64) {
        if fetch_offset >= leader_end {
            self.last_caught_up_ms = self.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= self.last_fetch_leader_end {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = fetch_offset;
        self.last_fetch_leader_end = leader_end;
        self.last_fetch_ms = now_ms;
    }
}

impl ReplicaState {
    /// The ISR the high watermark must respect: the current one plus any
    /// member a pending change adds.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            for b in pending {
                if !isr.contains(b) {
                    isr.push(*b);
                }
            }
        }
        isr
    }

    /// The high watermark the ISR allows: the smallest log end among its
    /// members; `None` while some member's progress is unknown.
    pub fn isr_high_watermark(&self, me: i32, my_log_end: i64) -> Option<i64> {
        let mut hw = my_log_end;
        for b in self.maximal_isr() {
            if b == me {
                continue;
            }
            let end = self.followers.get(&b)?.log_end_offset;
            if end < 0 {
                return None;
            }
            hw = hw.min(end);
        }
        Some(hw)
    }

    /// ISR members (other than the leader) that have not caught up within
    /// `lag_ms`.
    pub fn laggards(&self, me: i32, now_ms: i64, lag_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|b| *b != me)
            .filter(|b| {
                self.followers
                    .get(b)
                    .is_none_or(|f| now_ms - f.last_caught_up_ms > lag_ms)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_high_watermark_is_the_smallest_isr_log_end_including_pending_members() {
        let mut state = ReplicaState {
            isr: vec![1, 2],
            ..ReplicaState::default()
        };
        assert_eq!(state.isr_high_watermark(1, 10), None, "follower 2 unknown");
        state.followers.insert(2, FollowerProgress::new(0, true));
        state.followers.get_mut(&2).unwrap().on_fetch(7, 10, 5);
        assert_eq!(state.isr_high_watermark(1, 10), Some(7));
        let mut f3 = FollowerProgress::new(0, false);
        f3.on_fetch(4, 10, 5);
        state.followers.insert(3, f3);
        assert_eq!(
            state.isr_high_watermark(1, 10),
            Some(7),
            "3 is not in the ISR"
        );
        state.pending_isr = Some(vec![1, 2, 3]);
        assert_eq!(
            state.isr_high_watermark(1, 10),
            Some(4),
            "a pending member counts"
        );
    }

    #[test]
    fn a_follower_is_caught_up_when_it_reaches_the_leaders_end_of_its_previous_fetch() {
        let mut f = FollowerProgress::new(0, true);
        f.on_fetch(5, 10, 1000); // behind
        assert_eq!(f.last_caught_up_ms, 0);
        f.on_fetch(10, 12, 1500); // reached the end as of the last fetch
        assert_eq!(f.last_caught_up_ms, 1000);
        f.on_fetch(12, 12, 2000);
        assert_eq!(f.last_caught_up_ms, 2000);
        let state = ReplicaState {
            isr: vec![1, 2],
            followers: HashMap::from([(2, f)]),
            ..ReplicaState::default()
        };
        assert!(state.laggards(1, 2500, 1000).is_empty());
        assert_eq!(state.laggards(1, 3500, 1000), vec![2]);
    }
}
