//! Configuration errors: which setting, where its value came from, and how to fix it.

use super::source::Source;
use std::path::PathBuf;

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
    #[error(
        "invalid section in config file {file}: {problem}. Fix: correct that entry; docs/configuration.md lists the keys of each section"
    )]
    Section { file: PathBuf, problem: String },
    #[error(
        "invalid section in the OpAMP remote configuration: {problem}. Fix: correct that entry on the server; docs/configuration.md lists the keys of each section"
    )]
    RemoteSection { problem: String },
}
