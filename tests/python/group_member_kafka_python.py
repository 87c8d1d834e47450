"""A kafka-python consumer-group member speaking the same line protocol as
the Rust `tideline-group-member`, so a test can mix it with rdkafka members.

Usage: python3 group_member_kafka_python.py <bootstrap> <topic> <group>

Prints, line by line:
  ASSIGNMENT <p,p,...>          after every rebalance
  RECORD <partition> <offset> <key>
  COMMITTED <partition> <next offset>
Commits synchronously after every record. Exits cleanly (closing the
consumer, which leaves the group) on SIGTERM.
"""

import signal
import sys

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

stop = False


def on_sigterm(_signum, _frame):
    global stop
    stop = True


class PrintAssignment(ConsumerRebalanceListener):
    def __init__(self):
        self.consumer = None

    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        partitions = sorted(tp.partition for tp in self.consumer.assignment())
        print("ASSIGNMENT " + ",".join(str(p) for p in partitions), flush=True)


def main() -> int:
    bootstrap, topic, group = sys.argv[1:4]
    signal.signal(signal.SIGTERM, on_sigterm)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="kafka-python-member",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    listener = PrintAssignment()
    listener.consumer = consumer
    consumer.subscribe([topic], listener=listener)
    while not stop:
        batches = consumer.poll(timeout_ms=100)
        for tp, records in batches.items():
            for r in records:
                key = r.key.decode() if r.key else ""
                print(f"RECORD {tp.partition} {r.offset} {key}", flush=True)
                consumer.commit({tp: OffsetAndMetadata(r.offset + 1, "", -1)})
                print(f"COMMITTED {tp.partition} {r.offset + 1}", flush=True)
    consumer.close()
    print("CLOSED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
