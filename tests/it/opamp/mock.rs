//! The HTTP transport against the real `@elastic/mockopampserver` 0.5.0 (npm), started per
//! test on loopback by `tests/peers/opamp_server.js` in its test mode, which keeps every exchange
//! (request headers, the decoded AgentToServer, the ServerToAgent sent back).

use super::*;
use crate::harness::{Proc, free_port, peers_dir, require};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

struct Mock {
    _proc: Proc,
    endpoint: String,
    control: u16,
}

impl Mock {
    fn start(bad_mode: Option<&str>, port: Option<u16>, tls_dir: Option<&Path>) -> Mock {
        let nm = require(&peers_dir().join("npm-opamp/node_modules"));
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join("tests/peers/opamp_server.js"))
            .arg(bad_mode.unwrap_or("-"))
            .args(port.map(|p| p.to_string()))
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
    fn set_config(&self, name: &str, content_type: &str, body: &str) {
        let port: u16 = self.endpoint.rsplit(':').next().unwrap()[..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let json = serde_json::json!({ name: { "body": body, "contentType": content_type } });
        let (status, _) = raw_http(port, "POST", "/api/agentConfigMap", Some(&json.to_string()));
        assert_eq!(status, 204);
    }
}

fn raw_http(port: u16, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = json.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // The control port answers without chunking (Content-Length), so the body is verbatim.
    (status, body.to_string())
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

fn remote_status(a2s: &Value) -> Option<(&str, String)> {
    let r = a2s.get("remoteConfigStatus")?;
    Some((
        r["status"].as_str().unwrap_or("UNSET"),
        r["lastRemoteConfigHash"].as_str().unwrap_or("").to_string(),
    ))
}

/// Registration with description, capabilities, health and effective configuration; then
/// compressed heartbeats, a health change reported alone, the bearer token and headers on every
/// request, AgentDisconnect at shutdown, the same instance UID after a restart, and no secret
/// in anything sent or logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_registration_heartbeat_health_goodbye_and_restart() {
    let mock = Mock::start(None, None, None);
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::new();
    let (h, tx) = start(client_config(&mock.endpoint, dir.path()), &agent);
    wait_for(Duration::from_secs(15), "two heartbeats", || {
        mock.a2s().len() >= 3
    })
    .await;
    assert!(h.status().connected, "{:?}", h.status());
    agent.set_healthy(false);
    h.report_changed();
    wait_for(Duration::from_secs(10), "health report", || {
        mock.a2s()
            .iter()
            .any(|a| a["health"]["healthy"].is_null() && a.get("health").is_some())
    })
    .await;
    let uid = h.status().instance_uid.clone();
    stop(h, tx).await;

    let reqs = mock.requests();
    let a2s: Vec<&Value> = reqs.iter().map(|r| &r["a2s"]).collect();
    let first = a2s[0];
    assert_eq!(uuid_text(&b64(first["instanceUid"].as_str().unwrap())), uid);
    assert_eq!(first["sequenceNum"], "1");
    // ReportsStatus|AcceptsRemoteConfig|ReportsEffectiveConfig|ReportsHealth|
    // ReportsRemoteConfig|ReportsHeartbeat.
    assert_eq!(
        first["capabilities"],
        (0x1u64 | 0x2 | 0x4 | 0x800 | 0x1000 | 0x2000).to_string()
    );
    let s = |v: Option<&Value>| v.map(|v| v["stringValue"].clone());
    assert_eq!(
        s(attr(first, "identifyingAttributes", "service.name")),
        Some("node-agent".into())
    );
    assert_eq!(
        s(attr(first, "identifyingAttributes", "service.version")),
        Some(env!("CARGO_PKG_VERSION").into())
    );
    assert_eq!(
        s(attr(first, "identifyingAttributes", "service.instance.id")),
        Some("node-it-1".into())
    );
    assert_eq!(
        s(attr(first, "nonIdentifyingAttributes", "host.name")),
        Some("it-host".into())
    );
    assert_eq!(
        attr(first, "nonIdentifyingAttributes", "node.cpu.count").unwrap()["intValue"],
        "8"
    );
    assert_eq!(first["health"]["healthy"], true);
    assert_eq!(first["health"]["status"], "running");
    assert!(first["health"]["componentHealthMap"]["exporter"].is_object());
    let eff = effective_body(first).unwrap();
    assert!(eff.contains("sample_interval_min_sec = \"10\""), "{eff}");
    assert!(
        eff.contains("node_token = \"[redacted, 17 chars]\""),
        "{eff}"
    );
    assert!(
        first.get("remoteConfigStatus").is_some(),
        "a full report carries it"
    );
    // The server found the first report complete: no ReportFullState in its answer.
    assert!(
        reqs[0]["s2a"]["flags"].as_str().unwrap_or("0") == "0",
        "{}",
        reqs[0]["s2a"]
    );

    // Sequence numbers are consecutive; heartbeats carry no status; the health change went
    // alone; the last message is the goodbye.
    for (i, a) in a2s.iter().enumerate() {
        assert_eq!(a["sequenceNum"], (i + 1).to_string());
    }
    let hb = a2s[1];
    for k in [
        "agentDescription",
        "health",
        "effectiveConfig",
        "remoteConfigStatus",
    ] {
        assert!(hb.get(k).is_none(), "heartbeat carries {k}: {hb}");
    }
    let change = a2s
        .iter()
        .find(|a| a.get("health").is_some() && a["sequenceNum"] != "1")
        .unwrap();
    assert_eq!(change["health"]["status"], "degraded");
    assert_eq!(
        change["health"]["componentHealthMap"]["exporter"]["lastError"],
        "collector unreachable"
    );
    assert!(change.get("agentDescription").is_none() && change.get("effectiveConfig").is_none());
    let last = a2s.last().unwrap();
    assert!(
        last.get("agentDisconnect").is_some(),
        "last message: {last}"
    );

    for r in &reqs {
        let hd = &r["headers"];
        assert_eq!(hd["authorization"], format!("Bearer {TOKEN}"));
        assert_eq!(hd["x-tenant"], HEADER_SECRET);
        assert_eq!(hd["content-type"], "application/x-protobuf");
        assert_eq!(hd["content-encoding"], "gzip");
        assert_eq!(hd["opamp-instance-uid"], uid.as_str());
        let a = &r["a2s"];
        assert_no_secret("an AgentToServer", &a.to_string());
        if let Some(body) = effective_body(a) {
            assert_no_secret("the effective configuration", &body);
        }
    }

    // A restart with the same state directory is the same agent, registering in full again.
    let before = mock.requests().len();
    let (h2, tx2) = start(client_config(&mock.endpoint, dir.path()), &TestAgent::new());
    wait_for(Duration::from_secs(10), "re-registration", || {
        mock.requests().len() > before
    })
    .await;
    assert_eq!(h2.status().instance_uid, uid);
    stop(h2, tx2).await;
    let again = &mock.a2s()[before];
    assert_eq!(uuid_text(&b64(again["instanceUid"].as_str().unwrap())), uid);
    assert_eq!(again["sequenceNum"], "1");
    assert!(again.get("agentDescription").is_some());
    assert_no_secret("the logs", &String::from_utf8_lossy(&logs().lock()));
    if std::env::var_os("DUMP_LOGS").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&logs().lock()));
    }
}

/// A remote configuration changes the sample interval (APPLYING, then APPLIED with the hash, the
/// new effective configuration, saved for offline starts, never applied twice); an invalid one
/// and a disallowed one are FAILED with a message naming the setting while the good one stays;
/// an offline restart reports the saved one as APPLIED and does not apply it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_remote_config_applied_failed_and_offline() {
    let mock = Mock::start(None, None, None);
    let good = "sample_interval_min_sec = 2\nsample_interval_max_sec = 2\n";
    mock.set_config("node-agent.toml", "application/toml", good);
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::new();
    assert_eq!(agent.sample_interval(), Duration::from_secs(10));
    let (h, tx) = start(client_config(&mock.endpoint, dir.path()), &agent);
    let applied =
        |h: &ClientHandle, want: &str| h.status().remote_config.is_some_and(|r| r.status == want);
    wait_for(Duration::from_secs(15), "APPLIED", || {
        applied(&h, "APPLIED")
    })
    .await;
    wait_for(Duration::from_secs(10), "APPLIED reported", || {
        mock.a2s()
            .iter()
            .any(|a| a["remoteConfigStatus"]["status"] == "RemoteConfigStatuses_APPLIED")
    })
    .await;
    assert_eq!(agent.sample_interval(), Duration::from_secs(2));
    let reqs = mock.requests();
    let offered = reqs
        .iter()
        .find_map(|r| r["s2a"]["remoteConfig"]["configHash"].as_str())
        .unwrap()
        .to_string();
    let statuses: Vec<(String, String)> = reqs
        .iter()
        .filter_map(|r| remote_status(&r["a2s"]).map(|(s, h)| (s.to_string(), h)))
        .collect();
    let applying = statuses
        .iter()
        .position(|s| s.0.ends_with("APPLYING"))
        .unwrap();
    let applied_at = statuses
        .iter()
        .position(|s| s.0.ends_with("APPLIED"))
        .unwrap();
    assert!(applying < applied_at, "{statuses:?}");
    assert_eq!(statuses[applied_at].1, offered);
    let applied_msg = reqs
        .iter()
        .map(|r| &r["a2s"])
        .find(|a| remote_status(a).is_some_and(|s| s.0.ends_with("APPLIED")))
        .unwrap();
    let eff = effective_body(applied_msg).expect("the new effective configuration goes along");
    assert!(eff.contains("sample_interval_min_sec = \"2\""), "{eff}");
    let saved = load_last_applied(dir.path()).unwrap().unwrap();
    assert_eq!(
        (saved.hash.clone(), saved.toml.as_str()),
        (b64(&offered), good)
    );

    // The server stops offering it (the hashes match), and it is never applied again.
    let n = mock.requests().len();
    wait_for(Duration::from_secs(10), "two more polls", || {
        mock.requests().len() >= n + 2
    })
    .await;
    assert_eq!(agent.apply_calls.load(Ordering::SeqCst), 1);
    assert!(
        mock.requests()[n..]
            .iter()
            .all(|r| r["s2a"].get("remoteConfig").is_none())
    );

    // Invalid: min above max. FAILED naming the setting; 2 s stays in force and on disk.
    mock.set_config(
        "node-agent.toml",
        "application/toml",
        "sample_interval_min_sec = 5\nsample_interval_max_sec = 1\n",
    );
    wait_for(Duration::from_secs(10), "FAILED", || applied(&h, "FAILED")).await;
    let err = h.status().remote_config.unwrap().error.unwrap();
    assert!(err.contains("sample_interval_min_sec"), "{err}");
    assert_eq!(agent.sample_interval(), Duration::from_secs(2));
    assert_eq!(
        load_last_applied(dir.path()).unwrap().unwrap().hash,
        b64(&offered)
    );
    wait_for(Duration::from_secs(10), "FAILED reported", || {
        mock.a2s().iter().any(|a| {
            a["remoteConfigStatus"]["status"] == "RemoteConfigStatuses_FAILED"
                && a["remoteConfigStatus"]["errorMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains("sample_interval_min_sec"))
        })
    })
    .await;

    // Disallowed by the local allow-list: refused before the agent sees it.
    mock.set_config(
        "node-agent.toml",
        "application/toml",
        "otlp_endpoint = \"http://attacker.example:4318\"\n",
    );
    let calls = agent.apply_calls.load(Ordering::SeqCst);
    wait_for(Duration::from_secs(10), "FAILED (allow-list)", || {
        h.status()
            .remote_config
            .and_then(|r| r.error)
            .is_some_and(|e| e.contains("otlp_endpoint"))
    })
    .await;
    let err = h.status().remote_config.unwrap().error.unwrap();
    assert!(
        err.contains("opamp_remote_config_allow") && !err.contains("attacker"),
        "{err}"
    );
    assert_eq!(agent.apply_calls.load(Ordering::SeqCst), calls);

    // Not ours (JSON for another agent type): FAILED, nothing applied.
    mock.set_config(
        "elastic",
        "application/json",
        "{\"logging_level\":\"debug\"}",
    );
    wait_for(Duration::from_secs(10), "FAILED (no TOML)", || {
        h.status()
            .remote_config
            .and_then(|r| r.error)
            .is_some_and(|e| e.contains("no entry named *.toml"))
    })
    .await;
    assert_eq!(agent.sample_interval(), Duration::from_secs(2));
    stop(h, tx).await;
    let audit = std::fs::read_to_string(dir.path().join("opamp-audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 4, "{audit}");
    assert!(
        !audit.contains("attacker"),
        "values are not audited: {audit}"
    );

    // Offline start: the saved configuration (checked against the allow-list again) is in
    // force before any server is reached; then the server offers the same one again.
    let agent2 = TestAgent::new();
    let (saved, layer) = offline_layer(dir.path(), &AllowList::default())
        .unwrap()
        .unwrap();
    agent2.apply_remote_config(&layer).unwrap();
    assert_eq!(agent2.sample_interval(), Duration::from_secs(2));
    mock.set_config("node-agent.toml", "application/toml", good);
    let before = mock.requests().len();
    let mut cfg = client_config(&mock.endpoint, dir.path());
    cfg.remote_in_force = Some(saved);
    let (h2, tx2) = start(cfg, &agent2);
    wait_for(Duration::from_secs(10), "two polls", || {
        mock.requests().len() >= before + 2
    })
    .await;
    stop(h2, tx2).await;
    let reqs = mock.requests();
    let first = &reqs[before]["a2s"];
    assert_eq!(
        remote_status(first),
        Some(("RemoteConfigStatuses_APPLIED", offered.clone()))
    );
    assert!(
        reqs[before..]
            .iter()
            .all(|r| r["s2a"].get("remoteConfig").is_none())
    );
    assert_eq!(
        agent2.apply_calls.load(Ordering::SeqCst),
        1,
        "only the offline one"
    );
    assert_no_secret("the logs", &String::from_utf8_lossy(&logs().lock()));
}

/// UNAVAILABLE with RetryInfo (42 s in the mock's bad mode): the client waits that long instead
/// of its 1 s backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_unavailable_retry_info_is_honoured() {
    let mock = Mock::start(Some("server_error_response_unavailable"), None, None);
    let dir = tempfile::tempdir().unwrap();
    let (h, tx) = start(client_config(&mock.endpoint, dir.path()), &TestAgent::new());
    wait_for(Duration::from_secs(10), "first request", || {
        !mock.requests().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(mock.requests().len(), 1, "retried before the server's 42 s");
    let st = h.status();
    assert!(!st.connected);
    let e = st.last_error.unwrap();
    assert!(
        e.contains("unavailable") && e.contains("retry after 42s"),
        "{e}"
    );
    stop(h, tx).await;
}

/// The server goes away and comes back empty (restarted, state lost): the client backs off,
/// reconnects and registers in full, so the server knows it again without asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_restart_gets_a_full_registration() {
    let port = free_port();
    let mock = Mock::start(None, Some(port), None);
    let dir = tempfile::tempdir().unwrap();
    let (h, tx) = start(client_config(&mock.endpoint, dir.path()), &TestAgent::new());
    wait_for(Duration::from_secs(10), "registration", || {
        mock.requests().len() >= 2
    })
    .await;
    drop(mock);
    wait_for(Duration::from_secs(10), "disconnect noticed", || {
        !h.status().connected
    })
    .await;
    let mock = Mock::start(None, Some(port), None);
    wait_for(Duration::from_secs(20), "re-registration", || {
        !mock.requests().is_empty()
    })
    .await;
    let first = &mock.requests()[0];
    assert!(first["a2s"].get("agentDescription").is_some(), "{first}");
    assert!(
        first["a2s"]["sequenceNum"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 2
    );
    assert!(
        first["s2a"]["flags"].as_str().unwrap_or("0") == "0",
        "{}",
        first["s2a"]
    );
    wait_for(Duration::from_secs(5), "connected", || h.status().connected).await;
    stop(h, tx).await;
}

/// HTTPS with mutual TLS against the mock: the CA file and client certificate work; without the
/// CA the server certificate is refused; without a client certificate the server refuses; the
/// explicit insecure flag skips verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_over_mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let mock = Mock::start(None, None, Some(certs.path()));
    assert!(mock.endpoint.starts_with("https://"), "{}", mock.endpoint);
    let read = |f: &str| std::fs::read(certs.path().join(f)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let with = |ca: bool, client: bool, insecure: bool| {
        let mut c = client_config(&mock.endpoint, dir.path());
        c.tls.ca_pem = ca.then(|| read("ca.crt"));
        c.tls.client_cert_pem = client.then(|| read("client.crt"));
        c.tls.client_key_pem = client.then(|| read("client.key"));
        c.tls.insecure_skip_verify = insecure;
        c
    };
    let (h, tx) = start(with(true, true, false), &TestAgent::new());
    wait_for(Duration::from_secs(10), "registration over mTLS", || {
        h.status().connected
    })
    .await;
    stop(h, tx).await;
    let seen = mock.requests().len();
    assert!(seen >= 1);

    for (ca, client, want) in [
        (false, true, "unknownissuer"),
        (true, false, "certificaterequired"),
    ] {
        let (h, tx) = start(with(ca, client, false), &TestAgent::new());
        wait_for(Duration::from_secs(10), "a failure", || {
            h.status().last_error.is_some()
        })
        .await;
        let e = h.status().last_error.unwrap();
        assert!(e.to_lowercase().contains(want), "{e}");
        assert!(!h.status().connected);
        stop(h, tx).await;
    }
    assert_eq!(
        mock.requests().len(),
        seen,
        "refused connections reached the server"
    );

    let (h, tx) = start(with(false, true, true), &TestAgent::new());
    wait_for(Duration::from_secs(10), "insecure connection", || {
        h.status().connected
    })
    .await;
    stop(h, tx).await;
}
