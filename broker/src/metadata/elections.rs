//! Leader elections the active controller decides beyond the clean
//! fail-over that fencing does (see `MetadataImage::apply`): unclean
//! elections of offline partitions whose topic allows them, and preferred
//! elections that move leadership back to each partition's first replica.
//! Each returns `PartitionChange`s guarded by the partition epoch.

use std::collections::BTreeMap;

use super::image::{MetadataImage, TopicImage};
use super::records::{PartitionChange, PartitionRecord};

/// The change making `leader` lead `p` (an ISR member, or for an unclean
/// election any live replica, which becomes the whole ISR).
fn elect(
    topic: &TopicImage,
    index: usize,
    p: &PartitionRecord,
    leader: i32,
    unclean: bool,
) -> PartitionChange {
    PartitionChange {
        topic_id: topic.topic_id,
        partition: index as i32,
        expected_partition_epoch: p.partition_epoch,
        leader: Some(leader),
        isr: unclean.then(|| vec![leader]),
        replicas: None,
        unclean,
    }
}

/// Offline partitions (no leader, no live ISR member) that get a live
/// out-of-sync replica as leader because `allows_unclean(topic)`.
pub fn unclean_elections(
    image: &MetadataImage,
    allows_unclean: impl Fn(&TopicImage) -> bool,
) -> Vec<PartitionChange> {
    let mut changes = Vec::new();
    for topic in image.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            if p.leader >= 0 || p.isr.iter().any(|b| image.is_live(*b)) {
                continue;
            }
            if !allows_unclean(topic) {
                continue;
            }
            if let Some(&leader) = p.replicas.iter().find(|b| image.can_lead(**b)) {
                changes.push(elect(topic, i, p, leader, true));
            }
        }
    }
    changes
}

/// Why a preferred or unclean election of one partition could not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionError {
    NotNeeded,
    PreferredNotAvailable,
    EligibleNotAvailable,
}

/// ElectLeaders with PREFERRED: the first replica, if live and in sync.
pub fn preferred_election(
    image: &MetadataImage,
    topic: &TopicImage,
    index: usize,
) -> Result<PartitionChange, ElectionError> {
    let p = &topic.partitions[index];
    let preferred = *p
        .replicas
        .first()
        .ok_or(ElectionError::PreferredNotAvailable)?;
    if p.leader == preferred {
        return Err(ElectionError::NotNeeded);
    }
    if !image.can_lead(preferred) || !p.isr.contains(&preferred) {
        return Err(ElectionError::PreferredNotAvailable);
    }
    Ok(elect(topic, index, p, preferred, false))
}

/// ElectLeaders with UNCLEAN: only for a partition without a leader; an
/// ISR member if one is live, else any live replica.
pub fn unclean_election(
    image: &MetadataImage,
    topic: &TopicImage,
    index: usize,
) -> Result<PartitionChange, ElectionError> {
    let p = &topic.partitions[index];
    if p.leader >= 0 {
        return Err(ElectionError::NotNeeded);
    }
    if let Some(&b) = p
        .replicas
        .iter()
        .find(|b| p.isr.contains(b) && image.can_lead(**b))
    {
        return Ok(elect(topic, index, p, b, false));
    }
    match p.replicas.iter().find(|b| image.can_lead(**b)) {
        Some(&b) => Ok(elect(topic, index, p, b, true)),
        None => Err(ElectionError::EligibleNotAvailable),
    }
}

/// Automatic leader rebalancing (`auto.leader.rebalance.enable`): for each
/// broker whose share of partitions it prefers but does not lead exceeds
/// `imbalance_percentage`, preferred elections of those partitions.
pub fn rebalance_elections(
    image: &MetadataImage,
    imbalance_percentage: i64,
) -> Vec<PartitionChange> {
    let mut preferred_of: BTreeMap<i32, Vec<(&TopicImage, usize)>> = BTreeMap::new();
    for topic in image.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            if let Some(&first) = p.replicas.first() {
                preferred_of.entry(first).or_default().push((topic, i));
            }
        }
    }
    let mut changes = Vec::new();
    for (broker, partitions) in preferred_of {
        if !image.can_lead(broker) {
            continue;
        }
        let not_led: Vec<_> = partitions
            .iter()
            .filter(|(t, i)| t.partitions[*i].leader != broker)
            .collect();
        let ratio = not_led.len() as f64 * 100.0 / partitions.len() as f64;
        if ratio <= imbalance_percentage as f64 {
            continue;
        }
        for (topic, i) in not_led {
            if let Ok(change) = preferred_election(image, topic, *i) {
                changes.push(change);
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::{BrokerRegistration, MetadataRecord, RecordBatch};
    use uuid::Uuid;

    fn image_with(partitions: Vec<PartitionRecord>, fenced: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut records: Vec<MetadataRecord> = (1..=3)
            .map(|id| {
                MetadataRecord::RegisterBroker(BrokerRegistration {
                    broker_id: id,
                    incarnation_id: Uuid::new_v4(),
                    host: "h".into(),
                    port: 1,
                    rack: None,
                })
            })
            .collect();
        records.push(MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs: Default::default(),
        });
        image.apply(&RecordBatch(records));
        image.fenced_brokers.extend(fenced.iter().copied());
        image
    }

    fn offline(replicas: Vec<i32>, isr: Vec<i32>) -> PartitionRecord {
        PartitionRecord {
            leader: -1,
            isr,
            ..PartitionRecord::new(replicas)
        }
    }

    #[test]
    fn unclean_election_only_when_allowed_and_no_isr_member_lives() {
        let image = image_with(vec![offline(vec![1, 2], vec![1])], &[1]);
        assert!(unclean_elections(&image, |_| false).is_empty());
        let changes = unclean_elections(&image, |_| true);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].leader, Some(2));
        assert_eq!(changes[0].isr, Some(vec![2]));
        assert!(changes[0].unclean);
        let mut after = image.clone();
        assert!(after
            .apply(&RecordBatch(vec![MetadataRecord::ChangePartition(
                changes[0].clone()
            )]))
            .error
            .is_none());
        let p = &after.topics["t"].partitions[0];
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (2, vec![2], 1));
    }

    #[test]
    fn preferred_election_and_rebalancing() {
        let mut led_by_2 = PartitionRecord::new(vec![1, 2, 3]);
        led_by_2.leader = 2;
        let image = image_with(
            vec![led_by_2.clone(), PartitionRecord::new(vec![2, 3, 1])],
            &[],
        );
        let topic = &image.topics["t"];
        assert_eq!(
            preferred_election(&image, topic, 1),
            Err(ElectionError::NotNeeded)
        );
        assert_eq!(
            preferred_election(&image, topic, 0).unwrap().leader,
            Some(1)
        );
        let rebalance = rebalance_elections(&image, 10);
        assert_eq!(rebalance.len(), 1);
        assert_eq!(rebalance[0].partition, 0);
        let fenced = image_with(vec![led_by_2], &[1]);
        assert_eq!(
            preferred_election(&fenced, &fenced.topics["t"], 0),
            Err(ElectionError::PreferredNotAvailable)
        );
        assert!(rebalance_elections(&fenced, 10).is_empty());
    }
}
