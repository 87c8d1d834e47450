//! Replica placement for new partitions, as Kafka's `AdminUtils` does it:
//! the first replica of consecutive partitions goes round-robin over the
//! brokers from a start index, and the other replicas follow at a shift that
//! grows every time the partitions wrap around the brokers, so replicas and
//! preferred leaders (the first replica) spread evenly. With racks
//! (`broker.rack` set on every broker), brokers are taken in an order that
//! alternates racks, and a partition's further replicas skip racks (and
//! brokers) it already uses until every rack has one.

use std::collections::{BTreeMap, BTreeSet};

/// A broker that may receive replicas.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// Replica lists for `count` partitions numbered from `first_partition`.
/// `seed` picks the start index and shift (Kafka picks them at random; a
/// per-topic seed keeps topics from all starting on the same broker).
pub fn assign(
    candidates: &[Candidate],
    first_partition: i32,
    count: i32,
    replication_factor: usize,
    seed: usize,
) -> Vec<Vec<i32>> {
    let mut brokers: Vec<Candidate> = candidates.to_vec();
    brokers.sort_by_key(|b| b.id);
    if brokers.is_empty() || replication_factor == 0 || replication_factor > brokers.len() {
        return Vec::new();
    }
    let rack_aware = brokers.iter().all(|b| b.rack.is_some());
    if rack_aware {
        brokers = rack_alternated(&brokers);
    }
    let n = brokers.len();
    let start_index = seed % n;
    let mut shift = (seed / n) % n.max(1);
    let mut result = Vec::with_capacity(count.max(0) as usize);
    for i in 0..count.max(0) {
        let partition = (first_partition + i) as usize;
        if partition > 0 && partition.is_multiple_of(n) {
            shift += 1;
        }
        let first = (partition + start_index) % n;
        let mut replicas = vec![first];
        if rack_aware {
            let racks: BTreeSet<&str> = brokers.iter().filter_map(|b| b.rack.as_deref()).collect();
            let mut used_racks: BTreeSet<&str> =
                BTreeSet::from([brokers[first].rack.as_deref().unwrap_or("")]);
            let mut k = 0;
            while replicas.len() < replication_factor {
                let candidate = replica_index(first, shift * racks.len() + k, 0, n);
                k += 1;
                let rack = brokers[candidate].rack.as_deref().unwrap_or("");
                let all_racks_used = used_racks.len() == racks.len();
                if replicas.contains(&candidate) || (!all_racks_used && used_racks.contains(rack)) {
                    if k > n * n {
                        break; // cannot happen with enough brokers; avoid looping forever
                    }
                    continue;
                }
                used_racks.insert(rack);
                replicas.push(candidate);
            }
        } else {
            for j in 0..replication_factor - 1 {
                replicas.push(replica_index(first, shift, j, n));
            }
        }
        result.push(replicas.into_iter().map(|r| brokers[r].id).collect());
    }
    result
}

fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    if n == 1 {
        return first;
    }
    let step = 1 + (shift + j) % (n - 1);
    (first + step) % n
}

/// Brokers ordered so that consecutive ones are on different racks:
/// the first broker of each rack, then the second of each, and so on.
fn rack_alternated(brokers: &[Candidate]) -> Vec<Candidate> {
    let mut by_rack: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.as_deref().unwrap_or(""))
            .or_default()
            .push(b);
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for members in by_rack.values() {
            if let Some(b) = members.get(round) {
                out.push((*b).clone());
            }
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| Candidate {
                id: i as i32 + 1,
                rack: r.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn replicas_and_leaders_spread_evenly() {
        let b = brokers(&[None; 5]);
        let assignment = assign(&b, 0, 10, 3, 0);
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for r in &assignment {
            assert_eq!(r.len(), 3);
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), 3, "no broker twice: {r:?}");
            *leaders.entry(r[0]).or_insert(0) += 1;
            for x in r {
                *replicas.entry(*x).or_insert(0) += 1;
            }
        }
        assert!(leaders.values().all(|&c| c == 2), "{leaders:?}");
        assert!(replicas.values().all(|&c| c == 6), "{replicas:?}");
    }

    #[test]
    fn every_partition_spans_as_many_racks_as_it_can() {
        let b = brokers(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let rack_of = |id: i32| b[(id - 1) as usize].rack.clone().unwrap();
        for seed in 0..12 {
            let assignment = assign(&b, 0, 12, 3, seed);
            assert_eq!(assignment.len(), 12);
            let mut leaders = BTreeMap::new();
            for r in &assignment {
                let racks: BTreeSet<_> = r.iter().map(|id| rack_of(*id)).collect();
                assert_eq!(racks.len(), 3, "seed {seed}: {r:?} must span 3 racks");
                *leaders.entry(r[0]).or_insert(0) += 1;
            }
            assert!(
                leaders.values().all(|&c| c == 2),
                "seed {seed}: {leaders:?}"
            );
        }
        // Two replicas on three racks, four brokers: still distinct racks.
        let b = brokers(&[Some("a"), Some("b"), Some("c"), Some("a")]);
        for r in assign(&b, 0, 8, 2, 3) {
            assert_ne!(b[(r[0] - 1) as usize].rack, b[(r[1] - 1) as usize].rack);
        }
    }
}
