#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests
# need (Python Kafka clients, kubernetes-validate, promtool), builds the broker, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
python3 -m pip install --quiet --disable-pip-version-check kafka-python confluent-kafka kubernetes-validate
# promtool checks and unit-tests the alerting rules.
if ! command -v promtool >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

echo "== building"
cargo build --workspace --bins

echo "== running tests"
cargo test --workspace -- --test-threads=2
