//! Secrets from the operator: a token is given as a value (environment, file key, flag) or read
//! from a file (`--node-token-file`, `--wings-token-file`), and the agent says so when a secret is
//! exposed: a flag is visible to every local user (`ps`, `/proc/<pid>/cmdline`), a token file
//! readable by group or others is readable by them. The warnings name the setting and the file,
//! never the secret.

use super::error::ConfigError;
use super::read::Values;
use super::source::Source;
use super::table::SETTINGS;
use std::os::unix::fs::PermissionsExt;

/// A token is one line of printable text; a file larger than this is not a token file.
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

/// The token of `key`, from its value or from the file `file_key` names (not both).
pub(crate) fn token(
    r: &Values<'_>,
    key: &'static str,
    file_key: &'static str,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, ConfigError> {
    let value = r.non_empty(key);
    let Some((path, bytes)) = r.regular_file(file_key, MAX_TOKEN_FILE_BYTES)? else {
        return Ok(value);
    };
    let src = r.source(file_key);
    if value.is_some() {
        return Err(r.invalid(
            file_key,
            src,
            format!("{key} is set as well ({})", r.source(key)),
            format!("set either {key} or {file_key}, not both"),
        ));
    }
    let problem = |what: &str| {
        r.invalid(
            file_key,
            src.clone(),
            format!("`{path}` {what}"),
            "write the token alone on one line (a trailing newline is fine)",
        )
    };
    let text = String::from_utf8(bytes).map_err(|_| problem("is not UTF-8 text"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(problem("is empty"));
    }
    if token.chars().any(char::is_control) {
        return Err(problem("holds more than one line or control characters"));
    }
    if let Ok(meta) = std::fs::metadata(&path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "{file_key}: `{path}` can be read by group or others (mode {mode:04o}); restrict it with `chmod 600 {path}`"
            ));
        }
    }
    Ok(Some(token.to_string()))
}

/// One warning per secret given as a command-line flag.
pub(crate) fn flag_warnings(r: &Values<'_>, warnings: &mut Vec<String>) {
    for s in SETTINGS.iter().filter(|s| s.secret) {
        if let Some((_, Source::Flag(flag))) = r.raw(s.key) {
            let file_hint = if SETTINGS.iter().any(|f| f.key == format!("{}_file", s.key)) {
                format!(" or --{flag}-file")
            } else {
                String::new()
            };
            warnings.push(format!(
                "{}: given as --{flag}, which every local user can read in the process list (ps); use {}{file_hint} instead",
                s.key,
                s.env.first().copied().unwrap_or("the environment"),
            ));
        }
    }
}
