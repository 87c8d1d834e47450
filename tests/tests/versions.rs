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
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, FetchRequest, FindCoordinatorRequest, InitProducerIdRequest,
    ListOffsetsRequest, MetadataRequest, TopicName,
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
    let broker = Broker::start_with(&[]);
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
            req.coordinator_keys = vec![StrBytes::from_static_str("group")];
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
        assert_eq!(code, 15, "FindCoordinator v{v}: COORDINATOR_NOT_AVAILABLE");
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
