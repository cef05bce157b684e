//! The spool's disk misbehaving, for real: a filesystem frozen with `fsfreeze` (every write
//! blocks), a 256 KiB tmpfs that fills up, the spool directory deleted while the agent runs, and a
//! bogus `ack` file. The tests mount what they need (they run as root) and undo it when dropped.

use crate::delivery::{NODE, http_get, passes, prom_value, readyz, segments};
use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A filesystem mounted for the test; unmounted (lazily) when dropped.
struct Mounted(PathBuf);

impl Mounted {
    /// An ext4 filesystem in a file, mounted through a loop device.
    fn ext4(dir: &Path, mib: u64) -> Mounted {
        let img = dir.join("fs.img");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        Mounted(mnt)
    }

    fn tmpfs(at: &Path, size: &str) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at));
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `fsfreeze -f` until dropped (declare it after the agent, so it thaws before the agent is
/// killed: a process blocked on a frozen filesystem cannot die until the thaw).
struct Frozen(PathBuf);

impl Frozen {
    fn new(mnt: &Path) -> Frozen {
        run(Command::new("fsfreeze").arg("-f").arg(mnt));
        Frozen(mnt.to_path_buf())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
    }
}

/// GET /healthz with a 1 s bound; returns how long the answer took (None: no answer in time).
fn healthz_within_1s(port: u16) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    (resp.starts_with("HTTP/1.1 200") && started.elapsed() < Duration::from_secs(1))
        .then(|| started.elapsed())
}

fn taken(http: u16) -> u64 {
    prom_value(
        &http_get(http, "/metrics").1,
        "node_agent_sampler_passes_total",
        NODE,
    )
    .unwrap_or(0.0) as u64
}

#[test]
fn a_frozen_spool_disk_stops_neither_sampling_nor_healthz_nor_delivery_from_memory() {
    let work = tempfile::tempdir().unwrap();
    let fs = Mounted::ext4(work.path(), 32);
    let spool = fs.0.join("spool");
    let port = free_port();
    let http = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{http}");
    let agent = Agent::start(
        work.path(),
        "agent",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
            ("NODE_AGENT_HTTP_LISTEN", &listen),
            ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.5"),
            ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.5"),
            ("AGENT_SEND_BACKOFF_MAX_SEC", "1"),
        ],
    );
    wait_for_port(http, Duration::from_secs(20));
    // The collector is down: the agent writes ahead.
    wait_until(Duration::from_secs(20), "write-ahead to the spool", || {
        !segments(&spool).is_empty() && taken(http) >= 4
    });
    let frozen = Frozen::new(&fs.0);
    let freeze_start = Instant::now();
    let taken_at_freeze = taken(http);
    let mut slowest = Duration::ZERO;
    let mut checks = 0;
    let mut receiver = None;
    let mut stalled_seen = false;
    let mut arrived_while_frozen = 0;
    while freeze_start.elapsed() < Duration::from_secs(20) {
        let t = healthz_within_1s(http).unwrap_or_else(|| {
            panic!(
                "/healthz did not answer within 1 s, {:?} into the freeze",
                freeze_start.elapsed()
            )
        });
        slowest = slowest.max(t);
        checks += 1;
        if receiver.is_none() && freeze_start.elapsed() >= Duration::from_secs(10) {
            receiver = Some(Receiver::start_on(port, &[]));
        }
        if !stalled_seen && freeze_start.elapsed() >= Duration::from_secs(8) {
            let (status, body) = readyz(http);
            if status == 503 && body["exporter"]["spool"]["stalled"] == true {
                stalled_seen = true;
            }
        }
        if let Some(r) = &receiver {
            arrived_while_frozen = passes(r).len();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let taken_at_thaw = taken(http);
    drop(frozen);
    let frozen_for = freeze_start.elapsed();
    let receiver = receiver.unwrap();
    assert!(stalled_seen, "/readyz should report the stalled spool disk");
    // Sampling went on at its pace (0.5 s) all through the freeze.
    let during = taken_at_thaw - taken_at_freeze;
    assert!(
        during as f64 >= frozen_for.as_secs_f64() / 0.5 - 3.0,
        "{during} samples in {frozen_for:?}"
    );
    // Delivery from memory went on while the disk was frozen.
    assert!(arrived_while_frozen > 0, "nothing delivered while frozen");
    wait_until(
        Duration::from_secs(30),
        "/readyz 200 after the thaw",
        || readyz(http).0 == 200,
    );
    wait_until(Duration::from_secs(10), "the all-clear in the log", || {
        agent.log().contains("spool disk answers again")
    });
    let (n, log) = agent.stop(Duration::from_secs(30));
    wait_until(Duration::from_secs(20), "every sample", || {
        passes(&receiver).len() as u64 >= n
    });
    let got: Vec<u64> = passes(&receiver).iter().map(|p| p.1).collect();
    assert_eq!(got, (1..=n).collect::<Vec<_>>(), "all, once, in order");
    assert!(log.contains("spool disk stalled"), "{log}");
    assert!(log.contains("spool disk answers again"), "{log}");
    eprintln!(
        "fsfreeze {:.1} s: /healthz answered {checks} times, slowest {:.1} ms; {during} samples taken while frozen, {arrived_while_frozen} delivered while frozen; {n} samples, all received once in order",
        frozen_for.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    );
}

/// `(reason, batches)` of every `batches dropped` line of a log.
fn loss_lines(log: &str) -> Vec<(String, u64, String)> {
    let field = |l: &str, k: &str| -> Option<String> {
        let rest = l.split(&format!(" {k}=")).nth(1)?;
        Some(rest.split(' ').next()?.trim_matches('"').to_string())
    };
    log.lines()
        .filter(|l| l.contains("batches dropped"))
        .map(|l| {
            (
                field(l, "reason").unwrap(),
                field(l, "batches").unwrap().parse().unwrap(),
                l.split(" cause=").nth(1).unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_full_tmpfs_a_deleted_spool_and_a_bogus_ack_keep_the_books_exact() {
    let work = tempfile::tempdir().unwrap();
    let fs = Mounted::tmpfs(&work.path().join("small"), "256k");
    let spool = fs.0.join("spool");
    let port = free_port();
    let http = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{http}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ("NODE_AGENT_QUEUE_MEMORY_BYTES", "65536"),
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.05"),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.05"),
        ("AGENT_SEND_BACKOFF_MAX_SEC", "0.5"),
        ("NODE_AGENT_SHUTDOWN_GRACE_SEC", "1"),
    ];
    let mut env_a = env.to_vec();
    env_a.push(("NODE_AGENT_HTTP_LISTEN", &listen));
    let a = Agent::start(work.path(), "agent-a", &env_a);
    wait_for_port(http, Duration::from_secs(20));
    let dropped = |reason: &str| -> u64 {
        readyz(http).1["exporter"]["dropped_by_reason"][reason]
            .as_u64()
            .unwrap_or(0)
    };
    // The filesystem fills (ENOSPC long before the 256 MiB spool budget): oldest segments go.
    wait_until(Duration::from_secs(60), "a full filesystem", || {
        dropped("spool_full") >= 2
    });
    // The spool directory is deleted under the running agent.
    wait_until(Duration::from_secs(10), "the spool removed", || {
        let _ = std::fs::remove_dir_all(&spool);
        !spool.exists()
    });
    wait_until(Duration::from_secs(20), "the directory re-created", || {
        a.log().contains("spool directory re-created") && spool.join("metrics").exists()
    });
    let lost_with_dir = dropped("unreadable");
    assert!(
        lost_with_dir > 0,
        "the deleted directory held disk-only batches"
    );
    let full_before = dropped("spool_full");
    wait_until(Duration::from_secs(60), "the filesystem full again", || {
        dropped("spool_full") > full_before
    });
    // The books balance at any moment.
    for _ in 0..5 {
        let e = &readyz(http).1["exporter"];
        let q = &e["queue"];
        let u = |v: &serde_json::Value| v.as_u64().unwrap();
        assert_eq!(
            u(&e["enqueued"]) + u(&e["recovered"]),
            u(&e["sent"]) + u(&e["dropped"]) + u(&q["memory_batches"]) + u(&q["disk_batches"]),
            "{e}"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    let (n_a, log_a) = a.stop(Duration::from_secs(20));
    let lines = loss_lines(&log_a);
    let logged: u64 = lines.iter().map(|l| l.1).sum();
    assert!(
        lines
            .iter()
            .any(|l| l.0 == "spool_full" && l.2.contains("ENOSPC")),
        "{log_a}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.0 == "unreadable" && l.2.contains("gone")),
        "{log_a}"
    );
    // The filesystem is full to the last page: make room for the bogus ack (past the end of the
    // spool). It must not make anything be skipped.
    run(Command::new("mount")
        .args(["-o", "remount,size=512k"])
        .arg(&fs.0));
    std::fs::write(spool.join("metrics/ack"), "99999999 123456\n").unwrap();
    let receiver = Receiver::start_on(port, &[]);
    let http_b = free_port();
    let listen_b = format!("127.0.0.1:{http_b}");
    let mut env_b = env.to_vec();
    env_b.push(("NODE_AGENT_HTTP_LISTEN", &listen_b));
    let b = Agent::start(work.path(), "agent-b", &env_b);
    wait_for_port(http_b, Duration::from_secs(20));
    wait_until(
        Duration::from_secs(60),
        "the replay and new samples",
        || {
            let e = readyz(http_b).1;
            let p = passes(&receiver);
            e["exporter"]["queue"]["disk_batches"] == 0
                && p.iter().any(|&(s, v)| s != p[0].0 && v >= 5)
        },
    );
    let recovered = readyz(http_b).1["exporter"]["recovered"].as_u64().unwrap();
    let (n_b, log_b) = b.stop(Duration::from_secs(20));
    assert!(log_b.contains("ignoring a bad ack file"), "{log_b}");
    let got = passes(&receiver);
    let start_a = got[0].0;
    let mut from_a: Vec<u64> = got.iter().filter(|p| p.0 == start_a).map(|p| p.1).collect();
    let from_b = got.len() - from_a.len();
    let received_a = from_a.len() as u64;
    from_a.dedup();
    assert_eq!(from_a.len() as u64, received_a, "nothing doubled");
    assert!(
        from_a.windows(2).all(|w| w[0] < w[1]),
        "in order: {from_a:?}"
    );
    // Every sample A took was delivered (after the restart) or dropped, counted and logged once.
    assert_eq!(
        n_a,
        received_a + logged,
        "A took {n_a}: {received_a} received + {logged} in `batches dropped` lines {lines:?}"
    );
    assert_eq!(recovered, received_a, "B replayed everything A left");
    assert_eq!(from_b as u64, n_b);
    assert!(loss_lines(&log_b).is_empty(), "{log_b}");
    eprintln!(
        "256 KiB tmpfs: A took {n_a}; {received_a} delivered after the restart (bogus ack ignored), {logged} dropped in {} log lines ({:?}); B took {n_b}, all delivered",
        lines.len(),
        lines
            .iter()
            .map(|l| (l.0.as_str(), l.1))
            .collect::<Vec<_>>()
    );
}
