//! Where a value came from: a flag, an environment variable, the remote configuration, the
//! config file, or the default.

use std::fmt;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(String),
    Env(String),
    File(String),
    /// The OpAMP server's remote configuration (a layer between the environment and the file).
    Remote(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "flag --{name}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(key) => write!(f, "file key {key}"),
            Source::Remote(key) => write!(f, "remote key {key}"),
            Source::Default => write!(f, "default"),
        }
    }
}
