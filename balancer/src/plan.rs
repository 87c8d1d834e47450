//! The planning function. It works on a copy of the assignment in goal
//! order, each step moving only what improves its goal without making a
//! higher one worse:
//!
//! 1. no replica on a leaving broker (a drain), and nothing new on a
//!    cordoned one;
//! 2. rack spread (distinct racks per partition) never made worse;
//! 3. replicas per broker within ±1;
//! 4. disk use per broker within `disk_tolerance_percent` of the mean
//!    (moves, then swaps, that keep step 3);
//! 5. preferred leaders per broker within ±1 (reordering replicas: no
//!    data moves);
//! 6. produce load per broker, by preferred leadership, as even as moving
//!    leaderships can make it while keeping step 5.
//!
//! The steps repeat until a pass changes nothing, so planning again on the
//! result gives an empty plan. Everything is deterministic: ties break by
//! broker id, then partition order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::model::{Cluster, Partition, Plan, Reassignment, Settings};

/// A partition (by index) and the replica list it gets.
type Change = (usize, Vec<i32>);

/// Passes over all the steps at most; one or two suffice in practice.
const MAX_PASSES: usize = 10;

/// Plans the reassignments that empty `leaving` and balance the rest.
pub fn plan(cluster: &Cluster, leaving: &BTreeSet<i32>, settings: &Settings) -> Plan {
    let mut state = State::new(cluster, leaving);
    let mut blocked = Vec::new();
    for pass in 0..MAX_PASSES {
        let before = state.replicas.clone();
        let drain_blocked = state.drain();
        if pass == 0 {
            blocked = drain_blocked;
        }
        state.balance_replica_counts();
        state.balance_disk(settings.disk_tolerance_percent);
        state.balance_leader_counts();
        state.balance_produce_load();
        if state.replicas == before {
            break;
        }
    }
    Plan {
        reassignments: state.reassignments(cluster),
        blocked,
    }
}

struct State<'a> {
    partitions: &'a [Partition],
    /// The working assignment, one replica list per partition.
    replicas: Vec<Vec<i32>>,
    /// Brokers that may receive replicas and leaderships.
    eligible: BTreeSet<i32>,
    leaving: BTreeSet<i32>,
    racks: BTreeMap<i32, Option<String>>,
}

impl<'a> State<'a> {
    fn new(cluster: &'a Cluster, leaving: &BTreeSet<i32>) -> State<'a> {
        State {
            partitions: &cluster.partitions,
            replicas: cluster
                .partitions
                .iter()
                .map(|p| p.replicas.clone())
                .collect(),
            eligible: cluster
                .brokers
                .iter()
                .filter(|b| !b.cordoned && !leaving.contains(&b.id))
                .map(|b| b.id)
                .collect(),
            leaving: leaving.clone(),
            racks: cluster
                .brokers
                .iter()
                .map(|b| (b.id, b.rack.clone()))
                .collect(),
        }
    }

    /// Distinct racks among `replicas`; a broker without a rack counts as
    /// its own, so clusters without racks never constrain anything.
    fn rack_spread(&self, replicas: &[i32]) -> usize {
        let racks: BTreeSet<String> = replicas
            .iter()
            .map(|b| match self.racks.get(b).cloned().flatten() {
                Some(rack) => rack,
                None => format!("\0broker-{b}"),
            })
            .collect();
        racks.len()
    }

    /// `replicas` with `from` replaced by `to`, if that keeps the spread.
    fn replaced(&self, replicas: &[i32], from: i32, to: i32) -> Option<Vec<i32>> {
        if replicas.contains(&to) {
            return None;
        }
        let next: Vec<i32> = replicas
            .iter()
            .map(|&b| if b == from { to } else { b })
            .collect();
        (self.rack_spread(&next) >= self.rack_spread(replicas)).then_some(next)
    }

    fn replica_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.eligible.iter().map(|b| (*b, 0)).collect();
        for replicas in &self.replicas {
            for b in replicas {
                if let Some(c) = counts.get_mut(b) {
                    *c += 1;
                }
            }
        }
        counts
    }

    fn disk(&self) -> BTreeMap<i32, u64> {
        let mut disk: BTreeMap<i32, u64> = self.eligible.iter().map(|b| (*b, 0)).collect();
        for (i, replicas) in self.replicas.iter().enumerate() {
            for b in replicas {
                if let Some(d) = disk.get_mut(b) {
                    *d += self.partitions[i].size_bytes;
                }
            }
        }
        disk
    }

    /// Partitions led (preferred) by each eligible broker.
    fn leader_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.eligible.iter().map(|b| (*b, 0)).collect();
        for replicas in &self.replicas {
            if let Some(c) = replicas.first().and_then(|b| counts.get_mut(b)) {
                *c += 1;
            }
        }
        counts
    }

    /// Step 1: every replica on a leaving broker goes to the eligible
    /// broker with the fewest replicas (then the least disk) that keeps
    /// the partition's rack spread. Returns what cannot be drained.
    fn drain(&mut self) -> Vec<String> {
        let mut blocked = Vec::new();
        for i in 0..self.replicas.len() {
            let on_leaving: Vec<i32> = self.replicas[i]
                .iter()
                .copied()
                .filter(|b| self.leaving.contains(b))
                .collect();
            for from in on_leaving {
                let (counts, disk) = (self.replica_counts(), self.disk());
                let target = self
                    .eligible
                    .iter()
                    .filter_map(|&to| self.replaced(&self.replicas[i], from, to).map(|r| (to, r)))
                    .min_by_key(|(to, _)| (counts[to], disk[to], *to));
                let p = &self.partitions[i];
                match target {
                    Some((_, next)) => self.replicas[i] = next,
                    None if self.eligible.len() < self.replicas[i].len() => blocked.push(format!(
                        "{}-{}: replication factor {} but only {} brokers would remain",
                        p.topic,
                        p.partition,
                        self.replicas[i].len(),
                        self.eligible.len()
                    )),
                    None => blocked.push(format!(
                        "{}-{}: no remaining broker keeps its replicas on {} racks",
                        p.topic,
                        p.partition,
                        self.rack_spread(&self.replicas[i])
                    )),
                }
            }
        }
        blocked
    }

    /// Step 3: moves a replica from the fullest broker to the emptiest
    /// until counts are within ±1 (or no move keeps the rack spread). The
    /// smallest partition that can go is moved, to copy the least.
    fn balance_replica_counts(&mut self) {
        loop {
            let counts = self.replica_counts();
            let Some((&hi, &most)) = counts.iter().max_by_key(|(b, c)| (**c, -**b)) else {
                return;
            };
            let mut targets: Vec<(usize, i32)> = counts
                .iter()
                .filter(|(_, c)| **c + 1 < most)
                .map(|(b, c)| (*c, *b))
                .collect();
            targets.sort();
            let found = targets.iter().find_map(|&(_, lo)| {
                (0..self.replicas.len())
                    .filter(|&i| self.replicas[i].contains(&hi))
                    .filter_map(|i| self.replaced(&self.replicas[i], hi, lo).map(|r| (i, r)))
                    .min_by_key(|(i, _)| (self.partitions[*i].size_bytes, *i))
            });
            match found {
                Some((i, next)) => self.replicas[i] = next,
                None => return,
            }
        }
    }

    /// Step 4: narrows the gap between the heaviest and the lightest
    /// broker while it exceeds the tolerance, by a move when the replica
    /// counts allow one and otherwise by swapping a larger replica for a
    /// smaller one, choosing the change closest to halving the gap.
    fn balance_disk(&mut self, tolerance_percent: f64) {
        let limit = self.replicas.len() * self.eligible.len().max(1);
        for _ in 0..limit {
            let disk = self.disk();
            let (Some((&heavy, &dh)), Some((&light, &dl))) = (
                disk.iter().max_by_key(|(b, d)| (**d, -**b)),
                disk.iter().min_by_key(|(b, d)| (**d, **b)),
            ) else {
                return;
            };
            let mean = disk.values().sum::<u64>() as f64 / disk.len() as f64;
            if (dh - dl) as f64 <= mean * tolerance_percent / 100.0 {
                return;
            }
            let gap = dh - dl;
            let counts = self.replica_counts();
            let spread = counts.values().max().unwrap_or(&0) - counts.values().min().unwrap_or(&0);
            // A move keeps the counts within ±1 (or no worse than now).
            let move_allowed = {
                let mut after = counts.clone();
                *after.get_mut(&heavy).unwrap() -= 1;
                *after.get_mut(&light).unwrap() += 1;
                after.values().max().unwrap_or(&0) - after.values().min().unwrap_or(&0)
                    <= spread.max(1)
            };
            // Each candidate: (distance from half the gap, changes).
            let mut best: Option<(u64, Vec<Change>)> = None;
            let mut consider = |shift: u64, changes: Vec<Change>| {
                if shift == 0 || shift >= gap {
                    return;
                }
                let distance = (2 * shift).abs_diff(gap);
                if best.as_ref().is_none_or(|(d, _)| distance < *d) {
                    best = Some((distance, changes));
                }
            };
            let on_heavy: Vec<usize> = (0..self.replicas.len())
                .filter(|&i| self.replicas[i].contains(&heavy))
                .collect();
            let on_light: Vec<usize> = (0..self.replicas.len())
                .filter(|&i| self.replicas[i].contains(&light))
                .collect();
            for &i in &on_heavy {
                let Some(moved) = self.replaced(&self.replicas[i], heavy, light) else {
                    continue;
                };
                let size = self.partitions[i].size_bytes;
                if move_allowed {
                    consider(size, vec![(i, moved.clone())]);
                }
                for &j in &on_light {
                    let smaller = self.partitions[j].size_bytes;
                    if smaller >= size {
                        continue;
                    }
                    let Some(back) = self.replaced(&self.replicas[j], light, heavy) else {
                        continue;
                    };
                    consider(size - smaller, vec![(i, moved.clone()), (j, back)]);
                }
            }
            match best {
                Some((_, changes)) => {
                    for (i, next) in changes {
                        self.replicas[i] = next;
                    }
                }
                None => return,
            }
        }
    }

    /// Step 5: while some broker leads two more partitions than another,
    /// shifts preferred leadership along a path of partitions (each led
    /// by one broker with a replica on the next) from a broker with the
    /// most to one with at least two fewer. Such a path exists whenever
    /// the balance is reachable.
    fn balance_leader_counts(&mut self) {
        loop {
            let counts = self.leader_counts();
            let Some(&most) = counts.values().max() else {
                return;
            };
            let sources: Vec<i32> = counts
                .iter()
                .filter(|(_, c)| **c == most)
                .map(|(b, _)| *b)
                .collect();
            let Some(path) = sources
                .iter()
                .find_map(|&s| self.leadership_path(s, most, &counts))
            else {
                return;
            };
            for (i, to) in path {
                self.make_leader(i, to);
            }
        }
    }

    /// Breadth-first from `source`: the partitions whose leadership moves,
    /// each to the broker it moves to, ending on a broker that leads at
    /// most `most - 2`.
    fn leadership_path(
        &self,
        source: i32,
        most: usize,
        counts: &BTreeMap<i32, usize>,
    ) -> Option<Vec<(usize, i32)>> {
        let mut came_from: BTreeMap<i32, (i32, usize)> = BTreeMap::new();
        let mut queue = VecDeque::from([source]);
        while let Some(at) = queue.pop_front() {
            if at != source && counts[&at] + 2 <= most {
                let mut path = Vec::new();
                let mut to = at;
                while to != source {
                    let (from, i) = came_from[&to];
                    path.push((i, to));
                    to = from;
                }
                return Some(path);
            }
            for (i, replicas) in self.replicas.iter().enumerate() {
                if replicas.first() != Some(&at) {
                    continue;
                }
                for &next in &replicas[1..] {
                    if self.eligible.contains(&next)
                        && next != source
                        && !came_from.contains_key(&next)
                    {
                        came_from.insert(next, (at, i));
                        queue.push_back(next);
                    }
                }
            }
        }
        None
    }

    /// Partitions `broker` is the preferred leader of.
    fn led_by(&self, broker: i32) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|&i| self.replicas[i].first() == Some(&broker))
            .collect()
    }

    fn make_leader(&mut self, i: usize, broker: i32) {
        let replicas = &mut self.replicas[i];
        if let Some(pos) = replicas.iter().position(|b| *b == broker) {
            let b = replicas.remove(pos);
            replicas.insert(0, b);
        }
    }

    /// Step 6: moves (or swaps) preferred leaderships off the broker with
    /// the most produce load while that lowers the pair's maximum and
    /// keeps leader counts within ±1. Each change lowers the sum of
    /// squared loads, so this ends.
    fn balance_produce_load(&mut self) {
        let limit = self.replicas.len() * self.eligible.len().max(1);
        for _ in 0..limit {
            let mut load: BTreeMap<i32, f64> = self.eligible.iter().map(|b| (*b, 0.0)).collect();
            for (i, replicas) in self.replicas.iter().enumerate() {
                if let Some(l) = replicas.first().and_then(|b| load.get_mut(b)) {
                    *l += self.partitions[i].produce_bytes_per_second;
                }
            }
            let Some((&hot, &hot_load)) = load
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            else {
                return;
            };
            let counts = self.leader_counts();
            let spread_ok = |from: i32, to: i32| {
                let mut after = counts.clone();
                *after.get_mut(&from).unwrap() -= 1;
                *after.get_mut(&to).unwrap() += 1;
                after.values().max().unwrap_or(&0) - after.values().min().unwrap_or(&0) <= 1
            };
            // (new maximum of the pair, changes as (partition, new leader)).
            let mut best: Option<(f64, Vec<(usize, i32)>)> = None;
            let mut consider = |pair_max: f64, changes: Vec<(usize, i32)>| {
                if pair_max < hot_load && best.as_ref().is_none_or(|(m, _)| pair_max < *m) {
                    best = Some((pair_max, changes));
                }
            };
            for i in self.led_by(hot) {
                let rate = self.partitions[i].produce_bytes_per_second;
                if rate <= 0.0 {
                    continue;
                }
                for &to in &self.replicas[i][1..] {
                    let Some(&to_load) = load.get(&to) else {
                        continue;
                    };
                    if spread_ok(hot, to) {
                        consider((hot_load - rate).max(to_load + rate), vec![(i, to)]);
                    }
                    for j in self.led_by(to) {
                        let back = self.partitions[j].produce_bytes_per_second;
                        if back < rate && self.replicas[j].contains(&hot) {
                            let shift = rate - back;
                            consider(
                                (hot_load - shift).max(to_load + shift),
                                vec![(i, to), (j, hot)],
                            );
                        }
                    }
                }
            }
            match best {
                Some((_, changes)) => {
                    for (i, to) in changes {
                        self.make_leader(i, to);
                    }
                }
                None => return,
            }
        }
    }

    fn reassignments(&self, cluster: &Cluster) -> Vec<Reassignment> {
        cluster
            .partitions
            .iter()
            .zip(&self.replicas)
            .filter(|(p, to)| p.replicas != **to)
            .map(|(p, to)| Reassignment {
                topic: p.topic.clone(),
                partition: p.partition,
                from: p.replicas.clone(),
                to: to.clone(),
                bytes: p.size_bytes * to.iter().filter(|b| !p.replicas.contains(b)).count() as u64,
            })
            .collect()
    }
}
