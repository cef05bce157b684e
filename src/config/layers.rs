//! The raw layers a value can come from, before typing: command-line flags, the environment, the
//! TOML file (scalar keys and the structured sections, kept as TOML until each owner checks them)
//! and the defaults of the table. A value is taken from the first layer that has it: flag >
//! environment > file > default, and the layer it came from is kept so that `node-agent config`
//! and every error can say where a value came from.

use super::error::ConfigError;
use super::source::Source;
use super::table::{SETTINGS, setting};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The structured sections a config file may have, each checked by its owner at start
/// (`[servers."<uuid>"]` overrides and `[[static_targets]]`, for the game-server probes).
pub(crate) const SECTIONS: &[&str] = &["servers", "static_targets"];

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
    pub(crate) fn get(&self, key: &str) -> Option<(String, Source)> {
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
