//! The OTLP transports against peers that answer the way a collector may: partial success over
//! HTTP (protobuf and JSON) and gRPC, gRPC failure codes with and without `RetryInfo` (Python
//! grpcio, the reference implementation), `Retry-After`, a huge hostile error body, a redirect to
//! another host, a self-signed collector with the orchestrator's insecure switch on; OTLP/JSON
//! parsed strictly by an older proto set; URL and header secrets; the console listing checked
//! against /proc.

use crate::harness::answers::Answers;
use crate::harness::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INTERVAL: &str = "0.2";

fn agent(dir: &std::path::Path, name: &str, env: &[(&str, &str)]) -> Agent {
    let spool = dir.join(format!("{name}-spool"));
    let mut all = vec![
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", INTERVAL),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", INTERVAL),
        ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ("NODE_AGENT_SHUTDOWN_GRACE_SEC", "0.5"),
    ];
    all.extend_from_slice(env);
    Agent::start(dir, name, &all)
}

fn wait_requests(peer: &Answers, n: usize) -> Vec<Value> {
    wait_until(Duration::from_secs(30), &format!("{n} requests"), || {
        peer.requests().len() >= n
    });
    peer.requests()
}

/// The node sampler's pass numbers of each request.
fn passes(reqs: &[Value]) -> Vec<Vec<u64>> {
    reqs.iter()
        .map(|r| {
            assert!(r.get("decode_error").is_none(), "{r}");
            r["passes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
                .collect()
        })
        .collect()
}

/// No sample was sent twice (nothing retried) and they arrive in order.
fn assert_each_sample_once(reqs: &[Value]) {
    let all: Vec<u64> = passes(reqs).into_iter().flatten().collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
}

/// `node_agent.export.rejected` as carried by each request: every request before it was answered
/// with `per_request` rejected points; a sample is built before the send of the previous one may
/// have finished, so a value may lag by one or two requests.
fn assert_rejected_counts(reqs: &[Value], per_request: u64) {
    let values: Vec<u64> = reqs
        .iter()
        .map(|r| {
            r["rejected_metric"][0]
                .as_u64()
                .expect("the metric is there")
        })
        .collect();
    for (i, v) in values.iter().enumerate() {
        let i = i as u64;
        assert_eq!(v % per_request, 0, "{values:?}");
        assert!(*v <= per_request * i, "{values:?}");
        assert!(*v + 2 * per_request >= per_request * i, "{values:?}");
    }
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    assert!(*values.last().unwrap() > 0, "{values:?}");
}

fn log_lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// Every line of the agent's log is its own (a peer cannot start one) and is of sane length.
fn assert_log_not_forged(log: &str) {
    for l in log.lines() {
        assert!(!l.starts_with("ERROR forged"), "forged line: {l}");
        assert!(!l.contains('\u{1b}'), "raw escape: {l:?}");
        assert!(l.len() < 2000, "{} chars: {}", l.len(), &l[..200]);
    }
}

const HOSTILE: &str = "2 points have no name\nERROR forged line\u{1b}[31m";
const HOSTILE_SHOWN: &str = "2 points have no name\\nERROR forged line\\u{1b}[31m";

#[test]
fn http_partial_success_is_counted_logged_once_and_not_retried() {
    let peer = Answers::http(&["--rejected", "2", "--message", HOSTILE]);
    let work = tempfile::tempdir().unwrap();
    let a = agent(
        work.path(),
        "agent",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url())],
    );
    wait_requests(&peer, 8);
    let (_, log) = a.stop(Duration::from_secs(20));
    let reqs = peer.requests();
    assert!(reqs.iter().all(|r| r["ctype"] == "application/x-protobuf"));
    assert_each_sample_once(&reqs);
    assert_rejected_counts(&reqs, 2);
    let warned = log_lines_with(&log, "collector rejected points");
    assert_eq!(warned.len(), 1, "{log}");
    assert!(warned[0].contains(HOSTILE_SHOWN), "{}", warned[0]);
    assert!(warned[0].contains("rejected=2"), "{}", warned[0]);
    assert_log_not_forged(&log);
}

#[test]
fn http_json_is_strict_proto3_for_an_older_proto_and_reads_json_partial_success() {
    let peer = Answers::http(&["--rejected", "3", "--message", "unit missing"]);
    let work = tempfile::tempdir().unwrap();
    let a = agent(
        work.path(),
        "agent",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
    );
    wait_requests(&peer, 6);
    let (_, log) = a.stop(Duration::from_secs(20));
    let reqs = peer.requests();
    for r in &reqs {
        assert_eq!(r["ctype"], "application/json");
        assert_eq!(r["encoding"], "gzip");
        // Parsed with ignore_unknown_fields=False by a proto set without entityRefs/metadata,
        // and no key that proto3 JSON would omit (a default value) nor one missing.
        assert_eq!(r["strict"]["ok"], true, "{}", r["strict"]);
    }
    assert_each_sample_once(&reqs);
    assert_rejected_counts(&reqs, 3);
    assert_eq!(log_lines_with(&log, "collector rejected points").len(), 1);
}

#[test]
fn grpc_partial_success_is_counted_and_logged_once() {
    let peer = Answers::grpc(&["--rejected", "2", "--message", HOSTILE]);
    let work = tempfile::tempdir().unwrap();
    let a = agent(
        work.path(),
        "agent",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    wait_requests(&peer, 6);
    let (_, log) = a.stop(Duration::from_secs(20));
    let reqs = peer.requests();
    assert_each_sample_once(&reqs);
    assert_rejected_counts(&reqs, 2);
    let warned = log_lines_with(&log, "collector rejected points");
    assert_eq!(warned.len(), 1, "{log}");
    assert!(warned[0].contains(HOSTILE_SHOWN), "{}", warned[0]);
    assert_log_not_forged(&log);
}

/// A plain HTTP/1.1 GET on loopback; the body.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn exporter_state(port: u16) -> Value {
    let body: Value = serde_json::from_str(&http_get(port, "/readyz")).unwrap();
    body["exporter"].clone()
}

/// A gRPC code the specification says not to retry: every sample is sent once, then dropped
/// and counted.
fn grpc_code_is_dropped_not_retried(code: &str) {
    let peer = Answers::grpc(&["--code", code, "--message", "no\nway"]);
    let work = tempfile::tempdir().unwrap();
    let http = free_port();
    let listen = format!("127.0.0.1:{http}");
    let a = agent(
        work.path(),
        "agent",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("NODE_AGENT_HTTP_LISTEN", &listen),
        ],
    );
    wait_for_port(http, Duration::from_secs(20));
    wait_requests(&peer, 5);
    let state = exporter_state(http);
    let (_, log) = a.stop(Duration::from_secs(20));
    let reqs = peer.requests();
    assert_each_sample_once(&reqs);
    assert_eq!(state["retried"], 0, "{state}");
    assert!(state["dropped"].as_u64().unwrap() >= 4, "{state}");
    assert_eq!(state["sent"], 0, "{state}");
    let last = state["last_error"].as_str().unwrap();
    assert!(last.contains("no\\nway") && !last.contains('\n'), "{last}");
    assert!(log.contains("not retryable"), "{log}");
}

#[test]
fn grpc_unknown_is_dropped_not_retried() {
    grpc_code_is_dropped_not_retried("UNKNOWN");
}

#[test]
fn grpc_resource_exhausted_without_retry_info_is_dropped_not_retried() {
    grpc_code_is_dropped_not_retried("RESOURCE_EXHAUSTED");
}

/// The same sample, attempted `n` times (the last one accepted), at least `gap` apart.
fn assert_retried_after(reqs: &[Value], n: usize, gap: f64) {
    let p = passes(reqs);
    assert!(p[..n].iter().all(|x| *x == p[0]), "{p:?}");
    assert_ne!(p[n], p[0], "{p:?}");
    for w in reqs[..n].windows(2) {
        let dt = w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap();
        assert!(dt >= gap, "retried after {dt:.3} s, want >= {gap}");
    }
}

#[test]
fn grpc_resource_exhausted_with_retry_info_waits_the_delay() {
    let peer = Answers::grpc(&[
        "--code",
        "RESOURCE_EXHAUSTED",
        "--retry-delay",
        "1.2",
        "--fail-first",
        "3",
    ]);
    let work = tempfile::tempdir().unwrap();
    let a = agent(
        work.path(),
        "agent",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    wait_requests(&peer, 5);
    let (_, log) = a.stop(Duration::from_secs(20));
    // Attempts 1-4 carry the first sample 1.2 s apart (the default backoff starts at 0.5 s);
    // the 4th is accepted, the 5th carries what queued meanwhile.
    let reqs = peer.requests();
    assert_retried_after(&reqs, 4, 1.15);
    assert!(log.contains("retrying"), "{log}");
    assert!(!log.contains("not retryable"), "{log}");
}

#[test]
fn http_retry_after_is_honoured() {
    let peer = Answers::http(&["--status", "503", "--retry-after", "1", "--fail-first", "3"]);
    let work = tempfile::tempdir().unwrap();
    let a = agent(
        work.path(),
        "agent",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url())],
    );
    wait_requests(&peer, 5);
    a.stop(Duration::from_secs(20));
    assert_retried_after(&peer.requests(), 4, 0.95);
}

fn vm_hwm_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_huge_hostile_error_body_is_read_only_as_far_as_needed() {
    const BODY: u64 = 300_000_000;
    let peer = Answers::http(&[
        "--status",
        "400",
        "--body-bytes",
        &BODY.to_string(),
        "--message",
        HOSTILE,
    ]);
    let work = tempfile::tempdir().unwrap();
    let a = agent(
        work.path(),
        "agent",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url())],
    );
    wait_until(Duration::from_secs(30), "three error bodies", || {
        peer.error_bytes_written().len() >= 3
    });
    let hwm = vm_hwm_kib(a.proc.pid());
    let (_, log) = a.stop(Duration::from_secs(20));
    // What the peer could write before the agent hung up is what the socket buffers took.
    let written = peer.error_bytes_written();
    eprintln!("error bodies of {BODY} B: the peer wrote {written:?} B; agent peak RSS {hwm} KiB");
    assert!(written.iter().all(|w| *w < 32 << 20), "{written:?}");
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB");
    let refused = log_lines_with(&log, "HTTP 400");
    assert!(!refused.is_empty(), "{log}");
    for l in &refused {
        assert!(l.contains(HOSTILE_SHOWN), "{l}");
        assert!(l.len() < 1500, "{} chars", l.len());
    }
    assert_log_not_forged(&log);
}

#[test]
fn redirects_are_not_followed_and_headers_stay_home() {
    let other = Answers::http(&[]);
    let location = format!("{}/v1/metrics", other.url());
    let peer = Answers::http(&["--location", &location]);
    let work = tempfile::tempdir().unwrap();
    let a = agent(
        work.path(),
        "agent",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &peer.url()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k3y-s3cret"),
        ],
    );
    let reqs = wait_requests(&peer, 3);
    std::thread::sleep(Duration::from_millis(300));
    let (_, log) = a.stop(Duration::from_secs(20));
    assert_eq!(reqs[0]["headers"]["x-api-key"], "k3y-s3cret");
    assert!(other.requests().is_empty(), "the redirect was followed");
    assert!(log.contains("HTTP 307 redirect to"), "{log}");
    assert!(log.contains("not followed"), "{log}");
    assert!(!log.contains("k3y-s3cret"), "{log}");
}

fn self_signed(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl");
    (cert.to_str().unwrap().into(), key.to_str().unwrap().into())
}

#[test]
fn agent_insecure_tls_never_reaches_the_collector_only_the_orchestrator() {
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(work.path());
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let mut args = tls.to_vec();
    args.extend(["--token", "tok"]);
    let collector = Receiver::start(&args);
    let orchestrator = Receiver::start(&args);
    let collector_url = format!("https://127.0.0.1:{}", collector.port);
    let to_collector = agent(
        work.path(),
        "collector",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20tok"),
            ("AGENT_INSECURE_TLS", "true"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ],
    );
    let orchestrator_url = format!("https://127.0.0.1:{}", orchestrator.port);
    let direct = agent(
        work.path(),
        "direct",
        &[
            ("ORCHESTRATOR_BASE_URL", &orchestrator_url),
            ("NODE_TOKEN", "tok"),
            ("NODE_ID", "n1"),
            ("AGENT_INSECURE_TLS", "true"),
        ],
    );
    wait_until(
        Duration::from_secs(30),
        "the orchestrator's requests",
        || orchestrator.requests().len() >= 3,
    );
    wait_until(Duration::from_secs(10), "a certificate error", || {
        to_collector.log().contains("certificate")
    });
    let (_, log) = to_collector.stop(Duration::from_secs(20));
    direct.stop(Duration::from_secs(20));
    assert!(
        collector.requests().is_empty(),
        "sent to an unverified collector"
    );
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(!log.contains("tok"), "{log}");
    for r in orchestrator.requests() {
        assert_eq!(r["path"], "/internal/nodes/n1/telemetry");
    }
}

fn agent_output(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = agent_command();
    cmd.args(args)
        .envs(env.iter().copied())
        .env("NODE_AGENT_SPOOL_DIR", tempfile::tempdir().unwrap().path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut out = String::new();
    let mut err = String::new();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        se.read_to_string(&mut s).unwrap();
        s
    });
    so.read_to_string(&mut out).unwrap();
    err.push_str(&t.join().unwrap());
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    (status.code(), format!("{out}{err}"))
}

#[test]
fn secrets_in_the_endpoint_url_and_misformed_headers_are_never_printed() {
    let dead = format!("http://agent:hunter2@127.0.0.1:{}", free_port());
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", dead.as_str())];
    for args in [
        &["config"][..],
        &["config", "--json"],
        &["check"],
        &["check", "--json"],
    ] {
        let (_, out) = agent_output(args, &env);
        assert!(!out.contains("hunter2"), "{args:?}: {out}");
        // `config` shows the setting as given, redacted; `check` the URL in use, without it.
        let shown = if args[0] == "config" {
            "http://***@127.0.0.1"
        } else {
            "http://127.0.0.1"
        };
        assert!(out.contains(shown), "{args:?}: {out}");
    }
    // A running agent's error lines.
    let work = tempfile::tempdir().unwrap();
    let a = agent(work.path(), "dead", &env);
    wait_until(Duration::from_secs(20), "an export error", || {
        a.log().contains("retrying")
    });
    let (_, log) = a.stop(Duration::from_secs(20));
    assert!(!log.contains("hunter2"), "{log}");
    // The credential still reaches the collector, as HTTP Basic authentication.
    let receiver = Receiver::start(&[]);
    let url = format!("http://agent:hunter2@127.0.0.1:{}", receiver.port);
    let a = agent(
        work.path(),
        "live",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)],
    );
    wait_until(Duration::from_secs(20), "a request", || {
        !receiver.requests().is_empty()
    });
    let (_, log) = a.stop(Duration::from_secs(20));
    let r = &receiver.requests()[0];
    assert_eq!(r["auth"], "Basic YWdlbnQ6aHVudGVyMg==");
    assert_eq!(r["path"], "/v1/metrics");
    assert!(!log.contains("hunter2"), "{log}");
    // `Name: value` instead of `Name=value`: refused, naming the setting, not echoing the value.
    for headers in [
        "Authorization: Basic aHVudGVyMg==",
        "Authorization: Basic aHVudGVyMg",
    ] {
        for cmd in ["run", "check"] {
            let (code, out) = agent_output(&[cmd], &[("OTEL_EXPORTER_OTLP_HEADERS", headers)]);
            assert_eq!(code, Some(2), "{cmd}: {out}");
            assert!(out.contains("otlp_headers"), "{out}");
            assert!(!out.contains("aHVudGVyMg"), "{out}");
        }
    }
}

#[test]
fn malformed_urls_exit_2_naming_the_setting() {
    for (env, setting) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "otlp_endpoint"),
        ("ORCHESTRATOR_BASE_URL", "orchestrator_base_url"),
        ("WINGS_BASE_URL", "wings_base_url"),
    ] {
        for bad in ["http://[::1", "http://u:pw9@[::1/x", "http://host:70000"] {
            let (code, out) = agent_output(
                &["run"],
                &[(env, bad), ("NODE_TOKEN", "t"), ("NODE_ID", "n")],
            );
            assert_eq!(code, Some(2), "{env}={bad}: {out}");
            assert!(out.contains(&format!("invalid {setting}")), "{out}");
            assert!(!out.contains("pw9"), "{out}");
        }
    }
}

fn proc_cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
}

fn mem_total_bytes() -> f64 {
    let kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024.0
}

#[test]
fn console_prints_a_readable_listing() {
    let mut child = agent_command()
        .args(["run"])
        .env("OTEL_METRICS_EXPORTER", "console")
        .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", INTERVAL)
        .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", INTERVAL)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let agent = Proc {
        child,
        name: "node-agent".into(),
    };
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    std::thread::sleep(Duration::from_millis(1500));
    agent.signal(libc::SIGINT);
    let text = reader.join().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let blocks = lines
        .iter()
        .filter(|l| l.starts_with("── sample at "))
        .count();
    assert!(blocks >= 3, "{blocks} blocks:\n{text}");
    assert!(lines.len() > blocks * 20, "{} lines", lines.len());
    assert!(lines.iter().all(|l| l.chars().count() <= 1000));
    assert!(
        !text.contains("resourceMetrics"),
        "JSON instead of the listing"
    );
    // Values in their units, checked against the kernel.
    let value = |metric: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{metric} ")))
            .unwrap_or_else(|| panic!("no {metric} line:\n{text}"))
            .split_whitespace()
            .rev()
            .take(2)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        value("system.cpu.logical.count"),
        ["cpu", &proc_cpus().to_string()]
    );
    let limit = value("system.memory.limit");
    assert_eq!(limit[0], "GiB");
    let gib: f64 = limit[1].parse().unwrap();
    let want = mem_total_bytes() / (1u64 << 30) as f64;
    assert!(
        (gib - want).abs() <= 0.006,
        "{gib} GiB vs MemTotal {want:.3} GiB"
    );
    let util = lines
        .iter()
        .find(|l| l.contains("system.cpu.utilization") || l.contains("system.memory.utilization"))
        .unwrap();
    assert!(util.ends_with(" %"), "{util}");
}
