//! Fuzz entry point for everything the OpAMP server sends: shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/opamp.rs`, nightly) and by a stable test that replays the committed seed
//! corpus (`fuzz/corpus/opamp`) plus mutations in every `cargo test`. The bytes go through each
//! decoding path (HTTP body, WebSocket frame, gzip body) and a decoded message through the
//! protocol state machine, the remote-configuration picker and the allow-list. A panic or an
//! unbounded result is a finding.

use super::proto::ServerToAgent;
use super::session::{self, Session};
use super::{agent, remote, wire};
use crate::config::remote::{AllowList, accept};
use std::time::Duration;

/// The size limit the fuzzer runs with (small, so limits are hit often).
pub const MAX: usize = 64 * 1024;

fn exercise(msg: &ServerToAgent) {
    let mut s = Session::new([7; 16], session::capabilities(true), None);
    let out = s.handle(msg);
    if let Some(hb) = out.heartbeat {
        assert!(hb <= Duration::from_secs(86_400), "{hb:?}");
    }
    if let Some(e) = &out.error {
        assert!(out.remote.is_none() && out.new_uid.is_none() && !out.report_full);
        assert!(
            format!("{e:?}").chars().count() < 200,
            "unbounded error text"
        );
    }
    if let Some(rc) = &out.remote {
        assert!(!remote::config_hash(rc).is_empty());
        match remote::pick_toml(rc) {
            Ok(text) => toml_text(&text),
            Err(e) => assert!(e.0.chars().count() < 1200, "unbounded picker error"),
        }
    }
    // A report after any server message is still well formed.
    let snap = session::Snapshot {
        description: agent::Description::new("node-agent", "fuzz").to_proto(),
        health: Default::default(),
        effective: agent::effective_config(String::new()),
    };
    let next = s.next(&snap);
    assert_eq!(next.instance_uid.len(), 16);
}

fn toml_text(text: &str) {
    match accept(text, &AllowList::default()) {
        Ok(layer) => {
            for k in layer.keys() {
                assert!(AllowList::default().allows(&k), "accepted disallowed {k}");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Arbitrary bytes as a server message, a WebSocket frame, a gzip body and TOML text.
pub fn server_to_agent(data: &[u8]) {
    if let Ok(m) = wire::decode_message(data, MAX) {
        exercise(&m);
    }
    if let Ok(m) = wire::decode_frame(data, MAX) {
        exercise(&m);
    }
    if let Ok(body) = wire::gunzip_bounded(data, MAX) {
        assert!(body.len() <= MAX);
        if let Ok(m) = wire::decode_message(&body, MAX) {
            exercise(&m);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        toml_text(text);
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::{self, *};
    use super::*;
    use crate::sys::fuzz::{corpus, corpus_dir, replay};
    use prost::Message;

    fn toml_offer(name: &str, ct: &str, body: &str, hash: &[u8]) -> ServerToAgent {
        ServerToAgent {
            instance_uid: vec![7; 16],
            capabilities: 3,
            remote_config: Some(AgentRemoteConfig {
                config: Some(AgentConfigMap {
                    config_map: [(
                        name.to_string(),
                        AgentConfigFile {
                            body: body.as_bytes().to_vec(),
                            content_type: ct.to_string(),
                        },
                    )]
                    .into_iter()
                    .collect(),
                }),
                config_hash: hash.to_vec(),
            }),
            ..Default::default()
        }
    }

    /// The synthetic seeds: one per kind of server message the client handles.
    fn synthetic_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let frame = |m: &ServerToAgent| {
            let mut v = vec![0u8];
            m.encode(&mut v).unwrap();
            v
        };
        let gzip = |b: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b).unwrap();
            e.finish().unwrap()
        };
        let ack = ServerToAgent {
            instance_uid: vec![7; 16],
            capabilities: 3,
            ..Default::default()
        };
        let remote = toml_offer(
            "node-agent.toml",
            "application/toml",
            "sample_interval_min_sec = 2\nsample_interval_max_sec = 2\n[servers.\"u1\"]\nport = 25565\n",
            &[0xab; 32],
        );
        let refused = toml_offer("x.toml", "", "otlp_endpoint = \"http://x\"\n", b"h2");
        let unavailable = ServerToAgent {
            instance_uid: vec![7; 16],
            error_response: Some(ServerErrorResponse {
                r#type: 2,
                error_message: "some reason".into(),
                details: Some(server_error_response::Details::RetryInfo(RetryInfo {
                    retry_after_nanoseconds: 42_000_000_000,
                })),
            }),
            ..Default::default()
        };
        let identity = ServerToAgent {
            instance_uid: vec![7; 16],
            flags: 1,
            agent_identification: Some(AgentIdentification {
                new_instance_uid: vec![9; 16],
            }),
            connection_settings: Some(ConnectionSettingsOffers {
                opamp: Some(OpAmpConnectionSettings {
                    heartbeat_interval_seconds: 15,
                    headers: Some(Headers {
                        headers: vec![Header {
                            key: "k".into(),
                            value: "v".into(),
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            command: Some(ServerToAgentCommand { r#type: 0 }),
            ..Default::default()
        };
        let mut health = proto::ComponentHealth::default();
        for _ in 0..20 {
            health = proto::ComponentHealth {
                component_health_map: [("c".to_string(), health)].into_iter().collect(),
                ..Default::default()
            };
        }
        let custom = ServerToAgent {
            instance_uid: vec![7; 16],
            custom_message: Some(CustomMessage {
                capability: "io.example/v1".into(),
                r#type: "t".into(),
                data: vec![1, 2, 3],
            }),
            packages_available: Some(PackagesAvailable {
                all_packages_hash: vec![1],
                ..Default::default()
            }),
            ..Default::default()
        };
        vec![
            ("ack.bin", ack.encode_to_vec()),
            ("ack-ws-frame.bin", frame(&ack)),
            ("remote-toml.bin", remote.encode_to_vec()),
            ("remote-toml-ws-frame.bin", frame(&remote)),
            ("remote-toml-gzip.bin", gzip(&remote.encode_to_vec())),
            ("remote-refused.bin", refused.encode_to_vec()),
            ("unavailable-retry-info.bin", unavailable.encode_to_vec()),
            ("identity-flags-settings.bin", identity.encode_to_vec()),
            ("custom-and-packages.bin", custom.encode_to_vec()),
            (
                "remote-config.toml",
                b"players_interval_min_sec = 5\nresource_attributes = \"rack=a\"\n[[static_targets]]\nname = \"l\"\n".to_vec(),
            ),
            (
                "nested-health-anyvalue.bin",
                proto::AgentToServer {
                    health: Some(health),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
        ]
    }

    /// The committed corpus holds the synthetic seeds (regenerated with
    /// `NODE_AGENT_REGENERATE=1`) and replies captured from the real mock server.
    #[test]
    fn synthetic_seeds_are_committed() {
        let dir = corpus_dir("opamp");
        for (name, bytes) in synthetic_seeds() {
            let path = dir.join(name);
            if std::env::var_os("NODE_AGENT_REGENERATE").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let got = std::fs::read(&path).unwrap_or_default();
            assert!(
                got == bytes,
                "{} is stale: NODE_AGENT_REGENERATE=1",
                path.display()
            );
        }
    }

    /// The seed corpus plus 4000 mutations (fixed seed: reproducible) and random bytes.
    #[test]
    fn corpus_and_mutations_never_panic() {
        // Protobuf tags, varint continuation, TOML syntax.
        const INTERESTING: &[u8] = &[0x00, 0x0a, 0x12, 0x1a, 0x80, 0xff, b'=', b'['];
        let seeds = replay("opamp", 0x0a3a_0000, 4000, INTERESTING, server_to_agent);
        assert!(seeds >= 10, "seed corpus missing");
    }

    /// The seeds reach the deep paths (so mutations start from valid input).
    #[test]
    fn seeds_decode() {
        let mut remote = 0;
        for s in corpus("opamp") {
            let m = wire::decode_message(&s, MAX)
                .or_else(|_| wire::decode_frame(&s, MAX))
                .or_else(|_| {
                    wire::gunzip_bounded(&s, MAX).and_then(|b| wire::decode_message(&b, MAX))
                });
            if let Ok(m) = m {
                remote += m.remote_config.is_some() as usize;
            }
        }
        assert!(remote >= 4, "{remote} remote-config seeds");
    }
}
