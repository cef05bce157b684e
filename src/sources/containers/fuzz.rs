//! Fuzz entry points for what the agent decodes from Docker and Wings, shared by the cargo-fuzz
//! targets (`fuzz/`, nightly) and a stable test replaying the committed seeds plus mutations.
//! Each checks more than "no panic": nothing decoded exceeds its element budget, and decoding is
//! a function of the bytes (the budget is per answer, never left over from the previous one).

use super::docker::{self, Inspect, Summary};
use super::json;
use super::wings::{self, ConfigFile};
use serde::Deserialize;

#[derive(Deserialize)]
struct List(#[serde(deserialize_with = "json::bounded_vec")] Vec<Summary>);

/// Docker's container list, one inspect and an events answer, from the same bytes.
pub fn docker(data: &[u8]) {
    let decode = |data: &[u8]| {
        let list = json::with_budget::<List>(data, docker::LIST.items).map(|l| l.0.len());
        let one = json::with_budget::<Inspect>(data, docker::ONE.items).is_ok();
        let events = docker::parse_event_ids(data, 64).map(|v| v.len());
        (list.ok(), one, events.ok())
    };
    let first = decode(data);
    if let Some(n) = first.0 {
        assert!(n <= docker::LIST.items);
    }
    if let Some(n) = first.2 {
        assert!(n <= 64);
    }
    // A tiny budget cannot poison the next answer's.
    let _ = json::with_budget::<List>(data, 1);
    assert_eq!(
        decode(data),
        first,
        "decoding depends on what was decoded before"
    );
}

/// Wings' `/api/servers` answer and its `config.yml`, from the same bytes.
pub fn wings(data: &[u8]) {
    let servers = wings::parse_servers(data)
        .map(|s| s.len())
        .map_err(|e| e.to_string());
    if let Ok(n) = servers {
        assert!(n <= wings::MAX_ITEMS);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cfg) = ConfigFile::parse(text)
    {
        let _ = cfg.base_url();
    }
    let again = wings::parse_servers(data)
        .map(|s| s.len())
        .map_err(|e| e.to_string());
    assert_eq!(again, servers);
}

pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: [Target; 2] = [("docker_json", docker), ("wings_json", wings)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fuzz::{corpus, replay};

    const INTERESTING: &[u8] = b"{}[]\",:0123456789-.eEtrufalsn\\ \n";

    /// The seeds decode as the agent expects them to (so the corpus exercises the real paths).
    #[test]
    fn seeds_decode() {
        let docker_seeds = corpus("docker_json");
        assert!(
            docker_seeds
                .iter()
                .any(|s| json::with_budget::<List>(s, 1000).is_ok_and(|l| !l.0.is_empty()))
        );
        assert!(
            docker_seeds
                .iter()
                .any(|s| json::with_budget::<Inspect>(s, 1000).is_ok())
        );
        assert!(
            corpus("wings_json")
                .iter()
                .any(|s| wings::parse_servers(s).is_ok_and(|v| !v.is_empty()))
        );
    }

    /// The seeds and 1,500 inputs per target (mutated seeds, some random bytes), plus a huge flat
    /// array: every check holds.
    #[test]
    fn corpus_and_mutations_never_panic() {
        for (name, f) in TARGETS {
            replay(name, 0xd0c, 1500, INTERESTING, f);
        }
        // Past the element budget: an error, not a heap.
        let flat = format!("[{}{{}}]", "{},".repeat(300_000));
        assert!(json::with_budget::<List>(flat.as_bytes(), docker::LIST.items).is_err());
        let zeros = format!("[{}0]", "0,".repeat(300_000));
        assert!(wings::parse_servers(zeros.as_bytes()).is_err());
    }
}
