//! Every advertised version of every API answers with a response the client
//! can decode.
//!
//! Clients pick any version inside the range ApiVersions advertises; older
//! clients (kafkajs, older librdkafka and Java clients) use low versions
//! that the main tests never touch. A field set in a response that the
//! chosen version does not carry makes the response unencodable and the
//! broker drop the connection — this sweep sends a real request at each
//! advertised version and checks the answer.

use std::collections::HashMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest, FetchRequest,
    FindCoordinatorRequest, GroupId, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tideline_tests::broker::Broker;
use tideline_tests::clients::create_topic;
use tideline_tests::unique_topic;
use tideline_tests::wire::{produce_request, record_batch, RawConn};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

#[test]
fn every_advertised_version_gets_a_decodable_answer() {
    let broker = Broker::start_with(&[("group.initial.rebalance.delay.ms", "0")]);
    let topic = unique_topic("versions");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(broker.kafka_addr());
    let ranges: HashMap<i16, (i16, i16)> = conn
        .api_versions()
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect();
    let range = |key: ApiKey| ranges[&(key as i16)];

    // Metadata, and the topic id for the id-based versions below.
    let (min, max) = range(ApiKey::Metadata);
    let mut topic_id = uuid::Uuid::nil();
    for v in min..=max {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(name(&topic));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("Metadata v{v}: {e}"));
        assert_eq!(resp.topics.len(), 1, "Metadata v{v}");
        assert_eq!(resp.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(resp.topics[0].partitions.len(), 1, "Metadata v{v}");
        assert_eq!(resp.brokers.len(), 1, "Metadata v{v}");
        if v >= 10 {
            topic_id = resp.topics[0].topic_id;
        }
    }
    assert!(!topic_id.is_nil(), "Metadata v10+ returns the topic id");

    let (min, max) = range(ApiKey::Produce);
    for v in min..=max {
        let mut req = produce_request(&topic, 0, record_batch(&[b"versions"]));
        if v >= 13 {
            req.topic_data[0].name = TopicName::default();
            req.topic_data[0].topic_id = topic_id;
        }
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("Produce v{v}: {e}"));
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "Produce v{v}");
        assert!(p.base_offset >= 0, "Produce v{v}");
    }

    let (min, max) = range(ApiKey::Fetch);
    for v in min..=max {
        let mut p = FetchPartition::default();
        p.partition = 0;
        p.fetch_offset = 0;
        p.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        if v >= 13 {
            t.topic_id = topic_id;
        } else {
            t.topic = name(&topic);
        }
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.max_wait_ms = 0;
        req.min_bytes = 0;
        req.topics = vec![t];
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("Fetch v{v}: {e}"));
        let data = &resp.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "Fetch v{v}");
        assert!(
            data.records.as_ref().is_some_and(|r| !r.is_empty()),
            "Fetch v{v} returns records"
        );
    }

    let (min, max) = range(ApiKey::ListOffsets);
    for v in min..=max {
        for timestamp in [-1i64, -2, 0] {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = 0;
            p.timestamp = timestamp;
            let mut t = ListOffsetsTopic::default();
            t.name = name(&topic);
            t.partitions = vec![p];
            let mut req = ListOffsetsRequest::default();
            req.topics = vec![t];
            let resp = conn
                .request(&req, v)
                .unwrap_or_else(|e| panic!("ListOffsets v{v} ts {timestamp}: {e}"));
            let p = &resp.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "ListOffsets v{v}");
            assert!(p.offset >= 0, "ListOffsets v{v} ts {timestamp}");
        }
    }

    let (min, max) = range(ApiKey::DescribeConfigs);
    for v in min..=max {
        let mut r = DescribeConfigsResource::default();
        r.resource_type = 2;
        r.resource_name = StrBytes::from_string(topic.clone());
        r.configuration_keys = None;
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![r];
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("DescribeConfigs v{v}: {e}"));
        assert_eq!(resp.results[0].error_code, 0, "DescribeConfigs v{v}");
        assert!(resp.results[0]
            .configs
            .iter()
            .any(|c| c.name.as_str() == "retention.ms"));
    }

    let (min, max) = range(ApiKey::CreateTopics);
    for v in min..=max {
        let mut t = CreatableTopic::default();
        t.name = name(&unique_topic("versions-create"));
        t.num_partitions = 1;
        t.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.validate_only = true;
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("CreateTopics v{v}: {e}"));
        assert_eq!(resp.topics[0].error_code, 0, "CreateTopics v{v}");
    }

    let (min, max) = range(ApiKey::DescribeCluster);
    for v in min..=max {
        let resp = conn
            .request(&DescribeClusterRequest::default(), v)
            .unwrap_or_else(|e| panic!("DescribeCluster v{v}: {e}"));
        assert_eq!(resp.error_code, 0, "DescribeCluster v{v}");
        assert_eq!(resp.brokers.len(), 1, "DescribeCluster v{v}");
    }

    let (min, max) = range(ApiKey::InitProducerId);
    for v in min..=max {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = 60_000;
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("InitProducerId v{v}: {e}"));
        assert_eq!(resp.error_code, 0, "InitProducerId v{v}");
        assert!(resp.producer_id.0 >= 0, "InitProducerId v{v}");
    }

    let (min, max) = range(ApiKey::FindCoordinator);
    for v in min..=max {
        let mut req = FindCoordinatorRequest::default();
        if v >= 4 {
            // Batched: one lookup for several groups.
            req.coordinator_keys = vec![
                StrBytes::from_static_str("group"),
                StrBytes::from_static_str("another-group"),
            ];
        } else {
            req.key = StrBytes::from_static_str("group");
        }
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("FindCoordinator v{v}: {e}"));
        let code = if v >= 4 {
            resp.coordinators[0].error_code
        } else {
            resp.error_code
        };
        assert_eq!(code, 0, "FindCoordinator v{v}");
        let port = if v >= 4 {
            resp.coordinators[0].port
        } else {
            resp.port
        };
        assert_eq!(port, broker.kafka_port() as i32, "FindCoordinator v{v}");
        if v >= 4 {
            assert_eq!(resp.coordinators.len(), 2, "FindCoordinator v{v}");
            assert_eq!(resp.coordinators[1].key.as_str(), "another-group");
            assert_eq!(resp.coordinators[1].error_code, 0, "FindCoordinator v{v}");
            assert_eq!(resp.coordinators[1].node_id.0, 1, "FindCoordinator v{v}");
        }
    }

    group_apis(&mut conn, &range, &topic);

    let (min, max) = range(ApiKey::DescribeLogDirs);
    for v in min..=max {
        for everything in [true, false] {
            let mut req = DescribeLogDirsRequest::default();
            req.topics = None; // null: every partition
            if !everything {
                let mut t = DescribableLogDirTopic::default();
                t.topic = name(&topic);
                t.partitions = vec![0];
                req.topics = Some(vec![t]);
            }
            let resp = conn
                .request(&req, v)
                .unwrap_or_else(|e| panic!("DescribeLogDirs v{v}: {e}"));
            assert_eq!(resp.results.len(), 1, "DescribeLogDirs v{v}: one log dir");
            let dir = &resp.results[0];
            assert_eq!(dir.error_code, 0, "DescribeLogDirs v{v}");
            let ours = dir
                .topics
                .iter()
                .find(|t| t.name.as_str() == topic)
                .unwrap_or_else(|| panic!("DescribeLogDirs v{v}: {topic} missing: {dir:?}"));
            assert!(
                ours.partitions[0].partition_size > 0,
                "DescribeLogDirs v{v}: data was produced"
            );
            if !everything {
                assert_eq!(
                    dir.topics.len(),
                    1,
                    "DescribeLogDirs v{v}: only what was asked"
                );
            }
            if v >= 4 {
                assert!(
                    dir.total_bytes > 0 && dir.usable_bytes >= 0,
                    "DescribeLogDirs v{v}"
                );
            }
        }
    }

    let (min, max) = range(ApiKey::ApiVersions);
    for v in min..=max {
        let mut req = ApiVersionsRequest::default();
        if v >= 3 {
            req.client_software_name = StrBytes::from_static_str("tideline-tests");
            req.client_software_version = StrBytes::from_static_str("1");
        }
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("ApiVersions v{v}: {e}"));
        assert_eq!(resp.error_code, 0, "ApiVersions v{v}");
    }
}

fn group(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Joins `group_id` as its only member at JoinGroup `version` (answering
/// MEMBER_ID_REQUIRED on v4+); returns (member id, generation).
fn join(conn: &mut RawConn, group_id: &str, version: i16) -> (String, i32) {
    let mut req = JoinGroupRequest::default();
    req.group_id = group(group_id);
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = if version >= 1 { 10_000 } else { -1 };
    req.protocol_type = str("consumer");
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = str("range");
    protocol.metadata = bytes::Bytes::from_static(b"meta");
    req.protocols = vec![protocol];
    let mut resp = conn
        .request(&req, version)
        .unwrap_or_else(|e| panic!("JoinGroup v{version}: {e}"));
    if version >= 4 {
        assert_eq!(
            resp.error_code, 79,
            "JoinGroup v{version}: MEMBER_ID_REQUIRED first"
        );
        req.member_id = resp.member_id.clone();
        resp = conn
            .request(&req, version)
            .unwrap_or_else(|e| panic!("JoinGroup v{version} rejoin: {e}"));
    }
    assert_eq!(resp.error_code, 0, "JoinGroup v{version}");
    assert_eq!(
        resp.leader, resp.member_id,
        "JoinGroup v{version}: sole member leads"
    );
    assert_eq!(resp.members.len(), 1, "JoinGroup v{version}");
    (resp.member_id.to_string(), resp.generation_id)
}

fn sync(conn: &mut RawConn, group_id: &str, member: &str, generation: i32, version: i16) {
    let mut req = SyncGroupRequest::default();
    req.group_id = group(group_id);
    req.member_id = str(member);
    req.generation_id = generation;
    if version >= 5 {
        req.protocol_type = Some(str("consumer"));
        req.protocol_name = Some(str("range"));
    }
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = str(member);
    assignment.assignment = bytes::Bytes::from_static(b"assigned");
    req.assignments = vec![assignment];
    let resp = conn
        .request(&req, version)
        .unwrap_or_else(|e| panic!("SyncGroup v{version}: {e}"));
    assert_eq!(resp.error_code, 0, "SyncGroup v{version}");
    assert_eq!(&resp.assignment[..], b"assigned", "SyncGroup v{version}");
}

/// The group APIs at every advertised version, each in a small real flow.
fn group_apis(conn: &mut RawConn, range: &dyn Fn(ApiKey) -> (i16, i16), topic: &str) {
    let (min, max) = range(ApiKey::JoinGroup);
    for v in min..=max {
        join(conn, &format!("join-{v}"), v);
    }
    let (min, max) = range(ApiKey::SyncGroup);
    for v in min..=max {
        let g = format!("sync-{v}");
        let (member, generation) = join(conn, &g, 9);
        sync(conn, &g, &member, generation, v);
    }
    let (min, max) = range(ApiKey::Heartbeat);
    for v in min..=max {
        let g = format!("heartbeat-{v}");
        let (member, generation) = join(conn, &g, 9);
        sync(conn, &g, &member, generation, 5);
        let mut req = HeartbeatRequest::default();
        req.group_id = group(&g);
        req.member_id = str(&member);
        req.generation_id = generation;
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("Heartbeat v{v}: {e}"));
        assert_eq!(resp.error_code, 0, "Heartbeat v{v}");
        req.generation_id = generation + 1;
        let resp = conn.request(&req, v).unwrap();
        assert_eq!(resp.error_code, 22, "Heartbeat v{v}: ILLEGAL_GENERATION");
    }
    let (min, max) = range(ApiKey::LeaveGroup);
    for v in min..=max {
        let g = format!("leave-{v}");
        let (member, _) = join(conn, &g, 9);
        let mut req = LeaveGroupRequest::default();
        req.group_id = group(&g);
        if v >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = str(&member);
            req.members = vec![m];
        } else {
            req.member_id = str(&member);
        }
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("LeaveGroup v{v}: {e}"));
        assert_eq!(resp.error_code, 0, "LeaveGroup v{v}");
        if v >= 3 {
            assert_eq!(resp.members.len(), 1, "LeaveGroup v{v}");
            assert_eq!(resp.members[0].error_code, 0, "LeaveGroup v{v}");
        }
    }
    let (min, max) = range(ApiKey::OffsetCommit);
    for v in min..=max {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = 10 + v as i64;
        p.committed_metadata = Some(str("meta"));
        let mut t = OffsetCommitRequestTopic::default();
        t.name = name(topic);
        t.partitions = vec![p];
        let mut req = OffsetCommitRequest::default();
        req.group_id = group(&format!("commit-{v}"));
        req.generation_id_or_member_epoch = -1;
        req.topics = vec![t];
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("OffsetCommit v{v}: {e}"));
        assert_eq!(
            resp.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{v}"
        );
    }
    let (min, max) = range(ApiKey::OffsetFetch);
    for v in min..=max {
        let mut req = OffsetFetchRequest::default();
        if v >= 8 {
            let mut t = OffsetFetchRequestTopics::default();
            t.name = name(topic);
            t.partition_indexes = vec![0];
            let mut g = OffsetFetchRequestGroup::default();
            g.group_id = group("commit-9");
            g.topics = Some(vec![t]);
            req.groups = vec![g];
        } else {
            let mut t = OffsetFetchRequestTopic::default();
            t.name = name(topic);
            t.partition_indexes = vec![0];
            req.group_id = group("commit-9");
            req.topics = Some(vec![t]);
        }
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("OffsetFetch v{v}: {e}"));
        let (offset, metadata) = if v >= 8 {
            let p = &resp.groups[0].topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        } else {
            let p = &resp.topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        };
        assert_eq!(offset, 19, "OffsetFetch v{v}");
        assert_eq!(metadata.as_deref(), Some("meta"), "OffsetFetch v{v}");
    }
    let (min, max) = range(ApiKey::ListGroups);
    for v in min..=max {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req.states_filter = vec![str("Stable")];
        }
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("ListGroups v{v}: {e}"));
        assert_eq!(resp.error_code, 0, "ListGroups v{v}");
        let ids: Vec<&str> = resp.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert!(ids.contains(&"sync-5"), "ListGroups v{v}: {ids:?}");
        if v >= 4 {
            assert!(
                !ids.contains(&"commit-2"),
                "ListGroups v{v}: state filter {ids:?}"
            );
            assert!(resp
                .groups
                .iter()
                .all(|g| g.group_state.as_str() == "Stable"));
        } else {
            assert!(ids.contains(&"commit-2"), "ListGroups v{v}: {ids:?}");
        }
    }
    let (min, max) = range(ApiKey::DescribeGroups);
    for v in min..=max {
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![group("sync-5"), group("no-such-group")];
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("DescribeGroups v{v}: {e}"));
        let g = &resp.groups[0];
        assert_eq!(g.error_code, 0, "DescribeGroups v{v}");
        assert_eq!(g.group_state.as_str(), "Stable", "DescribeGroups v{v}");
        assert_eq!(g.protocol_data.as_str(), "range", "DescribeGroups v{v}");
        assert_eq!(g.members.len(), 1, "DescribeGroups v{v}");
        assert_eq!(&g.members[0].member_assignment[..], b"assigned");
        assert_eq!(
            resp.groups[1].group_state.as_str(),
            "Dead",
            "DescribeGroups v{v}"
        );
    }
    let (min, max) = range(ApiKey::OffsetDelete);
    for v in min..=max {
        let mut p = OffsetDeleteRequestPartition::default();
        p.partition_index = 0;
        let mut t = OffsetDeleteRequestTopic::default();
        t.name = name(topic);
        t.partitions = vec![p];
        let mut req = OffsetDeleteRequest::default();
        req.group_id = group("commit-3");
        req.topics = vec![t];
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("OffsetDelete v{v}: {e}"));
        assert_eq!(resp.error_code, 0, "OffsetDelete v{v}");
        assert_eq!(
            resp.topics[0].partitions[0].error_code, 0,
            "OffsetDelete v{v}"
        );
    }
    let (min, max) = range(ApiKey::DeleteGroups);
    for v in min..=max {
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![group(&format!("commit-{}", v + 4)), group("sync-5")];
        let resp = conn
            .request(&req, v)
            .unwrap_or_else(|e| panic!("DeleteGroups v{v}: {e}"));
        assert_eq!(resp.results[0].error_code, 0, "DeleteGroups v{v}");
        assert_eq!(
            resp.results[1].error_code, 68,
            "DeleteGroups v{v}: NON_EMPTY_GROUP"
        );
    }
}
