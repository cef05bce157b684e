//! The remote layer: settings a control plane (OpAMP) sets, and the local allow-list that limits
//! them.
//!
//! The OpAMP specification's security section asks agents to treat the server with zero trust:
//! remote configuration is opt-in, and what it may change is limited by an allow-list that is
//! configured locally and that the server cannot change. [`accept`] is that check, a pure
//! function from the server's TOML text and the operator's list to a [`RemoteLayer`] — the same
//! shape as the file layer — so the same rule serves the running agent, an offline start from the
//! saved copy, and the fuzzer.
//!
//! The default list is the set that only changes *how often* and *what* the agent measures and
//! how it labels it: sampling intervals, game-server targets and per-server overrides, resource
//! attributes. Where data goes (endpoints), with what credentials (tokens, headers, TLS files),
//! and what the agent reads on the host (paths) are never in it; the operator can add such a
//! setting by its exact name, and `opamp_*` settings (this list among them) can never be set
//! remotely at all. Values are never echoed in errors: a refused setting is named, not shown.
//!
//! [`LIVE`] lists what a running agent can change without a restart; a remote configuration that
//! would change anything else is refused (see docs/opamp.md).

pub use super::layers::RemoteLayer;
use super::layers::SECTIONS;
use super::table::SETTINGS;
use std::collections::BTreeSet;

/// What `opamp_remote_config_allow` means when unset (and what `default` expands to).
pub(crate) const DEFAULT_ALLOW: &[&str] = &[
    "sample_interval_min_sec",
    "sample_interval_max_sec",
    "players_interval_min_sec",
    "players_interval_max_sec",
    "discovery_interval_sec",
    "resource_attributes",
    "servers",
    "static_targets",
];

/// Settings (and sections) a running agent applies without a restart: the loops read them each
/// iteration (the logs source takes `logs` at once). Everything else is read once at start. A
/// new live setting is added here and to `state::Live`.
pub(crate) const LIVE: &[&str] = &[
    "sample_interval_min_sec",
    "sample_interval_max_sec",
    "players_interval_min_sec",
    "players_interval_max_sec",
    "discovery_interval_sec",
    "resource_attributes",
    "service_name",
    "node_ip",
    "probe_concurrency",
    "minecraft_ping_timeout_sec",
    "probe_max_frame_bytes",
    "servers",
    "static_targets",
    "logs",
];

/// Why a remote configuration (or the operator's allow-list) was refused. Names the setting,
/// never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("remote configuration is not valid TOML{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Toml {
        line: Option<usize>,
        message: String,
    },
    #[error("unknown setting `{0}`; `node-agent config` lists the valid keys")]
    Unknown(String),
    #[error("`{0}` can never be set remotely")]
    Never(String),
    #[error(
        "`{0}` may not be set remotely on this node; the local opamp_remote_config_allow does not list it"
    )]
    NotAllowed(String),
    #[error("`{0}` must be a single value, not a table or list")]
    NotScalar(String),
    #[error("`{0}` must be a section, not a single value")]
    NotSection(String),
}

/// The operator's list of remotely settable keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    keys: BTreeSet<String>,
}

impl Default for AllowList {
    fn default() -> Self {
        AllowList {
            keys: DEFAULT_ALLOW.iter().map(|k| k.to_string()).collect(),
        }
    }
}

fn is_setting(key: &str) -> bool {
    SETTINGS.iter().any(|s| s.key == key)
}

fn known(key: &str) -> bool {
    is_setting(key) || SECTIONS.contains(&key)
}

/// Keys that can never be set remotely, whatever the list says.
fn never(key: &str) -> bool {
    key.starts_with("opamp_")
}

impl AllowList {
    /// Parses a comma-separated list of setting keys and section names; `default` stands for
    /// [`DEFAULT_ALLOW`], `none` (or an empty list) allows nothing. Unknown names are errors.
    pub fn parse(spec: &str) -> Result<Self, RemoteError> {
        let mut keys = BTreeSet::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "default" => keys.extend(DEFAULT_ALLOW.iter().map(|k| k.to_string())),
                "none" => {}
                k if never(k) => return Err(RemoteError::Never(k.to_string())),
                k if known(k) => {
                    keys.insert(k.to_string());
                }
                k => return Err(RemoteError::Unknown(k.to_string())),
            }
        }
        Ok(AllowList { keys })
    }

    pub fn allows(&self, key: &str) -> bool {
        !never(key) && self.keys.contains(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// Allowed keys that let the server redirect data, swap credentials or make the agent read
    /// other host paths: the agent warns about each at start.
    pub fn sensitive(&self) -> Vec<&str> {
        self.keys().filter(|k| is_sensitive(k)).collect()
    }
}

/// Secrets, endpoints, TLS material and paths, by the settings table and by name.
pub(crate) fn is_sensitive(key: &str) -> bool {
    let secret = SETTINGS.iter().any(|s| s.key == key && s.secret);
    const SUFFIXES: &[&str] = &[
        "_url",
        "_endpoint",
        "_host",
        "_path",
        "_dir",
        "_config",
        "_library",
        "_listen",
        "_certificate",
        "_key",
        "_headers",
        "_token",
    ];
    secret
        || SUFFIXES.iter().any(|s| key.ends_with(s))
        || key.contains("insecure")
        || key.contains("tls")
}

/// Checks a remote TOML document against the allow-list. Every key must be a known setting or
/// section and allowed; the first that is not (in key order) is named in the error.
pub fn accept(text: &str, allow: &AllowList) -> Result<RemoteLayer, RemoteError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        RemoteError::Toml {
            line,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut layer = RemoteLayer {
        text: text.to_string(),
        ..Default::default()
    };
    for (key, value) in table {
        if never(&key) {
            return Err(RemoteError::Never(key));
        }
        if !known(&key) {
            return Err(RemoteError::Unknown(key));
        }
        if !allow.allows(&key) {
            return Err(RemoteError::NotAllowed(key));
        }
        if is_setting(&key) {
            let v = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(RemoteError::NotScalar(key)),
            };
            layer.settings.insert(key, v);
        } else {
            if !matches!(value, toml::Value::Table(_) | toml::Value::Array(_)) {
                return Err(RemoteError::NotSection(key));
            }
            layer.tables.insert(key, value);
        }
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_is_known_live_and_not_sensitive() {
        for k in DEFAULT_ALLOW {
            assert!(known(k), "{k} is not a setting");
            assert!(!is_sensitive(k), "{k} is sensitive");
            assert!(LIVE.contains(k), "{k} is not live");
        }
        for k in LIVE {
            assert!(known(k), "{k} is not a setting");
        }
        assert!(AllowList::default().sensitive().is_empty());
    }

    #[test]
    fn every_secret_endpoint_tls_and_path_setting_counts_as_sensitive() {
        for s in SETTINGS {
            if s.secret {
                assert!(is_sensitive(s.key), "{}", s.key);
            }
        }
        for k in [
            "otlp_endpoint",
            "orchestrator_base_url",
            "wings_base_url",
            "docker_host",
            "otlp_certificate",
            "otlp_client_certificate",
            "otlp_client_key",
            "otlp_insecure",
            "insecure_tls",
            "spool_dir",
            "state_dir",
            "proc_path",
            "sys_path",
            "rootfs_path",
            "wings_config",
            "nvml_library",
            "http_listen",
        ] {
            assert!(known(k), "{k}");
            assert!(is_sensitive(k), "{k}");
        }
    }

    #[test]
    fn accepted_values_land_in_the_layer() {
        let text = "sample_interval_min_sec = 2\nsample_interval_max_sec = 2.5\n\
                    resource_attributes = \"rack=a1\"\n\
                    [servers.\"u1\"]\nport = 25566\n\n[[static_targets]]\nname = \"x\"\n";
        let l = accept(text, &AllowList::default()).unwrap();
        assert_eq!(l.settings["sample_interval_min_sec"], "2");
        assert_eq!(l.settings["sample_interval_max_sec"], "2.5");
        assert_eq!(l.settings["resource_attributes"], "rack=a1");
        assert!(l.tables["servers"].is_table() && l.tables["static_targets"].is_array());
        assert_eq!(l.text, text);
        assert!(accept("", &AllowList::default()).unwrap().keys().is_empty());
    }

    #[test]
    fn refusals_name_the_key_and_never_the_value() {
        let allow = AllowList::default();
        let cases = [
            (
                "otlp_endpoint = \"http://evil:4318\"",
                "`otlp_endpoint` may not be set",
            ),
            (
                "node_token = \"s3cret-value\"",
                "`node_token` may not be set",
            ),
            ("spool_dir = \"/etc\"", "`spool_dir` may not be set"),
            (
                "opamp_remote_config_allow = \"node_token\"",
                "can never be set remotely",
            ),
            ("sampel_interval = 3", "unknown setting `sampel_interval`"),
            ("servers = 3", "`servers` must be a section"),
            ("sample_interval_min_sec = [1]", "must be a single value"),
            ("a = \"s3cret-value", "not valid TOML (line 1)"),
            ("x = 1\n\n= 2", "not valid TOML (line 3)"),
        ];
        for (text, want) in cases {
            let e = accept(text, &allow).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains("s3cret") && !e.contains("evil"), "{e}");
        }
        // First by name: `a_unknown` sorts before the disallowed `otlp_endpoint`.
        let e = accept("otlp_endpoint = \"x\"\na_unknown = 1", &allow).unwrap_err();
        assert_eq!(e, RemoteError::Unknown("a_unknown".into()));
    }

    #[test]
    fn operator_list_parses_and_can_open_sensitive_keys_by_name_only() {
        let a = AllowList::parse("default, otlp_endpoint").unwrap();
        assert!(a.allows("otlp_endpoint") && a.allows("servers"));
        assert_eq!(a.sensitive(), vec!["otlp_endpoint"]);
        let l = accept("otlp_endpoint = \"http://c:4318\"", &a).unwrap();
        assert_eq!(l.settings["otlp_endpoint"], "http://c:4318");
        let only = AllowList::parse("sample_interval_min_sec").unwrap();
        assert!(!only.allows("servers"));
        assert!(AllowList::parse("none").unwrap().keys().next().is_none());
        assert!(AllowList::parse("").unwrap().keys().next().is_none());
        let e = AllowList::parse("default,opamp_endpoint").unwrap_err();
        assert_eq!(e, RemoteError::Never("opamp_endpoint".into()));
        let e = AllowList::parse("samples").unwrap_err().to_string();
        assert!(e.contains("`samples`"), "{e}");
    }
}
