//! A partition's role and ISR: taking the role the metadata gives it,
//! recording follower progress on a leader, proposing ISR changes, and the
//! high watermark that follows from them. The decisions are made here under
//! the partition's locks; `replication::manager` carries them out (starting
//! fetchers, sending ISR changes to the controller).

use crate::error::ResponseError;
use crate::metadata::records::PartitionRecord;

use super::replica_state::FollowerProgress;
use super::Partition;

/// This replica's role as one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub leader_epoch: i32,
    pub isr_size: i32,
}

/// What the replica manager must do after the metadata changed a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// This broker leads from `leader_epoch` on: stop fetching.
    BecameLeader,
    /// Another broker leads: fetch from it (after truncating).
    Follow { leader: i32, leader_epoch: i32 },
    /// No leader, or this broker is no longer a replica: stop fetching.
    Stop,
}

/// An ISR change a leader wants the controller to make, computed at
/// `partition_epoch` (it applies only if the partition is still there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

impl Partition {
    pub fn leadership(&self) -> Leadership {
        let st = self.replica.lock();
        Leadership {
            is_leader: st.is_leader,
            leader_epoch: st.leader_epoch,
            isr_size: st.isr.len() as i32,
        }
    }

    /// Whether a reassignment is adding `replica` (its fetches are throttled).
    pub fn is_adding(&self, replica: i32) -> bool {
        self.replica.lock().adding.contains(&replica)
    }

    /// Takes the role, epochs, replicas and ISR of `record` (this broker is
    /// `me`). Returns the role change to act on, if the leader or leader
    /// epoch changed; `None` when only the ISR or replica set did, or
    /// nothing.
    pub fn apply_record(&self, record: &PartitionRecord, me: i32, now: i64) -> Option<RoleChange> {
        let mut log = self.log.lock();
        let log_end = log.log_end_offset();
        // The replica state is released before the high watermark moves
        // (which takes it again).
        let (change, role_changed) = {
            let mut st = self.replica.lock();
            let role_changed = st.leader != record.leader || st.leader_epoch != record.leader_epoch;
            if !role_changed && st.partition_epoch == record.partition_epoch {
                return None;
            }
            st.leader = record.leader;
            st.leader_epoch = record.leader_epoch;
            st.partition_epoch = record.partition_epoch;
            st.replicas = record.replicas.clone();
            st.isr = record.isr.clone();
            st.adding = record.adding_replicas.clone();
            st.pending_isr = None;
            let change = if record.leader == me {
                if role_changed {
                    st.is_leader = true;
                    st.epoch_start_offset = log_end;
                    st.followers = record
                        .replicas
                        .iter()
                        .filter(|r| **r != me)
                        .map(|r| (*r, FollowerProgress::new(now, record.isr.contains(r))))
                        .collect();
                    drop(st);
                    if let Err(e) = log.assign_leader_epoch(record.leader_epoch) {
                        tracing::error!(partition = %self.tp, error = %e, "cannot record the leader epoch");
                    }
                    tracing::info!(
                        partition = %self.tp,
                        leader_epoch = record.leader_epoch,
                        isr = ?record.isr,
                        log_end_offset = log_end,
                        high_watermark = self.high_watermark(),
                        "became leader"
                    );
                    Some(RoleChange::BecameLeader)
                } else {
                    // Same leadership, new ISR or replica set (a reassignment).
                    let replicas = record.replicas.clone();
                    st.followers.retain(|r, _| replicas.contains(r));
                    for r in replicas.iter().filter(|r| **r != me) {
                        st.followers
                            .entry(*r)
                            .or_insert_with(|| FollowerProgress::new(now, false));
                    }
                    None
                }
            } else {
                st.is_leader = false;
                st.followers.clear();
                match role_changed {
                    false => None,
                    true if record.leader >= 0 && record.replicas.contains(&me) => {
                        tracing::info!(
                            partition = %self.tp,
                            leader = record.leader,
                            leader_epoch = record.leader_epoch,
                            "following"
                        );
                        Some(RoleChange::Follow {
                            leader: record.leader,
                            leader_epoch: record.leader_epoch,
                        })
                    }
                    true => Some(RoleChange::Stop),
                }
            };
            (change, role_changed)
        };
        drop(log);
        if record.leader == me {
            self.update_leader_high_watermark();
        }
        if role_changed {
            self.wake_waiters();
        }
        // Replicas may have come or gone: the low watermark with them.
        self.replica_log_starts_changed();
        change
    }

    /// On a leader, for a fetch from replica `follower` at `fetch_offset`
    /// (its log end) with its `log_start_offset`: records its progress and
    /// advances the high watermark. Returns the ISR to propose once the
    /// follower has caught up.
    pub fn record_follower_fetch(
        &self,
        follower: i32,
        fetch_offset: i64,
        log_start_offset: i64,
        now: i64,
    ) -> Result<Option<IsrProposal>, ResponseError> {
        let log_end = self.log_end_offset();
        let mut log_start_moved = false;
        let expand = {
            let mut st = self.replica.lock();
            if !st.is_leader || !st.replicas.contains(&follower) {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if fetch_offset > log_end {
                // Diverged: the follower must truncate first.
                return Err(ResponseError::OffsetOutOfRange);
            }
            let progress = st
                .followers
                .entry(follower)
                .or_insert_with(|| FollowerProgress::new(now, false));
            progress.on_fetch(fetch_offset, log_end, now);
            if progress.log_start_offset != log_start_offset {
                progress.log_start_offset = log_start_offset;
                log_start_moved = true;
            }
            let hw = self.high_watermark();
            if !st.isr.contains(&follower)
                && st.pending_isr.is_none()
                && fetch_offset >= hw
                && fetch_offset >= st.epoch_start_offset
            {
                let mut isr = st.isr.clone();
                isr.push(follower);
                st.pending_isr = Some(isr.clone());
                Some(IsrProposal {
                    partition_epoch: st.partition_epoch,
                    isr,
                })
            } else {
                None
            }
        };
        self.update_leader_high_watermark();
        if log_start_moved {
            self.replica_log_starts_changed();
        }
        Ok(expand)
    }

    /// On a leader: the ISR without the followers (not `me`) that have not
    /// caught up within `lag_ms`, if there are any and no change is pending.
    pub fn propose_shrink(&self, me: i32, now: i64, lag_ms: i64) -> Option<IsrProposal> {
        let mut st = self.replica.lock();
        if !st.is_leader || st.pending_isr.is_some() {
            return None;
        }
        let laggards = st.laggards(me, now, lag_ms);
        if laggards.is_empty() {
            return None;
        }
        let isr: Vec<i32> = st
            .isr
            .iter()
            .copied()
            .filter(|b| !laggards.contains(b))
            .collect();
        tracing::warn!(
            partition = %self.tp,
            from = ?st.isr,
            to = ?isr,
            lagging = ?laggards,
            "shrinking the ISR: followers have not caught up within replica.lag.time.max.ms"
        );
        st.pending_isr = Some(isr.clone());
        Some(IsrProposal {
            partition_epoch: st.partition_epoch,
            isr,
        })
    }

    /// The controller refused a proposal made at `partition_epoch`: forget
    /// it, unless the metadata moved on meanwhile (then it decides).
    pub fn proposal_refused(&self, partition_epoch: i32) {
        let mut st = self.replica.lock();
        if st.partition_epoch == partition_epoch {
            st.pending_isr = None;
        }
    }

    /// On a leader: moves the high watermark to what the ISR allows (after
    /// an append, a follower's fetch or an ISR change). Does nothing on a
    /// follower, which takes its leader's.
    pub(super) fn update_leader_high_watermark(&self) {
        let log_end = self.log_end_offset();
        let st = self.replica.lock();
        if !st.is_leader {
            return;
        }
        if let Some(hw) = st.isr_high_watermark(st.leader, log_end) {
            self.advance_high_watermark(hw);
        }
    }
}
