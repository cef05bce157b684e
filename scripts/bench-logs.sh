#!/usr/bin/env bash
# Logs benchmark (docs/logs.md): the logs source vs `docker logs -f >/dev/null` on the same
# container, and a container printing as fast as it can with and without the source following
# it. Needs root and Debian's docker.io (dockerd). Extra arguments go to scripts/bench/logs.py,
# e.g. --lines 1000000 --runs 3. Results: the table on stdout and target/bench/logs.json.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-logs.sh: run as root (it starts dockerd)"; exit 1; }
cargo build --release --quiet --example logs_follow
exec python3 scripts/bench/logs.py "$@"
