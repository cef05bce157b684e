//! Configuration: one table of settings, four layers, one typed configuration per stage.
//!
//! Laid out the way ripgrep lays out its flags: [`table`] declares every setting once (flag,
//! environment variables, TOML key, default, help); [`layers`] reads the raw values (flag >
//! environment > file > default) and remembers where each came from; [`read`] turns one value into
//! a typed one with a single helper per kind; [`otlp`] applies the OTLP specification's endpoint
//! rules; [`display`] prints `node-agent config` and the Markdown table of docs/configuration.md.
//!
//! Each stage owns its configuration type (`NodeConfig`, `DiscoveryConfig`, `PlayersConfig`,
//! `GpuConfig`, `ResourceConfig`, `ExportConfig`, `QueueConfig`); [`Config::from_layers`] builds
//! them all and is where validation happens, at start: a bad value (or a bad `[servers]` or
//! `[[static_targets]]` entry) stops the agent with a message that names the setting, where it
//! came from and how to fix it (exit code 2), instead of failing later inside a sampler. Secrets
//! (tokens, header values) are never echoed back, not even in errors.

pub mod display;
mod error;
pub(crate) mod layers;
mod logs;
pub(crate) mod opamp;
mod otlp;
mod read;
pub(crate) mod remote;
mod secret;
mod source;
pub(crate) mod table;

pub use error::ConfigError;
pub use layers::Layers;
pub use source::Source;
pub(crate) use table::SETTINGS;

use crate::export::{ExporterKind, FsyncPolicy, LaneBudget, QueueConfig};
use crate::logging::LogFormat;
use crate::otlp::resource::ResourceConfig;
use crate::sources::containers::DiscoveryConfig;
use crate::sources::containers::wings::WingsConfig;
use crate::sources::gpu::GpuConfig;
use crate::sources::logs::LogsConfig;
use crate::sources::node::NodeConfig;
use crate::sources::probe::Limits;
use crate::sources::probe::prober::PlayersConfig;
use crate::sources::probe::targets::ProbeConfig;
use read::Values;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use crate::export::ExportConfig;

/// The typed, validated configuration: one part per stage.
#[derive(Debug, Clone)]
pub struct Config {
    /// The OTLP Resource: identity and user attributes.
    pub(crate) resource: ResourceConfig,
    /// The node sampler: where the host's /proc, /sys and root are.
    pub node: NodeConfig,
    pub(crate) gpu: GpuConfig,
    /// Docker and Wings discovery.
    pub(crate) discovery: DiscoveryConfig,
    /// Game-server probes: targets, limits, schedule.
    pub(crate) players: PlayersConfig,
    pub export: ExportConfig,
    /// The delivery queue and its spool.
    pub(crate) queue: QueueConfig,
    /// The pause between node samples is drawn from `[min, max]`.
    pub(crate) sample_interval: (Duration, Duration),
    /// On SIGTERM, how long the queue may try to deliver before spooling.
    pub(crate) shutdown_grace: Duration,
    /// The local /healthz, /readyz, /metrics endpoint; `None` when turned off.
    pub(crate) http_listen: Option<SocketAddr>,
    /// Whether `http_listen` was set rather than defaulted: a busy default port is a warning, a
    /// busy configured one an error.
    pub(crate) http_listen_explicit: bool,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Accepted but worth a word (a secret on the command line, a token file others can read):
    /// logged once at start, after the logger is set up. They name settings, never secrets.
    pub warnings: Vec<String>,
    /// `OTEL_SDK_DISABLED`: sample nothing, export nothing.
    pub(crate) sdk_disabled: bool,
    /// The control plane's client; `None` when no OpAMP endpoint is set.
    pub(crate) opamp: Option<opamp::OpampConfig>,
    /// Container logs: which containers, the bounds, where the cursors live.
    pub(crate) logs: LogsConfig,
    /// Where the logs go (`OTEL_LOGS_EXPORTER`, `OTEL_EXPORTER_OTLP_LOGS_*`).
    pub(crate) logs_export: ExportConfig,
    /// The agent's own log as OTLP logs: the least severe level sent; `None` when off.
    pub log_export: Option<tracing::Level>,
}

impl Config {
    pub fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        let r = Values { layers };
        let mut warnings = Vec::new();
        secret::flag_warnings(&r, &mut warnings);
        let node_id = r.non_empty("node_id");
        let node_token = secret::token(&r, "node_token", "node_token_file", &mut warnings)?;
        let wings_token = secret::token(&r, "wings_token", "wings_token_file", &mut warnings)?;
        let node_ip = r.non_empty("node_ip");
        let insecure_tls = r.bool("insecure_tls")?;
        let orchestrator = r.url("orchestrator_base_url")?;
        let direct = || otlp::Direct {
            orchestrator: &orchestrator,
            node_id: &node_id,
            node_token: &node_token,
            insecure_tls,
        };
        let export = otlp::export_config(&r, direct(), &otlp::METRICS)?;
        let logs_export = otlp::export_config(&r, direct(), &otlp::LOGS)?;
        let http_timeout = r.seconds("http_timeout_sec")?;
        let proc_path = PathBuf::from(r.string("proc_path").unwrap_or_default());
        let sys_path = PathBuf::from(r.string("sys_path").unwrap_or_default());
        let rootfs_path = PathBuf::from(r.string("rootfs_path").unwrap_or_default());
        let state_dir = PathBuf::from(r.string("state_dir").unwrap_or_default());
        let opamp = opamp::opamp_config(&r, state_dir.clone(), node_token.as_ref(), &export.tls)?;
        let docker_host = docker_host(&r)?;
        let log_export = logs::log_export(&r)?;
        let logs = logs::logs_config(&r, &state_dir, &docker_host, http_timeout)?;
        let spooled = |e: &ExportConfig| e.exporter == ExporterKind::Otlp;
        Ok(Config {
            resource: ResourceConfig {
                node_id,
                node_ip: node_ip.clone(),
                service_name: r.non_empty("service_name"),
                attributes: r.kv_list(
                    "resource_attributes",
                    "use key=value pairs separated by commas",
                )?,
            },
            node: NodeConfig {
                proc_path: proc_path.clone(),
                sys_path: sys_path.clone(),
                rootfs_path: rootfs_path.clone(),
                filesystem_timeout: r.millis("filesystem_timeout_ms")?,
            },
            gpu: GpuConfig {
                enabled: r.choice(
                    "gpu",
                    &[
                        ("auto", true),
                        ("on", true),
                        ("true", true),
                        ("off", false),
                        ("false", false),
                        ("none", false),
                    ],
                    "use auto or off",
                )?,
                nvml_library: r.regular_path("nvml_library", MAX_LIBRARY_BYTES)?,
                proc_path: proc_path.clone(),
                sys_path: sys_path.clone(),
                rootfs_path,
            },
            discovery: DiscoveryConfig {
                docker_host,
                wings: WingsConfig {
                    base_url: r.url("wings_base_url")?,
                    token: wings_token,
                    config_file: wings_config_file(&r)?,
                    http_timeout,
                    insecure_tls,
                },
                http_timeout,
                interval: r.seconds("discovery_interval_sec")?,
                proc_path,
                sys_path,
            },
            players: players_config(&r, layers, node_ip)?,
            queue: QueueConfig {
                memory_bytes: r.u64("queue_memory_bytes", 4096)?,
                memory_auto: r.source("queue_memory_bytes") == Source::Default,
                // Console and `none` never fail to deliver: no spool for them.
                spool_dir: (spooled(&export) || spooled(&logs_export)).then(|| {
                    r.non_empty("spool_dir")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| state_dir.join("spool"))
                }),
                spool_max_bytes: if spooled(&export) {
                    r.u64("spool_max_bytes", 0)?
                } else {
                    0
                },
                fsync: r.choice(
                    "spool_fsync",
                    &[
                        ("always", FsyncPolicy::Always),
                        ("batch", FsyncPolicy::Batch),
                        ("never", FsyncPolicy::Never),
                    ],
                    "use always, batch or never",
                )?,
                backoff_max: r.seconds("send_backoff_max_sec")?,
                // `OTEL_LOGS_EXPORTER=none`: no logs are read, no lane.
                logs: match logs_export.exporter {
                    ExporterKind::None => None,
                    _ => Some(LaneBudget {
                        memory_bytes: r.u64("logs_queue_memory_bytes", 4096)?,
                        memory_auto: r.source("logs_queue_memory_bytes") == Source::Default,
                        spool_max_bytes: if spooled(&logs_export) {
                            r.u64("logs_spool_max_bytes", 0)?
                        } else {
                            0
                        },
                    }),
                },
            },
            logs_export,
            logs,
            log_export,
            export,
            sample_interval: r.range("sample_interval_min_sec", "sample_interval_max_sec")?,
            shutdown_grace: r.seconds("shutdown_grace_sec")?,
            http_listen: match r.raw("http_listen") {
                None => None,
                Some((v, _)) if ["off", "none", "false"].contains(&v.trim()) => None,
                Some((v, src)) => Some(v.trim().parse::<SocketAddr>().map_err(|_| {
                    r.invalid(
                        "http_listen",
                        src,
                        format!("`{v}` is not an address:port"),
                        "use e.g. 127.0.0.1:9464, or off",
                    )
                })?),
            },
            http_listen_explicit: r.source("http_listen") != Source::Default,
            log_level: log_level(&r)?,
            log_format: r.choice(
                "log_format",
                &[
                    ("auto", LogFormat::Auto),
                    ("text", LogFormat::Text),
                    ("json", LogFormat::Json),
                ],
                "use text or json",
            )?,
            sdk_disabled: r.bool("sdk_disabled")?,
            warnings,
            opamp,
        })
    }
}

/// libnvidia-ml is a few megabytes; anything past this is not the library.
const MAX_LIBRARY_BYTES: u64 = 256 << 20;
/// Wings' config.yml is a few kilobytes.
const MAX_WINGS_CONFIG_BYTES: u64 = 1 << 20;

/// `log_level`: a level or `target=level` directives; anything else stops the agent (exit 2)
/// instead of silently logging at `info`.
fn log_level(r: &Values<'_>) -> Result<String, ConfigError> {
    let (v, src) = r
        .raw("log_level")
        .unwrap_or_else(|| ("info".into(), Source::Default));
    let v = v.trim();
    if v.is_empty() {
        return Ok("info".into());
    }
    crate::logging::check_filter(v).map_err(|e| {
        r.invalid(
            "log_level",
            src,
            e.to_string(),
            "use error, warn, info, debug or trace, or target=level directives such as info,node_agent=debug",
        )
    })?;
    Ok(v.to_string())
}

/// Wings' config file: a node without Wings has none (fine), but when the path exists it must be
/// a regular file of sane size; it is read again on every discovery pass.
fn wings_config_file(r: &Values<'_>) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(r.string("wings_config").unwrap_or_default());
    match crate::sys::regular::open_regular(&path, MAX_WINGS_CONFIG_BYTES) {
        Err(e) if !e.is_not_found() => Err(r.invalid(
            "wings_config",
            r.source("wings_config"),
            e.to_string(),
            "point it to Wings' config.yml (a regular file), or to a path that does not exist on a node without Wings",
        )),
        _ => Ok(path),
    }
}

fn docker_host(r: &Values<'_>) -> Result<String, ConfigError> {
    let docker_host = r.string("docker_host").unwrap_or_default();
    if !docker_host.starts_with("unix://") && !docker_host.starts_with('/') {
        return Err(r.invalid(
            "docker_host",
            r.source("docker_host"),
            format!("`{docker_host}` is not a unix socket"),
            "use unix:///var/run/docker.sock (TCP Docker hosts are not supported)",
        ));
    }
    Ok(docker_host)
}

/// The players loop's configuration; the `[servers]` and `[[static_targets]]` sections of the
/// config file are checked here, at start.
fn players_config(
    r: &Values<'_>,
    layers: &Layers,
    node_ip: Option<String>,
) -> Result<PlayersConfig, ConfigError> {
    // A bad entry of the remote layer is named as the server's, not the file's.
    ProbeConfig::from_tables(&layers.remote.tables).map_err(|e| ConfigError::RemoteSection {
        problem: e.to_string(),
    })?;
    let targets = ProbeConfig::from_tables(&layers.tables()).map_err(|e| ConfigError::Section {
        file: layers.file_path.clone().unwrap_or_default(),
        problem: e.to_string(),
    })?;
    let frame_cap = r.u64("probe_max_frame_bytes", 1024)?.min(2_097_151) as usize;
    let mut limits = Limits::from_timeout(r.seconds("minecraft_ping_timeout_sec")?);
    limits.frame_cap = frame_cap;
    limits.json_cap = frame_cap;
    Ok(PlayersConfig {
        targets,
        limits,
        node_ip,
        concurrency: r.u64("probe_concurrency", 1)?.min(1024) as usize,
        interval: r.range("players_interval_min_sec", "players_interval_max_sec")?,
    })
}

#[cfg(test)]
mod tests;
