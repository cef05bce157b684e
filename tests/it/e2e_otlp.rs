//! End to end: the real `node-agent` binary exports to the real rotel collector (gRPC and HTTP),
//! which relays to a receiver that decodes with the reference Python `opentelemetry-proto`
//! classes. The test checks the metric contract (names, units, kinds, attribute keys, resource)
//! and the values against /proc read independently by the test itself.

use crate::harness::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

const INTERVAL: &str = "0.4";

/// `(name, unit, kind, monotonic)` of every node metric in the contract.
const NODE_CONTRACT: &[(&str, &str, &str, Option<bool>)] = &[
    ("system.cpu.utilization", "1", "gauge", None),
    ("system.cpu.time", "s", "sum", Some(true)),
    ("system.cpu.logical.count", "{cpu}", "sum", Some(false)),
    ("system.memory.usage", "By", "sum", Some(false)),
    ("system.memory.limit", "By", "sum", Some(false)),
    ("system.memory.utilization", "1", "gauge", None),
    ("system.filesystem.usage", "By", "sum", Some(false)),
    ("system.filesystem.limit", "By", "sum", Some(false)),
    ("system.filesystem.utilization", "1", "gauge", None),
    ("system.disk.io", "By", "sum", Some(true)),
    ("system.network.io", "By", "sum", Some(true)),
    ("system.uptime", "s", "gauge", None),
];

/// The test's own reading of /proc/stat: ticks per mode in the contract's order.
fn proc_stat_ticks() -> [u64; 7] {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let line = text.lines().find(|l| l.starts_with("cpu ")).unwrap();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    [f[0], f[1], f[2], f[3], f[4], f[5] + f[6], f[7]]
}

const MODES: [&str; 7] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "interrupt",
    "steal",
];

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn meminfo_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// Requests that carry a node sample (they have system.cpu.time).
fn node_requests(receiver: &Receiver) -> Vec<Value> {
    receiver.requests_with("system.cpu.time")
}

fn metric<'a>(request: &'a Value, name: &str) -> Option<&'a Value> {
    request["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
}

fn points_by_mode(request: &Value, name: &str) -> BTreeMap<String, f64> {
    metric(request, name).unwrap_or_else(|| panic!("{name} missing"))["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["attrs"]["cpu.mode"].as_str().unwrap().to_string(),
                num(&p["value"]),
            )
        })
        .collect()
}

/// Runs the agent until `want` node samples arrived, then SIGTERM; asserts a clean exit.
fn run_agent(receiver: &Receiver, env: &[(&str, &str)], want: usize) -> ([u64; 7], [u64; 7]) {
    let spool = tempfile::tempdir().unwrap();
    let before = proc_stat_ticks();
    let mut cmd = agent_command();
    cmd.env("AGENT_SAMPLE_INTERVAL_MIN_SEC", INTERVAL)
        .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", INTERVAL)
        .env("NODE_AGENT_SPOOL_DIR", spool.path())
        .env("LOG_LEVEL", "debug")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = Proc::spawn("node-agent", &mut cmd);
    wait_until(
        Duration::from_secs(60),
        "node samples at the receiver",
        || node_requests(receiver).len() >= want,
    );
    agent.signal(libc::SIGTERM);
    let status = agent
        .wait_timeout(Duration::from_secs(20))
        .expect("agent exits after SIGTERM");
    let after = proc_stat_ticks();
    let mut log = String::new();
    use std::io::Read;
    agent
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "agent exit {status:?}; log:\n{log}");
    (before, after)
}

/// The whole contract check over what the receiver decoded.
fn assert_node_contract(receiver: &Receiver, before: [u64; 7], after: [u64; 7], node_id: &str) {
    let reqs = node_requests(receiver);
    assert!(reqs.len() >= 3, "only {} node samples", reqs.len());
    for r in receiver.metrics() {
        assert!(
            r.get("decode_error").is_none(),
            "receiver could not decode: {r}"
        );
    }

    // Names, units, kinds of every node metric, in every sample after the first (the first has
    // no utilization yet: it needs two readings).
    for req in &reqs[1..] {
        for (name, unit, kind, monotonic) in NODE_CONTRACT {
            let m = metric(req, name).unwrap_or_else(|| panic!("{name} missing from a sample"));
            assert_eq!(m["unit"], *unit, "{name} unit");
            assert_eq!(m["kind"], *kind, "{name} kind");
            if let Some(mono) = monotonic {
                assert_eq!(m["monotonic"], *mono, "{name} monotonic");
                assert_eq!(m["temporality"], 2, "{name} must be cumulative");
            }
            assert!(
                !m["points"].as_array().unwrap().is_empty(),
                "{name} has no points"
            );
        }
    }

    // Attribute keys.
    let last = reqs.last().unwrap();
    let keys = |name: &str| -> BTreeSet<String> {
        metric(last, name).unwrap()["points"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| {
                p["attrs"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(keys("system.cpu.time"), set(&["cpu.mode"]));
    assert_eq!(keys("system.memory.usage"), set(&["system.memory.state"]));
    assert_eq!(
        keys("system.filesystem.usage"),
        set(&[
            "system.device",
            "system.filesystem.mountpoint",
            "system.filesystem.type",
            "system.filesystem.mode",
            "system.filesystem.state"
        ])
    );
    assert_eq!(
        keys("system.disk.io"),
        set(&["system.device", "disk.io.direction"])
    );
    assert_eq!(
        keys("system.network.io"),
        set(&["network.interface.name", "network.io.direction"])
    );
    let modes: BTreeSet<String> = points_by_mode(last, "system.cpu.utilization")
        .keys()
        .cloned()
        .collect();
    assert_eq!(modes, set(&MODES));

    // Resource.
    let res = &metric(last, "system.cpu.time").unwrap()["resource"];
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(res["service.name"], "node-agent");
    assert_eq!(res["service.instance.id"], node_id);
    assert_eq!(res["host.id"], machine_id.as_str());
    assert_eq!(res["host.arch"], "amd64");
    assert_eq!(res["os.type"], "linux");
    assert_eq!(res["deployment.environment.name"], "e2e");
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes()[3].is_ascii_digit())
        .count();
    assert_eq!(num(&res["node.cpu.count"]) as usize, cpus);
    assert_eq!(
        num(&res["node.memory.total"]) as u64,
        meminfo_kb("MemTotal") * 1024
    );
    assert!(num(&res["node.disk.total"]) > 0.0);
    assert_eq!(num(&res["node.gpu.count"]), 0.0);
    for key in [
        "host.name",
        "os.description",
        "host.cpu.model.name",
        "service.version",
        "node.cgroup.version",
    ] {
        assert!(
            res[key].as_str().is_some_and(|s| !s.is_empty()),
            "resource {key} missing: {res}"
        );
    }

    // Each sample exported exactly once, stamped with its own time, in order.
    let times: Vec<u64> = reqs
        .iter()
        .map(|r| {
            metric(r, "system.cpu.time").unwrap()["points"][0]["time"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "sample times not strictly increasing: {times:?}"
    );
    for r in &reqs {
        let t = metric(r, "system.cpu.time").unwrap()["points"][0]["time"]
            .as_u64()
            .unwrap();
        for m in r["metrics"].as_array().unwrap() {
            for p in m["points"].as_array().unwrap() {
                assert_eq!(
                    p["time"].as_u64().unwrap(),
                    t,
                    "{} stamped with another time",
                    m["name"]
                );
            }
        }
    }

    // Values against /proc, read by the test: the agent's cumulative CPU seconds lie between the
    // test's readings before start and after exit...
    let tck = clk_tck();
    for r in &reqs {
        let secs = points_by_mode(r, "system.cpu.time");
        for (i, mode) in MODES.iter().enumerate() {
            let v = secs[*mode];
            let (lo, hi) = (before[i] as f64 / tck, after[i] as f64 / tck);
            assert!(
                v >= lo - 1e-9 && v <= hi + 1e-9,
                "{mode}: {v} not within [{lo}, {hi}]"
            );
        }
    }
    // ...and utilization, iowait and busy included, equals Δmode/Δtotal of consecutive samples
    // exactly (to floating-point rounding: both come from the same integer ticks).
    for w in reqs.windows(2) {
        let (a, b) = (
            points_by_mode(&w[0], "system.cpu.time"),
            points_by_mode(&w[1], "system.cpu.time"),
        );
        let total: f64 = MODES.iter().map(|m| b[*m] - a[*m]).sum();
        if total <= 0.0 {
            continue;
        }
        let util = points_by_mode(&w[1], "system.cpu.utilization");
        for m in MODES {
            let expected = (b[m] - a[m]) / total;
            assert!(
                (util[m] - expected).abs() < 1e-9,
                "{m}: utilization {} vs Δ {}",
                util[m],
                expected
            );
        }
        let busy = 1.0 - util["idle"] - util["iowait"];
        let expected_busy = 1.0 - ((b["idle"] - a["idle"]) + (b["iowait"] - a["iowait"])) / total;
        assert!((busy - expected_busy).abs() < 1e-9);
    }
    // Memory: the limit is MemTotal exactly.
    let limit = num(&metric(last, "system.memory.limit").unwrap()["points"][0]["value"]);
    assert_eq!(limit as u64, meminfo_kb("MemTotal") * 1024);
    // Uptime: within the test's own reading.
    let uptime = num(&metric(last, "system.uptime").unwrap()["points"][0]["value"]);
    let now: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        uptime <= now && uptime > now - 60.0,
        "uptime {uptime} vs {now}"
    );
}

#[test]
fn grpc_through_rotel_meets_the_contract() {
    let receiver = Receiver::start(&["--token", "relay-token"]);
    let rotel = Rotel::start(
        &receiver.url(),
        &[
            "--otlp-exporter-custom-headers",
            "Authorization=Bearer relay-token",
        ],
    );
    let endpoint = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let (before, after) = run_agent(
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("NODE_ID", "e2e-grpc"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=e2e",
            ),
        ],
        4,
    );
    assert_node_contract(&receiver, before, after, "e2e-grpc");
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r["auth"] == "Bearer relay-token")
    );
}

#[test]
fn http_protobuf_through_rotel_meets_the_contract() {
    let receiver = Receiver::start(&[]);
    let rotel = Rotel::start(&receiver.url(), &[]);
    let endpoint = format!("http://127.0.0.1:{}", rotel.http_port);
    let (before, after) = run_agent(
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("NODE_ID", "e2e-http"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=e2e",
            ),
        ],
        4,
    );
    assert_node_contract(&receiver, before, after, "e2e-http");
}

#[test]
fn http_json_direct_with_custom_headers() {
    let receiver = Receiver::start(&["--token", "hdr-secret"]);
    let endpoint = format!("{}/v1/metrics", receiver.url());
    let (before, after) = run_agent(
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20hdr-secret",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("NODE_ID", "e2e-json"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=e2e",
            ),
        ],
        3,
    );
    let reqs = receiver.requests();
    assert!(reqs.iter().all(
        |r| r["ctype"].as_str().unwrap().starts_with("application/json") && r["encoding"].is_null()
    ));
    assert!(reqs.iter().all(|r| r["path"] == "/v1/metrics"));
    assert_node_contract(&receiver, before, after, "e2e-json");
}

#[test]
fn direct_orchestrator_mode_like_the_python_agent() {
    let receiver = Receiver::start(&["--token", "node-token-123"]);
    let (before, after) = run_agent(
        &receiver,
        &[
            ("ORCHESTRATOR_BASE_URL", &receiver.url()),
            ("NODE_TOKEN", "node-token-123"),
            ("NODE_ID", "node-7"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=e2e",
            ),
        ],
        3,
    );
    for r in receiver.requests() {
        assert_eq!(r["path"], "/internal/nodes/node-7/telemetry");
        assert_eq!(r["auth"], "Bearer node-token-123");
        assert_eq!(r["ctype"], "application/x-protobuf");
        assert_eq!(r["encoding"], "gzip");
    }
    assert_node_contract(&receiver, before, after, "node-7");
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A private CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_pki(dir: &std::path::Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
        dir,
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    for name in ["server", "client"] {
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
            dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
            dir,
        );
    }
}

#[test]
fn http_over_tls_with_private_ca_and_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let p = |f: &str| pki.path().join(f).to_str().unwrap().to_string();
    let receiver = Receiver::start(&[
        "--tls-cert",
        &p("server.pem"),
        "--tls-key",
        &p("server.key"),
        "--client-ca",
        &p("ca.pem"),
    ]);
    let endpoint = format!("https://127.0.0.1:{}/v1/metrics", receiver.port);
    let (before, after) = run_agent(
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &p("ca.pem")),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &p("client.pem")),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &p("client.key")),
            ("NODE_ID", "e2e-tls"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=e2e",
            ),
        ],
        3,
    );
    assert_node_contract(&receiver, before, after, "e2e-tls");
}

#[test]
fn console_exporter_prints_otlp_json() {
    let out = agent_command()
        .env("OTEL_METRICS_EXPORTER", "console")
        .env("NODE_AGENT_CONSOLE_FORMAT", "otlp-json")
        .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.2")
        .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.2")
        .env("NODE_AGENT_SPOOL_DIR", tempfile::tempdir().unwrap().path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = Proc {
        child: out,
        name: "node-agent".into(),
    };
    // Read stdout while the agent runs: a full pipe would block its writes.
    let mut stdout = agent.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        use std::io::Read;
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    std::thread::sleep(Duration::from_millis(1500));
    agent.signal(libc::SIGINT);
    let status = agent.wait_timeout(Duration::from_secs(10));
    assert!(status.expect("exits after SIGINT").success());
    let text = reader.join().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
        .collect();
    assert!(lines.len() >= 3, "{} lines", lines.len());
    let names: BTreeSet<&str> = lines[1]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for (name, ..) in NODE_CONTRACT {
        assert!(names.contains(name), "{name} missing from console output");
    }
}
