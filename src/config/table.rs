//! The settings table: every setting declared once, with its key (the TOML key; the flag is the
//! same with `-` for `_`), the environment variables that may carry it (the original Python
//! agent's names and the standard `OTEL_*` ones, most specific first), its default, whether it is
//! a secret, and its help. The command line, the environment and file readers, `node-agent config`
//! and docs/configuration.md are all generated from this one table, so they cannot drift apart.

/// One declared setting.
pub(crate) struct Setting {
    /// TOML key; the flag is the same with `-` for `_`.
    pub(crate) key: &'static str,
    /// Environment variables, most specific first.
    pub(crate) env: &'static [&'static str],
    pub(crate) default: Option<&'static str>,
    pub(crate) secret: bool,
    pub(crate) help: &'static str,
    /// A logs setting's metrics twin: when no layer sets this one, the twin's value is used, from
    /// every layer except the twin's metrics-only variable (`OTEL_EXPORTER_OTLP_METRICS_*`).
    pub(crate) fallback: Option<&'static str>,
}

const fn s(
    key: &'static str,
    env: &'static [&'static str],
    default: Option<&'static str>,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        env,
        default,
        secret: false,
        help,
        fallback: None,
    }
}

const fn secret(key: &'static str, env: &'static [&'static str], help: &'static str) -> Setting {
    Setting {
        key,
        env,
        default: None,
        secret: true,
        help,
        fallback: None,
    }
}

/// A per-signal OTLP setting of the logs: its own variable, else its metrics twin's value.
const fn logs_twin(
    key: &'static str,
    env: &'static [&'static str],
    twin: &'static str,
    secret: bool,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        env,
        default: None,
        secret,
        help,
        fallback: Some(twin),
    }
}

/// Every setting the agent reads. The README's configuration table is generated from the same
/// list by `node-agent config --markdown`, so the two cannot drift apart.
pub(crate) const SETTINGS: &[Setting] = &[
    s(
        "node_id",
        &["NODE_ID"],
        None,
        "Node identity; becomes service.instance.id (default: host.id)",
    ),
    secret(
        "node_token",
        &["NODE_TOKEN"],
        "Bearer token for the orchestrator (direct mode). Secret: as a flag it is visible to every local user in ps; use NODE_TOKEN or node_token_file",
    ),
    s(
        "node_token_file",
        &["NODE_TOKEN_FILE"],
        None,
        "File holding node_token (one line; keep it mode 0600, a warning says when group or others can read it)",
    ),
    s(
        "node_ip",
        &["NODE_IP"],
        None,
        "Public IP of the node; host.ip, and the address game pings go to",
    ),
    s(
        "orchestrator_base_url",
        &["ORCHESTRATOR_BASE_URL"],
        None,
        "Orchestrator URL; with node_token and no OTLP endpoint the agent sends OTLP/HTTP to {url}/internal/nodes/{node_id}/telemetry",
    ),
    s(
        "wings_base_url",
        &["WINGS_BASE_URL"],
        None,
        "Wings API URL (default: from the Wings config file, else http://127.0.0.1:8080)",
    ),
    secret(
        "wings_token",
        &["WINGS_TOKEN"],
        "Wings API token (default: `token` from the Wings config file). Secret: as a flag it is visible to every local user in ps; use WINGS_TOKEN or wings_token_file",
    ),
    s(
        "wings_token_file",
        &["WINGS_TOKEN_FILE"],
        None,
        "File holding wings_token (one line; keep it mode 0600, a warning says when group or others can read it)",
    ),
    s(
        "wings_config",
        &["WINGS_CONFIG"],
        Some("/etc/pterodactyl/config.yml"),
        "Wings config file, read for the token and API address when they are not set",
    ),
    s(
        "docker_host",
        &["DOCKER_HOST"],
        Some("unix:///var/run/docker.sock"),
        "Docker Engine API socket",
    ),
    s(
        "http_timeout_sec",
        &["AGENT_HTTP_TIMEOUT_SEC"],
        Some("10"),
        "Timeout of one HTTP call (Wings, Docker, orchestrator), seconds",
    ),
    s(
        "insecure_tls",
        &["AGENT_INSECURE_TLS"],
        Some("false"),
        "Skip TLS certificate checks towards Wings and the orchestrator (direct mode); never towards an OTLP collector",
    ),
    s(
        "sample_interval_min_sec",
        &["AGENT_SAMPLE_INTERVAL_MIN_SEC"],
        Some("5"),
        "Shortest pause between node/container samples, seconds",
    ),
    s(
        "sample_interval_max_sec",
        &["AGENT_SAMPLE_INTERVAL_MAX_SEC"],
        Some("10"),
        "Longest pause between node/container samples, seconds (jittered between min and max)",
    ),
    s(
        "players_interval_min_sec",
        &["AGENT_PLAYERS_INTERVAL_MIN_SEC"],
        Some("20"),
        "Shortest pause between game-server probes, seconds",
    ),
    s(
        "players_interval_max_sec",
        &["AGENT_PLAYERS_INTERVAL_MAX_SEC"],
        Some("30"),
        "Longest pause between game-server probes, seconds",
    ),
    s(
        "discovery_interval_sec",
        &["AGENT_DISCOVERY_INTERVAL_SEC"],
        Some("15"),
        "Pause between Wings/Docker discovery passes, seconds",
    ),
    s(
        "send_backoff_max_sec",
        &["AGENT_SEND_BACKOFF_MAX_SEC"],
        Some("60"),
        "Cap of the exponential retry backoff towards the collector, seconds",
    ),
    s(
        "minecraft_ping_timeout_sec",
        &["AGENT_MINECRAFT_PING_TIMEOUT_SEC"],
        Some("3"),
        "Timeout of one game-server probe, seconds",
    ),
    s(
        "probe_concurrency",
        &["AGENT_PROBE_CONCURRENCY"],
        Some("8"),
        "Game-server probes in flight at once",
    ),
    s(
        "probe_max_frame_bytes",
        &["AGENT_PROBE_MAX_FRAME_BYTES"],
        Some("262144"),
        "Largest game-server status reply accepted (Java frame and JSON), bytes; at most 2097151",
    ),
    s(
        "metrics_exporter",
        &["OTEL_METRICS_EXPORTER"],
        Some("otlp"),
        "otlp, console (print to stdout) or none",
    ),
    s(
        "console_format",
        &["NODE_AGENT_CONSOLE_FORMAT"],
        Some("text"),
        "How the console exporter prints: text (one line per point, one block per sample) or otlp-json (one OTLP/JSON request per line)",
    ),
    s(
        "sdk_disabled",
        &["OTEL_SDK_DISABLED"],
        Some("false"),
        "true: sample nothing, export nothing",
    ),
    s(
        "otlp_endpoint",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ],
        None,
        "OTLP endpoint (default http://localhost:4318 for HTTP, http://localhost:4317 for gRPC); OTEL_EXPORTER_OTLP_ENDPOINT is a base URL (/v1/metrics appended for HTTP), the METRICS variant is used as given",
    ),
    s(
        "otlp_protocol",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
        Some("http/protobuf"),
        "grpc, http/protobuf or http/json",
    ),
    secret(
        "otlp_headers",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ],
        "Extra request headers, k=v,k2=v2 (URL-encoded values). Secret: as a flag it is visible to every local user in ps; use the environment",
    ),
    s(
        "otlp_compression",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ],
        Some("gzip"),
        "gzip or none",
    ),
    s(
        "otlp_timeout_ms",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ],
        Some("10000"),
        "Timeout of one export request, milliseconds",
    ),
    s(
        "otlp_certificate",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ],
        None,
        "PEM file of the CA that signed the collector's certificate",
    ),
    s(
        "otlp_client_certificate",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ],
        None,
        "PEM client certificate for mutual TLS",
    ),
    s(
        "otlp_client_key",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ],
        None,
        "PEM private key of the client certificate",
    ),
    s(
        "otlp_insecure",
        &[
            "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
            "OTEL_EXPORTER_OTLP_INSECURE",
        ],
        Some("false"),
        "gRPC endpoints without a scheme use plain http when true (https otherwise); never turns off certificate checks",
    ),
    s(
        "logs_exporter",
        &["OTEL_LOGS_EXPORTER"],
        Some("otlp"),
        "Where container logs and the agent's own log go: otlp, console (print to stdout) or none (no logs are read)",
    ),
    logs_twin(
        "otlp_logs_endpoint",
        &["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"],
        "otlp_endpoint",
        false,
        "OTLP endpoint of the logs, used as given (default: OTEL_EXPORTER_OTLP_ENDPOINT with /v1/logs appended for HTTP, or otlp_endpoint with /v1/metrics replaced by /v1/logs)",
    ),
    logs_twin(
        "otlp_logs_protocol",
        &["OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"],
        "otlp_protocol",
        false,
        "grpc, http/protobuf or http/json for the logs (default: otlp_protocol)",
    ),
    logs_twin(
        "otlp_logs_headers",
        &["OTEL_EXPORTER_OTLP_LOGS_HEADERS"],
        "otlp_headers",
        true,
        "Extra request headers of the logs, k=v,k2=v2 (default: otlp_headers)",
    ),
    logs_twin(
        "otlp_logs_compression",
        &["OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"],
        "otlp_compression",
        false,
        "gzip or none for the logs (default: otlp_compression)",
    ),
    logs_twin(
        "otlp_logs_timeout_ms",
        &["OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"],
        "otlp_timeout_ms",
        false,
        "Timeout of one logs export request, milliseconds (default: otlp_timeout_ms)",
    ),
    logs_twin(
        "otlp_logs_certificate",
        &["OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"],
        "otlp_certificate",
        false,
        "PEM file of the CA of the logs collector (default: otlp_certificate)",
    ),
    logs_twin(
        "otlp_logs_client_certificate",
        &["OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE"],
        "otlp_client_certificate",
        false,
        "PEM client certificate for the logs (default: otlp_client_certificate)",
    ),
    logs_twin(
        "otlp_logs_client_key",
        &["OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY"],
        "otlp_client_key",
        false,
        "PEM private key of the logs client certificate (default: otlp_client_key)",
    ),
    logs_twin(
        "otlp_logs_insecure",
        &["OTEL_EXPORTER_OTLP_LOGS_INSECURE"],
        "otlp_insecure",
        false,
        "otlp_insecure for the logs endpoint (default: otlp_insecure)",
    ),
    s(
        "service_name",
        &["OTEL_SERVICE_NAME"],
        None,
        "service.name of the Resource (default node-agent, or service.name from OTEL_RESOURCE_ATTRIBUTES)",
    ),
    s(
        "resource_attributes",
        &["OTEL_RESOURCE_ATTRIBUTES"],
        None,
        "Extra resource attributes, k=v,k2=v2; they win over detected ones",
    ),
    s(
        "log_level",
        &["LOG_LEVEL", "RUST_LOG"],
        Some("info"),
        "error, warn, info, debug, trace, or target=level directives",
    ),
    s(
        "log_format",
        &["NODE_AGENT_LOG_FORMAT"],
        Some("auto"),
        "auto (text on a terminal, else text), text or json",
    ),
    s(
        "log_export",
        &["NODE_AGENT_LOG_EXPORT"],
        Some("off"),
        "Send the agent's own log as OTLP logs through the logs queue too: off, or the least severe level sent (error, warn, info, debug)",
    ),
    s(
        "http_listen",
        &["NODE_AGENT_HTTP_LISTEN"],
        Some("127.0.0.1:9464"),
        "Address of the local /healthz, /readyz and /metrics endpoint (loopback by default; a busy default port is a warning, a busy configured one an error), or off",
    ),
    s(
        "state_dir",
        &["NODE_AGENT_STATE_DIR"],
        Some("/var/lib/node-agent"),
        "Directory of the agent's own state (log cursors, OpAMP instance UID, last remote configuration, audit log; the spool unless spool_dir is set)",
    ),
    s(
        "spool_dir",
        &["NODE_AGENT_SPOOL_DIR"],
        None,
        "Directory of the on-disk delivery spool (default: <state_dir>/spool); metrics and logs each have a sub-directory",
    ),
    s(
        "queue_memory_bytes",
        &["NODE_AGENT_QUEUE_MEMORY_BYTES"],
        Some("4194304"),
        "Memory budget of the delivery queue before it spills to disk, bytes; left at its default, it grows to three samples (at most 128 MiB) on a node whose one sample is larger",
    ),
    s(
        "spool_max_bytes",
        &["NODE_AGENT_SPOOL_MAX_BYTES"],
        Some("268435456"),
        "Disk budget of the spool; the oldest batches are dropped (and counted) past it, bytes",
    ),
    s(
        "spool_fsync",
        &["NODE_AGENT_SPOOL_FSYNC"],
        Some("batch"),
        "always (fsync every write), batch (fsync once per sampling cycle) or never",
    ),
    s(
        "logs_queue_memory_bytes",
        &["NODE_AGENT_LOGS_QUEUE_MEMORY_BYTES"],
        Some("8388608"),
        "Memory budget of the logs' delivery queue before it spills to disk, bytes; left at its default, it grows to three batches (at most 128 MiB) when one batch is larger",
    ),
    s(
        "logs_spool_max_bytes",
        &["NODE_AGENT_LOGS_SPOOL_MAX_BYTES"],
        Some("536870912"),
        "Disk budget of the logs' spool; the oldest batches are dropped (and counted) past it, bytes",
    ),
    s(
        "shutdown_grace_sec",
        &["NODE_AGENT_SHUTDOWN_GRACE_SEC"],
        Some("5"),
        "On SIGTERM, how long to try delivering before the queue is written to the spool, seconds",
    ),
    s(
        "proc_path",
        &["NODE_AGENT_PROC_PATH", "HOST_PROC"],
        Some("/proc"),
        "Where the host's /proc is mounted",
    ),
    s(
        "sys_path",
        &["NODE_AGENT_SYS_PATH", "HOST_SYS"],
        Some("/sys"),
        "Where the host's /sys is mounted",
    ),
    s(
        "rootfs_path",
        &["NODE_AGENT_ROOTFS_PATH", "HOST_ROOT"],
        Some("/"),
        "Where the host's root filesystem is mounted (for machine-id, os-release, filesystems)",
    ),
    s(
        "gpu",
        &["NODE_AGENT_GPU"],
        Some("auto"),
        "auto (NVIDIA through NVML when its library is present, AMD/Intel through sysfs) or off",
    ),
    s(
        "nvml_library",
        &["NODE_AGENT_NVML_LIBRARY"],
        None,
        "Path of libnvidia-ml to open instead of libnvidia-ml.so.1 / libnvidia-ml.so",
    ),
    s(
        "filesystem_timeout_ms",
        &["NODE_AGENT_FILESYSTEM_TIMEOUT_MS"],
        Some("1000"),
        "A mount whose statfs takes longer is reported stale and skipped, milliseconds (1 to 86400000)",
    ),
    s(
        "logs",
        &["NODE_AGENT_LOGS"],
        Some("servers"),
        "Container consoles sent as OTLP logs: off, servers (Pterodactyl server containers) or all (docs/logs.md)",
    ),
    s(
        "logs_max_line_bytes",
        &["NODE_AGENT_LOGS_MAX_LINE_BYTES"],
        Some("1048576"),
        "A longer console line is cut there and marked, bytes (at least 65536)",
    ),
    s(
        "logs_memory_bytes",
        &["NODE_AGENT_LOGS_MEMORY_BYTES"],
        Some("16777216"),
        "Memory for console lines being assembled or not yet queued, bytes (at least twice logs_max_line_bytes)",
    ),
    s(
        "logs_budget_interval_sec",
        &["NODE_AGENT_LOGS_BUDGET_INTERVAL_SEC"],
        Some("10"),
        "The window of each container's console allowance, seconds",
    ),
    s(
        "logs_budget_lines",
        &["NODE_AGENT_LOGS_BUDGET_LINES"],
        Some("50000"),
        "Console lines per container per window; past it lines are dropped and counted",
    ),
    s(
        "logs_budget_bytes",
        &["NODE_AGENT_LOGS_BUDGET_BYTES"],
        Some("16777216"),
        "Console bytes per container per window; past it lines are dropped and counted",
    ),
    s(
        "logs_flush_interval_ms",
        &["NODE_AGENT_LOGS_FLUSH_INTERVAL_MS"],
        Some("500"),
        "A batch of console lines is queued at most this long after its first line (sooner at 2 MiB), milliseconds",
    ),
    s(
        "logs_backfill_sec",
        &["NODE_AGENT_LOGS_BACKFILL_SEC"],
        None,
        "How far back a container never seen before is read, seconds (default: everything Docker still holds)",
    ),
    s(
        "opamp_endpoint",
        &["NODE_AGENT_OPAMP_ENDPOINT"],
        None,
        "OpAMP server (control plane): http(s)://host:port/v1/opamp (polling) or ws(s)://… (WebSocket); off when unset",
    ),
    secret(
        "opamp_token",
        &["NODE_AGENT_OPAMP_TOKEN"],
        "Bearer token for the OpAMP server (default: node_token)",
    ),
    secret(
        "opamp_headers",
        &["NODE_AGENT_OPAMP_HEADERS"],
        "Extra OpAMP request headers, k=v,k2=v2 (URL-encoded values)",
    ),
    s(
        "opamp_certificate",
        &["NODE_AGENT_OPAMP_CERTIFICATE"],
        None,
        "PEM file of the CA that signed the OpAMP server's certificate (default: otlp_certificate)",
    ),
    s(
        "opamp_client_certificate",
        &["NODE_AGENT_OPAMP_CLIENT_CERTIFICATE"],
        None,
        "PEM client certificate for mutual TLS with the OpAMP server (default: otlp_client_certificate)",
    ),
    s(
        "opamp_client_key",
        &["NODE_AGENT_OPAMP_CLIENT_KEY"],
        None,
        "PEM private key of the OpAMP client certificate (default: otlp_client_key)",
    ),
    s(
        "opamp_insecure_skip_verify",
        &["NODE_AGENT_OPAMP_INSECURE_SKIP_VERIFY"],
        Some("false"),
        "Do not verify the OpAMP server's certificate (testing only)",
    ),
    s(
        "opamp_heartbeat_sec",
        &["NODE_AGENT_OPAMP_HEARTBEAT_SEC"],
        Some("30"),
        "OpAMP heartbeat (WebSocket) and poll (HTTP) interval, seconds; the server's value wins when it sends one",
    ),
    s(
        "opamp_timeout_sec",
        &["NODE_AGENT_OPAMP_TIMEOUT_SEC"],
        Some("30"),
        "Bound on connecting to the OpAMP server and on each wait for its reply, seconds",
    ),
    s(
        "opamp_max_message_bytes",
        &["NODE_AGENT_OPAMP_MAX_MESSAGE_BYTES"],
        Some("4194304"),
        "Largest OpAMP server message accepted (after gzip), bytes",
    ),
    s(
        "opamp_backoff_max_sec",
        &["NODE_AGENT_OPAMP_BACKOFF_MAX_SEC"],
        Some("300"),
        "Cap of the jittered reconnect backoff towards the OpAMP server, seconds",
    ),
    s(
        "opamp_remote_config",
        &["NODE_AGENT_OPAMP_REMOTE_CONFIG"],
        Some("false"),
        "Accept configuration from the OpAMP server (a layer between the environment and the file)",
    ),
    s(
        "opamp_remote_config_allow",
        &["NODE_AGENT_OPAMP_REMOTE_CONFIG_ALLOW"],
        Some("default"),
        "Settings and sections the OpAMP server may set: default, none, or a comma-separated list of keys (docs/opamp.md)",
    ),
];

/// Look-up of one setting by key.
pub(crate) fn setting(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("undeclared setting {key}"))
}
