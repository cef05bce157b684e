//! OpAMP client tests: proto generation, the real `@elastic/mockopampserver` (HTTP transport,
//! plain and mutual TLS), and a WebSocket server in the suite speaking the specification's
//! framing (the mock has no WebSocket transport).
//!
//! The agent side is a test agent whose effective configuration and remote-config validation
//! are the real ones (`config::effective`, `Config::from_layers`), with a node token set, so "no
//! secret in anything sent" is checked on what the redaction really produces.

mod mock;
mod ws;

use crate::harness::repo_root;
use node_agent::config::{Config, Layers};
use node_agent::control::{
    AgentHandle, AllowList, Client, ClientHandle, Description, Health, OpampConfig, RemoteLayer,
    load_last_applied, offline_layer,
};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const TOKEN: &str = "opamp-t0ken-s3cret";
pub const HEADER_SECRET: &str = "tenant-h3ader-s3cret";
pub const NODE_TOKEN: &str = "node-t0ken-s3cret";

// ---------------------------------------------------------------------------------------------
// The test agent: real redaction and real validation of remote settings.

pub struct TestAgent {
    layers: Mutex<Layers>,
    healthy: Mutex<bool>,
    pub apply_calls: AtomicUsize,
}

impl TestAgent {
    pub fn new() -> Arc<Self> {
        let env: BTreeMap<String, String> = [
            ("NODE_TOKEN", NODE_TOKEN),
            ("NODE_ID", "node-it-1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=otlp-h3ader-s3cret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let file: BTreeMap<String, String> =
            [("sample_interval_min_sec".to_string(), "10".to_string())].into();
        Arc::new(TestAgent {
            layers: Mutex::new(Layers {
                flags: BTreeMap::new(),
                env,
                file,
                file_path: None,
                file_tables: toml::Table::new(),
            }),
            healthy: Mutex::new(true),
            apply_calls: AtomicUsize::new(0),
        })
    }

    /// The sample interval in force (min), from the real typed configuration.
    pub fn sample_interval(&self) -> Duration {
        Config::from_layers(&self.layers.lock())
            .unwrap()
            .sample_interval
            .0
    }

    pub fn set_healthy(&self, h: bool) {
        *self.healthy.lock() = h;
    }
}

impl AgentHandle for TestAgent {
    fn description(&self) -> Description {
        Description::new("node-agent", "node-it-1")
            .with("host.name", "it-host")
            .with("os.type", "linux")
            .with("node.cpu.count", 8i64)
    }

    fn health(&self) -> Health {
        let healthy = *self.healthy.lock();
        let mut h = Health {
            healthy,
            status: if healthy { "running" } else { "degraded" }.into(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            status_time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        h.components.insert(
            "exporter".into(),
            Health {
                healthy,
                last_error: if healthy { "" } else { "collector unreachable" }.into(),
                ..Default::default()
            },
        );
        h
    }

    fn effective_config(&self) -> String {
        node_agent::config::effective(&self.layers.lock())
            .into_iter()
            .filter_map(|s| s.value.map(|v| format!("{} = {:?}\n", s.key, v)))
            .collect()
    }

    /// Remote sits between the environment and the file: merged over the file layer.
    fn apply_remote_config(&self, layer: &RemoteLayer) -> Result<(), String> {
        self.apply_calls.fetch_add(1, Ordering::SeqCst);
        let mut candidate = {
            let l = self.layers.lock();
            Layers {
                flags: l.flags.clone(),
                env: l.env.clone(),
                file: l.file.clone(),
                file_path: None,
                file_tables: l.file_tables.clone(),
            }
        };
        candidate.file.extend(layer.settings.clone());
        candidate.file_tables.extend(layer.tables.clone());
        Config::from_layers(&candidate).map_err(|e| e.to_string())?;
        *self.layers.lock() = candidate;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// Every log line of this test binary: a global subscriber with the agent's own filter at its
/// most verbose (`trace`, all crates).
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static BUF: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace,h2=warn,hyper=warn,rustls=warn,tungstenite=debug"))
            .with_ansi(false)
            .with_writer(move || LogBuf(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogBuf(Arc<Mutex<Vec<u8>>>);
impl Write for LogBuf {
    fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(d);
        Ok(d.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn assert_no_secret(what: &str, text: &str) {
    for s in [TOKEN, HEADER_SECRET, NODE_TOKEN, "otlp-h3ader-s3cret"] {
        let line = text.lines().find(|l| l.contains(s)).unwrap_or("");
        assert!(!text.contains(s), "{what} contains the secret {s}: {line}");
    }
}

pub fn client_config(endpoint: &str, state: &Path) -> OpampConfig {
    let mut c = OpampConfig::new(endpoint, state);
    c.token = Some(TOKEN.into());
    c.headers = vec![("X-Tenant".into(), HEADER_SECRET.into())];
    c.heartbeat = Duration::from_secs(1);
    c.timeout = Duration::from_secs(5);
    c.accept_remote_config = true;
    c
}

pub fn start(cfg: OpampConfig, agent: &Arc<TestAgent>) -> (ClientHandle, watch::Sender<bool>) {
    logs();
    let (tx, rx) = watch::channel(false);
    let agent: Arc<dyn AgentHandle> = agent.clone();
    (Client::start(cfg, agent, rx).unwrap(), tx)
}

pub async fn stop(h: ClientHandle, tx: watch::Sender<bool>) {
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), h.join())
        .await
        .expect("client stops");
}

pub async fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
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

fn uuid_text(b: &[u8]) -> String {
    node_agent::control::uuid_string(b)
}

// ---------------------------------------------------------------------------------------------
// Tests.

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
        "{} is stale: run NODE_AGENT_REGENERATE=1 cargo test --test opamp generated_proto_code_is_current",
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
