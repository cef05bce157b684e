//! The raw layers a value can come from, before typing: command-line flags, the environment, the
//! TOML file (scalar keys and the structured sections, kept as TOML until each owner checks them)
//! and the defaults of the table. A value is taken from the first layer that has it: flag >
//! environment > remote > file > default, and the layer it came from is kept so that
//! `node-agent config` and every error can say where a value came from. The remote layer is what
//! a control plane (OpAMP) set, already checked against the local allow-list ([`super::remote`]).

use super::error::ConfigError;
use super::source::Source;
use super::table::{SETTINGS, Setting, setting};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The structured sections a config file may have, each checked by its owner at start
/// (`[servers."<uuid>"]` overrides and `[[static_targets]]`, for the game-server probes).
pub(crate) const SECTIONS: &[&str] = &["servers", "static_targets"];

/// A config file of a thousand static targets is about 100 KiB.
const MAX_CONFIG_FILE_BYTES: u64 = 4 << 20;

/// The raw layers before typing.
#[derive(Clone)]
pub struct Layers {
    pub flags: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub file: BTreeMap<String, String>,
    pub file_path: Option<PathBuf>,
    /// Structured tables of the file (game-server overrides, static targets), kept as TOML.
    pub file_tables: toml::Table,
    /// The control plane's layer (empty unless OpAMP remote configuration is on and in force).
    pub remote: RemoteLayer,
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
            remote: RemoteLayer::default(),
        };
        if let Some(path) = config_path {
            layers.read_file(path)?;
        }
        Ok(layers)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        // A regular file of sane size only: `--config /dev/zero` must not eat the host's memory.
        let bytes =
            crate::sys::regular::read_regular(path, MAX_CONFIG_FILE_BYTES).map_err(|e| {
                ConfigError::File {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::File {
            path: path.to_path_buf(),
            reason: "not UTF-8 text".into(),
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
                    if !SECTIONS.contains(&key.as_str()) {
                        return Err(ConfigError::File {
                            path: path.to_path_buf(),
                            reason: format!(
                                "unknown section `{key}`; the sections are {}",
                                SECTIONS.join(", ")
                            ),
                        });
                    }
                    self.file_tables.insert(key, value);
                }
            }
        }
        self.file_path = Some(path.to_path_buf());
        Ok(())
    }

    /// The winning raw value of a setting and its source. Empty environment values count as unset,
    /// as the OpenTelemetry specification asks.
    ///
    /// A setting with a `fallback` (the logs' OTLP settings) that no layer sets takes its twin's
    /// value, from every layer but the twin's metrics-only variables.
    pub(crate) fn get(&self, key: &str) -> Option<(String, Source)> {
        let s = setting(key);
        self.set_in_layers(s, false)
            .or_else(|| {
                let twin = setting(s.fallback?);
                self.set_in_layers(twin, true)
                    .or_else(|| twin.default.map(|d| (d.to_string(), Source::Default)))
            })
            .or_else(|| s.default.map(|d| (d.to_string(), Source::Default)))
    }

    /// The value a flag, the environment, the remote layer or the file gives `setting`.
    fn set_in_layers(&self, setting: &Setting, skip_metrics_env: bool) -> Option<(String, Source)> {
        let key = setting.key;
        if let Some(v) = self.flags.get(key) {
            return Some((v.clone(), Source::Flag(key.replace('_', "-"))));
        }
        for name in setting.env {
            if skip_metrics_env && name.contains("_METRICS_") {
                continue;
            }
            if let Some(v) = self.env.get(*name)
                && !v.trim().is_empty()
            {
                return Some((v.clone(), Source::Env((*name).to_string())));
            }
        }
        if let Some(v) = self.remote.settings.get(key) {
            return Some((v.clone(), Source::Remote(key.to_string())));
        }
        if let Some(v) = self.file.get(key) {
            return Some((v.clone(), Source::File(key.to_string())));
        }
        None
    }

    /// The same layers with `remote` as the remote layer.
    pub fn with_remote(&self, remote: RemoteLayer) -> Layers {
        Layers {
            remote,
            ..self.clone()
        }
    }

    /// The structured sections in force: a section the remote layer sets wins over the file's;
    /// when both are tables (`[servers]`) they merge entry by entry, the remote entry winning.
    pub(crate) fn tables(&self) -> toml::Table {
        let mut out = self.file_tables.clone();
        for (name, value) in &self.remote.tables {
            match (out.get_mut(name), value) {
                (Some(toml::Value::Table(file)), toml::Value::Table(remote)) => {
                    file.extend(remote.clone());
                }
                _ => {
                    out.insert(name.clone(), value.clone());
                }
            }
        }
        out
    }
}

/// The part of a remote configuration that passed the allow-list, shaped like the file layer:
/// scalar settings as text and structured sections as TOML. The default is "no remote layer".
#[derive(Clone, Default, PartialEq)]
pub struct RemoteLayer {
    /// The document as the server sent it.
    pub text: String,
    pub settings: BTreeMap<String, String>,
    pub tables: toml::Table,
}

impl RemoteLayer {
    /// The setting and section names it sets (for logs and the audit trail; never values).
    pub fn keys(&self) -> Vec<String> {
        self.settings
            .keys()
            .chain(self.tables.keys())
            .cloned()
            .collect()
    }
}

impl std::fmt::Debug for RemoteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An explicitly allowed secret may be in it: names only.
        f.debug_struct("RemoteLayer")
            .field("keys", &self.keys())
            .finish()
    }
}
