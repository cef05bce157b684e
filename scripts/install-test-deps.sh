#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian bookworm machine of our kind.
# Debian packages go system-wide (apt is the only way to get them); PyPI and npm packages go
# into the ignored folder .cache/peers so nothing else on the machine changes.
# Idempotent: a second run only checks what is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers="$root/.cache/peers"
mkdir -p "$peers"

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-node-exporter >/dev/null || need_apt+=(prometheus-node-exporter)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
# A static busybox is the whole root file system of the test containers (no image pulls here).
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v curl >/dev/null || need_apt+=(curl)
command -v jq >/dev/null || need_apt+=(jq)
# A real terminal for `node-agent top` (tests/it/top.rs drives it in a tmux pane).
command -v tmux >/dev/null || need_apt+=(tmux)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v valgrind >/dev/null || need_apt+=(valgrind)
# Test certificates for the OpAMP TLS tests (tests/it/opamp/mock.rs).
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Python peers: the rotel collector, the reference OTLP protobuf classes, independent game clients.
py_pkgs=(rotel opentelemetry-proto==1.45.2 mcstatus==14.2.0 python-a2s==1.4.2 quarry==1.9.6)
stamp="$peers/py/.installed-$(echo "${py_pkgs[*]}" | md5sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "install-test-deps: pip install ${py_pkgs[*]}"
  rm -rf "$peers/py"
  python3 -m pip install -q --disable-pip-version-check --pre --target "$peers/py" "${py_pkgs[@]}"
  touch "$stamp"
fi

# gRPC stand-in (tests/peers/otlp_grpc_answers.py): the reference Python gRPC server and the
# standard rich-status encoding (RetryInfo in grpc-status-details-bin). In a folder of its own and
# without dependencies, so it adds to the protobuf runtime of $peers/py instead of replacing it.
if [ ! -d "$peers/py-grpc/grpc_status" ]; then
  echo "install-test-deps: pip install grpcio grpcio-status googleapis-common-protos"
  rm -rf "$peers/py-grpc"
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$peers/py-grpc" \
    grpcio==1.85.1 grpcio-status==1.85.1 googleapis-common-protos==1.76.0
fi

# npm peers: a real Bedrock server (bedrock-protocol) and a real Java server (minecraft-protocol).
if [ "${NODE_AGENT_SKIP_NPM:-0}" != 1 ]; then
  if [ ! -d "$peers/npm-bedrock/node_modules/bedrock-protocol" ]; then
    echo "install-test-deps: npm install bedrock-protocol"
    npm install --silent --no-audit --no-fund --prefix "$peers/npm-bedrock" --ignore-scripts bedrock-protocol@3.59.0 >/dev/null
  fi
  if [ ! -d "$peers/npm-java/node_modules/minecraft-protocol" ]; then
    echo "install-test-deps: npm install minecraft-protocol"
    npm install --silent --no-audit --no-fund --prefix "$peers/npm-java" minecraft-protocol@1.54.0 >/dev/null
  fi
  # A real OpAMP server (HTTP transport) with a test mode that keeps every AgentToServer it got.
  if [ ! -d "$peers/npm-opamp/node_modules/@elastic/mockopampserver" ]; then
    echo "install-test-deps: npm install @elastic/mockopampserver"
    npm install --silent --no-audit --no-fund --prefix "$peers/npm-opamp" --ignore-scripts @elastic/mockopampserver@0.5.0 >/dev/null
  fi
fi
# Grafana dashboard schema (tests/it/pipeline.rs): the JSON Schema generated from npm @grafana/schema's
# Dashboard type, checked with PyPI jsonschema. No Grafana server is obtainable here (docs/testing.md).
if [ ! -f "$peers/npm-grafana/dashboard.schema.json" ]; then
  echo "install-test-deps: npm install @grafana/schema ts-json-schema-generator"
  npm install --silent --no-audit --no-fund --prefix "$peers/npm-grafana" --ignore-scripts \
    @grafana/schema@13.2.3 ts-json-schema-generator@2.4.0 >/dev/null
  (cd "$peers/npm-grafana" && node_modules/.bin/ts-json-schema-generator \
    --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts --type Dashboard \
    --no-type-check --additional-properties -o dashboard.schema.json.tmp >/dev/null \
    && mv dashboard.schema.json.tmp dashboard.schema.json)
fi
if [ ! -d "$peers/py-grafana/jsonschema" ]; then
  echo "install-test-deps: pip install jsonschema"
  python3 -m pip install -q --disable-pip-version-check --target "$peers/py-grafana" jsonschema==4.23.0
fi
echo "install-test-deps: ready ($peers)"
