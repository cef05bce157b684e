//! The Wings local API: which Pterodactyl servers this node hosts, with their names, states,
//! allocations, images, eggs and limits (docs/containers.md#wings).
//!
//! `GET /api/servers` with `Authorization: Bearer <token>`. The token is `WINGS_TOKEN`, else the
//! `token` of the Wings config file (`/etc/pterodactyl/config.yml`, mode 0600: the agent runs as
//! root on Wings nodes); the base URL is `WINGS_BASE_URL`, else derived from the same file
//! (`api.ssl.enabled` → https, `api.host` with 0.0.0.0 read as loopback, `api.port`). A node
//! without Wings (no token, no file) simply has no Wings source. Answers are bounded in size and
//! time; the token never appears in logs or errors. `configuration.environment` and `invocation`
//! are kept for the game-server probes but never exported: they can hold secrets (RCON passwords).

use super::json;
use crate::sys::text::{PEER_TEXT_MAX, peer_text};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bodies above this are refused while they stream in: hundreds of servers with large
/// environments fit easily.
pub(crate) const MAX_BODY: usize = 16 << 20;
/// `/api/system` is a few hundred bytes.
const MAX_SYSTEM_BODY: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum WingsError {
    #[error("wings config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("wings {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("wings {url}: HTTP {status} ({hint})")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("wings {url}: unexpected answer: {reason}")]
    Decode { url: String, reason: String },
}

/// The parts of the Wings `config.yml` the agent reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfigFile {
    pub(crate) token: Option<String>,
    pub(crate) api: ApiSection,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct ApiSection {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) ssl: SslSection,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            host: "0.0.0.0".into(),
            port: 8080,
            ssl: SslSection::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SslSection {
    pub(crate) enabled: bool,
}

impl ConfigFile {
    pub(crate) fn parse(text: &str) -> Result<ConfigFile, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// `http(s)://<host>:<port>`; a wildcard listen address is reached on loopback.
    pub(crate) fn base_url(&self) -> String {
        let scheme = if self.api.ssl.enabled {
            "https"
        } else {
            "http"
        };
        let host = match self.api.host.trim() {
            "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_string(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        };
        format!("{scheme}://{host}:{}", self.api.port)
    }
}

/// Allocations of a server: the default `ip:port` and every port by IP.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Allocations {
    pub default_ip: String,
    pub default_port: u16,
    pub mappings: BTreeMap<String, Vec<u16>>,
}

impl Allocations {
    /// Every allocated port, sorted, without duplicates.
    pub(crate) fn ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.mappings.values().flatten().copied().collect();
        p.push(self.default_port);
        p.retain(|x| *x != 0);
        p.sort_unstable();
        p.dedup();
        p
    }
}

/// `configuration.build` (Panel units: MB, MiB, percent of one core).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ServerLimits {
    pub memory_limit_mb: i64,
    pub swap_mb: i64,
    pub io_weight: i64,
    /// 100 = one core; 0 = unlimited.
    pub cpu_limit_pct: i64,
    pub disk_space_mib: i64,
    pub threads: String,
    pub oom_disabled: bool,
}

/// One Wings server. `environment` and `invocation` are secrets-bearing: never export them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Server {
    pub uuid: String,
    pub name: String,
    /// offline, starting, running, stopping.
    pub state: String,
    pub suspended: bool,
    pub image: String,
    #[serde(skip)]
    pub invocation: String,
    #[serde(skip)]
    pub environment: BTreeMap<String, String>,
    pub egg_id: Option<String>,
    pub allocations: Allocations,
    pub limits: ServerLimits,
    /// Wings' own `utilization.cpu_absolute` (100 = one core), for comparison in `check`.
    pub cpu_absolute: Option<f64>,
    /// The server's container (named by the UUID), joined by discovery.
    pub container_id: Option<String>,
}

/// One element of `GET /api/servers`, as much of it as the agent reads; every other field is
/// skipped while decoding (never stored), and scalars are read leniently.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawServer {
    #[serde(deserialize_with = "json::lenient_string")]
    state: String,
    #[serde(deserialize_with = "json::lenient_bool")]
    is_suspended: bool,
    utilization: RawUtilization,
    configuration: RawConfiguration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawUtilization {
    #[serde(deserialize_with = "json::lenient_string")]
    state: String,
    #[serde(deserialize_with = "json::lenient_f64")]
    cpu_absolute: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfiguration {
    #[serde(deserialize_with = "json::lenient_string")]
    uuid: String,
    meta: RawName,
    #[serde(deserialize_with = "json::lenient_bool")]
    suspended: bool,
    #[serde(deserialize_with = "json::lenient_string")]
    invocation: String,
    #[serde(deserialize_with = "json::any_string_map")]
    environment: BTreeMap<String, String>,
    container: RawImage,
    egg: RawId,
    allocations: RawAllocations,
    build: RawBuild,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawName {
    #[serde(deserialize_with = "json::lenient_string")]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawImage {
    #[serde(deserialize_with = "json::lenient_string")]
    image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawId {
    #[serde(deserialize_with = "json::lenient_string")]
    id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAllocations {
    default: RawDefault,
    #[serde(deserialize_with = "ports_by_ip")]
    mappings: BTreeMap<String, Vec<u16>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawDefault {
    #[serde(deserialize_with = "json::lenient_string")]
    ip: String,
    #[serde(deserialize_with = "json::lenient_string")]
    port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawBuild {
    #[serde(deserialize_with = "json::lenient_i64")]
    memory_limit: i64,
    #[serde(deserialize_with = "json::lenient_i64")]
    swap: i64,
    #[serde(deserialize_with = "json::lenient_i64")]
    io_weight: i64,
    #[serde(deserialize_with = "json::lenient_i64")]
    cpu_limit: i64,
    #[serde(deserialize_with = "json::lenient_i64")]
    disk_space: i64,
    #[serde(deserialize_with = "json::lenient_string")]
    threads: String,
    #[serde(deserialize_with = "json::lenient_bool")]
    oom_disabled: bool,
}

/// `mappings`: IP → ports, every port counted against the decode budget; anything but an
/// object is no mappings.
fn ports_by_ip<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<u16>>, D::Error> {
    #[derive(Deserialize)]
    struct Ports(#[serde(deserialize_with = "json::ports")] Vec<u16>);
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = BTreeMap<String, Vec<u16>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of port lists")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((ip, ports)) = map.next_entry::<String, Ports>()? {
                out.insert(ip, ports.0);
            }
            Ok(out)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(BTreeMap::new())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V)
}

/// An element that is a server object, or anything else (skipped).
#[derive(Debug)]
struct MaybeServer(Option<RawServer>);

impl<'de> Deserialize<'de> for MaybeServer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MaybeServer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a server object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<MaybeServer, A::Error> {
                RawServer::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|s| MaybeServer(Some(s)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MaybeServer, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MaybeServer(None))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<MaybeServer, E> {
                Ok(MaybeServer(None))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<MaybeServer, E> {
                Ok(MaybeServer(None))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<MaybeServer, E> {
                Ok(MaybeServer(None))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<MaybeServer, E> {
                Ok(MaybeServer(None))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<MaybeServer, E> {
                Ok(MaybeServer(None))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<MaybeServer, E> {
                Ok(MaybeServer(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why an `/api/servers` answer was not understood.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServersError {
    /// The decoder's message (escaped and capped: it may quote the answer).
    #[error("{0}")]
    Invalid(String),
    #[error("expected a JSON array of servers")]
    NotAnArray,
}

/// What one `/api/servers` answer may decode into: elements kept (servers, environment entries,
/// ports) across the whole answer.
pub(crate) const MAX_ITEMS: usize = 200_000;

/// Decodes the `GET /api/servers` array. Elements without `configuration.uuid` (or that are not
/// objects) are skipped; a body that is not an array, or past the decode budget, is an error.
pub(crate) fn parse_servers(body: &[u8]) -> Result<Vec<Server>, ServersError> {
    #[derive(Deserialize)]
    struct List(#[serde(deserialize_with = "json::bounded_vec")] Vec<MaybeServer>);
    let list: List = json::with_budget(body, MAX_ITEMS).map_err(|e| {
        if e.is_data() || e.is_syntax() || e.is_eof() {
            ServersError::Invalid(peer_text(&e.to_string(), PEER_TEXT_MAX))
        } else {
            ServersError::NotAnArray
        }
    })?;
    let mut out = Vec::with_capacity(list.0.len());
    for e in list.0.into_iter().filter_map(|m| m.0) {
        let c = e.configuration;
        if c.uuid.is_empty() {
            continue;
        }
        let state = if e.state.is_empty() {
            e.utilization.state
        } else {
            e.state
        };
        out.push(Server {
            uuid: c.uuid,
            name: c.meta.name,
            state,
            suspended: e.is_suspended || c.suspended,
            image: c.container.image,
            invocation: c.invocation,
            environment: c.environment,
            egg_id: (!c.egg.id.is_empty()).then_some(c.egg.id),
            allocations: Allocations {
                default_ip: c.allocations.default.ip,
                default_port: json::port_of(&c.allocations.default.port).unwrap_or(0),
                mappings: c.allocations.mappings,
            },
            limits: ServerLimits {
                memory_limit_mb: c.build.memory_limit,
                swap_mb: c.build.swap,
                io_weight: c.build.io_weight,
                cpu_limit_pct: c.build.cpu_limit,
                disk_space_mib: c.build.disk_space,
                threads: c.build.threads,
                oom_disabled: c.build.oom_disabled,
            },
            cpu_absolute: e.utilization.cpu_absolute,
            container_id: None,
        });
    }
    Ok(out)
}

/// How to reach Wings: explicit settings, else its own config file.
#[derive(Debug, Clone)]
pub(crate) struct WingsConfig {
    /// `WINGS_BASE_URL` (default: from the config file, else http://127.0.0.1:8080).
    pub(crate) base_url: Option<String>,
    /// `WINGS_TOKEN` (default: `token` from the config file).
    pub(crate) token: Option<String>,
    /// Wings' own config file (`/etc/pterodactyl/config.yml`).
    pub(crate) config_file: PathBuf,
    pub(crate) http_timeout: Duration,
    /// Accept any certificate from Wings (self-signed panels).
    pub(crate) insecure_tls: bool,
}

/// A configured Wings API client.
pub(crate) struct Wings {
    client: reqwest::Client,
    pub(crate) base_url: String,
    token: String,
}

impl Wings {
    /// `Ok(None)` when Wings is not configured on this node (no token and no config file).
    pub(crate) fn from_config(cfg: &WingsConfig) -> Result<Option<Wings>, WingsError> {
        let file = read_config_file(&cfg.config_file)?;
        let token = cfg
            .token
            .clone()
            .or_else(|| file.as_ref().and_then(|f| f.token.clone()))
            .filter(|t| !t.is_empty());
        let base_url = cfg
            .base_url
            .clone()
            .or_else(|| file.as_ref().map(ConfigFile::base_url));
        let (token, base_url) = match (token, base_url) {
            (Some(t), Some(u)) => (t, u),
            (Some(t), None) => (t, "http://127.0.0.1:8080".to_string()),
            (None, Some(_)) if cfg.base_url.is_some() => {
                return Err(WingsError::Config {
                    path: cfg.config_file.display().to_string(),
                    reason: "WINGS_BASE_URL is set but no token: set WINGS_TOKEN or make the Wings config file readable".into(),
                });
            }
            _ => return Ok(None),
        };
        let client = reqwest::Client::builder()
            .timeout(cfg.http_timeout)
            .connect_timeout(Duration::from_secs(5).min(cfg.http_timeout))
            .user_agent(concat!("node-agent/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(cfg.insecure_tls)
            .build()
            .map_err(|e| WingsError::Request {
                url: base_url.clone(),
                reason: format!("HTTP client: {e}"),
            })?;
        Ok(Some(Wings {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
        }))
    }

    async fn get(&self, path: &str, max_body: usize) -> Result<Vec<u8>, WingsError> {
        let url = format!("{}{path}", self.base_url);
        let req_err = |e: reqwest::Error| WingsError::Request {
            url: url.clone(),
            reason: e.without_url().to_string(),
        };
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| WingsError::Config {
                path: "WINGS_TOKEN".into(),
                reason: "the token is not a valid header value".into(),
            })?;
        auth.set_sensitive(true);
        let mut resp = self
            .client
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(req_err)?;
        let status = resp.status().as_u16();
        if status != 200 {
            let hint = match status {
                401 => "no or malformed Authorization header",
                403 => "wrong token: check WINGS_TOKEN or the Wings config file",
                404 => "not found",
                _ => "unexpected status",
            };
            return Err(WingsError::Status { url, status, hint });
        }
        let too_big = |url: String| WingsError::Decode {
            url,
            reason: format!("answer larger than {max_body} bytes"),
        };
        if resp.content_length().is_some_and(|n| n > max_body as u64) {
            return Err(too_big(url));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(req_err)? {
            if body.len() + chunk.len() > max_body {
                return Err(too_big(url));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    pub(crate) async fn servers(&self) -> Result<Vec<Server>, WingsError> {
        let body = self.get("/api/servers", MAX_BODY).await?;
        parse_servers(&body).map_err(|reason| WingsError::Decode {
            url: format!("{}/api/servers", self.base_url),
            reason: reason.to_string(),
        })
    }

    /// Wings' version from `GET /api/system`.
    pub(crate) async fn version(&self) -> Result<String, WingsError> {
        let body = self.get("/api/system", MAX_SYSTEM_BODY).await?;
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct System {
            #[serde(deserialize_with = "json::lenient_string")]
            version: String,
        }
        let v: System = json::with_budget(&body, 100).map_err(|e| WingsError::Decode {
            url: format!("{}/api/system", self.base_url),
            reason: peer_text(&e.to_string(), PEER_TEXT_MAX),
        })?;
        Ok(peer_text(&v.version, 64))
    }
}

/// Reads the Wings config file; `Ok(None)` when it does not exist.
pub(crate) fn read_config_file(path: &Path) -> Result<Option<ConfigFile>, WingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => ConfigFile::parse(&text)
            .map(Some)
            .map_err(|e| WingsError::Config {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WingsError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example (tests/fixtures/wings/servers.json, docs/containers.md#calls).
    pub(crate) const EXAMPLE: &str = include_str!("../../../tests/fixtures/wings/servers.json");

    #[test]
    fn parses_the_documented_shape() {
        let s = parse_servers(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.uuid, "d3b07384-d113-4ec6-a2f4-6c3b1f0e8a9f");
        assert_eq!(s.name, "Survival");
        assert_eq!(s.state, "running");
        assert_eq!(s.image, "ghcr.io/pterodactyl/yolks:java_21");
        assert_eq!(s.limits.cpu_limit_pct, 200);
        assert_eq!(s.limits.memory_limit_mb, 4096);
        assert_eq!(s.allocations.default_port, 25565);
        assert_eq!(s.allocations.ports(), vec![25565]);
        assert_eq!(s.environment["P_SERVER_ALLOCATION_LIMIT"], "0");
        assert_eq!(s.cpu_absolute, Some(37.512));
        assert_eq!(
            s.egg_id.as_deref(),
            Some("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
        );
        // Secrets never reach serialised output.
        let json = serde_json::to_string(s).unwrap();
        assert!(!json.contains("SERVER_JARFILE") && !json.contains("MaxRAMPercentage"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_servers(b"{\"error\":\"x\"}").is_err());
        assert!(parse_servers(b"<html>").is_err());
        assert_eq!(
            parse_servers(b"[1, {}, {\"configuration\":{}}]").unwrap(),
            vec![]
        );
    }

    #[test]
    fn lenient_scalars_and_a_huge_array_within_the_budget() {
        let s = parse_servers(br#"[{"state":"running","configuration":{"uuid":"u","build":{"cpu_limit":"150","memory_limit":1024.0,"threads":null},"allocations":{"default":{"ip":"1.2.3.4","port":"25565"},"mappings":{"1.2.3.4":[25565,"25566","x"]}},"environment":{"A":1,"B":true,"C":null}}}]"#).unwrap();
        assert_eq!(s[0].limits.cpu_limit_pct, 150);
        assert_eq!(s[0].limits.memory_limit_mb, 1024);
        assert_eq!(s[0].allocations.ports(), vec![25565, 25566]);
        assert_eq!(s[0].environment["A"], "1");
        assert_eq!(s[0].environment["B"], "true");
        // 32 MiB of `[0,0,…]` (16 million elements) stops at the budget, with a bounded message.
        let mut body = b"[".to_vec();
        body.extend(std::iter::repeat_n(b"0,".as_slice(), 16 << 20).flatten());
        body.extend_from_slice(b"0]");
        let e = parse_servers(&body).unwrap_err().to_string();
        assert!(e.contains("more elements") && e.len() < 400, "{e}");
    }

    #[test]
    fn config_file_gives_token_and_url() {
        let f = ConfigFile::parse(
            "debug: false\nuuid: abc\ntoken_id: tid\ntoken: s3cret\napi:\n  host: 0.0.0.0\n  port: 8443\n  ssl:\n    enabled: true\n    cert: /etc/x.pem\n",
        )
        .unwrap();
        assert_eq!(f.token.as_deref(), Some("s3cret"));
        assert_eq!(f.base_url(), "https://127.0.0.1:8443");
        let f = ConfigFile::parse("token: t\n").unwrap();
        assert_eq!(f.base_url(), "http://127.0.0.1:8080");
        assert!(ConfigFile::parse("api: [").is_err());
    }
}
