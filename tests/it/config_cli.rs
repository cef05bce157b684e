//! The command line and configuration as an operator meets them: invalid input stops the agent
//! with exit code 2 and a message that names the setting; secrets never appear in any output.

use crate::harness::*;
use std::process::{Output, Stdio};
use std::time::Duration;

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
    // Careless input (issues 17 and 19): devices and FIFOs as files, absurd intervals, a log
    // filter that does not parse.
    (
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/dev/zero")],
        "otlp_certificate",
    ),
    (
        &[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/dev/urandom")],
        "otlp_client_key",
    ),
    (
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/tmp")],
        "otlp_certificate",
    ),
    (&[("NODE_AGENT_NVML_LIBRARY", "/dev/null")], "nvml_library"),
    (&[("WINGS_CONFIG", "/dev/zero")], "wings_config"),
    (&[("NODE_TOKEN_FILE", "/dev/zero")], "node_token_file"),
    (
        &[("WINGS_TOKEN_FILE", "/nonexistent/token")],
        "wings_token_file",
    ),
    (&[("LOG_LEVEL", "nonsense=[")], "log_level"),
    (&[("RUST_LOG", "verbose")], "log_level"),
    (
        &[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1e-9")],
        "sample_interval_min_sec",
    ),
    (
        &[("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.09")],
        "sample_interval_min_sec",
    ),
    (
        &[("AGENT_SAMPLE_INTERVAL_MAX_SEC", "86401")],
        "sample_interval_max_sec",
    ),
    (
        &[("AGENT_DISCOVERY_INTERVAL_SEC", "inf")],
        "discovery_interval_sec",
    ),
    (
        &[("NODE_AGENT_SHUTDOWN_GRACE_SEC", "1e300")],
        "shutdown_grace_sec",
    ),
    (&[("AGENT_HTTP_TIMEOUT_SEC", "0.01")], "http_timeout_sec"),
    (
        &[("NODE_AGENT_FILESYSTEM_TIMEOUT_MS", "18446744073709551615")],
        "filesystem_timeout_ms",
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
fn careless_files_and_bounds_fail_fast() {
    // A device as a certificate is refused without reading it (it once grew the agent to 3 GB).
    let started = std::time::Instant::now();
    let o = run(&["run"], &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/dev/zero")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(text(&o).contains("character device"), "{}", text(&o));
    // A FIFO without a writer would block a plain open(2) forever.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.pem");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let o = run(
        &["check"],
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", fifo.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("FIFO"), "{}", text(&o));
    // The edges of the interval range are accepted: 100 ms (the tests run that fast) and a day.
    for (k, v) in [
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.1"),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "86400"),
        ("LOG_LEVEL", "warn,node_agent=debug"),
        ("NODE_AGENT_FILESYSTEM_TIMEOUT_MS", "86400000"),
    ] {
        let o = run(&["config"], &[(k, v)]);
        assert!(o.status.success(), "{k}={v}: {}", text(&o));
    }
}

/// Direct mode against the decoding receiver, which answers 401 unless the token is right.
fn direct_mode_delivers(token_file: &std::path::Path, expect_warning: bool) {
    let receiver = Receiver::start(&["--token", "file-token-42"]);
    let spool = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_with(
        log_dir.path(),
        "agent",
        &[
            ("ORCHESTRATOR_BASE_URL", &receiver.url()),
            ("NODE_ID", "n-file"),
            ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.3"),
            ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.3"),
            ("NODE_AGENT_SPOOL_DIR", spool.path().to_str().unwrap()),
            ("LOG_LEVEL", "trace"),
        ],
        &["run", "--node-token-file", token_file.to_str().unwrap()],
    );
    wait_until(Duration::from_secs(30), "requests at the receiver", || {
        receiver.requests().len() >= 2
    });
    let (_, log) = agent.stop(Duration::from_secs(20));
    for r in receiver.requests() {
        assert_eq!(r["auth"], "Bearer file-token-42");
    }
    assert!(
        !log.contains("file-token-42"),
        "the token is in the log:\n{log}"
    );
    assert_eq!(
        log.contains("can be read by group or others"),
        expect_warning,
        "{log}"
    );
}

#[test]
fn tokens_from_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-token-42\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    direct_mode_delivers(&file, false);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    direct_mode_delivers(&file, true);
    // The Wings token file works the same way (shown redacted by `config`).
    let o = run(
        &["config", "--wings-token-file", file.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("(mode 0644)"), "{}", text(&o));
    assert!(!text(&o).contains("file-token-42"));
    // Both a token and its file: which one is meant? Exit 2.
    let o = run(
        &["run", "--node-token-file", file.to_str().unwrap()],
        &[("NODE_TOKEN", "other-SECRET")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("node_token_file") && !text(&o).contains("other-SECRET"));
    // A file of two lines, or an empty one, is not a token.
    for content in ["a\nb\n", "\n"] {
        std::fs::write(&file, content).unwrap();
        let o = run(
            &["config", "--node-token-file", file.to_str().unwrap()],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{content:?}: {}", text(&o));
        assert!(text(&o).contains("node_token_file"));
    }
}

#[test]
fn secret_flags_warn_in_help_and_at_start() {
    let help = text(&run(&["--help"], &[]));
    for flag in ["--node-token ", "--wings-token ", "--otlp-headers "] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing"));
        let entry = &help[at..help[at..].find("\n  -").map_or(help.len(), |e| at + e)];
        assert!(
            entry.contains("visible to every local user in ps"),
            "{entry}"
        );
    }
    assert!(help.contains("--node-token-file") && help.contains("--wings-token-file"));
    let o = run(
        &[
            "config",
            "--node-token",
            "flag-SECRET-9",
            "--otlp-headers",
            "a=flag-SECRET-8",
        ],
        &[],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("node_token: given as --node-token"), "{t}");
    assert!(t.contains("otlp_headers: given as --otlp-headers"), "{t}");
    assert!(!t.contains("flag-SECRET"), "{t}");
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
        ("/dev/zero", "character device"),
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
