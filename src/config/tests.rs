//! The layers, the typed reads and the OTLP rules, on hand-made layers.

use super::Config;
use super::display::effective;
use super::layers::Layers;
use super::read::parse_kv_list;
use super::source::Source;
use crate::export::OtlpProtocol;
use std::collections::BTreeMap;
use std::time::Duration;

fn layers(env: &[(&str, &str)], flags: &[(&str, &str)]) -> Layers {
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
