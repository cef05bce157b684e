#!/usr/bin/env bash
# The logs signal's judged end-to-end runs at full size (docs/logs.md, "End to end"): the same
# tests `cargo test` runs smaller, with the issue's numbers: 50,000 numbered lines per container
# across two SIGKILLs, a container flooding its console for 30 s, the collector down for two
# minutes. Needs what tests/it/logs_e2e.rs needs (root, Debian's docker.io, the test peers:
# scripts/install-test-deps.sh). Takes about 8 minutes; prints each test's numbers (the whole
# output, with the agents' and the collector's logs of a failure, in target/logs-e2e.log).
set -euo pipefail
cd "$(dirname "$0")/.."
export NODE_AGENT_LOGS_E2E_BURST="${NODE_AGENT_LOGS_E2E_BURST:-5000}"
export NODE_AGENT_LOGS_E2E_FLOOD_SEC="${NODE_AGENT_LOGS_E2E_FLOOD_SEC:-30}"
export NODE_AGENT_LOGS_E2E_OUTAGE_SEC="${NODE_AGENT_LOGS_E2E_OUTAGE_SEC:-120}"
mkdir -p target
cargo test --test it logs_e2e -- --nocapture --test-threads=1 2>&1 | tee target/logs-e2e.log |
  grep -E '^(lines at the receiver|flood|outage|test |test result|thread|.*(missing|panicked))'
