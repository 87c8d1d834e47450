//! Admin APIs through librdkafka's AdminClient: CreateTopics (and its
//! errors), CreatePartitions, DescribeConfigs, AlterConfigs, DeleteTopics,
//! and Metadata, checked against Kafka's documented results and error
//! codes.

use std::time::Duration;

use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::AlterConfigsRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tideline_tests::clients::{consumer, wait_for_topic};
use tideline_tests::wire::RawConn;
use tideline_tests::{
    admin_client, block_on, consumer_config, create_topic, producer_config, unique_topic, wait_for,
    Broker, TestProducer, TestRecord,
};

fn admin_broker() -> Broker {
    Broker::start_with(&[
        ("auto.create.topics.enable", "false"),
        ("num.partitions", "2"),
    ])
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// CreateTopics for one topic: `Ok(())` or the per-topic error code.
fn create(
    bootstrap: &str,
    topic: &NewTopic<'_>,
    options: &AdminOptions,
) -> Result<(), RDKafkaErrorCode> {
    let admin = admin_client(bootstrap);
    let mut res = block_on(admin.create_topics([topic], options)).expect("CreateTopics request");
    assert_eq!(res.len(), 1);
    res.pop().unwrap().map(|_| ()).map_err(|(_, code)| code)
}

/// Topic names and partition counts, from a Metadata request for all topics.
fn topics(bootstrap: &str) -> Vec<(String, usize)> {
    let md = consumer(&consumer_config(bootstrap))
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("Metadata");
    md.topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect()
}

#[test]
fn create_topics_and_its_errors() {
    let broker = admin_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-create");

    let spec = NewTopic::new(&topic, 3, TopicReplication::Fixed(1));
    assert_eq!(create(&bootstrap, &spec, &opts()), Ok(()));
    wait_for_topic(&bootstrap, &topic, 3);
    assert_eq!(
        create(&bootstrap, &spec, &opts()),
        Err(RDKafkaErrorCode::TopicAlreadyExists)
    );

    // validate_only checks the request and creates nothing.
    let dry = unique_topic("admin-dry-run");
    let spec = NewTopic::new(&dry, 2, TopicReplication::Fixed(1));
    assert_eq!(
        create(&bootstrap, &spec, &opts().validate_only(true)),
        Ok(())
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !topics(&bootstrap).iter().any(|(n, _)| *n == dry),
        "validate_only created {dry}"
    );
    // ...but still reports what a real create would.
    let spec = NewTopic::new(&topic, 2, TopicReplication::Fixed(1));
    assert_eq!(
        create(&bootstrap, &spec, &opts().validate_only(true)),
        Err(RDKafkaErrorCode::TopicAlreadyExists)
    );

    // Kafka topic names: [a-zA-Z0-9._-]{1,249}, and not "." or "..".
    let too_long = "x".repeat(250);
    for bad in [
        "has space",
        "slash/name",
        "..",
        ".",
        "star*",
        too_long.as_str(),
    ] {
        let spec = NewTopic::new(bad, 1, TopicReplication::Fixed(1));
        assert_eq!(
            create(&bootstrap, &spec, &opts()),
            Err(RDKafkaErrorCode::InvalidTopic),
            "topic name {bad:?}"
        );
    }

    // One broker cannot hold three replicas.
    let spec = NewTopic::new("rf-three", 1, TopicReplication::Fixed(3));
    assert_eq!(
        create(&bootstrap, &spec, &opts()),
        Err(RDKafkaErrorCode::InvalidReplicationFactor)
    );
    let spec = NewTopic::new("zero-partitions", 0, TopicReplication::Fixed(1));
    assert_eq!(
        create(&bootstrap, &spec, &opts()),
        Err(RDKafkaErrorCode::InvalidPartitions)
    );

    let names: Vec<String> = topics(&bootstrap).into_iter().map(|(n, _)| n).collect();
    for absent in ["rf-three", "zero-partitions", "has space"] {
        assert!(
            !names.iter().any(|n| n == absent),
            "{absent} exists: {names:?}"
        );
    }
}

#[test]
fn create_partitions_grows_but_never_shrinks() {
    let broker = admin_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-partitions");
    create_topic(&bootstrap, &topic, 2, &[]);
    let admin = admin_client(&bootstrap);

    let grow = NewPartitions::new(&topic, 5);
    let res = block_on(admin.create_partitions([&grow], &opts())).expect("CreatePartitions");
    assert_eq!(res, vec![Ok(topic.clone())]);
    wait_for_topic(&bootstrap, &topic, 5);

    // A new partition is usable.
    let producer = TestProducer::new(&producer_config(&bootstrap));
    producer.send(&topic, Some(4), &TestRecord::value("to partition 4"));
    let d = producer.expect_all_delivered(Duration::from_secs(60));
    assert_eq!((d[0].partition, d[0].offset), (4, 0));

    for count in [3, 5] {
        let shrink = NewPartitions::new(&topic, count);
        let res = block_on(admin.create_partitions([&shrink], &opts())).expect("CreatePartitions");
        assert_eq!(
            res,
            vec![Err((topic.clone(), RDKafkaErrorCode::InvalidPartitions))],
            "changing 5 partitions to {count}"
        );
    }
    let missing = NewPartitions::new("no-such-topic", 3);
    let res = block_on(admin.create_partitions([&missing], &opts())).expect("CreatePartitions");
    assert_eq!(
        res,
        vec![Err((
            "no-such-topic".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
    assert!(topics(&bootstrap).contains(&(topic, 5)));
}

#[test]
fn describe_and_alter_configs() {
    let broker = admin_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-configs");
    create_topic(&bootstrap, &topic, 1, &[("cleanup.policy", "delete")]);
    let admin = admin_client(&bootstrap);

    let describe_topic = || {
        let res = block_on(admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &opts()))
            .expect("DescribeConfigs");
        res.into_iter()
            .next()
            .unwrap()
            .unwrap_or_else(|code| panic!("DescribeConfigs {topic}: {code:?}"))
    };

    let cfg = describe_topic();
    let retention = cfg
        .get("retention.ms")
        .expect("retention.ms in topic configs");
    assert_eq!(retention.value.as_deref(), Some("604800000"));
    assert_eq!(retention.source, ConfigSource::Default, "{retention:?}");
    assert!(retention.is_default);
    let policy = cfg.get("cleanup.policy").expect("cleanup.policy");
    assert_eq!(policy.value.as_deref(), Some("delete"));
    assert_eq!(policy.source, ConfigSource::DynamicTopic, "{policy:?}");
    for key in ["segment.bytes", "retention.bytes", "max.message.bytes"] {
        assert!(cfg.get(key).is_some(), "topic configs lack {key}");
    }
    assert_eq!(
        cfg.get("retention.bytes").unwrap().value.as_deref(),
        Some("-1")
    );

    // Broker configs: settings given at startup are STATIC_BROKER_CONFIG.
    let res = block_on(admin.describe_configs([&ResourceSpecifier::Broker(1)], &opts()))
        .expect("DescribeConfigs broker");
    let broker_cfg = res
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|code| panic!("DescribeConfigs broker 1: {code:?}"));
    let num_partitions = broker_cfg.get("num.partitions").expect("num.partitions");
    assert_eq!(num_partitions.value.as_deref(), Some("2"));
    assert_eq!(num_partitions.source, ConfigSource::StaticBroker);
    let auto_create = broker_cfg
        .get("auto.create.topics.enable")
        .expect("auto.create.topics.enable");
    assert_eq!(auto_create.value.as_deref(), Some("false"));

    // AlterConfigs sets a topic override, visible to DescribeConfigs.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "3600000");
    let res = block_on(admin.alter_configs([&alter], &opts())).expect("AlterConfigs");
    assert!(res[0].is_ok(), "AlterConfigs: {res:?}");
    let cfg = describe_topic();
    let retention = cfg.get("retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);

    // Invalid values are refused with INVALID_CONFIG (40) and change
    // nothing. (Sent raw: rdkafka 0.39 reports every AlterConfigs resource
    // as Ok, dropping the per-resource error code.)
    let mut conn = RawConn::connect(broker.kafka_addr());
    let version = conn.negotiate::<AlterConfigsRequest>(2);
    for (key, value) in [
        ("retention.ms", "soon"),
        ("segment.bytes", "-5"),
        ("no.such.config", "1"),
    ] {
        let req =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2) // topic
                .with_resource_name(StrBytes::from_string(topic.clone()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(key))
                    .with_value(Some(StrBytes::from_static_str(value)))])]);
        let resp = conn.request(&req, version).expect("AlterConfigs");
        assert_eq!(
            resp.responses[0].error_code, 40,
            "{key}={value}: expected INVALID_CONFIG, got {:?}",
            resp.responses[0]
        );
    }
    assert_eq!(
        describe_topic()
            .get("retention.ms")
            .unwrap()
            .value
            .as_deref(),
        Some("3600000")
    );
}

#[test]
fn delete_topic_and_metadata() {
    let broker = admin_broker();
    let bootstrap = broker.bootstrap();
    let a = unique_topic("admin-meta-a");
    let b = unique_topic("admin-meta-b");
    create_topic(&bootstrap, &a, 3, &[]);
    create_topic(&bootstrap, &b, 1, &[]);

    let md = consumer(&consumer_config(&bootstrap))
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("Metadata");
    assert_eq!(md.brokers().len(), 1);
    let me = &md.brokers()[0];
    assert_eq!(
        (me.id(), me.host(), me.port()),
        (1, "127.0.0.1", broker.kafka_port() as i32)
    );
    for (name, n) in [(&a, 3), (&b, 1)] {
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing from metadata"));
        assert!(t.error().is_none());
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        for p in t.partitions() {
            assert_eq!(p.leader(), 1);
            assert_eq!(p.replicas(), &[1]);
            assert_eq!(p.isr(), &[1]);
        }
    }

    let admin = admin_client(&bootstrap);
    let res = block_on(admin.delete_topics(&[&a], &opts())).expect("DeleteTopics");
    assert_eq!(res, vec![Ok(a.clone())]);
    wait_for(
        "deleted topic to leave metadata",
        Duration::from_secs(30),
        || (!topics(&bootstrap).iter().any(|(n, _)| *n == a)).then_some(()),
    );
    assert!(topics(&bootstrap).contains(&(b.clone(), 1)));
    let res = block_on(admin.delete_topics(&[&a], &opts())).expect("DeleteTopics");
    assert_eq!(
        res,
        vec![Err((a.clone(), RDKafkaErrorCode::UnknownTopicOrPartition))]
    );

    // With auto-creation off, producing to the deleted topic fails.
    let mut cfg = producer_config(&bootstrap);
    cfg.set("message.timeout.ms", "10000")
        .set("topic.metadata.propagation.max.ms", "1000");
    let producer = TestProducer::new(&cfg);
    let id = producer.send(&a, None, &TestRecord::value("into the void"));
    producer.flush(Duration::from_secs(30));
    match &producer.outcomes()[id] {
        Some(Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition,
        ))) => {}
        other => panic!("produce to deleted topic {a}: expected unknown topic, got {other:?}"),
    }
    assert!(
        !topics(&bootstrap).iter().any(|(n, _)| *n == a),
        "producing re-created {a} although auto.create.topics.enable=false"
    );
}
