//! Fixtures for the coordinator's unit tests: a coordinator leading a
//! one-partition offsets topic, and the requests and values they send.

use std::sync::Arc;

use bytes::Bytes;

use super::{CoordinatorConfig, GroupCoordinator, OFFSETS_TOPIC};
use crate::config::LogConfig;
use crate::coordinator::group::{GroupLimits, JoinRequest};
use crate::coordinator::offsets_format::OffsetValue;
use crate::log::TopicPartition;
use crate::metadata::records::PartitionRecord;
use crate::metadata::{MetadataImage, TopicImage};
use crate::partition::LogManager;
use crate::util::now_ms;

pub(super) fn request(member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: true,
    }
}

/// A coordinator leading every partition of a 1-partition offsets topic.
pub(super) fn coordinator(dir: &std::path::Path) -> (Arc<GroupCoordinator>, MetadataImage) {
    let logs = Arc::new(LogManager::open(dir, 0, true).unwrap());
    let topic_id = uuid::Uuid::new_v4();
    let (partition, _) = logs
        .open_partition(
            &TopicPartition::new(OFFSETS_TOPIC, 0),
            topic_id,
            LogConfig::default(),
        )
        .unwrap();
    // What the replica manager does before the coordinator loads.
    crate::partition::testing::make_leader(&partition, 1, 0, vec![1]);
    let mut image = MetadataImage::default();
    image.topics.insert(
        OFFSETS_TOPIC.to_string(),
        TopicImage {
            name: OFFSETS_TOPIC.to_string(),
            topic_id,
            partitions: vec![PartitionRecord::new(vec![1])],
            configs: Default::default(),
        },
    );
    // The topic the tests commit offsets for.
    let mut t = image.topics[OFFSETS_TOPIC].clone();
    t.name = "t".into();
    image.topics.insert("t".into(), t);
    let config = CoordinatorConfig {
        limits: GroupLimits {
            initial_rebalance_delay_ms: 0,
            ..GroupLimits::default()
        },
        ..CoordinatorConfig::default()
    };
    let coordinator = GroupCoordinator::new(config, logs, 1);
    coordinator.on_metadata(&image);
    (coordinator, image)
}

pub(super) fn value(offset: i64) -> OffsetValue {
    OffsetValue {
        offset,
        leader_epoch: 0,
        metadata: "m".into(),
        commit_timestamp: now_ms(),
        expire_timestamp: None,
    }
}

/// ConsumerProtocolSubscription v0 naming `topics`.
pub(super) fn subscription(topics: &[&str]) -> Bytes {
    let mut b = vec![0u8, 0];
    b.extend((topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend((t.len() as i16).to_be_bytes());
        b.extend(t.as_bytes());
    }
    b.extend((-1i32).to_be_bytes()); // no user data
    Bytes::from(b)
}
