"""kafka-python's own transactional producer and read_committed consumer
(its implementation of KIP-98, independent of librdkafka).

Usage: python3 transactions_kafka_python.py <bootstrap> <topic>

Commits two transactions and aborts one in between, then checks that a
read_committed consumer sees exactly the committed records, in order, and
that a read_uncommitted one sees the aborted record too (so the check can
fail). A second producer with the same transactional.id fences the first:
its next transaction is refused.
"""

import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError


def read_all(bootstrap: str, topic: str, isolation: str) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    values = []
    deadline = time.time() + 60
    while consumer.position(tp) < end:
        if time.time() > deadline:
            raise SystemExit(f"{isolation}: at {consumer.position(tp)} of {end} after 60 s")
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value.decode() for r in records)
    consumer.close()
    return values


def main() -> int:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="kafka-python-txn")
    producer.init_transactions()
    for values, commit in ((["c1", "c2"], True), (["a1"], False), (["c3"], True)):
        producer.begin_transaction()
        for v in values:
            producer.send(topic, value=v.encode(), partition=0)
        producer.flush()
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()

    committed = read_all(bootstrap, topic, "read_committed")
    assert committed == ["c1", "c2", "c3"], committed
    uncommitted = read_all(bootstrap, topic, "read_uncommitted")
    assert uncommitted == ["c1", "c2", "a1", "c3"], uncommitted

    # A new instance fences the old one.
    successor = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="kafka-python-txn")
    successor.init_transactions()
    fenced = False
    try:
        producer.begin_transaction()
        producer.send(topic, value=b"zombie", partition=0)
        producer.flush()
        producer.commit_transaction()
    except KafkaError as e:
        fenced = True
        print(f"the first instance is fenced: {e!r}")
    assert fenced, "the fenced producer committed"
    successor.begin_transaction()
    successor.send(topic, value=b"c4", partition=0)
    successor.commit_transaction()
    committed = read_all(bootstrap, topic, "read_committed")
    assert committed == ["c1", "c2", "c3", "c4"], committed
    print(f"read_committed {committed}, read_uncommitted {uncommitted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
