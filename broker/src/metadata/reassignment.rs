//! Partition reassignment, as KIP-455 defines it: moving a partition from
//! replicas R to target T first *adds* T \ R (the replica set becomes
//! T ∪ R, the new replicas fetch from the leader and catch up), and once
//! every added replica is in the ISR the controller *switches*: the replica
//! set becomes T, leadership moves into T if needed, and R \ T are removed
//! (their brokers delete the log). Cancelling before the switch goes back
//! to R. Every step is a `PartitionChange`, guarded by the partition epoch.

use std::collections::BTreeSet;

use super::records::{PartitionChange, PartitionRecord, ReplicaSet};

/// The replicas a partition had before the reassignment in progress (or
/// its replicas, when none is).
pub fn original_replicas(p: &PartitionRecord) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.adding_replicas.contains(r))
        .collect()
}

/// The change that starts moving `p` to `target` (replacing a reassignment
/// already in progress). `None` when `target` is what it already has.
pub fn start(
    topic_id: uuid::Uuid,
    index: i32,
    p: &PartitionRecord,
    target: &[i32],
) -> Option<PartitionChange> {
    let original = original_replicas(p);
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let nothing_in_progress = p.adding_replicas.is_empty() && p.removing_replicas.is_empty();
    if adding.is_empty() && removing.is_empty() && nothing_in_progress && original == target {
        return None;
    }
    // Target replicas first (their order is the new preference), then the
    // ones on their way out.
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    Some(PartitionChange {
        topic_id,
        partition: index,
        expected_partition_epoch: p.partition_epoch,
        leader: None,
        isr: None,
        replicas: Some(ReplicaSet {
            replicas,
            adding,
            removing,
        }),
        unclean: false,
    })
}

/// The change that cancels the reassignment in progress, going back to the
/// original replicas; `None` if there is none.
pub fn cancel(topic_id: uuid::Uuid, index: i32, p: &PartitionRecord) -> Option<PartitionChange> {
    if p.adding_replicas.is_empty() && p.removing_replicas.is_empty() {
        return None;
    }
    Some(PartitionChange {
        topic_id,
        partition: index,
        expected_partition_epoch: p.partition_epoch,
        leader: None,
        isr: None,
        replicas: Some(ReplicaSet {
            replicas: original_replicas(p),
            adding: Vec::new(),
            removing: Vec::new(),
        }),
        unclean: false,
    })
}

/// Applied after every change of a partition: once every replica being
/// added is in the ISR, switches to the target replica set (moving the
/// leadership into it if needed). Also repairs a leader that left the
/// replica set. Returns whether the leader changed.
pub fn settle(p: &mut PartitionRecord, live: &BTreeSet<i32>) -> bool {
    let in_progress = !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty();
    if in_progress && p.adding_replicas.iter().all(|r| p.isr.contains(r)) {
        let target = p.target_replicas();
        p.replicas = target;
        p.adding_replicas.clear();
        p.removing_replicas.clear();
    }
    p.isr.retain(|b| p.replicas.contains(b));
    if p.leader >= 0 && !p.replicas.contains(&p.leader) {
        p.leader = p
            .replicas
            .iter()
            .copied()
            .find(|b| p.isr.contains(b) && live.contains(b))
            .unwrap_or(-1);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_adds_then_switches_then_removes() {
        let mut p = PartitionRecord::new(vec![1, 2, 3]);
        let id = uuid::Uuid::new_v4();
        let change = start(id, 0, &p, &[2, 3, 4]).unwrap();
        let set = change.replicas.unwrap();
        assert_eq!(set.replicas, vec![2, 3, 4, 1]);
        assert_eq!(set.adding, vec![4]);
        assert_eq!(set.removing, vec![1]);
        p.replicas = set.replicas;
        p.adding_replicas = set.adding;
        p.removing_replicas = set.removing;
        let live = BTreeSet::from([1, 2, 3, 4]);
        assert!(!settle(&mut p, &live), "4 has not caught up");
        assert_eq!(p.replicas, vec![2, 3, 4, 1]);
        assert_eq!(original_replicas(&p), vec![2, 3, 1]);
        assert!(cancel(id, 0, &p).is_some());
        p.isr.push(4);
        assert!(settle(&mut p, &live), "leader 1 is removed");
        assert_eq!(p.replicas, vec![2, 3, 4]);
        assert_eq!(p.isr, vec![2, 3, 4]);
        assert_eq!(p.leader, 2);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert!(cancel(id, 0, &p).is_none());
        assert!(start(id, 0, &p, &[2, 3, 4]).is_none(), "already there");
    }
}
