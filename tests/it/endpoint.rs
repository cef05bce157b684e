//! The local endpoint against hostile and careless clients, with real connections from this test
//! process to the real agent binary: a flood of unterminated requests (memory measured from the
//! agent's /proc status, `/healthz` answering throughout), the per-connection limits, peer text in
//! `/readyz`, and `promtool check metrics` on the agent's `/metrics`.

use crate::harness::docker::Dockerd;
use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The unit's memory budget for the agent under attack (docs/deployment.md sets MemoryMax=256M).
const RSS_LIMIT_KIB: u64 = 64 << 10;
/// The endpoint's connection cap (src/serve/conns.rs).
const MAX_CONNECTIONS: usize = 128;

/// Raises this process's open-file limit so it can hold thousands of connections.
fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// The agent with its endpoint on a free port; `nofile` sets its open-file limit (soft and hard),
/// like a unit's `LimitNOFILE=`.
fn agent(port: u16, nofile: Option<u64>, extra: &[(&str, &str)]) -> (Proc, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = agent_command();
    cmd.arg("run")
        .env("NODE_AGENT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
        .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
        .env("NODE_AGENT_LOG_FORMAT", "text")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap());
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; runs in the child before exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let p = Proc::spawn("node-agent", &mut cmd);
    wait_for_port(port, Duration::from_secs(30));
    (p, dir)
}

fn status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Open sockets only (connections and listeners; the samplers' kept files come and go apart).
fn open_sockets(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// One HTTP/1.1 request on a fresh connection; the whole response as text.
fn http(port: u16, request: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn get(port: u16, path: &str) -> String {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Probes `/healthz` every 100 ms until stopped: (probes, failures, slowest).
fn probe(
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u32, Vec<String>, Duration)> {
    std::thread::spawn(move || {
        let (mut n, mut failures, mut slowest) = (0, Vec::new(), Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = http(
                port,
                "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                Duration::from_secs(5),
            );
            let took = t.elapsed();
            n += 1;
            slowest = slowest.max(took);
            match r {
                Ok(text) if text.starts_with("HTTP/1.1 200") && body(&text) == "ok\n" => {}
                other => failures.push(format!("{other:?} after {took:?}")),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (n, failures, slowest)
    })
}

/// Opens `n` connections that each send an unterminated request head (4 KiB, or 400 KiB for every
/// fourth, like the attack that grew the agent to 840 MB) and keeps them open.
fn flood(port: u16, n: usize) -> Vec<TcpStream> {
    let mut head = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 4096));
    let big = vec![b'b'; 400 << 10];
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // The agent may already have closed it: errors are the point, not a failure.
        let _ = s.write_all(&head);
        if i % 4 == 0 {
            let _ = s.write_all(&big);
        }
        held.push(s);
    }
    held
}

fn flood_scenario(nofile: Option<u64>) {
    raise_own_fd_limit();
    let port = free_port();
    let (agent, dir) = agent(port, nofile, &[]);
    let pid = agent.pid();
    assert!(get(port, "/healthz").starts_with("HTTP/1.1 200"));
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(port, stop.clone());
    let watch_stop = stop.clone();
    let watcher = std::thread::spawn(move || {
        let (mut rss, mut fds) = (0, 0);
        while !watch_stop.load(Ordering::Relaxed) {
            rss = rss.max(status_kib(pid, "VmRSS:"));
            fds = fds.max(open_fds(pid));
            std::thread::sleep(Duration::from_millis(50));
        }
        (rss, fds)
    });
    let base_fds = open_fds(pid);
    let base_sockets = open_sockets(pid);
    // Two waves of 2,000: the second arrives while the first is still held open.
    let wave1 = flood(port, 2000);
    std::thread::sleep(Duration::from_secs(2));
    let wave2 = flood(port, 2000);
    std::thread::sleep(Duration::from_secs(2));
    let during = status_kib(pid, "VmRSS:");
    drop((wave1, wave2));
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (probes, failures, slowest) = prober.join().unwrap();
    let (max_rss, max_fds) = watcher.join().unwrap();
    let hwm = status_kib(pid, "VmHWM:");
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    eprintln!(
        "flood (nofile {nofile:?}): {probes} /healthz probes, slowest {slowest:?}; RSS during {during} KiB, max {max_rss} KiB, peak (VmHWM) {hwm} KiB; fds {base_fds} before, max {max_fds}"
    );
    // Every probe answered within its 5 s timeout. How fast is measured on the release binary
    // (docs/benchmarks.md#hostile-clients-and-careless-input), not asserted here: a loaded CI machine is no clock.
    assert!(failures.is_empty(), "/healthz failed: {failures:?}\n{log}");
    assert!(probes >= 10, "only {probes} probes");
    assert!(hwm < RSS_LIMIT_KIB, "peak RSS {hwm} KiB");
    assert!(
        max_fds <= base_fds + MAX_CONNECTIONS + 8,
        "{max_fds} descriptors open (cap {MAX_CONNECTIONS})"
    );
    assert!(
        log.contains("too many connections"),
        "the cap is logged:\n{log}"
    );
    // Once the flood is gone the endpoint is whole again, and holds no connection.
    assert!(get(port, "/metrics").contains("system_cpu_time_seconds_total"));
    wait_until(Duration::from_secs(10), "connections to close", || {
        open_sockets(pid) <= base_sockets + 2
    });
    // One warning per episode, not one line per connection or error.
    let lines = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(lines <= 6, "{lines} warnings:\n{log}");
}

#[test]
fn connection_flood_keeps_memory_bounded_and_healthz_answering() {
    // As the systemd unit runs it (LimitNOFILE=4096)...
    flood_scenario(Some(4096));
}

#[test]
fn connection_flood_with_few_descriptors_still_serves_healthz() {
    // ...and with so few descriptors that accept(2) fails with EMFILE before the cap is reached.
    flood_scenario(Some(96));
}

#[test]
fn one_connection_is_bounded_in_size_and_time() {
    let port = free_port();
    let (_agent, _dir) = agent(port, None, &[]);
    let t = Duration::from_secs(10);
    // A head over 8 KiB: 431, connection closed.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(16 << 10)
    );
    let r = http(port, &big, t).unwrap_or_default();
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    // A body: refused without being read.
    let r = http(
        port,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\nxx",
        t,
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = http(
        port,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        t,
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = http(
        port,
        "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        t,
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    // Silent after connecting, or idle after a response: closed after the 5 s header timeout.
    for first in ["", "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(first.as_bytes()).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let took = started.elapsed();
        assert!(
            // Not before the timeout; well before the read timeout (a connection never closed).
            took >= Duration::from_millis(4500) && took < Duration::from_secs(25),
            "{first:?}: closed after {took:?}"
        );
        if !first.is_empty() {
            assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
        }
    }
}

#[test]
fn peer_text_in_readyz_is_capped_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let _docker = Proc::spawn(
        "hostile_docker.py",
        Command::new("python3")
            .arg(repo_root().join("tests/peers/hostile_docker.py"))
            .arg(&sock)
            .arg((10 << 20).to_string())
            .stdout(Stdio::null()),
    );
    wait_until(Duration::from_secs(20), "the Docker stand-in", || {
        sock.exists()
    });
    let port = free_port();
    let host = format!("unix://{}", sock.display());
    let (_agent, d) = agent(
        port,
        None,
        &[
            ("DOCKER_HOST", &host),
            ("AGENT_DISCOVERY_INTERVAL_SEC", "0.5"),
        ],
    );
    let mut last = String::new();
    wait_until(
        Duration::from_secs(30),
        "the docker error in /readyz",
        || {
            last = get(port, "/readyz");
            last.contains("No such container")
        },
    );
    let text = body(&last);
    assert!(text.len() < 8 << 10, "/readyz is {} bytes", text.len());
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let e = v["samplers"]["docker"]["last_error"].as_str().unwrap();
    assert!(
        !e.chars().any(char::is_control),
        "control characters: {e:?}"
    );
    assert!(e.contains("\\nINFO") || e.contains("\\n2026"), "{e}");
    // Escaped either by the agent (`\u{1b}`) or still in the JSON escape the peer sent, when the
    // body was too large to decode and only its escaped prefix is shown.
    assert!(e.contains("\\u{1b}[2J") || e.contains("\\u001b[2J"), "{e}");
    assert!(e.contains("…(+") && e.ends_with(" bytes)"), "{e}");
    assert!(e.chars().count() < 400, "{} chars", e.chars().count());
    // The log: the error is in one line per episode, escaped and cut; nothing forged a line.
    let log = std::fs::read_to_string(d.path().join("agent.log")).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("No such container"))
        .collect();
    // Each component that met the failure (discovery, the logs source's listing and its event
    // stream) says so once per episode, not once per attempt.
    let mut said: Vec<&str> = lines
        .iter()
        .map(|l| {
            let l = l.split_once(' ').map_or(*l, |(_, rest)| rest);
            l.split(" error=").next().unwrap_or(l)
        })
        .collect();
    let n = said.len();
    said.sort_unstable();
    said.dedup();
    assert_eq!(said.len(), n, "one line per episode:\n{log:.4000}");
    assert!(lines.iter().any(|l| l.contains("discovery")), "{log:.4000}");
    for l in &lines {
        assert!(
            l.contains("\\n2026-11-30") && (l.contains("\\u{1b}[2J") || l.contains("\\u001b[2J")),
            "{l}"
        );
    }
    assert!(
        lines.iter().all(|l| l.len() < 16 << 10),
        "a line over 16 KiB"
    );
    assert!(!log.chars().any(|c| c.is_control() && c != '\n'));
    assert!(!log.lines().any(|l| l.starts_with("2026-11-30T00:00:00Z")));
    // Reported, not asserted: reading the 10 MB body belongs to the Docker client's own bounds
    // (a debug build peaks near 64 MiB with this branch's client, the release one at 49 MiB).
    let hwm = status_kib(_agent.pid(), "VmHWM:");
    eprintln!(
        "hostile Docker (10 MB errors): peak RSS {hwm} KiB, /readyz {} bytes",
        text.len()
    );
}

/// What `promtool check metrics` says about a /metrics text: one finding per line.
fn promtool_findings(text: &str) -> Vec<String> {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "promtool failed: {all}"
    );
    all.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The documented exceptions (docs/metrics.md#prometheus-names): names the Collector's
/// translation gives these metrics, which promtool's `_count` rule flags.
const ALLOWED: &[&str] = &[
    "system_cpu_logical_count non-histogram and non-summary metrics should not have \"_count\" suffix",
    "container_count non-histogram and non-summary metrics should not have \"_count\" suffix",
];

#[test]
fn promtool_accepts_metrics_but_the_documented_names() {
    // Every family the agent has on a test host: the node, a real Docker engine with a running
    // and a stopped container, a real Java server probed as a static target, and the agent itself.
    let docker = Dockerd::start();
    let image = docker.build_image();
    docker.run_detached("up", &image, &["sleep", "600"]);
    docker.run(&[
        "create",
        "--network",
        "none",
        "--name",
        "down",
        &image,
        "true",
    ]);
    let mc_port = free_port();
    let nm = require(&peers_dir().join("npm-java/node_modules"));
    let _java = Proc::spawn(
        "java_slp_server.js",
        Command::new("node")
            .arg(repo_root().join("tests/peers/java_slp_server.js"))
            .args([mc_port.to_string(), "3".into(), "20".into(), "lobby".into()])
            .env("NODE_PATH", nm)
            .stdout(Stdio::null()),
    );
    wait_for_port(mc_port, Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "players_interval_min_sec = 1\nplayers_interval_max_sec = 1\n\n[[static_targets]]\nname = \"lobby\"\naddress = \"127.0.0.1\"\nport = {mc_port}\nprotocol = \"minecraft-java\"\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let host = docker.host();
    let cfg_path = cfg.to_str().unwrap().to_string();
    let (_agent, _d) = agent(
        port,
        None,
        &[
            ("DOCKER_HOST", &host),
            ("NODE_AGENT_CONFIG", &cfg_path),
            ("AGENT_DISCOVERY_INTERVAL_SEC", "1"),
        ],
    );
    let mut text = String::new();
    wait_until(Duration::from_secs(60), "every family in /metrics", || {
        text = body(&get(port, "/metrics")).to_string();
        [
            "system_cpu_time_seconds_total",
            "container_cpu_time_seconds_total",
            "container_count",
            "gameserver_players_online",
            "node_agent_sampler_passes_total",
        ]
        .iter()
        .all(|m| text.contains(m))
    });
    let findings = promtool_findings(&text);
    let unexpected: Vec<&String> = findings
        .iter()
        .filter(|f| !ALLOWED.contains(&f.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool check metrics: {unexpected:#?}"
    );
    // The allow-list is not stale: both names are there and flagged, nothing else is.
    assert_eq!(findings.len(), ALLOWED.len(), "{findings:#?}");
}

#[test]
fn metrics_follow_every_new_sample() {
    // /metrics is rendered once per sample and shared; each new sample must show.
    let port = free_port();
    let (_agent, _dir) = agent(
        port,
        None,
        &[
            ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.2"),
            ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.2"),
        ],
    );
    let passes = || -> u64 {
        let text = get(port, "/metrics");
        body(&text)
            .lines()
            .find(|l| {
                l.starts_with("node_agent_sampler_passes_total{") && l.contains("sampler=\"node\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(10), "a first sample", || passes() > 0);
    let mut last = 0;
    for _ in 0..12 {
        // Two fetches in a row may share a body; after 0.5 s there must be a newer one.
        let now = passes();
        assert!(now > last, "passes went from {last} to {now}");
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }
}
