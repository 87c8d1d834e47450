//! The balancer over random clusters (brokers, racks, replication
//! factors, sizes, produce rates, leaving and cordoned brokers): every
//! plan keeps each partition's replication factor and rack spread, never
//! places a replica on a leaving or cordoned broker, converges (planning
//! again on the result is empty), and reaches the stated balance whenever
//! it is reachable. A seeded generator makes every failure reproducible.

use std::collections::{BTreeMap, BTreeSet};

use tideline_balancer::{plan, Broker, Cluster, Partition, Plan, Settings};

/// xorshift64*: enough randomness for cluster shapes, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Case {
    cluster: Cluster,
    leaving: BTreeSet<i32>,
    racks: bool,
}

/// A random cluster whose partitions were placed badly (all on the first
/// few brokers), as after a scale-up.
fn random_case(seed: u64) -> Case {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let broker_count = 3 + rng.below(6) as i32;
    let racks = rng.below(2) == 0;
    let rack_count = 2 + rng.below(2);
    let mut brokers: Vec<Broker> = (1..=broker_count)
        .map(|id| Broker {
            id,
            rack: racks.then(|| format!("rack-{}", id as u64 % rack_count)),
            cordoned: false,
        })
        .collect();
    let mut leaving = BTreeSet::new();
    if rng.below(2) == 0 {
        leaving.insert(broker_count);
    }
    if rng.below(4) == 0 {
        brokers[0].cordoned = true;
    }
    // Crowd the replicas onto the first brokers.
    let crowded = 3.max(broker_count / 2);
    let mut partitions = Vec::new();
    for t in 0..1 + rng.below(4) {
        let rf = 1 + rng.below(3) as usize;
        for p in 0..1 + rng.below(12) as i32 {
            let first = rng.below(crowded as u64) as i32;
            let replicas: Vec<i32> = (0..rf as i32).map(|k| (first + k) % crowded + 1).collect();
            partitions.push(Partition {
                topic: format!("t{t}"),
                partition: p,
                replicas,
                size_bytes: rng.below(10_000) * 1_000,
                produce_bytes_per_second: rng.below(1_000) as f64,
            });
        }
    }
    Case {
        cluster: Cluster {
            brokers,
            partitions,
        },
        leaving,
        racks,
    }
}

fn rack_spread(cluster: &Cluster, replicas: &[i32]) -> usize {
    let rack: BTreeMap<i32, Option<String>> = cluster
        .brokers
        .iter()
        .map(|b| (b.id, b.rack.clone()))
        .collect();
    replicas
        .iter()
        .map(|b| rack[b].clone().unwrap_or_else(|| format!("broker-{b}")))
        .collect::<BTreeSet<_>>()
        .len()
}

fn spread(counts: &BTreeMap<i32, usize>) -> usize {
    counts.values().max().unwrap_or(&0) - counts.values().min().unwrap_or(&0)
}

fn counts(cluster: &Cluster, eligible: &BTreeSet<i32>, leaders_only: bool) -> BTreeMap<i32, usize> {
    let mut counts: BTreeMap<i32, usize> = eligible.iter().map(|b| (*b, 0)).collect();
    for p in &cluster.partitions {
        let held = if leaders_only {
            &p.replicas[..1]
        } else {
            &p.replicas[..]
        };
        for b in held {
            if let Some(c) = counts.get_mut(b) {
                *c += 1;
            }
        }
    }
    counts
}

#[test]
fn plans_over_random_clusters_keep_the_invariants_converge_and_balance() {
    let settings = Settings::default();
    let mut balanced_cases = 0;
    for seed in 0..1000 {
        let case = random_case(seed);
        let (cluster, leaving) = (&case.cluster, &case.leaving);
        let eligible: BTreeSet<i32> = cluster
            .brokers
            .iter()
            .filter(|b| !b.cordoned && !leaving.contains(&b.id))
            .map(|b| b.id)
            .collect();
        let first = plan(cluster, leaving, &settings);
        let after = first.applied_to(cluster);
        for (before, p) in cluster.partitions.iter().zip(&after.partitions) {
            let what = format!(
                "seed {seed}, {}-{}: {:?} → {:?}",
                p.topic, p.partition, before.replicas, p.replicas
            );
            assert_eq!(p.replicas.len(), before.replicas.len(), "RF kept: {what}");
            let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), p.replicas.len(), "no broker twice: {what}");
            assert!(
                rack_spread(cluster, &p.replicas) >= rack_spread(cluster, &before.replicas),
                "rack spread kept: {what}"
            );
            for b in p.replicas.iter().filter(|b| !before.replicas.contains(b)) {
                assert!(
                    eligible.contains(b),
                    "new replicas only on eligible brokers: {what}"
                );
            }
            if first.blocked.is_empty() {
                assert!(
                    p.replicas.iter().all(|b| !leaving.contains(b)),
                    "drained: {what}"
                );
            }
        }
        let second = plan(&after, leaving, &settings);
        assert!(
            second.is_empty(),
            "seed {seed}: a second plan moves {:?}",
            second.reassignments
        );

        // Without racks or cordons replicas always reach ±1 among the
        // brokers that stay. Leaders move only by reordering replicas, so
        // their ±1 is reachable when every partition has a follower to
        // hand leadership to (single-replica partitions lead where they
        // are stored; moving their data for leader counts is not done).
        let cordoned = cluster.brokers.iter().any(|b| b.cordoned);
        if !case.racks && !cordoned && first.blocked.is_empty() {
            balanced_cases += 1;
            assert!(
                spread(&counts(&after, &eligible, false)) <= 1,
                "seed {seed}: replicas {:?}",
                counts(&after, &eligible, false)
            );
            if cluster.partitions.iter().all(|p| p.replicas.len() >= 2) {
                assert!(
                    spread(&counts(&after, &eligible, true)) <= 1,
                    "seed {seed}: leaders {:?}",
                    counts(&after, &eligible, true)
                );
            }
        }
        // Bytes: what the plan says it copies is what its moves add.
        let added: u64 = cluster
            .partitions
            .iter()
            .zip(&after.partitions)
            .map(|(b, a)| {
                b.size_bytes
                    * a.replicas
                        .iter()
                        .filter(|r| !b.replicas.contains(r))
                        .count() as u64
            })
            .sum();
        assert_eq!(first.bytes_to_move(), added, "seed {seed}");
    }
    assert!(
        balanced_cases > 50,
        "the generator covers reachable cases: {balanced_cases}"
    );
}

fn cluster_of(brokers: i32, partitions: Vec<(Vec<i32>, u64)>) -> Cluster {
    Cluster {
        brokers: (1..=brokers)
            .map(|id| Broker {
                id,
                rack: None,
                cordoned: false,
            })
            .collect(),
        partitions: partitions
            .into_iter()
            .enumerate()
            .map(|(i, (replicas, size_bytes))| Partition {
                topic: "t".into(),
                partition: i as i32,
                replicas,
                size_bytes,
                produce_bytes_per_second: 0.0,
            })
            .collect(),
    }
}

#[test]
fn a_balanced_cluster_gets_an_empty_plan() {
    let cluster = cluster_of(
        3,
        vec![(vec![1, 2], 100), (vec![2, 3], 100), (vec![3, 1], 100)],
    );
    let plan = plan(&cluster, &BTreeSet::new(), &Settings::default());
    assert_eq!(plan, Plan::default());
}

#[test]
fn a_drain_moves_exactly_the_leaving_brokers_data_when_the_rest_is_balanced() {
    // Broker 3 holds one replica of each; 1, 2 and 4 stay and are even.
    let cluster = cluster_of(
        4,
        vec![
            (vec![3, 1], 500),
            (vec![2, 3], 700),
            (vec![4, 1], 600),
            (vec![2, 4], 600),
        ],
    );
    let plan = plan(&cluster, &BTreeSet::from([3]), &Settings::default());
    assert!(plan.blocked.is_empty());
    // The lower bound any plan must copy: every byte on broker 3.
    assert_eq!(plan.bytes_to_move(), 1_200);
    let after = plan.applied_to(&cluster);
    assert!(after.partitions.iter().all(|p| !p.replicas.contains(&3)));
    assert_eq!(plan.duration_at(100).as_secs(), 12);
}

#[test]
fn a_drain_that_leaves_too_few_brokers_is_blocked_and_says_why() {
    let cluster = cluster_of(3, vec![(vec![1, 2, 3], 100)]);
    let plan = plan(&cluster, &BTreeSet::from([3]), &Settings::default());
    assert_eq!(
        plan.blocked,
        vec!["t-0: replication factor 3 but only 2 brokers would remain".to_string()]
    );
    assert!(plan.applied_to(&cluster).partitions[0]
        .replicas
        .contains(&3));
}

#[test]
fn racks_are_never_given_up_to_drain() {
    let mut cluster = cluster_of(4, vec![(vec![1, 3], 100)]);
    for (b, rack) in cluster.brokers.iter_mut().zip(["a", "a", "b", "a"]) {
        b.rack = Some(rack.into());
    }
    // Broker 3 is the only one on rack b: moving its replica to rack a
    // would put both replicas on one rack.
    let plan = plan(&cluster, &BTreeSet::from([3]), &Settings::default());
    assert_eq!(
        plan.blocked,
        vec!["t-0: no remaining broker keeps its replicas on 2 racks".to_string()]
    );
}

#[test]
fn disk_is_evened_by_swapping_when_counts_are_already_even() {
    // Equal counts, but broker 1 holds the two big partitions.
    let cluster = cluster_of(
        2,
        vec![
            (vec![1], 1_000),
            (vec![1], 1_000),
            (vec![2], 10),
            (vec![2], 10),
        ],
    );
    let plan = plan(&cluster, &BTreeSet::new(), &Settings::default());
    let after = plan.applied_to(&cluster);
    let disk = |b: i32| -> u64 {
        after
            .partitions
            .iter()
            .filter(|p| p.replicas.contains(&b))
            .map(|p| p.size_bytes)
            .sum()
    };
    assert_eq!((disk(1), disk(2)), (1_010, 1_010));
    assert_eq!(plan.bytes_to_move(), 1_010, "one swap");
}

#[test]
fn produce_load_moves_leaderships_without_copying() {
    // Broker 1 leads both hot partitions; 2 leads both cold ones.
    let mut cluster = cluster_of(
        2,
        vec![
            (vec![1, 2], 100),
            (vec![1, 2], 100),
            (vec![2, 1], 100),
            (vec![2, 1], 100),
        ],
    );
    for (p, rate) in cluster
        .partitions
        .iter_mut()
        .zip([900.0, 900.0, 10.0, 10.0])
    {
        p.produce_bytes_per_second = rate;
    }
    let plan = plan(&cluster, &BTreeSet::new(), &Settings::default());
    assert_eq!(plan.bytes_to_move(), 0);
    assert!(plan.reassignments.iter().all(|r| r.is_leader_change_only()));
    let after = plan.applied_to(&cluster);
    let load = |b: i32| -> f64 {
        after
            .partitions
            .iter()
            .filter(|p| p.replicas[0] == b)
            .map(|p| p.produce_bytes_per_second)
            .sum()
    };
    assert_eq!((load(1), load(2)), (910.0, 910.0));
}
