"""Consumer-group administration through confluent-kafka's AdminClient
(librdkafka's admin implementation of ListGroups, DescribeGroups,
OffsetFetch, OffsetCommit and DeleteGroups).

Usage: python3 group_admin_confluent_kafka.py <bootstrap>

A consumer joins group A and commits; then the admin client lists groups
(with a state filter), describes A (members, assignment), reads and alters
its committed offsets, refuses to delete the active group, and deletes it
once it is empty. (confluent-kafka has no OffsetDelete call; the version
sweep and the coordinator's unit tests cover it.) Exits non-zero
with a message on any failure.
"""

import sys
import time
import uuid

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def check(condition, message):
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)


def main() -> int:
    bootstrap = sys.argv[1]
    suffix = uuid.uuid4().hex[:8]
    topic, group = "adm-" + suffix, "adm-group-" + suffix
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result()
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        producer.produce(topic, key=str(i), value=b"v", partition=i % 2)
    producer.flush(30)

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    got = 0
    deadline = time.time() + 30
    while got < 20 and time.time() < deadline:
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            got += 1
    check(got == 20, f"consumed {got} of 20")
    consumer.commit(asynchronous=False)

    listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result()
    ids = [g.group_id for g in listed.valid]
    check(group in ids, f"stable group missing from {ids}")
    listed = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result()
    check(group not in [g.group_id for g in listed.valid], "state filter ignored")

    desc = admin.describe_consumer_groups([group])[group].result()
    check(desc.state == ConsumerGroupState.STABLE, f"state {desc.state}")
    check(len(desc.members) == 1, f"members {desc.members}")
    assigned = sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions)
    check(assigned == [0, 1], f"assignment {assigned}")

    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0), TopicPartition(topic, 1)])]
    offsets = admin.list_consumer_group_offsets(request)[group].result()
    check(sorted(tp.offset for tp in offsets.topic_partitions) == [10, 10],
          f"committed offsets {offsets.topic_partitions}")

    # An active group cannot be deleted.
    try:
        admin.delete_consumer_groups([group])[group].result()
        check(False, "deleting an active group succeeded")
    except Exception as e:  # noqa: BLE001 - any KafkaException is the expected refusal
        check("NON_EMPTY_GROUP" in str(e) or "not empty" in str(e).lower(), f"unexpected error {e}")

    consumer.close()
    # Once empty, offsets can be altered and the group deleted.
    altered = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3)])])[group].result()
    check(altered.topic_partitions[0].error is None, f"alter failed {altered}")
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])[group].result()
    check(offsets.topic_partitions[0].offset == 3, f"altered offset {offsets.topic_partitions}")
    admin.delete_consumer_groups([group])[group].result()
    listed = admin.list_consumer_groups().result()
    check(group not in [g.group_id for g in listed.valid], "deleted group still listed")
    print("confluent-kafka group admin OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
