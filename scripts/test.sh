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
cargo clippy --all-targets --all-features --quiet -- -D warnings
echo "== cargo test"
# Integration tests start real servers and cgroups; two at a time fits our 2-core machines.
cargo test --all-targets -- --test-threads=2
# A short fuzz run of every probe parser when cargo-fuzz and a nightly toolchain are there
# (`cargo install cargo-fuzz`); NODE_AGENT_FUZZ_SECONDS=0 skips it. New inputs go to a scratch
# folder; the committed seed corpus (fuzz/corpus/<target>) is only read.
fuzz_s=${NODE_AGENT_FUZZ_SECONDS:-10}
# The instrumented build takes minutes on 2 cores: keep it outside the clone so later runs on the
# same machine only rebuild the agent crate.
export CARGO_TARGET_DIR="${NODE_AGENT_FUZZ_TARGET:-$HOME/.cache/node-agent/fuzz-target}"
# The whole stage, the instrumented build included, stops after NODE_AGENT_FUZZ_BUDGET seconds
# (default 150) so the suite stays well inside CI's time; a target cut short is said, not failed.
budget=${NODE_AGENT_FUZZ_BUDGET:-150}
if [ "$fuzz_s" != 0 ] && cargo +nightly fuzz --version >/dev/null 2>&1; then
  start=$SECONDS
  for t in $(cd fuzz && cargo +nightly fuzz list); do
    left=$((budget - (SECONDS - start)))
    if [ "$left" -le "$fuzz_s" ]; then
      echo "== fuzz: the ${budget}s budget is spent; $t and the targets after it are left for the next run"
      break
    fi
    echo "== cargo fuzz run $t (${fuzz_s}s)"
    scratch=$(mktemp -d)
    rc=0
    (cd fuzz && timeout "$left" cargo +nightly fuzz run -O "$t" "$scratch" "corpus/$t" -- -max_total_time="$fuzz_s" -rss_limit_mb=1024) || rc=$?
    rm -rf "$scratch"
    if [ "$rc" = 124 ]; then
      echo "== fuzz: $t cut short by the ${budget}s budget (its build or run did not finish)"
      break
    elif [ "$rc" != 0 ]; then
      exit "$rc"
    fi
  done
else
  echo "== fuzz: skipped (needs cargo-fuzz and a nightly toolchain; cargo test already replayed the corpus)"
fi
