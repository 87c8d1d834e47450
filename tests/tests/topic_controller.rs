//! The operator's topic controller logic against a real broker process:
//! create, raise partitions, alter configs, repair an out-of-band change,
//! adopt an existing topic, refuse a decrease, delete — each checked with
//! rdkafka's admin client, not with the operator's own view.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use tideline_operator::crd::KafkaTopicSpec;
use tideline_operator::kafka_admin::{sync_topic, KafkaAdmin};
use tideline_tests::{
    admin_client, block_on, create_topic, topic_as_seen_by_rdkafka, Broker, BrokerOpts,
};

fn spec(partitions: i32, config: &[(&str, &str)]) -> KafkaTopicSpec {
    KafkaTopicSpec {
        cluster_ref: "local".into(),
        topic_name: None,
        partitions,
        replication_factor: 1,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        keep_on_delete: false,
    }
}

#[test]
fn the_topic_controller_creates_alters_repairs_and_deletes_topics() {
    let broker = Broker::start(BrokerOpts::new().set("auto.create.topics.enable", "false"));
    let bootstrap = broker.bootstrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut admin = runtime
        .block_on(KafkaAdmin::connect(&bootstrap))
        .expect("admin");
    let sync = |admin: &mut KafkaAdmin, topic: &str, spec: &KafkaTopicSpec| {
        runtime
            .block_on(sync_topic(admin, topic, spec))
            .expect("sync")
    };

    // Create with configs.
    let desired = spec(3, &[("retention.ms", "3600000")]);
    let plan = sync(&mut admin, "orders", &desired);
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(
        topic_as_seen_by_rdkafka(&bootstrap, "orders"),
        Some((3, vec![("retention.ms".into(), "3600000".into())]))
    );
    let again = sync(&mut admin, "orders", &desired);
    assert!(
        again.is_in_sync(),
        "a second sync changes nothing: {again:?}"
    );

    // Raise partitions and change configs.
    let desired = spec(
        5,
        &[("retention.ms", "7200000"), ("cleanup.policy", "compact")],
    );
    sync(&mut admin, "orders", &desired);
    assert_eq!(
        topic_as_seen_by_rdkafka(&bootstrap, "orders"),
        Some((
            5,
            vec![
                ("cleanup.policy".into(), "compact".into()),
                ("retention.ms".into(), "7200000".into())
            ]
        ))
    );

    // Drift: someone changes the topic outside the resource; the next sync reverts it.
    let outside = admin_client(&bootstrap);
    let change = AlterConfig::new(ResourceSpecifier::Topic("orders"))
        .set("retention.ms", "1")
        .set("segment.bytes", "1048576")
        .set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in block_on(outside.alter_configs(&[change], &opts)).unwrap() {
        r.unwrap();
    }
    let plan = sync(&mut admin, "orders", &desired);
    assert!(!plan.is_in_sync(), "drift was found");
    assert_eq!(
        topic_as_seen_by_rdkafka(&bootstrap, "orders").unwrap().1,
        vec![
            ("cleanup.policy".into(), "compact".into()),
            ("retention.ms".into(), "7200000".into())
        ],
        "the out-of-band change is reverted"
    );

    // A decrease is refused with a warning, and nothing changes.
    let plan = sync(
        &mut admin,
        "orders",
        &spec(
            2,
            &[("retention.ms", "7200000"), ("cleanup.policy", "compact")],
        ),
    );
    assert_eq!(plan.warnings[0].reason, "PartitionDecreaseRefused");
    assert_eq!(topic_as_seen_by_rdkafka(&bootstrap, "orders").unwrap().0, 5);

    // An existing topic of the same name is adopted, not recreated.
    create_topic(&bootstrap, "legacy", 4, &[]);
    let plan = sync(&mut admin, "legacy", &spec(4, &[("retention.ms", "60000")]));
    assert!(plan
        .actions
        .iter()
        .all(|a| !matches!(a, tideline_operator::topic_plan::TopicAction::Create { .. })));
    assert_eq!(
        topic_as_seen_by_rdkafka(&bootstrap, "legacy"),
        Some((4, vec![("retention.ms".into(), "60000".into())]))
    );

    // Deletion (the finalizer's work).
    runtime
        .block_on(admin.delete_topic("orders"))
        .expect("delete");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while topic_as_seen_by_rdkafka(&bootstrap, "orders").is_some() {
        assert!(std::time::Instant::now() < deadline, "topic deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
    runtime
        .block_on(admin.delete_topic("orders"))
        .expect("deleting a deleted topic is fine");
}
