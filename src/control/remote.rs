//! Reading a remote configuration offer: which entry is ours, and its identity (hash).
//!
//! A server may send several files in one `AgentConfigMap` (a fleet tool might keep a YAML for
//! one agent type and a TOML for another). Ours is the single entry whose name ends in `.toml`
//! or whose content type is `application/toml`; an empty map means "no remote configuration".
//! The hash is the server's `config_hash`; when a server leaves it empty the client derives
//! one from the content, so "never apply the same configuration twice" still holds.

use super::Refusal;
use super::agent::TOML_CONTENT_TYPE;
use super::proto::AgentRemoteConfig;

/// The offer's hash: the server's, or SHA-256 over the sorted entries when it sent none.
pub fn config_hash(rc: &AgentRemoteConfig) -> Vec<u8> {
    if !rc.config_hash.is_empty() {
        return rc.config_hash.clone();
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    if let Some(map) = &rc.config {
        let mut names: Vec<&String> = map.config_map.keys().collect();
        names.sort();
        for name in names {
            let f = &map.config_map[name];
            for part in [name.as_bytes(), f.content_type.as_bytes(), &f.body] {
                ctx.update(&(part.len() as u64).to_be_bytes());
                ctx.update(part);
            }
        }
    }
    ctx.finish().as_ref().to_vec()
}

fn is_toml(name: &str, content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    name.to_ascii_lowercase().ends_with(".toml") || ct == TOML_CONTENT_TYPE
}

/// The TOML text of the offer, or the reason it has none usable.
pub fn pick_toml(rc: &AgentRemoteConfig) -> Result<String, Refusal> {
    let Some(map) = rc.config.as_ref().filter(|m| !m.config_map.is_empty()) else {
        return Ok(String::new());
    };
    let mut ours = map
        .config_map
        .iter()
        .filter(|(name, f)| is_toml(name, &f.content_type));
    let Some((name, file)) = ours.next() else {
        let mut names: Vec<String> = map
            .config_map
            .iter()
            .take(8)
            .map(|(n, f)| format!("`{}` ({})", printable(n), printable(&f.content_type)))
            .collect();
        names.sort();
        return Err(Refusal(format!(
            "no entry named *.toml or with content type {TOML_CONTENT_TYPE} in the offer (got {})",
            names.join(", ")
        )));
    };
    if let Some((other, _)) = ours.next() {
        return Err(Refusal(format!(
            "more than one TOML entry in the offer (`{}` and `{}`); send one",
            printable(name),
            printable(other)
        )));
    }
    String::from_utf8(file.body.clone())
        .map_err(|_| Refusal(format!("entry `{}` is not UTF-8 text", printable(name))))
}

/// A server-chosen string made safe for logs and messages: at most 64 characters, no control
/// characters.
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::proto::{AgentConfigFile, AgentConfigMap};
    use super::*;

    fn offer(entries: &[(&str, &str, &str)], hash: &[u8]) -> AgentRemoteConfig {
        AgentRemoteConfig {
            config: Some(AgentConfigMap {
                config_map: entries
                    .iter()
                    .map(|(n, ct, body)| {
                        (
                            n.to_string(),
                            AgentConfigFile {
                                body: body.as_bytes().to_vec(),
                                content_type: ct.to_string(),
                            },
                        )
                    })
                    .collect(),
            }),
            config_hash: hash.to_vec(),
        }
    }

    #[test]
    fn picks_the_one_toml_entry() {
        let o = offer(
            &[
                ("collector.yaml", "text/yaml", "a: 1"),
                ("node-agent.toml", "", "x = 1"),
            ],
            b"h",
        );
        assert_eq!(pick_toml(&o).unwrap(), "x = 1");
        let o = offer(&[("", "application/toml; charset=utf-8", "y = 2")], b"h");
        assert_eq!(pick_toml(&o).unwrap(), "y = 2");
        assert_eq!(pick_toml(&offer(&[], b"h")).unwrap(), "");
        assert_eq!(pick_toml(&AgentRemoteConfig::default()).unwrap(), "");
    }

    #[test]
    fn refuses_what_is_not_ours() {
        let e = pick_toml(&offer(&[("elastic", "application/json", "{}")], b"h"))
            .unwrap_err()
            .0;
        assert!(e.contains("`elastic` (application/json)"), "{e}");
        let e = pick_toml(&offer(&[("a.toml", "", "1"), ("b.toml", "", "2")], b"h"))
            .unwrap_err()
            .0;
        assert!(e.contains("more than one"), "{e}");
        let mut o = offer(&[("a.toml", "", "")], b"h");
        o.config
            .as_mut()
            .unwrap()
            .config_map
            .get_mut("a.toml")
            .unwrap()
            .body = vec![0xff];
        assert!(pick_toml(&o).unwrap_err().0.contains("UTF-8"));
    }

    #[test]
    fn hash_is_the_servers_or_derived_from_content() {
        assert_eq!(config_hash(&offer(&[("a.toml", "", "x")], b"srv")), b"srv");
        let a = config_hash(&offer(&[("a.toml", "", "x=1")], b""));
        let b = config_hash(&offer(&[("a.toml", "", "x=2")], b""));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(a, config_hash(&offer(&[("a.toml", "", "x=1")], b"")));
        assert_eq!(printable("a\u{1b}[31m"), "a?[31m");
    }
}
