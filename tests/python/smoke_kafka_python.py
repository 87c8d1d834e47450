"""kafka-python smoke test against a running Tideline broker.

Usage: python3 smoke_kafka_python.py <bootstrap>

Creates a topic with KafkaAdminClient, produces 1000 keyed records with
KafkaProducer (waiting for every acknowledgement), consumes them back with
KafkaConsumer from the beginning, and checks every record came back once,
intact, in send order per partition, at its acknowledged offset.
Exits non-zero with a message on any failure.
"""

import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

N = 1000
PARTITIONS = 3


def main() -> int:
    bootstrap = sys.argv[1]
    topic = "py-smoke-" + uuid.uuid4().hex[:8]

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tideline-smoke-admin")
    admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
    deadline = time.time() + 30
    while topic not in admin.list_topics():
        if time.time() > deadline:
            raise SystemExit(f"topic {topic} not listed after creation")
        time.sleep(0.2)
    admin.close()

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, client_id="tideline-smoke-producer"
    )
    futures = []
    for i in range(N):
        key = f"key-{i % 37}".encode()
        value = f"value-{i:06d}-".encode() + bytes([i % 256]) * (i % 50)
        headers = [("i", str(i).encode())] if i % 3 == 0 else []
        futures.append((i, key, value, headers, producer.send(topic, key=key, value=value, headers=headers)))
    producer.flush(timeout=60)
    sent = {}
    for i, key, value, headers, fut in futures:
        md = fut.get(timeout=60)
        sent[(md.partition, md.offset)] = (i, key, value, headers)
    producer.close()
    if len(sent) != N:
        raise SystemExit(f"{N} sends but {len(sent)} distinct (partition, offset) acknowledgements")

    ends = {}
    for (p, o) in sent:
        ends[p] = max(ends.get(p, -1), o + 1)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="tideline-smoke-consumer",
        consumer_timeout_ms=60000,
    )
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = {}
    deadline = time.time() + 60
    while len(got) < N:
        if time.time() > deadline:
            raise SystemExit(f"consumed {len(got)} of {N} records before timing out")
        for tp, msgs in consumer.poll(timeout_ms=1000).items():
            for m in msgs:
                if (m.partition, m.offset) in got:
                    raise SystemExit(f"offset {m.partition}/{m.offset} delivered twice")
                got[(m.partition, m.offset)] = (m.key, m.value, list(m.headers or []))
    consumer.close()

    for po, (i, key, value, headers) in sent.items():
        if po not in got:
            raise SystemExit(f"record {i} acknowledged at {po} was not consumed")
        gkey, gvalue, gheaders = got[po]
        if (gkey, gvalue) != (key, value):
            raise SystemExit(f"record {i} at {po}: sent {(key, value)!r}, got {(gkey, gvalue)!r}")
        if [(k, v) for k, v in gheaders] != headers:
            raise SystemExit(f"record {i} at {po}: sent headers {headers!r}, got {gheaders!r}")
    for p in range(PARTITIONS):
        order = [sent[(q, o)][0] for (q, o) in sorted(sent) if q == p]
        if order != sorted(order):
            raise SystemExit(f"partition {p}: records not in send order")
    print(f"kafka-python smoke OK: {N} records over {len(ends)} partitions of {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
