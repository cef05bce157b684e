#!/usr/bin/env bash
# Footprint benchmark (docs/benchmarks.md): the agent vs the raw-read floor vs node_exporter at
# N = 0, 100, 1000 real cgroups, plus OTLP bytes on the wire and replay speed.
# Needs root (it creates cgroups under /sys/fs/cgroup/<ctrl>/docker/), python3 and
# prometheus-node-exporter (scripts/install-test-deps.sh installs it). Extra arguments go to
# scripts/bench/bench.py, e.g. --counts 0,100 --interval 1 --seconds 60.
# Results: target/bench/table.md and target/bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (it creates cgroups)"; exit 1; }
command -v prometheus-node-exporter >/dev/null || bash scripts/install-test-deps.sh
cargo build --release --quiet --bin node-agent
cargo build --release --quiet --features bench --bin node-agent-bench
exec python3 scripts/bench/bench.py "$@"
