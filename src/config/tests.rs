//! The layers, the typed reads and the OTLP rules, on hand-made layers.

use super::Config;
use super::display::effective;
use super::layers::Layers;
use super::read::parse_kv_list;
use super::source::Source;
use crate::export::OtlpProtocol;
use std::collections::BTreeMap;
use std::time::Duration;

/// Layers from an environment and flags alone (no file, no remote layer); shared by the
/// config modules' tests.
pub(super) fn layers(env: &[(&str, &str)], flags: &[(&str, &str)]) -> Layers {
    Layers {
        flags: flags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        file: BTreeMap::new(),
        file_path: None,
        file_tables: toml::Table::new(),
        remote: Default::default(),
    }
}

#[test]
fn defaults_are_valid() {
    let c = Config::from_layers(&layers(&[], &[])).unwrap();
    assert_eq!(
        c.sample_interval,
        (Duration::from_secs(5), Duration::from_secs(10))
    );
    assert_eq!(c.export.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(c.export.endpoint, "http://localhost:4318/v1/metrics");
}

#[test]
fn flag_beats_env_beats_file() {
    let mut l = layers(&[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "2")], &[]);
    l.file.insert("sample_interval_min_sec".into(), "3".into());
    assert_eq!(l.get("sample_interval_min_sec").unwrap().0, "2");
    l.flags.insert("sample_interval_min_sec".into(), "1".into());
    let (v, src) = l.get("sample_interval_min_sec").unwrap();
    assert_eq!(
        (v.as_str(), src),
        ("1", Source::Flag("sample-interval-min-sec".into()))
    );
}

#[test]
fn min_above_max_names_the_setting() {
    let err = Config::from_layers(&layers(&[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "20")], &[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample_interval_min_sec"), "{err}");
    assert!(err.contains("AGENT_SAMPLE_INTERVAL_MIN_SEC"), "{err}");
}

#[test]
fn base_endpoint_gets_path_for_http_only() {
    let c = Config::from_layers(&layers(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")],
        &[],
    ))
    .unwrap();
    assert_eq!(c.export.endpoint, "http://c:4318/v1/metrics");
    let c = Config::from_layers(&layers(
        &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/x")],
        &[],
    ))
    .unwrap();
    assert_eq!(c.export.endpoint, "http://c:9/x");
    let c = Config::from_layers(&layers(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(c.export.endpoint, "http://c:4317");
}

#[test]
fn direct_orchestrator_mode() {
    let c = Config::from_layers(&layers(
        &[
            ("ORCHESTRATOR_BASE_URL", "https://orch.example/"),
            ("NODE_TOKEN", "tok"),
            ("NODE_ID", "n1"),
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(
        c.export.endpoint,
        "https://orch.example/internal/nodes/n1/telemetry"
    );
    assert!(c.export.direct_orchestrator);
    assert!(
        c.export
            .headers
            .contains(&("authorization".into(), "Bearer tok".into()))
    );
}

#[test]
fn kv_lists_are_percent_decoded() {
    assert_eq!(
        parse_kv_list("a=b%20c, d = e").unwrap(),
        vec![("a".into(), "b c".into()), ("d".into(), "e".into())]
    );
    assert!(parse_kv_list("novalue").is_err());
    assert_eq!(parse_kv_list("a=100%").unwrap()[0].1, "100%");
    assert_eq!(parse_kv_list("a=%4").unwrap()[0].1, "%4");
}

#[test]
fn secrets_are_redacted() {
    let l = layers(
        &[
            ("NODE_TOKEN", "supersecret"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x=hidden"),
        ],
        &[],
    );
    let text = format!("{:?}", effective(&l));
    assert!(
        !text.contains("supersecret") && !text.contains("hidden"),
        "{text}"
    );
}

#[test]
fn remote_sits_between_env_and_file_and_its_sections_merge_over_the_files() {
    use super::remote::{AllowList, accept};
    let mut l = layers(&[("AGENT_SAMPLE_INTERVAL_MAX_SEC", "9")], &[]);
    l.file.insert("sample_interval_min_sec".into(), "4".into());
    l.file.insert("discovery_interval_sec".into(), "7".into());
    l.file_tables = "[servers.\"a\"]\nport = 1\n[servers.\"b\"]\nport = 2\n"
        .parse()
        .unwrap();
    let remote = accept(
        "sample_interval_min_sec = 2\nsample_interval_max_sec = 3\n[servers.\"b\"]\nport = 3\n",
        &AllowList::default(),
    )
    .unwrap();
    let l = l.with_remote(remote);
    assert_eq!(
        l.get("sample_interval_min_sec"),
        Some(("2".into(), Source::Remote("sample_interval_min_sec".into())))
    );
    // The environment still wins over the server.
    assert_eq!(l.get("sample_interval_max_sec").unwrap().0, "9");
    assert_eq!(l.get("discovery_interval_sec").unwrap().0, "7");
    let t = l.tables();
    assert_eq!(t["servers"]["a"]["port"].as_integer(), Some(1));
    assert_eq!(t["servers"]["b"]["port"].as_integer(), Some(3));
    let c = Config::from_layers(&l).unwrap();
    assert_eq!(c.sample_interval.0, Duration::from_secs(2));
    // The effective configuration is TOML that reads back, with sources and no secret.
    let mut l = l;
    l.env.insert("NODE_TOKEN".into(), "s3cret-token".into());
    l.env.insert(
        "NODE_AGENT_OPAMP_ENDPOINT".into(),
        "https://agent:s3cret@cp.example/v1/opamp".into(),
    );
    let text = super::display::toml(&l);
    assert!(
        text.contains("https://[redacted]@cp.example/v1/opamp"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    let back: toml::Table = text.parse().unwrap();
    assert_eq!(back["sample_interval_min_sec"].as_str(), Some("2"));
    assert_eq!(back["servers"]["b"]["port"].as_integer(), Some(3));
    assert!(
        text.contains("# remote key sample_interval_min_sec"),
        "{text}"
    );
}

#[test]
fn opamp_settings_are_checked_at_start() {
    let ok = |env: &[(&str, &str)]| Config::from_layers(&layers(env, &[]));
    assert!(ok(&[]).unwrap().opamp.is_none());
    let c = ok(&[
        ("NODE_AGENT_OPAMP_ENDPOINT", "wss://cp.example/v1/opamp"),
        ("NODE_TOKEN", "nt"),
    ])
    .unwrap()
    .opamp
    .unwrap();
    assert_eq!(c.token.as_deref(), Some("nt"), "node_token is the default");
    assert!(!c.accept_remote_config);
    for (env, setting) in [
        (
            &[("NODE_AGENT_OPAMP_ENDPOINT", "ftp://x")][..],
            "opamp_endpoint",
        ),
        (
            &[
                ("NODE_AGENT_OPAMP_ENDPOINT", "http://x/v1/opamp"),
                (
                    "NODE_AGENT_OPAMP_REMOTE_CONFIG_ALLOW",
                    "default,opamp_token",
                ),
            ],
            "opamp_remote_config_allow",
        ),
        (
            &[
                ("NODE_AGENT_OPAMP_ENDPOINT", "http://x/v1/opamp"),
                ("NODE_AGENT_OPAMP_HEADERS", "bad name=s3cret"),
            ],
            "opamp_headers",
        ),
        (
            &[
                ("NODE_AGENT_OPAMP_ENDPOINT", "http://x/v1/opamp"),
                ("NODE_AGENT_OPAMP_HEARTBEAT_SEC", "0"),
            ],
            "opamp_heartbeat_sec",
        ),
    ] {
        let e = ok(env).unwrap_err().to_string();
        assert!(e.contains(setting), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
