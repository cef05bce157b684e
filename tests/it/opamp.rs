//! The control plane end to end: the real `node-agent` binary against the real
//! `@elastic/mockopampserver` 0.5.0 (npm; HTTP transport, plain and mutual TLS) and against a
//! WebSocket OpAMP server in the suite (the mock has no WebSocket transport), exporting to the
//! decoding receiver so that what the control plane changes is checked in what is exported.
//!
//! Every agent here runs with secrets set (node token, OpAMP token and header, OTLP header) and
//! every test checks that none of them reaches the server, the effective configuration or the
//! agent's log.

mod mock;
mod ws;

use crate::harness::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub const TOKEN: &str = "opamp-t0ken-s3cret";
pub const HEADER_SECRET: &str = "tenant-h3ader-s3cret";
pub const NODE_TOKEN: &str = "node-t0ken-s3cret";
pub const OTLP_HEADER_SECRET: &str = "otlp-h3ader-s3cret";

pub fn assert_no_secret(what: &str, text: &str) {
    for s in [TOKEN, HEADER_SECRET, NODE_TOKEN, OTLP_HEADER_SECRET] {
        let line = text.lines().find(|l| l.contains(s)).unwrap_or("");
        assert!(!text.contains(s), "{what} contains the secret {s}: {line}");
    }
}

/// An agent reporting to `endpoint` (state in `dir/state`), exporting to `receiver` when given,
/// with the local endpoint on `http_port`, every secret set, and `extra` on top.
pub fn start_agent(
    dir: &Path,
    name: &str,
    endpoint: &str,
    receiver: Option<&Receiver>,
    http_port: u16,
    extra: &[(&str, &str)],
) -> Agent {
    let state = dir.join("state");
    let spool = dir.join("spool");
    let listen = format!("127.0.0.1:{http_port}");
    let headers = format!("x-tenant={HEADER_SECRET}");
    let otlp_headers = format!("x-api-key={OTLP_HEADER_SECRET}");
    let url = receiver.map(|r| r.url());
    let mut env: Vec<(&str, &str)> = vec![
        ("NODE_AGENT_OPAMP_ENDPOINT", endpoint),
        ("NODE_AGENT_OPAMP_TOKEN", TOKEN),
        ("NODE_AGENT_OPAMP_HEADERS", &headers),
        ("NODE_AGENT_OPAMP_HEARTBEAT_SEC", "1"),
        ("NODE_AGENT_OPAMP_TIMEOUT_SEC", "5"),
        ("NODE_AGENT_STATE_DIR", state.to_str().unwrap()),
        ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ("NODE_AGENT_HTTP_LISTEN", &listen),
        ("NODE_AGENT_GPU", "off"),
        ("NODE_TOKEN", NODE_TOKEN),
        ("NODE_ID", "node-it-1"),
        ("OTEL_EXPORTER_OTLP_HEADERS", &otlp_headers),
        ("LOG_LEVEL", "debug"),
    ];
    match &url {
        Some(u) => env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", u)),
        None => env.push(("OTEL_METRICS_EXPORTER", "none")),
    }
    env.extend_from_slice(extra);
    let agent = Agent::start(dir, name, &env);
    wait_for_port(http_port, Duration::from_secs(20));
    agent
}

/// One HTTP/1.1 exchange on loopback: status and body (the servers here answer with
/// Content-Length, so the body is verbatim).
pub fn raw_http(port: u16, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
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
    (status, body.to_string())
}

/// The agent's view of its OpAMP connection, from `/readyz`.
pub fn opamp_status(http_port: u16) -> Value {
    let (_, body) = raw_http(http_port, "GET", "/readyz", None);
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["opamp"].clone()
}

/// The times (Unix ns) of the node samples the receiver got, in order.
pub fn node_times(receiver: &Receiver) -> Vec<u64> {
    let mut t: Vec<u64> = receiver
        .metrics()
        .iter()
        .filter(|m| m["name"] == "system.cpu.time")
        .filter_map(|m| m["points"][0]["time"].as_u64())
        .collect();
    t.sort();
    t.dedup();
    t
}

/// Gaps between consecutive times, seconds.
pub fn gaps(times: &[u64]) -> Vec<f64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e9)
        .collect()
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Standard base64 (what protobuf JSON uses for bytes).
pub fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | (val(*c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The canonical text form of a 16-byte UID.
pub fn uuid_text(b: &[u8]) -> String {
    let h = hex(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The committed generated code is what prost-build makes from the vendored protos today
/// (protox parses them, so no protoc is needed). `NODE_AGENT_REGENERATE=1` rewrites the file.
#[test]
fn generated_proto_code_is_current() {
    let root = repo_root();
    let fds = protox::compile(["opamp.proto"], [root.join("proto/opamp/v1")])
        .unwrap_or_else(|e| panic!("proto/opamp/v1/opamp.proto: {e}"));
    let out = tempfile::tempdir().unwrap();
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_fds(fds)
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join("opamp.proto.v1.rs")).unwrap();
    let committed_path = root.join("src/control/opamp.proto.v1.rs");
    if std::env::var_os("NODE_AGENT_REGENERATE").is_some() {
        std::fs::write(&committed_path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run NODE_AGENT_REGENERATE=1 cargo test --test it generated_proto_code_is_current",
        committed_path.display()
    );
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI).
pub fn make_certs(dir: &Path) {
    let sh = format!(
        r#"set -e; cd '{}'
k="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $k -keyout ca.key -out ca.crt -days 2 -subj /CN=opamp-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
for who in server client; do
  openssl req $k -keyout $who.key -out $who.csr -subj /CN=$who
done
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile $who.ext -out $who.crt
done"#,
        dir.display()
    );
    let out = Command::new("sh").arg("-c").arg(&sh).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
