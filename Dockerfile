# node-agent container image: multi-stage, small runtime.
#
#   docker build -t node-agent:local .          (docker-compose.yml does this)
#
# Stage 1 compiles the release binary with the pinned toolchain; stage 2 is Debian slim with only
# CA certificates added. Why Debian slim and not distroless/static: the binary is linked against
# glibc and loads libnvidia-ml.so (NVML, from the host driver via the NVIDIA Container Toolkit) at
# run time with dlopen, which a static musl binary cannot do; the OTLP/TLS clients use the system's
# root certificates; and docker-compose.yml uses the image's `chown` once for the collector's volume.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when Cargo.toml/Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/node-agent* target/release/deps/node_agent-* \
      target/release/deps/libnode_agent-* target/release/.fingerprint/node-agent-*
COPY src ./src
RUN cargo build --release --locked --bin node-agent \
 && install -D -m 0755 target/release/node-agent /out/node-agent \
 && /out/node-agent --version

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/node-agent --shell /usr/sbin/nologin node-agent \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/node-agent /var/lib/node-agent/spool
COPY --from=builder /out/node-agent /usr/local/bin/node-agent

# Unprivileged by default. That is enough for the node's own metrics (/proc and /sys are
# world-readable) and for sending OTLP. Root is needed only for what a game-server node adds, and
# docker-compose.yml / deploy/node-agent.service grant it explicitly, with the reasons:
#   - the Wings config /etc/pterodactyl/config.yml is mode 0600, owner root;
#   - the Docker socket /var/run/docker.sock is root:docker 0660;
#   - /proc/<pid>/io of processes owned by other users (game servers run as another uid) needs
#     root with CAP_SYS_PTRACE (ptrace read access);
#   - some cgroup v1 files (e.g. blkio throttle stats) are readable by root only on some kernels.
USER 10001:10001
ENV NODE_AGENT_SPOOL_DIR=/var/lib/node-agent/spool
VOLUME ["/var/lib/node-agent"]
ENTRYPOINT ["/usr/local/bin/node-agent"]
CMD ["run"]
