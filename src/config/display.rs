//! What `node-agent config` prints: the value in force and its source for every setting, secrets
//! redacted; and the Markdown table of docs/configuration.md, generated from the settings table.

use super::layers::Layers;
use super::table::SETTINGS;

/// One row of `node-agent config`.
#[derive(Debug, serde::Serialize)]
pub struct EffectiveSetting {
    pub key: &'static str,
    pub value: Option<String>,
    pub source: String,
    pub env: Vec<&'static str>,
}

/// The effective configuration with secrets redacted.
pub fn effective(layers: &Layers) -> Vec<EffectiveSetting> {
    SETTINGS
        .iter()
        .map(|s| {
            let found = layers.get(s.key);
            EffectiveSetting {
                key: s.key,
                value: found.as_ref().map(|(v, _)| {
                    if s.secret {
                        redact(v)
                    } else {
                        // A URL's `user:password@` is a secret too.
                        crate::sys::text::redact_userinfo(v).into_owned()
                    }
                }),
                source: found
                    .map(|(_, src)| src.to_string())
                    .unwrap_or_else(|| "unset".into()),
                env: s.env.to_vec(),
            }
        })
        .collect()
}

/// A secret is shown only as its length, so an operator can tell "set" from "empty".
pub(crate) fn redact(secret: &str) -> String {
    format!("[redacted, {} chars]", secret.chars().count())
}

/// `node-agent config` as text: one line per setting.
pub fn text(layers: &Layers) -> String {
    let mut out = String::new();
    if let Some(p) = &layers.file_path {
        out.push_str(&format!("# config file: {}\n", p.display()));
    }
    for r in effective(layers) {
        out.push_str(&format!(
            "{:<28} = {:<40} ({})\n",
            r.key,
            r.value.as_deref().unwrap_or("<unset>"),
            r.source
        ));
    }
    out
}

/// The effective configuration as a TOML document in the `--config` file format (what the OpAMP
/// client reports): every setting that has a value, secrets redacted, with its source as a
/// comment, then the sections in force.
pub fn toml(layers: &Layers) -> String {
    let mut out =
        String::from("# effective configuration: flag > environment > remote > file > default\n");
    if let Some(p) = &layers.file_path {
        out.push_str(&format!("# config file: {}\n", p.display()));
    }
    for r in effective(layers) {
        if let Some(v) = r.value {
            let quoted = toml::Value::String(without_userinfo(&v)).to_string();
            out.push_str(&format!("{} = {quoted} # {}\n", r.key, r.source));
        }
    }
    let tables = layers.tables();
    if !tables.is_empty() {
        out.push('\n');
        out.push_str(&toml::to_string(&tables).unwrap_or_default());
    }
    out
}

/// A URL's user-info (`user:password@`) is a credential: shown as `[redacted]@`.
fn without_userinfo(v: &str) -> String {
    let Some((scheme, rest)) = v.split_once("://") else {
        return v.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => v.to_string(),
    }
}

/// The settings table as Markdown (docs/configuration.md holds exactly this).
pub fn markdown() -> String {
    let mut out = String::from(
        "| setting (flag `--x-y`, file key `x_y`) | environment | default | meaning |\n|---|---|---|---|\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.key,
            s.env
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", "),
            s.default
                .map(|d| format!("`{d}`"))
                .unwrap_or_else(|| "—".into()),
            s.help.replace('|', "\\|")
        ));
    }
    out
}
