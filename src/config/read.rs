//! Typed reads of one setting: booleans, seconds, whole numbers, ranges, URLs, PEM files, `k=v`
//! lists and choices from a fixed set. A value that does not parse becomes a
//! [`ConfigError::Invalid`] naming the setting, where the value came from, and the fix.

use super::error::ConfigError;
use super::layers::Layers;
use super::source::Source;
use std::time::Duration;

/// Why a value does not parse: the `problem` part of a [`ConfigError::Invalid`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Problem(pub(crate) String);

/// Reads settings from the layers as typed values.
pub(crate) struct Values<'a> {
    pub(crate) layers: &'a Layers,
}

impl Values<'_> {
    pub(crate) fn raw(&self, key: &'static str) -> Option<(String, Source)> {
        self.layers.get(key)
    }

    /// The source of a setting that has a value (a default at least).
    pub(crate) fn source(&self, key: &'static str) -> Source {
        self.raw(key).map(|(_, s)| s).unwrap_or(Source::Default)
    }

    pub(crate) fn invalid(
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

    /// The trimmed value, if any.
    pub(crate) fn string(&self, key: &'static str) -> Option<String> {
        self.raw(key).map(|(v, _)| v.trim().to_string())
    }

    /// The trimmed value, `None` when unset or empty.
    pub(crate) fn non_empty(&self, key: &'static str) -> Option<String> {
        self.string(key).filter(|s| !s.is_empty())
    }

    /// One of a fixed set of words (case-insensitive). `options` maps each accepted word to its
    /// value; the error lists the words and adds `fix`.
    pub(crate) fn choice<T: Copy>(
        &self,
        key: &'static str,
        options: &[(&str, T)],
        fix: &str,
    ) -> Result<T, ConfigError> {
        let (v, src) = self
            .raw(key)
            .unwrap_or_else(|| (String::new(), Source::Default));
        let word = v.trim().to_ascii_lowercase();
        options
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                self.invalid(
                    key,
                    src,
                    format!("`{}` is not an accepted value", v.trim()),
                    fix,
                )
            })
    }

    pub(crate) fn bool(&self, key: &'static str) -> Result<bool, ConfigError> {
        self.choice(
            key,
            &[
                ("1", true),
                ("true", true),
                ("yes", true),
                ("on", true),
                ("0", false),
                ("false", false),
                ("no", false),
                ("off", false),
                ("", false),
            ],
            "use true or false",
        )
    }
    /// A positive number of seconds (fractions allowed).
    pub(crate) fn seconds(&self, key: &'static str) -> Result<Duration, ConfigError> {
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

    pub(crate) fn u64(&self, key: &'static str, min: u64) -> Result<u64, ConfigError> {
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

    pub(crate) fn range(
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

    pub(crate) fn url(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some((v, src)) = self.raw(key) else {
            return Ok(None);
        };
        let v = v.trim().trim_end_matches('/').to_string();
        check_url(&v).map_err(|problem| {
            self.invalid(
                key,
                src,
                problem.0,
                "give an absolute http:// or https:// URL, e.g. http://127.0.0.1:8080",
            )
        })?;
        Ok(Some(v))
    }

    /// A `k=v,k2=v2` list (percent-decoded); empty when unset.
    pub(crate) fn kv_list(
        &self,
        key: &'static str,
        fix: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some((v, src)) => parse_kv_list(&v).map_err(|p| self.invalid(key, src, p.0, fix)),
        }
    }

    pub(crate) fn pem_file(&self, key: &'static str) -> Result<Option<Vec<u8>>, ConfigError> {
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

/// Accepts absolute http(s) URLs with a host and a valid port (parsed as a URL: `http://[::1`
/// is refused). A problem never shows a `user:password@` part.
pub(crate) fn check_url(v: &str) -> Result<(), Problem> {
    parse_endpoint(v).map(|_| ())
}

/// Checks that `v` is an absolute `http`/`https` URL with a host and a valid port; returns it
/// without its `user:password@` part, and that part percent-decoded. A problem never shows the
/// password.
pub(crate) fn parse_endpoint(v: &str) -> Result<(String, Option<(String, String)>), Problem> {
    let shown = crate::sys::text::redact_userinfo(v);
    let url = reqwest::Url::parse(v)
        .map_err(|e| Problem(format!("`{shown}` is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Problem(format!(
            "`{shown}` does not start with http:// or https://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Problem(format!("`{shown}` has no host")));
    }
    if v.contains(char::is_whitespace) {
        return Err(Problem(format!("`{shown}` contains white space")));
    }
    let userinfo = (!url.username().is_empty() || url.password().is_some()).then(|| {
        (
            percent_decode(url.username()),
            percent_decode(url.password().unwrap_or("")),
        )
    });
    let scheme_end = v.find("://").map_or(0, |i| i + 3);
    let authority_end = v[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(v.len(), |i| scheme_end + i);
    let bare = match v[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &v[..scheme_end], &v[scheme_end + at + 1..]),
        None => v.to_string(),
    };
    Ok((bare, userinfo))
}

/// Parses `k=v,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES) with percent-decoding.
pub(crate) fn parse_kv_list(v: &str) -> Result<Vec<(String, String)>, Problem> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, val) = item
            .split_once('=')
            .ok_or_else(|| Problem(format!("item {} has no `=`", out.len() + 1)))?;
        let k = percent_decode(k.trim());
        if k.is_empty() {
            return Err(Problem(format!("item {} has an empty key", out.len() + 1)));
        }
        out.push((k, percent_decode(val.trim())));
    }
    Ok(out)
}

pub(crate) fn percent_decode(s: &str) -> String {
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
