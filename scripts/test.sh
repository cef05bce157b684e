#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the peers the tests run against, checks
# formatting and lints, then runs every test (unit, integration with real peers).
set -euo pipefail
cd "$(dirname "$0")/.."
export NODE_AGENT_PEERS="$PWD/.cache/peers"
bash scripts/install-test-deps.sh
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
# Integration tests start real servers and cgroups; two at a time fits our 2-core machines.
cargo test --all-targets -- --test-threads=2
