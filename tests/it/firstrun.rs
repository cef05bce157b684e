//! The first five minutes, as a new user meets them: `node-agent run` with nothing configured
//! serves `/metrics` on 127.0.0.1:9464 at once and says so in its first log lines; SIGTERM with
//! no collector exits 0 well within 2 s with its samples in the spool (and a later start
//! delivers them); a second signal cuts a grace period short; a busy default port is a warning,
//! a busy configured one exit 2; `check` tells "no collector configured" (a note, exit 0) from
//! "the configured collector is down" (exit 1), and names console/none exporters as such.
//!
//! The default-port checks share one test: 9464 is a fixed port, and only this test may use it.

use crate::harness::{Agent, Proc, Receiver, agent_command, wait_until};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `node-agent <args>` with nothing in its environment but PATH (and the spool under `dir`, so
/// the test does not write to /var/lib).
fn bare(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(crate::harness::agent_bin());
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("NODE_AGENT_SPOOL_DIR", dir.join("spool"))
        .args(args);
    cmd
}

/// One plain HTTP/1.0 GET on loopback: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The metrics spool's segment files under a spool directory.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("metrics"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .collect()
        })
        .unwrap_or_default()
}

fn spawn_logged(cmd: &mut Command, log: &Path, name: &str) -> Proc {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    Proc::spawn(name, cmd)
}

#[test]
fn empty_environment_serves_metrics_says_so_and_stops_promptly() {
    assert!(
        TcpStream::connect("127.0.0.1:4318").is_err(),
        "something listens on 127.0.0.1:4318 (the OTLP default); this test needs it free"
    );
    if TcpStream::connect("127.0.0.1:9464").is_ok() {
        panic!("something already listens on 127.0.0.1:9464; this test needs the default port");
    }
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("run.log");
    let started = Instant::now();
    let mut agent = spawn_logged(&mut bare(work.path(), &["run"]), &log, "agent");
    wait_until(
        Duration::from_secs(10),
        "/metrics on 127.0.0.1:9464",
        || get(9464, "/metrics").is_some_and(|(s, b)| s == 200 && b.contains("system_cpu")),
    );
    let answered_after = started.elapsed();
    assert_eq!(get(9464, "/healthz").map(|r| r.0), Some(200));
    // The first lines say where the metrics are and where OTLP goes, in plain words.
    let text = std::fs::read_to_string(&log).unwrap();
    let first: Vec<&str> = text.lines().take(4).collect();
    let head = first.join("\n");
    assert!(
        head.contains("http://127.0.0.1:9464/metrics"),
        "first lines:\n{head}"
    );
    assert!(
        head.contains("http://localhost:4318/v1/metrics")
            && head.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{head}"
    );
    for rust_name in ["Otlp", "HttpProtobuf", "Some(", "None"] {
        assert!(!head.contains(rust_name), "`{rust_name}` in:\n{head}");
    }
    eprintln!("/metrics answered {answered_after:?} after the start");

    // A second agent with the default port busy warns and runs on.
    let log_b = work.path().join("b.log");
    let mut b = spawn_logged(
        bare(work.path(), &["run"]).env("NODE_AGENT_SPOOL_DIR", work.path().join("spool-b")),
        &log_b,
        "agent-b",
    );
    wait_until(Duration::from_secs(10), "agent B's warning", || {
        std::fs::read_to_string(&log_b)
            .unwrap_or_default()
            .contains("running without the local endpoint")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.child.try_wait().unwrap().is_none(), "agent B stopped");
    b.signal(libc::SIGTERM);
    assert!(
        b.wait_timeout(Duration::from_secs(5))
            .is_some_and(|s| s.success())
    );
    // The same port, configured: an error naming the setting, exit 2.
    let out = bare(work.path(), &["run"])
        .env("NODE_AGENT_HTTP_LISTEN", "127.0.0.1:9464")
        .env("NODE_AGENT_SPOOL_DIR", work.path().join("spool-c"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("NODE_AGENT_HTTP_LISTEN") && err.contains("127.0.0.1:9464"),
        "{err}"
    );

    // SIGTERM with no collector: no grace period to sit out.
    let t = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_timeout(Duration::from_secs(10));
    let took = t.elapsed();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{text}");
    assert!(took < Duration::from_secs(2), "exit took {took:?}\n{text}");
    assert!(text.contains("without waiting"), "{text}");
    let spool = work.path().join("spool");
    assert!(!segments(&spool).is_empty(), "nothing spooled:\n{text}");
    eprintln!("SIGTERM to exit: {took:?}");

    // Those samples are real: the next start delivers them to the collector it is given.
    let stopped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let rx = Receiver::start(&[]);
    let again = Agent::start(
        work.path(),
        "again",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.url()),
            ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ],
    );
    wait_until(Duration::from_secs(30), "the spooled samples", || {
        rx.metrics().iter().any(|m| {
            m["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("system.cpu"))
                && m["points"][0]["time"]
                    .as_u64()
                    .is_some_and(|t| t < stopped_at)
        })
    });
    again.stop(Duration::from_secs(10));
}

#[test]
fn a_second_signal_cuts_the_grace_period_short() {
    // A collector that accepts connections and never answers: the agent cannot know it is down
    // until its request times out, so it waits, and says for how long.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let agent = Agent::start(
        work.path(),
        "grace",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &url),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
            ("NODE_AGENT_SHUTDOWN_GRACE_SEC", "30"),
            ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ],
    );
    wait_until(Duration::from_secs(10), "the first sample", || {
        agent.log().contains("sending OTLP")
    });
    assert!(
        agent.log().contains("local /metrics endpoint is off"),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut agent = agent;
    agent.proc.signal(libc::SIGINT);
    wait_until(Duration::from_secs(5), "the shutdown plan", || {
        agent.log().contains("for at most 30 s")
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        agent.proc.child.try_wait().unwrap().is_none(),
        "it should wait for an answering collector:\n{}",
        agent.log()
    );
    let t = Instant::now();
    agent.proc.signal(libc::SIGINT);
    let status = agent.proc.wait_timeout(Duration::from_secs(5));
    let took = t.elapsed();
    let log = agent.log();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(took < Duration::from_secs(1), "{took:?}\n{log}");
    assert!(log.contains("stopped at once"), "{log}");
    assert!(!segments(&spool).is_empty(), "nothing spooled:\n{log}");
    drop(silent);
}

#[test]
fn check_tells_not_configured_from_down() {
    let work = tempfile::tempdir().unwrap();
    // Nothing configured: a note, exit 0.
    let out = bare(work.path(), &["check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("[note] no collector configured"), "{text}");
    assert!(text.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{text}");
    // A configured collector that does not answer: exit 1.
    let dead = crate::harness::free_port();
    let out = bare(work.path(), &["check", "--json"])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{dead}"),
        )
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["endpoint"]["state"], "down", "{v}");
    assert_eq!(v["endpoint"]["configured"], true, "{v}");
    // Console and none: named as such, never "accepted".
    for (exporter, words) in [("console", "console exporter"), ("none", "export is off")] {
        let out = bare(work.path(), &["check"])
            .env("OTEL_METRICS_EXPORTER", exporter)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains(words), "{exporter}: {text}");
        assert!(!text.contains("accepted"), "{exporter}: {text}");
    }
    // And one that answers.
    let rx = Receiver::start(&[]);
    let out = agent_command()
        .args(["check"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url())
        .env("NODE_AGENT_SPOOL_DIR", work.path().join("spool"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("[ ok ] the collector at"), "{text}");
}
