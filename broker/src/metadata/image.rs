//! The metadata image: the state obtained by applying the metadata log.
//! Brokers answer Metadata, DescribeConfigs and friends from it, and the
//! log manager opens and deletes partition logs to match it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reassignment;
use super::records::{
    ApplyOutcome, BrokerRegistration, ConfigResource, MetadataRecord, PartitionChange,
    PartitionRecord, RecordBatch,
};
use crate::disk::DirState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionRecord>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_names: HashMap<Uuid, String>,
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    pub cluster_configs: BTreeMap<String, String>,
    pub next_producer_id: i64,
    /// Registered brokers the controller stopped hearing from.
    #[serde(default)]
    pub fenced_brokers: BTreeSet<i32>,
    /// Brokers that shut down in a controlled way: fenced until they
    /// register again, even though they heartbeat until they exit.
    #[serde(default)]
    pub shut_down_brokers: BTreeSet<i32>,
    /// Brokers whose log directory does not take writes (full or offline):
    /// they may not lead while another replica can, nor join an ISR.
    #[serde(default)]
    pub unwritable_log_dirs: BTreeMap<i32, DirState>,
}

impl MetadataImage {
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// A dynamic broker config as broker `node_id` sees it: its own value,
    /// else the cluster-wide default, else none (the static value applies).
    pub fn dynamic_config(&self, node_id: i32, key: &str) -> Option<&str> {
        self.broker_configs
            .get(&node_id)
            .and_then(|c| c.get(key))
            .or_else(|| self.cluster_configs.get(key))
            .map(String::as_str)
    }

    /// A cordoned broker (`cordoned.log.dirs` set, KIP-1066) keeps its
    /// replicas but is given no new ones.
    pub fn is_cordoned(&self, node_id: i32) -> bool {
        self.dynamic_config(node_id, "cordoned.log.dirs")
            .is_some_and(|dirs| !dirs.trim().is_empty())
    }

    pub fn configs_of(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        match resource {
            ConfigResource::Topic(name) => self.topics.get(name).map(|t| &t.configs),
            ConfigResource::Broker(id) => self.broker_configs.get(id),
            ConfigResource::BrokerDefault => Some(&self.cluster_configs),
        }
    }

    /// Applies a batch atomically: either every record applies or, if one
    /// conflicts with the current state (a race between two requests), none.
    pub fn apply(&mut self, batch: &RecordBatch) -> ApplyOutcome {
        let mut next = self.clone();
        let mut outcome = ApplyOutcome::default();
        for record in &batch.0 {
            if let Err(error) = next.apply_one(record, &mut outcome) {
                return ApplyOutcome {
                    error: Some(error),
                    producer_id_start: None,
                };
            }
        }
        *self = next;
        outcome
    }

    fn apply_one(
        &mut self,
        record: &MetadataRecord,
        outcome: &mut ApplyOutcome,
    ) -> Result<(), String> {
        match record {
            MetadataRecord::RegisterBroker(registration) => {
                self.brokers
                    .insert(registration.broker_id, registration.clone());
                self.shut_down_brokers.remove(&registration.broker_id);
                // A restarted broker reports its directory afresh.
                self.unwritable_log_dirs.remove(&registration.broker_id);
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(format!("topic '{name}' already exists"));
                }
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: partitions.clone(),
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::DeleteTopic { topic_id } => {
                let name = self
                    .topic_names
                    .remove(topic_id)
                    .ok_or_else(|| format!("topic id {topic_id} does not exist"))?;
                self.topics.remove(&name);
            }
            MetadataRecord::CreatePartitions {
                topic_id,
                partitions,
            } => {
                let name = self
                    .topic_names
                    .get(topic_id)
                    .ok_or_else(|| format!("topic id {topic_id} does not exist"))?;
                let topic = self.topics.get_mut(name).expect("names and topics agree");
                topic.partitions.extend(partitions.iter().cloned());
            }
            MetadataRecord::AlterConfigs { resource, changes } => {
                let target = match resource {
                    ConfigResource::Topic(name) => {
                        &mut self
                            .topics
                            .get_mut(name)
                            .ok_or_else(|| format!("topic '{name}' does not exist"))?
                            .configs
                    }
                    ConfigResource::Broker(id) => self.broker_configs.entry(*id).or_default(),
                    ConfigResource::BrokerDefault => &mut self.cluster_configs,
                };
                for (key, value) in changes {
                    match value {
                        Some(v) => target.insert(key.clone(), v.clone()),
                        None => target.remove(key),
                    };
                }
            }
            MetadataRecord::AllocateProducerIds { count, .. } => {
                outcome.producer_id_start = Some(self.next_producer_id);
                self.next_producer_id += count;
            }
            MetadataRecord::FenceBroker { broker_id } => {
                self.fenced_brokers.insert(*broker_id);
                self.move_leadership_off(*broker_id);
            }
            MetadataRecord::ShutdownBroker { broker_id } => {
                self.fenced_brokers.insert(*broker_id);
                self.shut_down_brokers.insert(*broker_id);
                self.move_leadership_off(*broker_id);
            }
            MetadataRecord::UnregisterBroker { broker_id } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(format!("broker {broker_id} is not registered"));
                }
                self.move_leadership_off(*broker_id);
                self.brokers.remove(broker_id);
                self.fenced_brokers.remove(broker_id);
                self.shut_down_brokers.remove(broker_id);
                self.unwritable_log_dirs.remove(broker_id);
            }
            MetadataRecord::ChangePartition(change) => self.change_partition(change)?,
            MetadataRecord::UnfenceBroker { broker_id } => {
                self.fenced_brokers.remove(broker_id);
                self.restore_leadership_to(*broker_id);
            }
            MetadataRecord::SetLogDirState { broker_id, state } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(format!("broker {broker_id} is not registered"));
                }
                match state {
                    DirState::Writable => {
                        self.unwritable_log_dirs.remove(broker_id);
                    }
                    DirState::Full | DirState::Offline => {
                        self.unwritable_log_dirs.insert(*broker_id, *state);
                        self.step_off_unwritable(*broker_id);
                    }
                }
            }
        }
        Ok(())
    }

    fn change_partition(&mut self, change: &PartitionChange) -> Result<(), String> {
        let live: BTreeSet<i32> = self
            .brokers
            .keys()
            .copied()
            .filter(|b| !self.fenced_brokers.contains(b))
            .collect();
        let writable = |b: &i32| !self.unwritable_log_dirs.contains_key(b);
        let name = self
            .topic_names
            .get(&change.topic_id)
            .ok_or_else(|| format!("topic id {} does not exist", change.topic_id))?;
        let topic = self.topics.get_mut(name).expect("names and topics agree");
        let p = topic
            .partitions
            .get_mut(change.partition as usize)
            .ok_or_else(|| format!("partition {} does not exist", change.partition))?;
        if p.partition_epoch != change.expected_partition_epoch {
            return Err(format!(
                "stale change of {name}-{}: partition epoch is {}, not {}",
                change.partition, p.partition_epoch, change.expected_partition_epoch
            ));
        }
        let mut next = p.clone();
        if let Some(set) = &change.replicas {
            next.replicas = set.replicas.clone();
            next.adding_replicas = set.adding.clone();
            next.removing_replicas = set.removing.clone();
        }
        if let Some(isr) = &change.isr {
            // Only a live broker may join an ISR (Kafka's INELIGIBLE_REPLICA).
            if let Some(b) = isr.iter().find(|b| !p.isr.contains(b) && !live.contains(b)) {
                return Err(format!("broker {b} is not live and cannot join the ISR"));
            }
            if let Some(b) = isr.iter().find(|b| !p.isr.contains(b) && !writable(b)) {
                return Err(format!(
                    "broker {b}'s log directory takes no writes; it cannot join the ISR"
                ));
            }
            next.isr = isr.clone();
        }
        next.isr.retain(|b| next.replicas.contains(b));
        if let Some(leader) = change.leader {
            if leader >= 0 && !live.contains(&leader) {
                return Err(format!("broker {leader} is not live and cannot lead"));
            }
            if leader >= 0 && leader != p.leader && !writable(&leader) {
                return Err(format!(
                    "broker {leader}'s log directory takes no writes; it cannot lead"
                ));
            }
            if leader >= 0 && !next.isr.contains(&leader) {
                return Err(format!("broker {leader} is not in the ISR {:?}", next.isr));
            }
            if leader != p.leader {
                next.leader = leader;
                next.leader_epoch += 1;
            }
        }
        // A reassignment whose new replicas all caught up switches now.
        if reassignment::settle(&mut next, &live) {
            next.leader_epoch += 1;
        }
        next.partition_epoch += 1;
        *p = next;
        Ok(())
    }

    /// Whether a broker is registered and not fenced.
    pub fn is_live(&self, broker_id: i32) -> bool {
        self.brokers.contains_key(&broker_id) && !self.fenced_brokers.contains(&broker_id)
    }

    /// Whether a broker may be elected leader: live, and its log directory
    /// takes writes.
    pub fn can_lead(&self, broker_id: i32) -> bool {
        self.is_live(broker_id) && !self.unwritable_log_dirs.contains_key(&broker_id)
    }

    /// A broker whose log directory stopped taking writes leaves the ISRs
    /// it shares with others, and hands each leadership to the first other
    /// in-sync replica that can lead. Where none can, it keeps leading (and
    /// the ISR): its data stays readable and nothing acknowledged is lost,
    /// while its appends fail with a retriable error.
    fn step_off_unwritable(&mut self, broker_id: i32) {
        let can_lead: BTreeSet<i32> = self
            .brokers
            .keys()
            .copied()
            .filter(|b| *b != broker_id && self.can_lead(*b))
            .collect();
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if !p.isr.contains(&broker_id) || p.isr.len() < 2 {
                    continue;
                }
                if p.leader == broker_id {
                    let Some(next) = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|b| p.isr.contains(b) && can_lead.contains(b))
                    else {
                        continue;
                    };
                    p.leader = next;
                    p.leader_epoch += 1;
                }
                p.isr.retain(|b| *b != broker_id);
                p.partition_epoch += 1;
            }
        }
    }

    /// Partitions led by a fenced broker get the first live ISR member as
    /// leader, or none; the broker leaves ISRs it shares with others (the
    /// last ISR member stays, as in Kafka, so the partition can recover).
    fn move_leadership_off(&mut self, broker_id: i32) {
        let live: BTreeSet<i32> = self
            .brokers
            .keys()
            .filter(|b| !self.fenced_brokers.contains(b))
            .copied()
            .collect();
        // Prefer a replica whose directory takes writes over one that does not.
        let writable = self.unwritable_log_dirs.clone();
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                let mut changed = false;
                if p.isr.len() > 1 && p.isr.contains(&broker_id) {
                    p.isr.retain(|b| *b != broker_id);
                    changed = true;
                }
                if p.leader == broker_id {
                    // The first live ISR member in replica order, as Kafka picks.
                    let candidates = || {
                        p.replicas
                            .iter()
                            .copied()
                            .filter(|b| *b != broker_id && live.contains(b) && p.isr.contains(b))
                    };
                    p.leader = candidates()
                        .find(|b| !writable.contains_key(b))
                        .or_else(|| candidates().next())
                        .unwrap_or(-1);
                    p.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// Offline partitions whose ISR holds `broker_id` get it as leader.
    fn restore_leadership_to(&mut self, broker_id: i32) {
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if p.leader < 0 && p.isr.contains(&broker_id) {
                    p.leader = broker_id;
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(id: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker(BrokerRegistration {
            broker_id: id,
            incarnation_id: Uuid::new_v4(),
            host: "h".into(),
            port: 1,
            rack: None,
        })
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_or_takes_the_partition_offline() {
        let mut image = MetadataImage::default();
        let shared = PartitionRecord::new(vec![1, 2]);
        let alone = PartitionRecord::new(vec![1]);
        image.apply(&RecordBatch(vec![
            register(1),
            register(2),
            MetadataRecord::CreateTopic {
                name: "t".into(),
                topic_id: Uuid::new_v4(),
                partitions: vec![shared, alone],
                configs: BTreeMap::new(),
            },
        ]));
        image.apply(&RecordBatch(vec![MetadataRecord::FenceBroker {
            broker_id: 1,
        }]));
        let p = &image.topics["t"].partitions;
        assert_eq!(
            (p[0].leader, p[0].isr.clone(), p[0].leader_epoch),
            (2, vec![2], 1)
        );
        assert_eq!(
            (p[1].leader, p[1].isr.clone()),
            (-1, vec![1]),
            "offline, not unclean"
        );
        assert!(!image.is_live(1));
        image.apply(&RecordBatch(vec![MetadataRecord::UnfenceBroker {
            broker_id: 1,
        }]));
        let p = &image.topics["t"].partitions;
        assert_eq!((p[1].leader, p[1].leader_epoch), (1, 2));
        assert_eq!(p[0].leader, 2, "a live leader keeps its partition");
        assert!(image.is_live(1));
    }

    #[test]
    fn an_unwritable_log_dir_hands_over_leadership_and_leaves_shared_isrs() {
        let mut image = MetadataImage::default();
        let topic_id = Uuid::new_v4();
        image.apply(&RecordBatch(vec![
            register(1),
            register(2),
            register(3),
            MetadataRecord::CreateTopic {
                name: "t".into(),
                topic_id,
                partitions: vec![
                    PartitionRecord::new(vec![1, 2, 3]),
                    PartitionRecord::new(vec![2, 1, 3]),
                    PartitionRecord::new(vec![1]),
                ],
                configs: BTreeMap::new(),
            },
        ]));
        let full = MetadataRecord::SetLogDirState {
            broker_id: 1,
            state: DirState::Full,
        };
        assert!(image.apply(&RecordBatch(vec![full])).error.is_none());
        let p = &image.topics["t"].partitions;
        assert_eq!((p[0].leader, p[0].isr.clone()), (2, vec![2, 3]));
        assert_eq!(p[0].leader_epoch, 1);
        assert_eq!((p[1].leader, p[1].isr.clone()), (2, vec![2, 3]));
        assert_eq!(
            (p[2].leader, p[2].isr.clone()),
            (1, vec![1]),
            "the only replica keeps leading"
        );
        assert!(image.is_live(1) && !image.can_lead(1));
        // It may neither rejoin an ISR nor be elected while full.
        let rejoin = |epoch| {
            MetadataRecord::ChangePartition(PartitionChange {
                topic_id,
                partition: 0,
                expected_partition_epoch: epoch,
                leader: None,
                isr: Some(vec![2, 3, 1]),
                replicas: None,
                unclean: false,
            })
        };
        let epoch = image.topics["t"].partitions[0].partition_epoch;
        assert!(image
            .apply(&RecordBatch(vec![rejoin(epoch)]))
            .error
            .is_some());
        assert_eq!(
            super::super::elections::preferred_election(&image, &image.topics["t"], 0),
            Err(super::super::elections::ElectionError::PreferredNotAvailable)
        );
        // Space returns: it may rejoin (its leader decides when it caught up).
        image.apply(&RecordBatch(vec![MetadataRecord::SetLogDirState {
            broker_id: 1,
            state: DirState::Writable,
        }]));
        assert!(image.can_lead(1));
        assert!(image
            .apply(&RecordBatch(vec![rejoin(epoch)]))
            .error
            .is_none());
        // A restart clears an offline directory's mark.
        image.apply(&RecordBatch(vec![MetadataRecord::SetLogDirState {
            broker_id: 3,
            state: DirState::Offline,
        }]));
        assert!(!image.can_lead(3));
        image.apply(&RecordBatch(vec![register(3)]));
        assert!(image.can_lead(3));
    }

    #[test]
    fn an_unregistered_broker_is_no_longer_listed_leads_nothing_and_may_register_again() {
        let mut image = MetadataImage::default();
        image.apply(&RecordBatch(vec![
            register(1),
            register(2),
            MetadataRecord::CreateTopic {
                name: "t".into(),
                topic_id: Uuid::new_v4(),
                partitions: vec![
                    PartitionRecord::new(vec![2, 1]),
                    PartitionRecord::new(vec![2]),
                ],
                configs: BTreeMap::new(),
            },
            MetadataRecord::ShutdownBroker { broker_id: 2 },
        ]));
        let unregister = RecordBatch(vec![MetadataRecord::UnregisterBroker { broker_id: 2 }]);
        assert!(image.apply(&unregister).error.is_none());
        assert!(!image.brokers.contains_key(&2) && !image.is_live(2));
        assert!(image.fenced_brokers.is_empty() && image.shut_down_brokers.is_empty());
        let p = &image.topics["t"].partitions;
        assert_eq!((p[0].leader, p[0].isr.clone()), (1, vec![1]));
        assert_eq!(p[0].replicas, vec![2, 1], "replica lists keep it");
        assert_eq!(
            (p[1].leader, p[1].isr.clone()),
            (-1, vec![2]),
            "its only replica stays offline, not lost"
        );
        assert_eq!(
            image.apply(&unregister).error.as_deref(),
            Some("broker 2 is not registered")
        );
        image.apply(&RecordBatch(vec![register(2)]));
        assert!(image.is_live(2));
    }

    #[test]
    fn a_conflicting_batch_changes_nothing() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        let create = MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: id,
            partitions: vec![PartitionRecord::new(vec![1])],
            configs: BTreeMap::new(),
        };
        assert!(image
            .apply(&RecordBatch(vec![create.clone()]))
            .error
            .is_none());
        let outcome = image.apply(&RecordBatch(vec![
            MetadataRecord::AllocateProducerIds {
                broker_id: 1,
                count: 10,
            },
            create,
        ]));
        assert!(outcome.error.is_some());
        assert_eq!(image.next_producer_id, 0);
        let outcome = image.apply(&RecordBatch(vec![MetadataRecord::AllocateProducerIds {
            broker_id: 1,
            count: 10,
        }]));
        assert_eq!(outcome.producer_id_start, Some(0));
        assert_eq!(image.next_producer_id, 10);
        image.apply(&RecordBatch(vec![MetadataRecord::DeleteTopic {
            topic_id: id,
        }]));
        assert!(image.topics.is_empty());
    }
}
