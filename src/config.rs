//! Configuration: one table of settings, four layers.
//!
//! Every setting is declared once in [`SETTINGS`] with its command-line flag, the environment
//! variables that may carry it (the original Python agent's names and the standard `OTEL_*` ones,
//! most specific first), its key in the TOML file and its default. A value is taken from the first
//! layer that has it: flag > environment > file > default, and the layer it came from is kept so
//! that `node-agent config` can say where every value comes from.
//!
//! Validation happens here, at start: a bad value stops the agent with a message that names the
//! setting, where it came from and how to fix it (exit code 2), instead of failing later inside a
//! sampler. Secrets (tokens, header values) are never echoed back, not even in errors.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(String),
    Env(String),
    File(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "flag --{name}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(key) => write!(f, "file key {key}"),
            Source::Default => write!(f, "default"),
        }
    }
}

/// A configuration error: which setting, from where, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {setting} (from {from}): {problem}. Fix: {fix}")]
    Invalid {
        setting: &'static str,
        from: Source,
        problem: String,
        fix: String,
    },
    #[error(
        "cannot read config file {path}: {reason}. Fix: pass an existing, readable TOML file to --config"
    )]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Other(String),
}

/// One declared setting.
pub struct Setting {
    /// TOML key; the flag is the same with `-` for `_`.
    pub key: &'static str,
    /// Environment variables, most specific first.
    pub env: &'static [&'static str],
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
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
    }
}

const fn secret(key: &'static str, env: &'static [&'static str], help: &'static str) -> Setting {
    Setting {
        key,
        env,
        default: None,
        secret: true,
        help,
    }
}

/// Every setting the agent reads. The README's configuration table is generated from the same
/// list by `node-agent config --markdown`, so the two cannot drift apart.
pub const SETTINGS: &[Setting] = &[
    s(
        "node_id",
        &["NODE_ID"],
        None,
        "Node identity; becomes service.instance.id (default: host.id)",
    ),
    secret(
        "node_token",
        &["NODE_TOKEN"],
        "Bearer token for the orchestrator (direct mode)",
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
        "Wings API token (default: `token` from the Wings config file)",
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
        "Skip TLS certificate checks towards Wings and the orchestrator",
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
        "Extra request headers, k=v,k2=v2 (URL-encoded values)",
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
        "Endpoints without a scheme use plain http when true",
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
        "error, warn, info, debug, trace, or a tracing filter",
    ),
    s(
        "log_format",
        &["NODE_AGENT_LOG_FORMAT"],
        Some("auto"),
        "auto (text on a terminal, else text), text or json",
    ),
    s(
        "http_listen",
        &["NODE_AGENT_HTTP_LISTEN"],
        None,
        "Address of the local /healthz, /readyz and /metrics endpoint, e.g. 127.0.0.1:9464 (off when unset)",
    ),
    s(
        "spool_dir",
        &["NODE_AGENT_SPOOL_DIR"],
        Some("/var/lib/node-agent/spool"),
        "Directory of the on-disk delivery spool",
    ),
    s(
        "queue_memory_bytes",
        &["NODE_AGENT_QUEUE_MEMORY_BYTES"],
        Some("4194304"),
        "Memory budget of the delivery queue before it spills to disk, bytes",
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
        "A mount whose statfs takes longer is reported stale and skipped, milliseconds",
    ),
];

/// Look-up of one setting by key.
pub fn setting(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("undeclared setting {key}"))
}

/// The raw layers before typing.
pub struct Layers {
    pub flags: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub file: BTreeMap<String, String>,
    pub file_path: Option<PathBuf>,
    /// Structured tables of the file (game-server overrides, static targets), kept as TOML.
    pub file_tables: toml::Table,
}

impl Layers {
    /// Reads the environment and the config file (if any). `flags` maps setting keys to values.
    pub fn load(
        flags: BTreeMap<String, String>,
        config_path: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let env = std::env::vars().collect();
        let mut layers = Layers {
            flags,
            env,
            file: BTreeMap::new(),
            file_path: None,
            file_tables: toml::Table::new(),
        };
        if let Some(path) = config_path {
            layers.read_file(path)?;
        }
        Ok(layers)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: path.to_path_buf(),
                reason: format!("not valid TOML: {}", e.message()),
            })?;
        for (key, value) in table {
            let scalar = match &value {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            };
            match scalar {
                Some(v) => {
                    if !SETTINGS.iter().any(|s| s.key == key) {
                        return Err(ConfigError::File {
                            path: path.to_path_buf(),
                            reason: format!(
                                "unknown key `{key}`; `node-agent config` lists the valid keys"
                            ),
                        });
                    }
                    self.file.insert(key, v);
                }
                None => {
                    self.file_tables.insert(key, value);
                }
            }
        }
        self.file_path = Some(path.to_path_buf());
        Ok(())
    }

    /// The winning raw value of a setting and its source. Empty environment values count as unset,
    /// as the OpenTelemetry specification asks.
    pub fn get(&self, key: &str) -> Option<(String, Source)> {
        let setting = setting(key);
        if let Some(v) = self.flags.get(key) {
            return Some((v.clone(), Source::Flag(key.replace('_', "-"))));
        }
        for name in setting.env {
            if let Some(v) = self.env.get(*name)
                && !v.trim().is_empty()
            {
                return Some((v.clone(), Source::Env((*name).to_string())));
            }
        }
        if let Some(v) = self.file.get(key) {
            return Some((v.clone(), Source::File(key.to_string())));
        }
        setting.default.map(|d| (d.to_string(), Source::Default))
    }
}

/// How metrics leave the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExporterKind {
    Otlp,
    Console,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FsyncPolicy {
    Always,
    Batch,
    Never,
}

/// TLS material for the OTLP connection, already read and checked.
#[derive(Clone, Default)]
pub struct TlsFiles {
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("client_key", &"[redacted]")
            .finish()
    }
}

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub exporter: ExporterKind,
    pub protocol: Protocol,
    /// Full URL of the metrics endpoint (HTTP: including the path; gRPC: scheme://host:port).
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
    pub tls: TlsFiles,
    /// Skip certificate verification (AGENT_INSECURE_TLS), for the direct orchestrator mode.
    pub insecure_skip_verify: bool,
    /// True when the endpoint was derived from ORCHESTRATOR_BASE_URL (the original agent's mode).
    pub direct_orchestrator: bool,
}

/// The typed, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: Option<String>,
    pub node_token: Option<String>,
    pub node_ip: Option<String>,
    pub orchestrator_base_url: Option<String>,
    pub wings_base_url: Option<String>,
    pub wings_token: Option<String>,
    pub wings_config: PathBuf,
    pub docker_host: String,
    pub http_timeout: Duration,
    pub insecure_tls: bool,
    pub sample_interval: (Duration, Duration),
    pub players_interval: (Duration, Duration),
    pub discovery_interval: Duration,
    pub send_backoff_max: Duration,
    pub minecraft_ping_timeout: Duration,
    pub probe_concurrency: usize,
    pub probe_max_frame_bytes: usize,
    pub sdk_disabled: bool,
    pub export: ExportConfig,
    /// OTEL_SERVICE_NAME when set; it beats `service.name` in OTEL_RESOURCE_ATTRIBUTES.
    pub service_name: Option<String>,
    pub resource_attributes: Vec<(String, String)>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub http_listen: Option<SocketAddr>,
    pub spool_dir: PathBuf,
    pub queue_memory_bytes: u64,
    pub spool_max_bytes: u64,
    pub spool_fsync: FsyncPolicy,
    pub shutdown_grace: Duration,
    pub proc_path: PathBuf,
    pub sys_path: PathBuf,
    pub rootfs_path: PathBuf,
    pub filesystem_timeout: Duration,
    /// GPU sampling on (`gpu=auto`) or off.
    pub gpu_enabled: bool,
    pub nvml_library: Option<String>,
    /// Structured sections of the config file (e.g. `[servers.<uuid>]`, `[[static_targets]]`).
    pub file_tables: toml::Table,
}

/// Reads one setting as a typed value, turning parse failures into [`ConfigError::Invalid`].
struct Reader<'a> {
    layers: &'a Layers,
}

impl Reader<'_> {
    fn raw(&self, key: &'static str) -> Option<(String, Source)> {
        self.layers.get(key)
    }

    fn invalid(
        &self,
        key: &'static str,
        source: Source,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            setting: key,
            from: source,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn string(&self, key: &'static str) -> Option<String> {
        self.raw(key).map(|(v, _)| v.trim().to_string())
    }

    fn bool(&self, key: &'static str) -> Result<bool, ConfigError> {
        let (v, src) = self.raw(key).expect("bool settings have defaults");
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(self.invalid(
                key,
                src,
                format!("`{v}` is not a boolean"),
                "use true or false",
            )),
        }
    }

    /// A positive number of seconds (fractions allowed).
    fn seconds(&self, key: &'static str) -> Result<Duration, ConfigError> {
        let (v, src) = self.raw(key).expect("interval settings have defaults");
        let parsed: f64 = v.trim().parse().map_err(|_| {
            self.invalid(
                key,
                src.clone(),
                format!("`{v}` is not a number"),
                "give a positive number of seconds, e.g. 5",
            )
        })?;
        if !parsed.is_finite() || parsed <= 0.0 || parsed > 86_400.0 * 7.0 {
            return Err(self.invalid(
                key,
                src,
                format!("`{v}` is out of range"),
                "give a positive number of seconds, at most 604800",
            ));
        }
        Ok(Duration::from_secs_f64(parsed))
    }

    fn u64(&self, key: &'static str, min: u64) -> Result<u64, ConfigError> {
        let (v, src) = self.raw(key).expect("numeric settings have defaults");
        match v.trim().parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(self.invalid(
                key,
                src,
                format!("`{v}` is not a whole number >= {min}"),
                format!("give a whole number of at least {min}"),
            )),
        }
    }

    fn range(
        &self,
        min_key: &'static str,
        max_key: &'static str,
    ) -> Result<(Duration, Duration), ConfigError> {
        let min = self.seconds(min_key)?;
        let max = self.seconds(max_key)?;
        if min > max {
            let (_, src) = self.raw(min_key).unwrap();
            return Err(self.invalid(
                min_key,
                src,
                format!(
                    "minimum {}s is larger than {max_key} {}s",
                    min.as_secs_f64(),
                    max.as_secs_f64()
                ),
                format!("make {min_key} <= {max_key}"),
            ));
        }
        Ok((min, max))
    }

    fn url(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some((v, src)) = self.raw(key) else {
            return Ok(None);
        };
        let v = v.trim().trim_end_matches('/').to_string();
        check_url(&v).map_err(|problem| {
            self.invalid(
                key,
                src,
                problem,
                "give an absolute http:// or https:// URL, e.g. http://127.0.0.1:8080",
            )
        })?;
        Ok(Some(v))
    }

    fn pem_file(&self, key: &'static str) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some((path, src)) = self.raw(key) else {
            return Ok(None);
        };
        let bytes = std::fs::read(path.trim()).map_err(|e| {
            self.invalid(
                key,
                src.clone(),
                format!("cannot read `{path}`: {e}"),
                "point it to a readable PEM file",
            )
        })?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
            return Err(self.invalid(
                key,
                src,
                format!("`{path}` holds no PEM block"),
                "point it to a PEM file (-----BEGIN ...-----)",
            ));
        }
        Ok(Some(bytes))
    }
}

/// Accepts absolute http(s) URLs with a host.
pub fn check_url(v: &str) -> Result<(), String> {
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .ok_or_else(|| format!("`{v}` does not start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) || host.starts_with(':') {
        return Err(format!("`{v}` has no host"));
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && !host.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("`{v}` has an invalid port `{port}`"));
    }
    Ok(())
}

/// Parses `k=v,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES) with percent-decoding.
pub fn parse_kv_list(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, val) = item
            .split_once('=')
            .ok_or_else(|| format!("item {} has no `=`", out.len() + 1))?;
        let k = percent_decode(k.trim());
        if k.is_empty() {
            return Err(format!("item {} has an empty key", out.len() + 1));
        }
        out.push((k, percent_decode(val.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Config {
    pub fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        let r = Reader { layers };
        let sample_interval = r.range("sample_interval_min_sec", "sample_interval_max_sec")?;
        let players_interval = r.range("players_interval_min_sec", "players_interval_max_sec")?;
        let node_token = r.string("node_token").filter(|t| !t.is_empty());
        let orchestrator_base_url = r.url("orchestrator_base_url")?;
        let node_id = r.string("node_id").filter(|t| !t.is_empty());
        let insecure_tls = r.bool("insecure_tls")?;
        let export = Self::export_config(
            &r,
            &orchestrator_base_url,
            &node_id,
            &node_token,
            insecure_tls,
        )?;

        let resource_attributes = match r.raw("resource_attributes") {
            None => Vec::new(),
            Some((v, src)) => parse_kv_list(&v).map_err(|p| {
                r.invalid(
                    "resource_attributes",
                    src,
                    p,
                    "use key=value pairs separated by commas",
                )
            })?,
        };
        let log_format = match r
            .string("log_format")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" => LogFormat::Auto,
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                let (_, src) = r.raw("log_format").unwrap();
                return Err(r.invalid(
                    "log_format",
                    src,
                    format!("`{other}` is not a log format"),
                    "use text or json",
                ));
            }
        };
        let http_listen = match r.raw("http_listen") {
            None => None,
            Some((v, src)) => Some(v.trim().parse::<SocketAddr>().map_err(|_| {
                r.invalid(
                    "http_listen",
                    src,
                    format!("`{v}` is not an address:port"),
                    "use e.g. 127.0.0.1:9464",
                )
            })?),
        };
        let gpu_enabled = match r
            .string("gpu")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" | "on" | "true" => true,
            "off" | "false" | "none" => false,
            other => {
                let (_, src) = r.raw("gpu").unwrap();
                return Err(r.invalid(
                    "gpu",
                    src,
                    format!("`{other}` is not a GPU mode"),
                    "use auto or off",
                ));
            }
        };
        let spool_fsync = match r
            .string("spool_fsync")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "always" => FsyncPolicy::Always,
            "batch" => FsyncPolicy::Batch,
            "never" => FsyncPolicy::Never,
            other => {
                let (_, src) = r.raw("spool_fsync").unwrap();
                return Err(r.invalid(
                    "spool_fsync",
                    src,
                    format!("`{other}` is not a policy"),
                    "use always, batch or never",
                ));
            }
        };
        let wings_base_url = r.url("wings_base_url")?;
        let docker_host = r.string("docker_host").unwrap_or_default();
        if !docker_host.starts_with("unix://") && !docker_host.starts_with('/') {
            let (_, src) = r.raw("docker_host").unwrap();
            return Err(r.invalid(
                "docker_host",
                src,
                format!("`{docker_host}` is not a unix socket"),
                "use unix:///var/run/docker.sock (TCP Docker hosts are not supported)",
            ));
        }
        Ok(Config {
            node_id,
            node_token,
            node_ip: r.string("node_ip").filter(|t| !t.is_empty()),
            orchestrator_base_url,
            wings_base_url,
            wings_token: r.string("wings_token").filter(|t| !t.is_empty()),
            wings_config: PathBuf::from(r.string("wings_config").unwrap_or_default()),
            docker_host,
            http_timeout: r.seconds("http_timeout_sec")?,
            insecure_tls,
            sample_interval,
            players_interval,
            discovery_interval: r.seconds("discovery_interval_sec")?,
            send_backoff_max: r.seconds("send_backoff_max_sec")?,
            minecraft_ping_timeout: r.seconds("minecraft_ping_timeout_sec")?,
            probe_concurrency: r.u64("probe_concurrency", 1)?.min(1024) as usize,
            probe_max_frame_bytes: r.u64("probe_max_frame_bytes", 1024)?.min(2_097_151) as usize,
            sdk_disabled: r.bool("sdk_disabled")?,
            export,
            service_name: r.string("service_name").filter(|s| !s.is_empty()),
            resource_attributes,
            log_level: r.string("log_level").unwrap_or_else(|| "info".into()),
            log_format,
            http_listen,
            spool_dir: PathBuf::from(r.string("spool_dir").unwrap_or_default()),
            queue_memory_bytes: r.u64("queue_memory_bytes", 4096)?,
            spool_max_bytes: r.u64("spool_max_bytes", 0)?,
            spool_fsync,
            shutdown_grace: r.seconds("shutdown_grace_sec")?,
            proc_path: PathBuf::from(r.string("proc_path").unwrap_or_default()),
            sys_path: PathBuf::from(r.string("sys_path").unwrap_or_default()),
            rootfs_path: PathBuf::from(r.string("rootfs_path").unwrap_or_default()),
            filesystem_timeout: Duration::from_millis(r.u64("filesystem_timeout_ms", 1)?),
            gpu_enabled,
            nvml_library: r.string("nvml_library").filter(|s| !s.is_empty()),
            file_tables: layers.file_tables.clone(),
        })
    }

    fn export_config(
        r: &Reader<'_>,
        orchestrator: &Option<String>,
        node_id: &Option<String>,
        node_token: &Option<String>,
        insecure_tls: bool,
    ) -> Result<ExportConfig, ConfigError> {
        let exporter = match r
            .string("metrics_exporter")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "otlp" | "" => ExporterKind::Otlp,
            "console" | "logging" => ExporterKind::Console,
            "none" => ExporterKind::None,
            other => {
                let (_, src) = r.raw("metrics_exporter").unwrap();
                return Err(r.invalid(
                    "metrics_exporter",
                    src,
                    format!("`{other}` is not an exporter"),
                    "use otlp, console or none",
                ));
            }
        };
        let (proto_raw, proto_src) = r.raw("otlp_protocol").unwrap();
        let mut protocol = match proto_raw.trim().to_ascii_lowercase().as_str() {
            "grpc" => Protocol::Grpc,
            "http/protobuf" | "http" => Protocol::HttpProtobuf,
            "http/json" => Protocol::HttpJson,
            other => {
                return Err(r.invalid(
                    "otlp_protocol",
                    proto_src,
                    format!("`{other}` is not an OTLP protocol"),
                    "use grpc, http/protobuf or http/json",
                ));
            }
        };
        let insecure = r.bool("otlp_insecure")?;
        let mut headers = match r.raw("otlp_headers") {
            None => Vec::new(),
            Some((v, src)) => parse_kv_list(&v).map_err(|p| {
                r.invalid(
                    "otlp_headers",
                    src,
                    p,
                    "use name=value pairs separated by commas",
                )
            })?,
        };
        for (name, _) in &headers {
            if name
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            {
                let (_, src) = r.raw("otlp_headers").unwrap();
                return Err(r.invalid(
                    "otlp_headers",
                    src,
                    format!("header name `{name}` has invalid characters"),
                    "use letters, digits, - and _ in header names",
                ));
            }
        }
        let mut direct_orchestrator = false;
        let endpoint = match r.raw("otlp_endpoint") {
            Some((v, src)) => {
                let v = v.trim().to_string();
                let with_scheme = if v.contains("://") {
                    v.clone()
                } else if insecure {
                    format!("http://{v}")
                } else {
                    format!("https://{v}")
                };
                check_url(&with_scheme).map_err(|p| {
                    r.invalid("otlp_endpoint", src.clone(), p, "give a URL such as http://127.0.0.1:4318 (HTTP) or http://127.0.0.1:4317 (gRPC)")
                })?;
                let base = with_scheme.trim_end_matches('/').to_string();
                let is_base = matches!(&src, Source::Env(n) if n == "OTEL_EXPORTER_OTLP_ENDPOINT");
                if protocol != Protocol::Grpc && is_base {
                    format!("{base}/v1/metrics")
                } else {
                    base
                }
            }
            None => match (orchestrator, node_token) {
                (Some(base), Some(token)) => {
                    let Some(node_id) = node_id else {
                        return Err(r.invalid(
                            "node_id",
                            Source::Default,
                            "direct mode to ORCHESTRATOR_BASE_URL needs a node id",
                            "set NODE_ID",
                        ));
                    };
                    direct_orchestrator = true;
                    if protocol == Protocol::Grpc {
                        protocol = Protocol::HttpProtobuf;
                    }
                    headers.push(("authorization".into(), format!("Bearer {token}")));
                    format!("{base}/internal/nodes/{node_id}/telemetry")
                }
                _ => match protocol {
                    Protocol::Grpc => "http://localhost:4317".into(),
                    _ => "http://localhost:4318/v1/metrics".into(),
                },
            },
        };
        let gzip = match r
            .string("otlp_compression")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "gzip" => true,
            "none" | "" => false,
            other => {
                let (_, src) = r.raw("otlp_compression").unwrap();
                return Err(r.invalid(
                    "otlp_compression",
                    src,
                    format!("`{other}` is not supported"),
                    "use gzip or none",
                ));
            }
        };
        let timeout = Duration::from_millis(r.u64("otlp_timeout_ms", 1)?);
        let tls = TlsFiles {
            ca_pem: r.pem_file("otlp_certificate")?,
            client_cert_pem: r.pem_file("otlp_client_certificate")?,
            client_key_pem: r.pem_file("otlp_client_key")?,
        };
        if tls.client_cert_pem.is_some() != tls.client_key_pem.is_some() {
            let key = if tls.client_cert_pem.is_some() {
                "otlp_client_key"
            } else {
                "otlp_client_certificate"
            };
            return Err(r.invalid(
                key,
                Source::Default,
                "mutual TLS needs both a client certificate and its key",
                "set both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ));
        }
        Ok(ExportConfig {
            exporter,
            protocol,
            endpoint,
            headers,
            gzip,
            timeout,
            tls,
            insecure_skip_verify: insecure_tls,
            direct_orchestrator,
        })
    }
}

/// One row of `node-agent config`.
#[derive(Debug, serde::Serialize)]
pub struct EffectiveSetting {
    pub key: &'static str,
    pub value: Option<String>,
    pub source: String,
    pub env: Vec<&'static str>,
}

/// The effective configuration with secrets redacted.
pub fn effective(layers: &Layers) -> Vec<EffectiveSetting> {
    SETTINGS
        .iter()
        .map(|s| {
            let found = layers.get(s.key);
            EffectiveSetting {
                key: s.key,
                value: found
                    .as_ref()
                    .map(|(v, _)| if s.secret { redact(v) } else { v.clone() }),
                source: found
                    .map(|(_, src)| src.to_string())
                    .unwrap_or_else(|| "unset".into()),
                env: s.env.to_vec(),
            }
        })
        .collect()
}

/// A secret is shown only as its length, so an operator can tell "set" from "empty".
pub fn redact(secret: &str) -> String {
    format!("[redacted, {} chars]", secret.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(env: &[(&str, &str)], flags: &[(&str, &str)]) -> Layers {
        Layers {
            flags: flags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file: BTreeMap::new(),
            file_path: None,
            file_tables: toml::Table::new(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_layers(&layers(&[], &[])).unwrap();
        assert_eq!(
            c.sample_interval,
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        assert_eq!(c.export.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.export.endpoint, "http://localhost:4318/v1/metrics");
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let mut l = layers(&[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "2")], &[]);
        l.file.insert("sample_interval_min_sec".into(), "3".into());
        assert_eq!(l.get("sample_interval_min_sec").unwrap().0, "2");
        l.flags.insert("sample_interval_min_sec".into(), "1".into());
        let (v, src) = l.get("sample_interval_min_sec").unwrap();
        assert_eq!(
            (v.as_str(), src),
            ("1", Source::Flag("sample-interval-min-sec".into()))
        );
    }

    #[test]
    fn min_above_max_names_the_setting() {
        let err = Config::from_layers(&layers(&[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "20")], &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sample_interval_min_sec"), "{err}");
        assert!(err.contains("AGENT_SAMPLE_INTERVAL_MIN_SEC"), "{err}");
    }

    #[test]
    fn base_endpoint_gets_path_for_http_only() {
        let c = Config::from_layers(&layers(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")],
            &[],
        ))
        .unwrap();
        assert_eq!(c.export.endpoint, "http://c:4318/v1/metrics");
        let c = Config::from_layers(&layers(
            &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/x")],
            &[],
        ))
        .unwrap();
        assert_eq!(c.export.endpoint, "http://c:9/x");
        let c = Config::from_layers(&layers(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(c.export.endpoint, "http://c:4317");
    }

    #[test]
    fn direct_orchestrator_mode() {
        let c = Config::from_layers(&layers(
            &[
                ("ORCHESTRATOR_BASE_URL", "https://orch.example/"),
                ("NODE_TOKEN", "tok"),
                ("NODE_ID", "n1"),
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(
            c.export.endpoint,
            "https://orch.example/internal/nodes/n1/telemetry"
        );
        assert!(c.export.direct_orchestrator);
        assert!(
            c.export
                .headers
                .contains(&("authorization".into(), "Bearer tok".into()))
        );
    }

    #[test]
    fn kv_lists_are_percent_decoded() {
        assert_eq!(
            parse_kv_list("a=b%20c, d = e").unwrap(),
            vec![("a".into(), "b c".into()), ("d".into(), "e".into())]
        );
        assert!(parse_kv_list("novalue").is_err());
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn secrets_are_redacted() {
        let l = layers(
            &[
                ("NODE_TOKEN", "supersecret"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x=hidden"),
            ],
            &[],
        );
        let text = format!("{:?}", effective(&l));
        assert!(
            !text.contains("supersecret") && !text.contains("hidden"),
            "{text}"
        );
    }
}
