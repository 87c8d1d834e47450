"""confluent-kafka (Python binding of librdkafka) smoke test.

Usage: python3 smoke_confluent_kafka.py <bootstrap>

Creates a topic with AdminClient, produces 1000 keyed records with an
idempotent Producer, reads them back with a Consumer assigned from the
beginning, and checks they all came back intact at their acknowledged
offsets. Exits non-zero with a message on any failure.
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

N = 1000
PARTITIONS = 2


def main() -> int:
    bootstrap = sys.argv[1]
    topic = "ck-smoke-" + uuid.uuid4().hex[:8]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for t, fut in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).items():
        fut.result(timeout=30)

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    sent = {}
    errors = []

    def on_delivery(err, msg, i):
        if err is not None:
            errors.append((i, err))
        else:
            sent[(msg.partition(), msg.offset())] = i

    for i in range(N):
        key = f"k{i % 11}".encode()
        value = f"v{i:06d}".encode() * (1 + i % 5)
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=lambda e, m, i=i: on_delivery(e, m, i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or errors or len(sent) != N:
        raise SystemExit(f"produce: {remaining} unflushed, errors {errors[:5]}, {len(sent)} acked of {N}")

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "ck-smoke-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "check.crcs": True,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = {}
    deadline = time.time() + 60
    while len(got) < N:
        if time.time() > deadline:
            raise SystemExit(f"consumed {len(got)} of {N} before timing out")
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        got[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
    consumer.close()
    for po, i in sent.items():
        key = f"k{i % 11}".encode()
        value = f"v{i:06d}".encode() * (1 + i % 5)
        if got.get(po) != (key, value):
            raise SystemExit(f"record {i} at {po}: expected {(key, value)!r}, got {got.get(po)!r}")
    print(f"confluent-kafka smoke OK: {N} records in {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
