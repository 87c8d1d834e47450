//! Safe rolling restarts: which broker to restart next, if any. A pure
//! decision from what the cluster reports, so it can be tested against a
//! real cluster and in isolation alike.
//!
//! Rules: restart nothing while any broker is not ready or any partition is
//! under-replicated; never restart a broker whose absence would take a
//! partition below `min.insync.replicas`; restart the active controller
//! last (each restart of it costs a controller election).

/// One partition as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionHealth {
    pub topic: String,
    pub partition: i32,
    /// The leader's node id; -1 when the partition is offline.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_insync_replicas: i32,
}

/// What the roller knows about the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterHealth {
    /// Brokers the cluster lists as live.
    pub live_brokers: Vec<i32>,
    pub controller: Option<i32>,
    pub partitions: Vec<PartitionHealth>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Every broker runs the desired pod template.
    Done,
    /// Restart this broker now.
    Restart(i32),
    /// Not safe yet; the reason goes into the Reconciling condition.
    Wait(String),
}

/// `pending`: brokers still running an old pod template; `expected`: every
/// broker of the cluster.
pub fn next_step(health: &ClusterHealth, expected: &[i32], pending: &[i32]) -> RollStep {
    if pending.is_empty() {
        return RollStep::Done;
    }
    if let Some(missing) = expected.iter().find(|b| !health.live_brokers.contains(b)) {
        return RollStep::Wait(format!("broker {missing} is not live"));
    }
    let under: Vec<String> = health
        .partitions
        .iter()
        .filter(|p| p.isr.len() < p.replicas.len())
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect();
    if !under.is_empty() {
        return RollStep::Wait(format!(
            "{} partition(s) under-replicated ({})",
            under.len(),
            under.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut candidates: Vec<i32> = pending.to_vec();
    candidates.sort_by_key(|b| (Some(*b) == health.controller, *b));
    let mut blocked = Vec::new();
    for broker in candidates {
        let below = health
            .partitions
            .iter()
            .find(|p| p.isr.contains(&broker) && (p.isr.len() as i32 - 1) < p.min_insync_replicas);
        match below {
            None => return RollStep::Restart(broker),
            Some(p) => blocked.push(format!(
                "restarting broker {broker} would take {}-{} below min.insync.replicas={}",
                p.topic, p.partition, p.min_insync_replicas
            )),
        }
    }
    RollStep::Wait(blocked.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], min_isr: i32) -> PartitionHealth {
        PartitionHealth {
            topic: "t".into(),
            partition: 0,
            leader: isr.first().copied().unwrap_or(-1),
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            min_insync_replicas: min_isr,
        }
    }

    fn health(partitions: Vec<PartitionHealth>, controller: i32) -> ClusterHealth {
        ClusterHealth {
            live_brokers: vec![0, 1, 2],
            controller: Some(controller),
            partitions,
        }
    }

    #[test]
    fn the_controller_goes_last_and_nothing_moves_while_under_replicated() {
        let all = [0, 1, 2];
        let healthy = health(vec![partition(&all, &all, 2)], 0);
        assert_eq!(next_step(&healthy, &all, &all), RollStep::Restart(1));
        assert_eq!(next_step(&healthy, &all, &[0, 2]), RollStep::Restart(2));
        assert_eq!(next_step(&healthy, &all, &[0]), RollStep::Restart(0));
        assert_eq!(next_step(&healthy, &all, &[]), RollStep::Done);
        let degraded = health(vec![partition(&all, &[0, 2], 2)], 0);
        assert!(
            matches!(next_step(&degraded, &all, &all), RollStep::Wait(r) if r.contains("under-replicated"))
        );
        let mut missing = healthy.clone();
        missing.live_brokers = vec![0, 2];
        assert!(
            matches!(next_step(&missing, &all, &all), RollStep::Wait(r) if r.contains("not live"))
        );
    }

    #[test]
    fn a_restart_that_would_break_min_isr_waits() {
        let rf2 = health(vec![partition(&[1, 2], &[1, 2], 2)], 0);
        let step = next_step(&rf2, &[0, 1, 2], &[1, 2]);
        assert!(matches!(step, RollStep::Wait(r) if r.contains("below min.insync.replicas=2")));
        assert_eq!(
            next_step(&rf2, &[0, 1, 2], &[0, 1]),
            RollStep::Restart(0),
            "0 holds no replica"
        );
    }
}
