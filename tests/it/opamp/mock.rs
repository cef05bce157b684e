//! The agent against the real `@elastic/mockopampserver` 0.5.0 (npm, HTTP transport), started
//! per test on loopback by `tests/peers/opamp_server.js` in its test mode, which keeps every
//! exchange (request headers, the decoded AgentToServer, the ServerToAgent sent back) and lets
//! the test change the offered remote configuration through the server's own API.

use super::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

struct Mock {
    _proc: Proc,
    endpoint: String,
    control: u16,
}

impl Mock {
    fn start(bad_mode: Option<&str>, tls_dir: Option<&Path>) -> Mock {
        let nm = require(&peers_dir().join("npm-opamp/node_modules"));
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join("tests/peers/opamp_server.js"))
            .arg(bad_mode.unwrap_or("-"))
            .env("NODE_PATH", nm)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(d) = tls_dir {
            cmd.env("OPAMP_TLS_DIR", d);
        }
        let mut proc = Proc::spawn("opamp_server.js", &mut cmd);
        let mut line = String::new();
        BufReader::new(proc.child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("mock server did not start ({e}): {line}"));
        Mock {
            _proc: proc,
            endpoint: v["endpoint"].as_str().unwrap().to_string(),
            control: v["control"].as_u64().unwrap() as u16,
        }
    }

    /// Every exchange the server saw: request headers, AgentToServer, ServerToAgent.
    fn requests(&self) -> Vec<Value> {
        let (_, body) = raw_http(self.control, "GET", "/requests", None);
        serde_json::from_str(&body).unwrap()
    }

    fn a2s(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .map(|r| r["a2s"].clone())
            .collect()
    }

    /// Sets the offered remote configuration through the server's own test API.
    fn set_config(&self, body: &str) {
        let port: u16 = self.endpoint.rsplit(':').next().unwrap()[..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let json = serde_json::json!({
            "node-agent.toml": { "body": body, "contentType": "application/toml" }
        });
        let (status, _) = raw_http(port, "POST", "/api/agentConfigMap", Some(&json.to_string()));
        assert_eq!(status, 204);
    }

    /// The first remote-config status `want` (`APPLIED`, `FAILED`) reported after request
    /// `from`, with its hash (base64) and error message.
    fn remote_status(&self, from: usize, want: &str) -> Option<(String, String)> {
        self.a2s().iter().skip(from).find_map(|a| {
            let r = &a["remoteConfigStatus"];
            (r["status"] == format!("RemoteConfigStatuses_{want}")).then(|| {
                (
                    r["lastRemoteConfigHash"].as_str().unwrap_or("").to_string(),
                    r["errorMessage"].as_str().unwrap_or("").to_string(),
                )
            })
        })
    }
}

fn attr<'a>(a2s: &'a Value, list: &str, key: &str) -> Option<&'a Value> {
    a2s["agentDescription"][list]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

fn effective_body(a2s: &Value) -> Option<String> {
    let f = &a2s["effectiveConfig"]["configMap"]["configMap"]["node-agent.toml"];
    f["body"]
        .as_str()
        .map(|b| String::from_utf8(b64(b)).unwrap())
}

fn proc_cpu_count() -> i64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as i64
}

fn mem_total_bytes() -> i64 {
    let kb: i64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

/// Registration with the description (the same values as the OTLP Resource at the receiver,
/// checked against /proc), capabilities, health and the effective configuration with secrets
/// redacted; compressed heartbeats with consecutive sequence numbers; the bearer token and extra
/// header on every request; AgentDisconnect at shutdown; the same instance UID after a restart;
/// `check` shows the connection; no secret in anything sent or logged.
#[test]
fn agent_registers_reports_health_and_config_and_says_goodbye() {
    let mock = Mock::start(None, None);
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fast = [
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.5"),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.5"),
        ("LOG_LEVEL", "trace"),
    ];
    let agent = start_agent(
        dir.path(),
        "a1",
        &mock.endpoint,
        Some(&receiver),
        port,
        &fast,
    );
    wait_until(
        Duration::from_secs(20),
        "registration and heartbeats",
        || mock.a2s().len() >= 4 && !node_times(&receiver).is_empty(),
    );
    let st = opamp_status(port);
    assert_eq!(st["connected"], true, "{st}");
    let uid = st["instance_uid"].as_str().unwrap().to_string();
    let resource = receiver.metrics().last().unwrap()["resource"].clone();
    // The collector goes away: the exporter's health changes, and that change alone is reported.
    drop(receiver);
    wait_until(
        Duration::from_secs(20),
        "the exporter's health reported",
        || {
            mock.a2s().iter().any(|a| {
                a["health"]["componentHealthMap"]["exporter"]["status"] == "retrying"
                    && a.get("agentDescription").is_none()
            })
        },
    );
    let (_, log) = agent.stop(Duration::from_secs(20));

    let reqs = mock.requests();
    let a2s: Vec<&Value> = reqs.iter().map(|r| &r["a2s"]).collect();
    let first = a2s[0];
    assert_eq!(uuid_text(&b64(first["instanceUid"].as_str().unwrap())), uid);
    assert_eq!(first["sequenceNum"], "1");
    // ReportsStatus|ReportsEffectiveConfig|ReportsHealth|ReportsRemoteConfig|ReportsHeartbeat;
    // no AcceptsRemoteConfig: remote configuration is off by default.
    assert_eq!(
        first["capabilities"],
        (0x1u64 | 0x4 | 0x800 | 0x1000 | 0x2000).to_string()
    );
    let s = |v: Option<&Value>| v.and_then(|v| v["stringValue"].as_str()).map(String::from);
    assert_eq!(
        s(attr(first, "identifyingAttributes", "service.name")).as_deref(),
        Some("node-agent")
    );
    assert_eq!(
        s(attr(first, "identifyingAttributes", "service.version")).as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        s(attr(first, "identifyingAttributes", "service.instance.id")).as_deref(),
        Some("node-it-1")
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        s(attr(first, "nonIdentifyingAttributes", "host.name")).as_deref(),
        Some(hostname.trim())
    );
    assert_eq!(
        s(attr(first, "nonIdentifyingAttributes", "os.type")).as_deref(),
        Some("linux")
    );
    // The first report waits for the first node sample: real capabilities, not zeros.
    let int = |a: &Value, k: &str| {
        attr(a, "nonIdentifyingAttributes", k)
            .map(|v| v["intValue"].as_str().unwrap().parse::<i64>().unwrap())
    };
    assert_eq!(int(first, "node.cpu.count"), Some(proc_cpu_count()));
    assert_eq!(int(first, "node.memory.total"), Some(mem_total_bytes()));
    assert!(int(first, "node.disk.total").unwrap() > 0);
    // The same values as the OTLP Resource the receiver decoded.
    let described = a2s
        .iter()
        .rev()
        .find(|a| a.get("agentDescription").is_some())
        .unwrap();
    for list in ["identifyingAttributes", "nonIdentifyingAttributes"] {
        for kv in described["agentDescription"][list].as_array().unwrap() {
            let key = kv["key"].as_str().unwrap();
            let v = &kv["value"];
            let ours = v["stringValue"]
                .as_str()
                .map(Value::from)
                .or_else(|| {
                    v["intValue"]
                        .as_str()
                        .map(|i| Value::from(i.parse::<i64>().unwrap()))
                })
                .unwrap_or_else(|| panic!("{key}: {v}"));
            assert_eq!(
                resource[key], ours,
                "{key}: OpAMP {v} vs OTLP {}",
                resource[key]
            );
        }
    }
    // Health: the agent and one component per part.
    let health = &first["health"];
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["status"], "running");
    let parts = health["componentHealthMap"].as_object().unwrap();
    for part in ["node", "containers", "exporter", "players"] {
        assert!(parts.contains_key(part), "no {part} in {health}");
    }
    assert_eq!(parts["node"]["status"], "ok");
    assert_eq!(parts["node"]["healthy"], true);
    // The effective configuration: TOML, every secret redacted, sources shown.
    let eff = effective_body(first).unwrap();
    let parsed: toml::Table = eff.parse().unwrap_or_else(|e| panic!("{e}: {eff}"));
    assert_eq!(parsed["sample_interval_min_sec"].as_str(), Some("0.5"));
    let otlp_headers = format!("x-api-key={OTLP_HEADER_SECRET}");
    for (key, secret) in [
        ("node_token", NODE_TOKEN),
        ("opamp_token", TOKEN),
        ("opamp_headers", &*format!("x-tenant={HEADER_SECRET}")),
        ("otlp_headers", &*otlp_headers),
    ] {
        let want = format!("[redacted, {} chars]", secret.chars().count());
        assert_eq!(parsed[key].as_str(), Some(want.as_str()), "{key}");
    }
    assert!(eff.contains("# env NODE_AGENT_OPAMP_ENDPOINT"), "{eff}");
    assert!(
        first.get("remoteConfigStatus").is_some(),
        "a full report carries it"
    );
    assert_eq!(
        reqs[0]["s2a"]["flags"].as_str().unwrap_or("0"),
        "0",
        "the server found it complete"
    );

    // Consecutive sequence numbers; heartbeats carry nothing; the last message is the goodbye.
    for (i, a) in a2s.iter().enumerate() {
        assert_eq!(a["sequenceNum"], (i + 1).to_string(), "{a}");
    }
    let heartbeats = a2s
        .iter()
        .filter(|a| {
            [
                "agentDescription",
                "health",
                "effectiveConfig",
                "remoteConfigStatus",
                "agentDisconnect",
            ]
            .iter()
            .all(|k| a.get(*k).is_none())
        })
        .count();
    assert!(heartbeats >= 1, "no plain heartbeat");
    assert!(
        a2s.last().unwrap().get("agentDisconnect").is_some(),
        "{}",
        a2s.last().unwrap()
    );

    for r in &reqs {
        let hd = &r["headers"];
        assert_eq!(hd["authorization"], format!("Bearer {TOKEN}"));
        assert_eq!(hd["x-tenant"], HEADER_SECRET);
        assert_eq!(hd["content-type"], "application/x-protobuf");
        assert_eq!(hd["opamp-instance-uid"], uid.as_str());
        assert_no_secret("an AgentToServer", &r["a2s"].to_string());
        if let Some(body) = effective_body(&r["a2s"]) {
            assert_no_secret("the effective configuration", &body);
        }
    }
    let change = a2s
        .iter()
        .find(|a| a["health"]["componentHealthMap"]["exporter"]["status"] == "retrying")
        .unwrap();
    assert!(change["health"]["componentHealthMap"]["exporter"]["lastError"].is_string());
    assert!(
        change.get("effectiveConfig").is_none(),
        "only the health changed"
    );
    assert!(log.contains("OpAMP: sent AgentDisconnect"), "{log}");
    assert_no_secret("the agent's log (trace)", &log);

    // A restart with the same state directory is the same agent, registering in full again.
    let before = mock.requests().len();
    let agent = start_agent(dir.path(), "a2", &mock.endpoint, None, port, &[]);
    wait_until(Duration::from_secs(20), "re-registration", || {
        mock.requests().len() > before
    });
    let (_, log) = agent.stop(Duration::from_secs(20));
    let again = &mock.a2s()[before];
    assert_eq!(uuid_text(&b64(again["instanceUid"].as_str().unwrap())), uid);
    assert_eq!(again["sequenceNum"], "1");
    assert!(again.get("agentDescription").is_some());
    assert_no_secret("the agent's log", &log);

    // `check` shows the connection (one exchange with the agent's UID), without secrets.
    let out = agent_command()
        .args(["check", "--json"])
        .envs([
            ("NODE_AGENT_OPAMP_ENDPOINT", mock.endpoint.as_str()),
            ("NODE_AGENT_OPAMP_TOKEN", TOKEN),
            (
                "NODE_AGENT_STATE_DIR",
                dir.path().join("state").to_str().unwrap(),
            ),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("NODE_AGENT_GPU", "off"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let opamp = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "opamp")
        .unwrap_or_else(|| panic!("no opamp in {text}"));
    assert_eq!(opamp["ok"], true, "{opamp}");
    let detail = opamp["detail"].as_str().unwrap();
    assert!(
        detail.contains(&uid) && detail.contains("answered"),
        "{detail}"
    );
    assert_no_secret(
        "check",
        &format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    );
}

/// Remote configuration end to end: a TOML offer changes the sample interval live (seen in the
/// timestamps of the samples the receiver gets), reported APPLYING then APPLIED with the hash
/// and the new effective configuration; an invalid offer, one that changes a setting read only
/// at start, and one the allow-list refuses are FAILED naming the setting while the good one
/// stays in force; the audit log has each outcome; and a restart with the server gone runs with
/// the saved configuration (offline mode).
#[test]
fn remote_config_changes_the_sample_interval_live_and_survives_offline() {
    let mock = Mock::start(None, None);
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node-agent.toml");
    std::fs::write(
        &file,
        "sample_interval_min_sec = 3\nsample_interval_max_sec = 3\n",
    )
    .unwrap();
    let port = free_port();
    let env = [
        ("NODE_AGENT_CONFIG", file.to_str().unwrap()),
        ("NODE_AGENT_OPAMP_REMOTE_CONFIG", "true"),
        (
            "NODE_AGENT_OPAMP_REMOTE_CONFIG_ALLOW",
            "default,otlp_timeout_ms",
        ),
    ];
    let agent = start_agent(
        dir.path(),
        "r1",
        &mock.endpoint,
        Some(&receiver),
        port,
        &env,
    );
    wait_until(Duration::from_secs(30), "two samples at 3 s", || {
        node_times(&receiver).len() >= 2
    });
    let first = mock.a2s()[0].clone();
    assert_eq!(
        first["capabilities"],
        (0x1u64 | 0x2 | 0x4 | 0x800 | 0x1000 | 0x2000).to_string(),
        "AcceptsRemoteConfig when on"
    );

    let good = "sample_interval_min_sec = 1\nsample_interval_max_sec = 1\n";
    let n = mock.requests().len();
    mock.set_config(good);
    wait_until(Duration::from_secs(15), "APPLIED", || {
        mock.remote_status(n, "APPLIED").is_some()
    });
    let applied_at = now_ns();
    let (hash, _) = mock.remote_status(n, "APPLIED").unwrap();
    wait_until(
        Duration::from_secs(20),
        "four samples after the change",
        || {
            node_times(&receiver)
                .iter()
                .filter(|t| **t > applied_at)
                .count()
                >= 4
        },
    );
    let times = node_times(&receiver);
    let (before, after): (Vec<u64>, Vec<u64>) =
        times.iter().partition(|t| **t < applied_at - 1_000_000_000);
    for g in gaps(&before) {
        assert!(
            (2.5..4.5).contains(&g),
            "gap {g} s before the change: {times:?}"
        );
    }
    // The first gap after the change may still be the old interval (the loop was asleep).
    let after_gaps = gaps(&after);
    for g in &after_gaps[1..] {
        assert!(
            (0.5..2.0).contains(g),
            "gap {g} s after the change: {after_gaps:?}"
        );
    }
    let reqs = mock.requests();
    let offered = reqs
        .iter()
        .find_map(|r| r["s2a"]["remoteConfig"]["configHash"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(hash, offered);
    let statuses: Vec<&str> = reqs
        .iter()
        .filter_map(|r| r["a2s"]["remoteConfigStatus"]["status"].as_str())
        .collect();
    let applying = statuses
        .iter()
        .position(|s| s.ends_with("APPLYING"))
        .unwrap();
    let applied = statuses
        .iter()
        .position(|s| s.ends_with("APPLIED"))
        .unwrap();
    assert!(applying < applied, "{statuses:?}");
    let applied_msg = reqs
        .iter()
        .map(|r| &r["a2s"])
        .find(|a| a["remoteConfigStatus"]["status"] == "RemoteConfigStatuses_APPLIED")
        .unwrap();
    let eff = effective_body(applied_msg).expect("the new effective configuration goes along");
    assert!(
        eff.contains("sample_interval_min_sec = \"1\" # remote key sample_interval_min_sec"),
        "{eff}"
    );
    let st = opamp_status(port);
    assert_eq!(st["remote_config"]["status"], "APPLIED", "{st}");
    assert_eq!(st["remote_config"]["hash"], super::hex(&b64(&offered)));

    // Refused offers: FAILED naming the setting, the 1 s interval stays.
    for (doc, want) in [
        (
            "sample_interval_min_sec = 5\nsample_interval_max_sec = 1\n",
            "sample_interval_min_sec",
        ),
        (
            "otlp_timeout_ms = 5000\n",
            "`otlp_timeout_ms` cannot change while the agent runs",
        ),
        (
            "otlp_endpoint = \"http://attacker.example:4318\"\n",
            "`otlp_endpoint` may not be set remotely on this node; the local opamp_remote_config_allow",
        ),
    ] {
        let n = mock.requests().len();
        mock.set_config(doc);
        wait_until(Duration::from_secs(15), want, || {
            mock.remote_status(n, "FAILED").is_some()
        });
        let (_, error) = mock.remote_status(n, "FAILED").unwrap();
        assert!(error.contains(want), "{error}");
        assert!(!error.contains("attacker"), "{error}");
        let st = opamp_status(port);
        assert_eq!(st["remote_config"]["status"], "FAILED", "{st}");
    }
    let failed_at = now_ns();
    wait_until(
        Duration::from_secs(15),
        "samples after the refusals",
        || {
            node_times(&receiver)
                .iter()
                .filter(|t| **t > failed_at)
                .count()
                >= 3
        },
    );
    let late: Vec<u64> = node_times(&receiver)
        .into_iter()
        .filter(|t| *t > failed_at)
        .collect();
    for g in gaps(&late) {
        assert!((0.5..2.0).contains(&g), "the good interval stays: gap {g}");
    }
    let (_, log) = agent.stop(Duration::from_secs(20));
    assert_no_secret("the agent's log", &log);
    let audit = std::fs::read_to_string(dir.path().join("state/opamp-audit.jsonl")).unwrap();
    let statuses: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["APPLIED", "FAILED", "FAILED", "FAILED"],
        "{audit}"
    );
    assert!(
        !audit.contains("attacker"),
        "values are not audited: {audit}"
    );

    // Offline: the server is gone; the agent starts with the saved configuration (1 s).
    drop(mock);
    let started = now_ns();
    let agent = start_agent(
        dir.path(),
        "r2",
        "http://127.0.0.1:9/v1/opamp",
        Some(&receiver),
        port,
        &env,
    );
    wait_until(Duration::from_secs(20), "three samples offline", || {
        node_times(&receiver)
            .iter()
            .filter(|t| **t > started)
            .count()
            >= 3
    });
    let offline: Vec<u64> = node_times(&receiver)
        .into_iter()
        .filter(|t| *t > started)
        .collect();
    for g in gaps(&offline) {
        assert!((0.5..2.0).contains(&g), "offline gap {g} s: {offline:?}");
    }
    let st = opamp_status(port);
    assert_eq!(st["connected"], false, "{st}");
    assert_eq!(st["remote_config"]["status"], "APPLIED", "{st}");
    assert_eq!(st["remote_config"]["hash"], super::hex(&b64(&offered)));
    let (_, log) = agent.stop(Duration::from_secs(20));
    assert!(
        log.contains("starting with the last applied remote configuration"),
        "{log}"
    );
}

/// UNAVAILABLE with RetryInfo (42 s in the mock's bad mode): the agent waits that long instead of
/// its 1 s backoff, and says so in /readyz.
#[test]
fn unavailable_with_retry_info_is_honoured() {
    let mock = Mock::start(Some("server_error_response_unavailable"), None);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent = start_agent(dir.path(), "u", &mock.endpoint, None, port, &[]);
    wait_until(Duration::from_secs(20), "the refusal", || {
        opamp_status(port)["last_error"].is_string()
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mock.requests().len(), 1, "retried before the server's 42 s");
    let st = opamp_status(port);
    let e = st["last_error"].as_str().unwrap();
    assert!(
        e.contains("unavailable") && e.contains("retry after 42s"),
        "{e}"
    );
    assert_eq!(st["connected"], false);
    agent.stop(Duration::from_secs(20));
}

/// HTTPS with mutual TLS against the mock: the CA file and the client certificate settings work;
/// without the client certificate the server refuses and /readyz says why.
#[test]
fn mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let mock = Mock::start(None, Some(certs.path()));
    assert!(mock.endpoint.starts_with("https://"), "{}", mock.endpoint);
    let f = |n: &str| certs.path().join(n).to_str().unwrap().to_string();
    let (ca, cert, key) = (f("ca.crt"), f("client.crt"), f("client.key"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tls = [
        ("NODE_AGENT_OPAMP_CERTIFICATE", ca.as_str()),
        ("NODE_AGENT_OPAMP_CLIENT_CERTIFICATE", cert.as_str()),
        ("NODE_AGENT_OPAMP_CLIENT_KEY", key.as_str()),
    ];
    let agent = start_agent(dir.path(), "tls", &mock.endpoint, None, port, &tls);
    wait_until(Duration::from_secs(20), "registration over mTLS", || {
        opamp_status(port)["connected"] == true
    });
    agent.stop(Duration::from_secs(20));
    let seen = mock.requests().len();

    let agent = start_agent(dir.path(), "tls2", &mock.endpoint, None, port, &tls[..1]);
    wait_until(Duration::from_secs(20), "a refusal", || {
        opamp_status(port)["last_error"].is_string()
    });
    let e = opamp_status(port)["last_error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(e.contains("certificaterequired"), "{e}");
    agent.stop(Duration::from_secs(20));
    assert_eq!(
        mock.requests().len(),
        seen,
        "a refused connection reached the server"
    );
}
