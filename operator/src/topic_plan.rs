//! What the topic controller must do to make a topic in Kafka match its
//! KafkaTopic: a pure decision from the desired spec and what the cluster
//! reports, so every case is testable without a broker. The controller
//! carries the actions out through the Kafka admin API (CreateTopics,
//! CreatePartitions, IncrementalAlterConfigs) and turns warnings into a
//! `Warning` condition.
//!
//! Rules: a missing topic is created; an existing one of the same name is
//! adopted; partitions are only ever raised; the replication factor is not
//! changed here (that is a reassignment); topic configs converge on the
//! spec both ways — a differing value is set, and an override the spec does
//! not list is deleted, which reverts out-of-band changes (drift).

use std::collections::BTreeMap;

use tideline_protocol::configs::{topic_def, validate_value};

use crate::crd::KafkaTopicSpec;

/// A topic as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTopic {
    /// Kafka's topic id, in Kafka's text form (URL-safe base64).
    pub topic_id: Option<String>,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level overrides only (not broker defaults).
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicAction {
    Create {
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    },
    AddPartitions {
        total: i32,
    },
    /// IncrementalAlterConfigs: SET these, DELETE those.
    AlterConfigs {
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
}

/// A change the controller refuses, for the `Warning` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicWarning {
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicPlan {
    pub actions: Vec<TopicAction>,
    pub warnings: Vec<TopicWarning>,
}

impl TopicPlan {
    pub fn is_in_sync(&self) -> bool {
        self.actions.is_empty() && self.warnings.is_empty()
    }
}

pub fn plan(spec: &KafkaTopicSpec, observed: Option<&ObservedTopic>) -> TopicPlan {
    let mut plan = TopicPlan::default();
    let mut desired = BTreeMap::new();
    for (key, value) in &spec.config {
        match topic_def(key) {
            None => plan.warnings.push(TopicWarning {
                reason: "InvalidConfig",
                message: format!("spec.config[{key:?}]: not a topic configuration key"),
            }),
            Some(def) => match validate_value(key, def.kind, def.validator, value) {
                Ok(()) => {
                    desired.insert(key.clone(), value.clone());
                }
                Err(e) => plan.warnings.push(TopicWarning {
                    reason: "InvalidConfig",
                    message: format!("spec.config[{key:?}]: {e}"),
                }),
            },
        }
    }
    let Some(observed) = observed else {
        plan.actions.push(TopicAction::Create {
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            configs: desired,
        });
        return plan;
    };
    if spec.partitions > observed.partitions {
        plan.actions.push(TopicAction::AddPartitions {
            total: spec.partitions,
        });
    } else if spec.partitions < observed.partitions {
        plan.warnings.push(TopicWarning {
            reason: "PartitionDecreaseRefused",
            message: format!(
                "spec.partitions is {} but the topic has {}: Kafka cannot remove partitions",
                spec.partitions, observed.partitions
            ),
        });
    }
    if spec.replication_factor != observed.replication_factor {
        plan.warnings.push(TopicWarning {
            reason: "ReplicationFactorChangeRefused",
            message: format!(
                "spec.replicationFactor is {} but the topic has {}: changing it needs a partition reassignment",
                spec.replication_factor, observed.replication_factor
            ),
        });
    }
    let set: BTreeMap<String, String> = desired
        .iter()
        .filter(|(k, v)| observed.configs.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = observed
        .configs
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        plan.actions.push(TopicAction::AlterConfigs { set, delete });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(partitions: i32, rf: i32, config: &[(&str, &str)]) -> KafkaTopicSpec {
        KafkaTopicSpec {
            cluster_ref: "c".into(),
            topic_name: None,
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            keep_on_delete: false,
        }
    }

    fn observed(partitions: i32, rf: i32, config: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            topic_id: None,
            partitions,
            replication_factor: rf,
            configs: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_missing_topic_is_created_with_its_configs() {
        let p = plan(&spec(6, 3, &[("retention.ms", "1000")]), None);
        assert_eq!(
            p.actions,
            vec![TopicAction::Create {
                partitions: 6,
                replication_factor: 3,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            }]
        );
    }

    #[test]
    fn an_adopted_topic_in_sync_needs_nothing() {
        let p = plan(
            &spec(6, 3, &[("retention.ms", "1000")]),
            Some(&observed(6, 3, &[("retention.ms", "1000")])),
        );
        assert!(p.is_in_sync());
    }

    #[test]
    fn partitions_only_grow_and_the_replication_factor_is_left_alone() {
        let p = plan(&spec(8, 3, &[]), Some(&observed(6, 3, &[])));
        assert_eq!(p.actions, vec![TopicAction::AddPartitions { total: 8 }]);
        let p = plan(&spec(4, 2, &[]), Some(&observed(6, 3, &[])));
        assert!(p.actions.is_empty());
        let reasons: Vec<&str> = p.warnings.iter().map(|w| w.reason).collect();
        assert_eq!(
            reasons,
            vec!["PartitionDecreaseRefused", "ReplicationFactorChangeRefused"]
        );
    }

    #[test]
    fn drift_is_reverted_both_ways() {
        let p = plan(
            &spec(
                6,
                3,
                &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
            ),
            Some(&observed(
                6,
                3,
                &[("retention.ms", "5"), ("segment.bytes", "1048576")],
            )),
        );
        assert_eq!(
            p.actions,
            vec![TopicAction::AlterConfigs {
                set: BTreeMap::from([
                    ("cleanup.policy".into(), "compact".into()),
                    ("retention.ms".into(), "1000".into()),
                ]),
                delete: vec!["segment.bytes".into()],
            }]
        );
    }

    #[test]
    fn invalid_configs_are_warnings_not_actions() {
        let p = plan(
            &spec(1, 1, &[("retention.ms", "soon"), ("no.such", "1")]),
            Some(&observed(1, 1, &[])),
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.warnings.len(), 2);
        assert!(p.warnings.iter().all(|w| w.reason == "InvalidConfig"));
    }
}
