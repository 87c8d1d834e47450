"""Reads a topic's partitions from the start with kafka-python.

Usage: python3 read_values_kafka_python.py <bootstrap> <topic> <partitions> <count>

Prints one line per partition: `<partition> <key>/<value>,<key>/<value>,...`
for its first <count> records, each in hex, `-` for null. kafka-python decodes every codec itself
(zstandard, lz4, python-snappy), independently of librdkafka.
"""

import sys
import time

from kafka import KafkaConsumer, TopicPartition


def hexed(b) -> str:
    return "-" if b is None else b.hex()


def main() -> int:
    bootstrap, topic, partitions, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for p in range(partitions):
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, check_crcs=True)
        tp = TopicPartition(topic, p)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values = []
        deadline = time.time() + 60
        while len(values) < count:
            if time.time() > deadline:
                raise SystemExit(f"{topic}-{p}: {len(values)} of {count} records after 60 s")
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(f"{hexed(r.key)}/{hexed(r.value)}" for r in records)
        consumer.close()
        print(f"{p} {','.join(values[:count])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
