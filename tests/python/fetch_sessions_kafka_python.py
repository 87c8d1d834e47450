"""A kafka-python consumer using fetch sessions (KIP-227) while the test
changes what it reads and what the broker remembers.

Usage: python3 fetch_sessions_kafka_python.py <bootstrap> <topic> <partitions> <n> <mode>

Every partition p holds values `p<p>-<i:06d>` for i = 0, 1, 2, ...; the
consumer checks that each partition it reads delivers them in order, with
no gap and no repeat.

mode `follow`: reads all partitions up to n records each, prints READY,
then reads on up to 2n each (the test produces the rest meanwhile).

mode `reshape`: assigns the first half of the partitions and reads n from
each; assigns all (the session gains partitions) and reads n from the
rest; assigns the second half only (the session forgets the first half),
prints READY, and reads on up to 2n from the second half.

Prints DONE at the end; exits non-zero with a message on any failure.
"""

import sys
import time

from kafka import KafkaConsumer, TopicPartition


class Reader:
    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.next = {}
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=500,
            request_timeout_ms=10000,
        )

    def assign(self, partitions):
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(tps)
        for tp in tps:
            if tp.partition in self.next:
                self.consumer.seek(tp, self.next[tp.partition])
            else:
                self.consumer.seek_to_beginning(tp)
                self.next[tp.partition] = 0

    def read_until(self, partitions, count, seconds=90):
        deadline = time.time() + seconds
        while any(self.next[p] < count for p in partitions):
            if time.time() > deadline:
                progress = {p: self.next[p] for p in partitions}
                raise SystemExit(f"timed out reading up to {count}: {progress}")
            for tp, records in self.consumer.poll(timeout_ms=200).items():
                for r in records:
                    expected = f"p{tp.partition}-{self.next[tp.partition]:06d}".encode()
                    if r.value != expected or r.offset != self.next[tp.partition]:
                        raise SystemExit(
                            f"partition {tp.partition} offset {r.offset}: got {r.value!r}, "
                            f"expected {expected!r} at offset {self.next[tp.partition]}"
                        )
                    self.next[tp.partition] += 1


def ready():
    print("READY", flush=True)


def main() -> int:
    bootstrap, topic, partitions, n, mode = sys.argv[1:6]
    partitions, n = int(partitions), int(n)
    reader = Reader(bootstrap, topic)
    every = list(range(partitions))
    if mode == "follow":
        reader.assign(every)
        reader.read_until(every, n)
        ready()
        reader.read_until(every, 2 * n)
    elif mode == "reshape":
        first, second = every[: partitions // 2], every[partitions // 2 :]
        reader.assign(first)
        reader.read_until(first, n)
        reader.assign(every)
        reader.read_until(second, n)
        reader.assign(second)
        ready()
        reader.read_until(second, 2 * n)
    else:
        raise SystemExit(f"unknown mode {mode}")
    reader.consumer.close()
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
