//! Which protocol and port to ask for each game server (docs/game-protocols.md#choosing-the-protocol-and-port).
//!
//! Input is a small [`ServerInfo`] that a Wings server record converts into (Wings discovery
//! lives elsewhere and is wired in by the agent), plus the config file's `[servers."<uuid>"]`
//! overrides and `[[static_targets]]` for hosts without Wings. For each server we build an
//! ordered list of (protocol, port) candidates from the egg's traces (invocation, image,
//! environment), first match wins; when nothing matches, the generic scan SLP → Bedrock → A2S on
//! the game port, `QUERY_PORT` and port+1. The scheduler remembers which candidate answered and
//! only walks the list again after repeated failures.
//!
//! Address: `NODE_IP` + the allocated port when `NODE_IP` is set (what the original agent did),
//! else the allocation address, with `0.0.0.0` probed as `127.0.0.1`.

use super::Protocol;
use std::collections::BTreeMap;

/// What the prober needs to know about one server. Wings' server record converts into this.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerInfo {
    pub uuid: String,
    pub name: String,
    /// Wings state: offline, starting, running, stopping.
    pub state: String,
    pub suspended: bool,
    /// Container image, e.g. `ghcr.io/pterodactyl/yolks:java_21`.
    pub image: String,
    /// The startup command line as Wings has it (a template with `{{VAR}}` placeholders).
    pub invocation: String,
    pub egg_uuid: Option<String>,
    /// Egg variables and Wings' own (`SERVER_PORT`, `QUERY_PORT`, `STARTUP`, …).
    pub environment: BTreeMap<String, String>,
    /// The default allocation: IP and port.
    pub default_alloc: (String, u16),
    /// Every allocated port (TCP and UDP are both published on each).
    pub ports: Vec<u16>,
}

impl From<&crate::sources::containers::wings::Server> for ServerInfo {
    fn from(s: &crate::sources::containers::wings::Server) -> Self {
        ServerInfo {
            uuid: s.uuid.clone(),
            name: s.name.clone(),
            state: s.state.clone(),
            suspended: s.suspended,
            image: s.image.clone(),
            invocation: s.invocation.clone(),
            egg_uuid: s.egg_id.clone(),
            environment: s.environment.clone(),
            default_alloc: (s.allocations.default_ip.clone(), s.allocations.default_port),
            ports: s.allocations.ports(),
        }
    }
}

/// The Wings servers of the latest discovery pass, as probe input.
pub(crate) fn from_inventory(inv: &crate::sources::containers::Inventory) -> Vec<ServerInfo> {
    inv.servers.iter().map(ServerInfo::from).collect()
}

/// Whether and how a server is probed, from the orchestrator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Gate {
    /// Running (or a static target): a failed probe is down (or starting, per the error).
    Running,
    /// Starting: any failure reads as starting.
    Starting,
    /// Offline, stopping or suspended: not probed, reported down.
    Off,
}

impl ServerInfo {
    pub(crate) fn gate(&self) -> Gate {
        if self.suspended {
            return Gate::Off;
        }
        match self.state.to_ascii_lowercase().as_str() {
            "running" => Gate::Running,
            "starting" => Gate::Starting,
            _ => Gate::Off,
        }
    }

    fn env(&self, key: &str) -> Option<&str> {
        self.environment
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn env_port(&self, key: &str) -> Option<u16> {
        self.env(key)
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|p| *p > 0)
    }
}

/// §5.2: ordered (protocol, port) candidates for one server, first match wins, no duplicates.
pub(crate) fn candidates(s: &ServerInfo) -> Vec<(Protocol, u16)> {
    use Protocol::*;
    let game = s.default_alloc.1;
    let query = s.env_port("QUERY_PORT");
    let next = game.checked_add(1);
    let text =
        format!("{} {}", s.invocation, s.env("STARTUP").unwrap_or_default()).to_ascii_lowercase();
    let image = s.image.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let mut c: Vec<(Protocol, Option<u16>)> = Vec::new();
    if has(&["bedrock_server", "pocketmine-mp.phar", "nukkit", "pnx"])
        || s.env("BEDROCK_VERSION").is_some()
    {
        // PocketMine/Nukkit also speak GS4 on the game port when enable-query is on.
        c.extend([
            (MinecraftBedrock, Some(game)),
            (MinecraftQuery, Some(game)),
            (MinecraftQuery, query),
        ]);
    } else if image.contains("yolks:java")
        || [
            "MINECRAFT_VERSION",
            "SERVER_JARFILE",
            "VELOCITY_VERSION",
            "BUNGEE_VERSION",
        ]
        .iter()
        .any(|k| s.env(k).is_some())
        || has(&[".jar"])
    {
        c.extend([
            (MinecraftJava, Some(game)),
            (MinecraftQuery, query),
            (MinecraftQuery, Some(game)),
        ]);
    } else if image.contains("games:source") && has(&["srcds_run", "srcds_linux", "cs2"]) {
        c.extend([(SourceA2s, Some(game)), (SourceA2s, query)]);
    } else if image.contains("games:rust") || has(&["rustdedicated"]) {
        c.extend([
            (SourceA2s, query),
            (SourceA2s, next),
            (SourceA2s, Some(game)),
        ]);
    } else if has(&[
        "shootergameserver",
        "valheim_server",
        "conansandbox",
        "squadgameserver",
        "vrisingserver",
        "enshrouded_server",
    ]) || ["steamcmd", "wine", "proton"]
        .iter()
        .any(|i| image.contains(i))
    {
        c.extend([
            (SourceA2s, query),
            (SourceA2s, Some(game)),
            (SourceA2s, next),
        ]);
    } else {
        c.extend([
            (MinecraftJava, Some(game)),
            (MinecraftBedrock, Some(game)),
            (SourceA2s, Some(game)),
            (SourceA2s, query),
            (SourceA2s, next),
        ]);
    }
    let mut out: Vec<(Protocol, u16)> = Vec::new();
    for (p, port) in c {
        if let Some(port) = port.filter(|p| *p > 0)
            && !out.contains(&(p, port))
        {
            out.push((p, port));
        }
    }
    out
}

/// The address pings go to (the `NODE_IP` rule).
pub(crate) fn probe_host(alloc_ip: &str, node_ip: Option<&str>) -> String {
    if let Some(ip) = node_ip.map(str::trim).filter(|i| !i.is_empty()) {
        return ip.to_string();
    }
    match alloc_ip.trim() {
        "" | "0.0.0.0" => "127.0.0.1".into(),
        "::" | "[::]" => "::1".into(),
        ip => ip.to_string(),
    }
}

/// A per-server override from the config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Override {
    pub(crate) protocol: Option<Protocol>,
    pub(crate) port: Option<u16>,
    pub(crate) address: Option<String>,
    pub(crate) enabled: bool,
}

/// A target configured by hand (hosts without Wings).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StaticTarget {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
}

/// The probe sections of the config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeConfig {
    pub(crate) overrides: BTreeMap<String, Override>,
    pub(crate) statics: Vec<StaticTarget>,
}

/// A bad entry in a probe section of the config file: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct SectionError {
    /// The entry, as written in the file (`[servers."<uuid>"]`, `[[static_targets]] #2`).
    pub at: String,
    pub problem: String,
}

fn bad(at: &str, problem: impl Into<String>) -> SectionError {
    SectionError {
        at: at.to_string(),
        problem: problem.into(),
    }
}

fn protocol_of(v: &toml::Value, at: &str) -> Result<Protocol, SectionError> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(at, "protocol must be a string"))?;
    Protocol::parse(s).ok_or_else(|| {
        bad(
            at,
            format!(
                "unknown protocol `{s}` (use {})",
                Protocol::ALL.map(|p| p.name()).join(", ")
            ),
        )
    })
}

fn port_of(v: &toml::Value, at: &str) -> Result<u16, SectionError> {
    v.as_integer()
        .and_then(|i| u16::try_from(i).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| bad(at, "port must be a number 1..65535"))
}

fn check_keys(t: &toml::Table, allowed: &[&str], at: &str) -> Result<(), SectionError> {
    match t.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            at,
            format!("unknown key `{k}` (allowed: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

impl ProbeConfig {
    /// Reads `[servers."<uuid>"]` and `[[static_targets]]` from the config file's tables. Errors
    /// name the section and what to write instead.
    pub fn from_tables(tables: &toml::Table) -> Result<Self, SectionError> {
        let mut cfg = ProbeConfig::default();
        if let Some(servers) = tables.get("servers") {
            let servers = servers.as_table().ok_or_else(|| {
                bad(
                    "[servers]",
                    "must be a table of [servers.\"<uuid>\"] sections",
                )
            })?;
            for (uuid, v) in servers {
                let at = format!("[servers.\"{uuid}\"]");
                let t = v.as_table().ok_or_else(|| bad(&at, "must be a table"))?;
                check_keys(t, &["protocol", "port", "address", "enabled"], &at)?;
                let o = Override {
                    protocol: t.get("protocol").map(|v| protocol_of(v, &at)).transpose()?,
                    port: t.get("port").map(|v| port_of(v, &at)).transpose()?,
                    address: match t.get("address") {
                        None => None,
                        Some(v) => Some(
                            v.as_str()
                                .filter(|s| !s.trim().is_empty())
                                .ok_or_else(|| bad(&at, "address must be a non-empty string"))?
                                .trim()
                                .to_string(),
                        ),
                    },
                    enabled: match t.get("enabled") {
                        None => true,
                        Some(v) => v
                            .as_bool()
                            .ok_or_else(|| bad(&at, "enabled must be true or false"))?,
                    },
                };
                cfg.overrides.insert(uuid.clone(), o);
            }
        }
        if let Some(list) = tables.get("static_targets") {
            let list = list.as_array().ok_or_else(|| {
                bad(
                    "static_targets",
                    "must be an array of [[static_targets]] tables",
                )
            })?;
            for (i, v) in list.iter().enumerate() {
                let at = format!("[[static_targets]] #{}", i + 1);
                let t = v.as_table().ok_or_else(|| bad(&at, "must be a table"))?;
                check_keys(t, &["name", "address", "port", "protocol"], &at)?;
                let address = t
                    .get("address")
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| bad(&at, "address (a host or IP) is required"))?
                    .to_string();
                let port = port_of(
                    t.get("port").ok_or_else(|| bad(&at, "port is required"))?,
                    &at,
                )?;
                let protocol = protocol_of(
                    t.get("protocol")
                        .ok_or_else(|| bad(&at, "protocol is required"))?,
                    &at,
                )?;
                let name = t
                    .get("name")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{address}:{port}"));
                cfg.statics.push(StaticTarget {
                    name,
                    address,
                    port,
                    protocol,
                });
            }
        }
        Ok(cfg)
    }
}

/// One thing to probe in a pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// Memory key: the server uuid, or `static:<name>`.
    pub(crate) key: String,
    pub(crate) uuid: Option<String>,
    pub(crate) name: String,
    pub(crate) gate: Gate,
    pub(crate) host: String,
    /// Ordered candidates; never empty.
    pub(crate) candidates: Vec<(Protocol, u16)>,
    /// True for overrides and static targets: no detection, no fallback.
    pub(crate) fixed: bool,
}

/// Builds this pass's targets: Wings servers (with overrides) and static targets.
pub(crate) fn plan(
    servers: &[ServerInfo],
    cfg: &ProbeConfig,
    node_ip: Option<&str>,
) -> Vec<Target> {
    let mut out = Vec::new();
    for s in servers {
        let o = cfg.overrides.get(&s.uuid);
        if o.is_some_and(|o| !o.enabled) {
            continue;
        }
        let mut cands = candidates(s);
        let mut fixed = false;
        if let Some(o) = o {
            match (o.protocol, o.port) {
                (Some(p), port) => {
                    cands = vec![(p, port.unwrap_or(s.default_alloc.1))];
                    fixed = true;
                }
                (None, Some(port)) => {
                    let mut v: Vec<(Protocol, u16)> = Vec::new();
                    for (p, _) in cands {
                        if !v.contains(&(p, port)) {
                            v.push((p, port));
                        }
                    }
                    cands = v;
                }
                (None, None) => {}
            }
        }
        cands.retain(|(_, port)| *port > 0);
        if cands.is_empty() {
            continue;
        }
        let host = o
            .and_then(|o| o.address.clone())
            .unwrap_or_else(|| probe_host(&s.default_alloc.0, node_ip));
        out.push(Target {
            key: s.uuid.clone(),
            uuid: Some(s.uuid.clone()).filter(|u| !u.is_empty()),
            name: s.name.clone(),
            gate: s.gate(),
            host,
            candidates: cands,
            fixed,
        });
    }
    for t in &cfg.statics {
        out.push(Target {
            key: format!("static:{}", t.name),
            uuid: None,
            name: t.name.clone(),
            gate: Gate::Running,
            host: t.address.clone(),
            candidates: vec![(t.protocol, t.port)],
            fixed: true,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::*;

    fn server(image: &str, invocation: &str, env: &[(&str, &str)]) -> ServerInfo {
        ServerInfo {
            uuid: "u1".into(),
            name: "s".into(),
            state: "running".into(),
            image: image.into(),
            invocation: invocation.into(),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            default_alloc: ("0.0.0.0".into(), 25565),
            ports: vec![25565],
            ..Default::default()
        }
    }

    #[test]
    fn paper_is_java_then_query() {
        let s = server(
            "ghcr.io/pterodactyl/yolks:java_21",
            "java -Xms128M -jar server.jar",
            &[("SERVER_JARFILE", "server.jar"), ("QUERY_PORT", "25575")],
        );
        assert_eq!(
            candidates(&s),
            vec![
                (MinecraftJava, 25565),
                (MinecraftQuery, 25575),
                (MinecraftQuery, 25565)
            ]
        );
    }

    #[test]
    fn nukkit_on_a_java_image_is_bedrock() {
        let s = server(
            "ghcr.io/pterodactyl/yolks:java_17",
            "java -jar nukkit.jar",
            &[],
        );
        assert_eq!(candidates(&s)[0], (MinecraftBedrock, 25565));
        let s = server("ghcr.io/parkervcp/yolks:debian", "./bedrock_server", &[]);
        assert_eq!(candidates(&s)[0], (MinecraftBedrock, 25565));
        let s = server("x", "./start.sh", &[("BEDROCK_VERSION", "latest")]);
        assert_eq!(candidates(&s)[0], (MinecraftBedrock, 25565));
    }

    #[test]
    fn source_rust_and_steam_games() {
        let mut s = server(
            "ghcr.io/pterodactyl/games:source",
            "./srcds_run -game csgo -port 27015",
            &[("SRCDS_APPID", "740")],
        );
        s.default_alloc.1 = 27015;
        assert_eq!(candidates(&s), vec![(SourceA2s, 27015)]);
        // SRCDS_APPID alone (Valheim on steamcmd) is not a Source game.
        let mut v = server(
            "ghcr.io/parkervcp/steamcmd:debian",
            "./valheim_server.x86_64 -port 2456",
            &[("SRCDS_APPID", "896660")],
        );
        v.default_alloc.1 = 2456;
        assert_eq!(candidates(&v), vec![(SourceA2s, 2456), (SourceA2s, 2457)]);
        let mut r = server(
            "ghcr.io/pterodactyl/games:rust",
            "./RustDedicated -batchmode",
            &[("QUERY_PORT", "28017")],
        );
        r.default_alloc.1 = 28015;
        assert_eq!(
            candidates(&r),
            vec![(SourceA2s, 28017), (SourceA2s, 28016), (SourceA2s, 28015)]
        );
    }

    #[test]
    fn unknown_eggs_get_the_generic_scan() {
        let s = server(
            "ghcr.io/parkervcp/yolks:debian",
            "./run",
            &[("QUERY_PORT", "0")],
        );
        assert_eq!(
            candidates(&s),
            vec![
                (MinecraftJava, 25565),
                (MinecraftBedrock, 25565),
                (SourceA2s, 25565),
                (SourceA2s, 25566)
            ]
        );
    }

    #[test]
    fn node_ip_rule() {
        assert_eq!(probe_host("0.0.0.0", None), "127.0.0.1");
        assert_eq!(probe_host("10.0.0.5", None), "10.0.0.5");
        assert_eq!(probe_host("0.0.0.0", Some("203.0.113.7")), "203.0.113.7");
        assert_eq!(probe_host("10.0.0.5", Some(" ")), "10.0.0.5");
    }

    #[test]
    fn gate_follows_wings_state() {
        let mut s = server("", "", &[]);
        assert_eq!(s.gate(), Gate::Running);
        s.state = "starting".into();
        assert_eq!(s.gate(), Gate::Starting);
        s.state = "offline".into();
        assert_eq!(s.gate(), Gate::Off);
        s.state = "running".into();
        s.suspended = true;
        assert_eq!(s.gate(), Gate::Off);
    }

    #[test]
    fn overrides_and_static_targets_from_toml() {
        let t: toml::Table = r#"
[servers."u1"]
protocol = "minecraft-bedrock"
port = 19132
address = "10.1.1.1"

[servers."u2"]
enabled = false

[servers."u3"]
port = 30000

[[static_targets]]
name = "lobby"
address = "127.0.0.1"
port = 25565
protocol = "minecraft-java"
"#
        .parse()
        .unwrap();
        let cfg = ProbeConfig::from_tables(&t).unwrap();
        let mut s1 = server("", "java -jar x.jar", &[]);
        let mut s2 = s1.clone();
        s2.uuid = "u2".into();
        let mut s3 = s1.clone();
        s3.uuid = "u3".into();
        s1.state = "starting".into();
        let p = plan(&[s1, s2, s3], &cfg, Some("192.0.2.1"));
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].candidates, vec![(MinecraftBedrock, 19132)]);
        assert_eq!(p[0].host, "10.1.1.1");
        assert!(p[0].fixed);
        assert_eq!(p[0].gate, Gate::Starting);
        assert_eq!(p[1].key, "u3");
        assert_eq!(p[1].host, "192.0.2.1");
        assert_eq!(
            p[1].candidates,
            vec![(MinecraftJava, 30000), (MinecraftQuery, 30000)]
        );
        assert!(!p[1].fixed);
        assert_eq!(p[2].key, "static:lobby");
        assert_eq!(p[2].uuid, None);
        assert_eq!(p[2].candidates, vec![(MinecraftJava, 25565)]);
    }

    #[test]
    fn config_errors_name_the_section() {
        for (text, want) in [
            ("[servers.\"a\"]\nprotocol = \"gopher\"", "[servers.\"a\"]"),
            ("[servers.\"a\"]\nport = 70000", "port must be"),
            ("[servers.\"a\"]\nprot = 1", "unknown key `prot`"),
            (
                "[[static_targets]]\naddress = \"h\"\nport = 1",
                "protocol is required",
            ),
            (
                "[[static_targets]]\nport = 1\nprotocol = \"a2s\"",
                "address",
            ),
            ("static_targets = 3", "array"),
        ] {
            let t: toml::Table = text.parse().unwrap();
            let err = ProbeConfig::from_tables(&t).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
