//! Shared test harness: real peers (the rotel collector, the decoding receiver, …) started on
//! loopback as child processes that are ended by PID when the test drops them.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod answers;
pub mod docker;
pub mod prometheus;
pub mod wings;

pub use agent::Agent;
pub use prometheus::Prometheus;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/install-test-deps.sh` put the PyPI and npm peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("NODE_AGENT_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/peers"))
}

pub fn require(path: &Path) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh (the README's test command does)",
        path.display()
    );
    path.to_path_buf()
}

pub fn python_path() -> PathBuf {
    require(&peers_dir().join("py"))
}

/// The agent binary under test: this build's, or `NODE_AGENT_BIN` (to re-run a test against the
/// release binary without building the tests in release, as docs/benchmarks.md does).
pub fn agent_bin() -> PathBuf {
    match std::env::var_os("NODE_AGENT_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_node-agent")),
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A child process that is killed (by its PID) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for exit; `None` on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The decoding OTLP/HTTP receiver (reference `opentelemetry-proto` Python classes).
pub struct Receiver {
    pub port: u16,
    pub out: PathBuf,
    _dir: tempfile::TempDir,
    _proc: Proc,
}

impl Receiver {
    pub fn start(extra_args: &[&str]) -> Receiver {
        Receiver::start_on(free_port(), extra_args)
    }

    /// On a given port: a receiver that comes up where an agent already sends.
    pub fn start_on(port: u16, extra_args: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let proc = Proc::spawn(
            "otlp_receiver.py",
            Command::new("python3")
                .arg(repo_root().join("tests/peers/otlp_receiver.py"))
                .arg(port.to_string())
                .arg(&out)
                .args(extra_args)
                .env("PYTHONPATH", python_path())
                .stdout(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(20));
        Receiver {
            port,
            out,
            _dir: dir,
            _proc: proc,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received so far, decoded.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter_map(|l| match serde_json::from_str(l) {
                Ok(v) => Some(v),
                Err(e) => {
                    eprintln!(
                        "receiver: an undecodable line ({e}): {}",
                        &l[..l.len().min(200)]
                    );
                    None
                }
            })
            .collect()
    }

    /// The requests that carry the metric `name` (those of one kind of sample).
    pub fn requests_with(&self, name: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r["metrics"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["name"] == name))
            })
            .collect()
    }

    /// Every metric of every request (flattened).
    pub fn metrics(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .flat_map(|r| r["metrics"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// The real rotel OpenTelemetry collector, relaying OTLP (gRPC and HTTP in) to an OTLP/HTTP
/// upstream.
pub struct Rotel {
    pub grpc_port: u16,
    pub http_port: u16,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Rotel {
    /// What rotel logged so far (its export errors, for a test's failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("rotel.out")).unwrap_or_default()
    }

    pub fn start(upstream: &str, extra: &[&str]) -> Rotel {
        Rotel::start_on(upstream, free_port(), free_port(), extra)
    }

    /// On given ports: a collector restarted after an outage comes back where it was.
    pub fn start_on(upstream: &str, grpc_port: u16, http_port: u16, extra: &[&str]) -> Rotel {
        let bin = require(&peers_dir().join("py/rotel/rotel-agent"));
        let dir = tempfile::tempdir().unwrap();
        let proc = Proc::spawn(
            "rotel",
            Command::new(bin)
                .arg("start")
                .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
                .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
                .args(["--exporter", "otlp", "--otlp-exporter-protocol", "http"])
                .args(["--otlp-exporter-endpoint", upstream])
                .args(["--pid-file", dir.path().join("rotel.pid").to_str().unwrap()])
                .args(["--log-file", dir.path().join("rotel.log").to_str().unwrap()])
                .args(extra)
                .stdout(std::fs::File::create(dir.path().join("rotel.out")).unwrap())
                .stderr(Stdio::null()),
        );
        wait_for_port(grpc_port, Duration::from_secs(20));
        wait_for_port(http_port, Duration::from_secs(20));
        Rotel {
            grpc_port,
            http_port,
            proc,
            _dir: dir,
        }
    }
}

/// The agent binary with a clean environment (no OTEL_* of the developer's shell leaking in) and
/// the local endpoint off.
pub fn agent_command() -> Command {
    let mut cmd = Command::new(agent_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_")
            || k.starts_with("AGENT_")
            || k.starts_with("NODE_")
            || k == "RUST_LOG"
            || k == "LOG_LEVEL"
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("NODE_AGENT_PEERS", peers_dir());
    // The local endpoint is on by default at 127.0.0.1:9464; agents of parallel tests would
    // share that port. A test that wants it sets NODE_AGENT_HTTP_LISTEN (or removes this).
    cmd.env("NODE_AGENT_HTTP_LISTEN", "off");
    // The default state directory (/var/lib/node-agent: spool, log cursors, OpAMP state) is one
    // per host, and a second agent on the same spool exits 2: each command gets its own. A test
    // that restarts an agent on the same state sets NODE_AGENT_STATE_DIR itself.
    cmd.env("NODE_AGENT_STATE_DIR", fresh_state_dir());
    cmd
}

/// A new, empty directory under this test process's own folder in the temporary directory.
fn fresh_state_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir()
        .join(format!("node-agent-it-{}", std::process::id()))
        .join(format!("state-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Nanoseconds a task has run on a CPU, from the scheduler (not from cgroups): the ground truth
/// for container CPU usage.
pub fn schedstat_ns(pid: i64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
