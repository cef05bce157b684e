//! The command line and configuration as an operator meets them: invalid input stops the agent
//! with exit code 2 and a message that names the setting; secrets never appear in any output.

use crate::harness::*;
use std::process::{Output, Stdio};

/// Runs the agent to completion; a run that does not end within a minute fails the test instead
/// of hanging it.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = agent_command();
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn("node-agent", &mut cmd);
    let status = p.wait_timeout(std::time::Duration::from_secs(60));
    assert!(status.is_some(), "node-agent {args:?} {env:?} did not exit");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    use std::io::Read;
    p.child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    p.child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status: status.unwrap(),
        stdout,
        stderr,
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `(environment, setting the message must name)`
const INVALID: &[(&[(&str, &str)], &str)] = &[
    (
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
        "otlp_endpoint",
    ),
    (
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x:1")],
        "otlp_endpoint",
    ),
    (
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://host:99999")],
        "otlp_endpoint",
    ),
    (
        &[("ORCHESTRATOR_BASE_URL", "orchestrator.example")],
        "orchestrator_base_url",
    ),
    (&[("WINGS_BASE_URL", "http://")], "wings_base_url"),
    (
        &[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "-5")],
        "sample_interval_min_sec",
    ),
    (
        &[("AGENT_SAMPLE_INTERVAL_MAX_SEC", "ten")],
        "sample_interval_max_sec",
    ),
    (
        &[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0")],
        "sample_interval_min_sec",
    ),
    (
        &[
            ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "30"),
            ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "10"),
        ],
        "sample_interval_min_sec",
    ),
    (
        &[("AGENT_PLAYERS_INTERVAL_MIN_SEC", "40")],
        "players_interval_min_sec",
    ),
    (
        &[("AGENT_DISCOVERY_INTERVAL_SEC", "NaN")],
        "discovery_interval_sec",
    ),
    (&[("AGENT_INSECURE_TLS", "maybe")], "insecure_tls"),
    (
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")],
        "otlp_certificate",
    ),
    (
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/hostname")],
        "otlp_certificate",
    ),
    (
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")],
        "otlp_protocol",
    ),
    (
        &[("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli")],
        "otlp_compression",
    ),
    (&[("OTEL_EXPORTER_OTLP_TIMEOUT", "-1")], "otlp_timeout_ms"),
    (&[("OTEL_METRICS_EXPORTER", "zipkin")], "metrics_exporter"),
    (&[("NODE_AGENT_HTTP_LISTEN", "localhost")], "http_listen"),
    (&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")], "otlp_headers"),
    (
        &[
            ("ORCHESTRATOR_BASE_URL", "http://orch:1"),
            ("NODE_TOKEN", "t"),
        ],
        "node_id",
    ),
];

#[test]
fn invalid_values_exit_2_and_name_the_setting() {
    for (env, setting) in INVALID {
        for args in [&["run"][..], &["check"][..]] {
            let o = run(args, env);
            let t = text(&o);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{env:?} {args:?}: exit {:?}\n{t}",
                o.status
            );
            assert!(
                t.contains(setting),
                "{env:?}: message does not name {setting}:\n{t}"
            );
            assert!(t.contains("Fix:"), "{env:?}: message gives no fix:\n{t}");
            // The environment variable's name is there too, so the operator knows what to edit.
            assert!(
                t.contains(env.last().unwrap().0) || t.contains(env[0].0),
                "{env:?}: source not named:\n{t}"
            );
        }
    }
}

#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "sample_interval_min_sec = 3\nsample_interval_max_sec = 9\nnode_id = \"from-file\"\n",
    )
    .unwrap();
    let o = run(
        &[
            "config",
            "--json",
            "--config",
            file.to_str().unwrap(),
            "--sample-interval-min-sec",
            "2",
        ],
        &[
            ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "4"),
            ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "8"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let row = |k: &str| rows.iter().find(|r| r["key"] == k).unwrap().clone();
    assert_eq!(row("sample_interval_min_sec")["value"], "2");
    assert_eq!(
        row("sample_interval_min_sec")["source"],
        "flag --sample-interval-min-sec"
    );
    assert_eq!(row("sample_interval_max_sec")["value"], "8");
    assert_eq!(
        row("sample_interval_max_sec")["source"],
        "env AGENT_SAMPLE_INTERVAL_MAX_SEC"
    );
    assert_eq!(row("node_id")["value"], "from-file");
    assert_eq!(row("node_id")["source"], "file key node_id");
    assert_eq!(row("discovery_interval_sec")["source"], "default");
}

#[test]
fn bad_config_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "sample_interval_min_sec = [").unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "sampel_interval = 3\n").unwrap();
    let section = dir.path().join("section.toml");
    std::fs::write(&section, "[loggs]\nselect = \"all\"\n").unwrap();
    let servers = dir.path().join("servers.toml");
    std::fs::write(
        &servers,
        "[servers.\"d3b07384-d113-4ec6-a2f4-6c3b1f0e8a9f\"]\nprotocol = \"minecraft-java\"\nport = 70000\n",
    )
    .unwrap();
    let statics = dir.path().join("statics.toml");
    std::fs::write(
        &statics,
        "[[static_targets]]\naddress = \"10.0.0.5\"\nport = 27015\nprtocol = \"source-a2s\"\n",
    )
    .unwrap();
    for (path, needle) in [
        (bad.to_str().unwrap(), "TOML"),
        (unknown.to_str().unwrap(), "sampel_interval"),
        ("/nonexistent.toml", "nonexistent"),
        (section.to_str().unwrap(), "unknown section `loggs`"),
        (
            servers.to_str().unwrap(),
            "[servers.\"d3b07384-d113-4ec6-a2f4-6c3b1f0e8a9f\"]: port must be a number 1..65535",
        ),
        (
            statics.to_str().unwrap(),
            "[[static_targets]] #1: unknown key `prtocol`",
        ),
    ] {
        // `config` checks the whole file too, so a bad section cannot pass it silently.
        for action in ["run", "check", "config"] {
            let o = run(&[action, "--config", path], &[]);
            assert_eq!(o.status.code(), Some(2), "{action} {path}: {}", text(&o));
            assert!(text(&o).contains(needle), "{action} {path}: {}", text(&o));
        }
    }
}

#[test]
fn secrets_never_appear_in_any_output() {
    let secrets = [
        ("NODE_TOKEN", "tok-SECRET-1"),
        ("WINGS_TOKEN", "wings-SECRET-2"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20hdr-SECRET-3",
        ),
    ];
    let mut env: Vec<(&str, &str)> = secrets.to_vec();
    env.push(("ORCHESTRATOR_BASE_URL", "http://127.0.0.1:9"));
    env.push(("NODE_ID", "n1"));
    env.push(("LOG_LEVEL", "trace"));
    let outputs = [
        run(&["config"], &env),
        run(&["config", "--json"], &env),
        run(&["check"], &env),
        run(&["check", "--json"], &env),
        // An invalid value next to the secrets: the error must not echo them either.
        run(
            &["run"],
            &[env.as_slice(), &[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "x")]].concat(),
        ),
    ];
    for o in &outputs {
        let t = text(o);
        for s in ["SECRET-1", "SECRET-2", "SECRET-3"] {
            assert!(!t.contains(s), "secret {s} leaked:\n{t}");
        }
    }
    assert!(text(&outputs[0]).contains("[redacted"));
}

#[test]
fn help_and_version() {
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
    let help = text(&run(&["--help"], &[]));
    for needle in [
        "check",
        "config",
        "run",
        "AGENT_SAMPLE_INTERVAL_MIN_SEC",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "--log-format",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn check_reports_capabilities_and_fails_on_dead_endpoint() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let o = run(
        &["check", "--json"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["healthy"], false);
    assert_eq!(report["endpoint"]["ok"], false);
    assert!(
        report["resource"]["node.cpu.count"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert!(report["node"]["cpu"]["utilization"].is_array());

    let receiver = Receiver::start(&[]);
    let o = run(
        &["check", "--json"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url())],
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["endpoint"]["ok"], true, "{report}");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn docs_configuration_table_matches_the_settings() {
    // docs/configuration.md's table is `node-agent config --markdown`; a setting added without
    // updating the page (or a stale row) fails here.
    let o = run(&["config", "--markdown"], &[]);
    assert!(o.status.success());
    let table = String::from_utf8(o.stdout).unwrap();
    let page = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    assert!(
        page.contains(table.trim()),
        "docs/configuration.md's settings table is out of date; paste the output of `node-agent config --markdown`:\n{table}"
    );
}
