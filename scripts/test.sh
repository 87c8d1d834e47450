#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests
# need (Python Kafka clients), builds the broker, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
python3 -m pip install --quiet --disable-pip-version-check kafka-python confluent-kafka

echo "== building"
cargo build --workspace --bins

echo "== running tests"
cargo test --workspace -- --test-threads=2
