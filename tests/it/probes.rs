//! Game-server probes against real servers on loopback: a Java server from npm
//! `minecraft-protocol` (modern and legacy ping) and from PyPI `quarry`, a Bedrock server from
//! npm `bedrock-protocol`. Query and A2S have no server implementation in any registry we reach,
//! so their stand-ins (tests/peers/udp_game_peers.py) are first proven right with independent
//! clients (`mcstatus`, `python-a2s`) in the same test, then the agent's probe is checked against
//! them. Ground truth everywhere: the player count the server was started with (random per run).

use crate::harness::{Proc, free_port, peers_dir, python_path, repo_root, require, wait_for_port};
use node_agent::sources::probe::prober::Prober;
use node_agent::sources::probe::targets::{ProbeConfig, ServerInfo};
use node_agent::sources::probe::{self, ErrorKind, Limits, Protocol, State};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn limits() -> Limits {
    // Generous: a 2-core CI machine running several node servers at once.
    Limits::from_timeout(Duration::from_secs(5))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Random ground truth: (online, max) with online <= max.
fn counts() -> (u32, u32) {
    let online = fastrand::u32(1..200);
    (online, online + fastrand::u32(1..100))
}

/// Starts a peer and waits for its "listening" line on stdout.
fn start_peer(name: &str, cmd: &mut Command) -> Proc {
    let mut p = Proc::spawn(name, cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()));
    let out = p.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{name} did not start listening"));
    p
}

fn node_peer(script: &str, modules: &str, port: u16, online: u32, max: u32, motd: &str) -> Proc {
    let nm = require(&peers_dir().join(modules).join("node_modules"));
    start_peer(
        script,
        Command::new("node")
            .arg(repo_root().join("tests/peers").join(script))
            .args([
                port.to_string(),
                online.to_string(),
                max.to_string(),
                motd.into(),
            ])
            .env("NODE_PATH", nm),
    )
}

fn udp_peer(kind: &str, port: u16, online: u32, max: u32, extra: &[&str]) -> Proc {
    start_peer(
        "udp_game_peers.py",
        Command::new("python3")
            .arg(repo_root().join("tests/peers/udp_game_peers.py"))
            .args([
                kind,
                &port.to_string(),
                &online.to_string(),
                &max.to_string(),
            ])
            .args(extra),
    )
}

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Retries `probe` until it answers (UDP servers bind a moment after they print) or 30 s pass.
async fn probe_until_up(p: Protocol, port: u16) -> probe::Status {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match probe::probe(p, "127.0.0.1", addr(port), &limits()).await {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("{p} never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// An independent client's view, as JSON printed by a Python one-liner.
fn python_json(code: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .args(["-c", code])
        .env("PYTHONPATH", python_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "independent client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_server_from_minecraft_protocol_modern_and_legacy() {
    let (online, max) = counts();
    let port = free_port();
    let _server = node_peer(
        "java_slp_server.js",
        "npm-java",
        port,
        online,
        max,
        "peer-test lobby",
    );
    wait_for_port(port, Duration::from_secs(30));
    for _ in 0..3 {
        let s = probe::probe(Protocol::MinecraftJava, "127.0.0.1", addr(port), &limits())
            .await
            .unwrap();
        assert_eq!((s.online, s.max), (Some(online), Some(max)), "{s:?}");
        assert_eq!(s.version.as_deref(), Some("1.20.4"));
        assert_eq!(s.motd.as_deref(), Some("peer-test lobby"));
        assert!(s.latency.is_some());
        assert_eq!(s.state(), State::Up);
    }
    // The legacy FE 01 ping (what pre-1.7 servers speak) against the same real server.
    let s = probe::probe(
        Protocol::MinecraftLegacy,
        "127.0.0.1",
        addr(port),
        &limits(),
    )
    .await
    .unwrap();
    assert_eq!((s.online, s.max), (Some(online), Some(max)), "{s:?}");
    assert_eq!(s.motd.as_deref(), Some("peer-test lobby"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_server_from_quarry() {
    let (online, max) = counts();
    let port = free_port();
    let _server = Proc::spawn(
        "quarry",
        Command::new("python3")
            .arg(repo_root().join("tests/peers/quarry_slp.py"))
            .args([
                &port.to_string(),
                &online.to_string(),
                &max.to_string(),
                "quarry lobby",
            ])
            .env("PYTHONPATH", python_path())
            // quarry logs a traceback for the -1 handshake it hangs up on (see java::FALLBACK_PROTOCOL)
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(30));
    let s = probe::probe(Protocol::MinecraftJava, "127.0.0.1", addr(port), &limits())
        .await
        .unwrap();
    assert_eq!((s.online, s.max), (Some(online), Some(max)), "{s:?}");
    assert_eq!(s.motd.as_deref(), Some("quarry lobby"));
    assert!(s.latency.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_server_from_bedrock_protocol() {
    let (online, max) = counts();
    let port = free_udp_port();
    let _server = node_peer(
        "bedrock_server.js",
        "npm-bedrock",
        port,
        online,
        max,
        "peer-test bedrock",
    );
    let s = probe_until_up(Protocol::MinecraftBedrock, port).await;
    assert_eq!((s.online, s.max), (Some(online), Some(max)), "{s:?}");
    assert_eq!(s.motd.as_deref(), Some("peer-test bedrock"));
    for _ in 0..3 {
        let s = probe::probe(
            Protocol::MinecraftBedrock,
            "127.0.0.1",
            addr(port),
            &limits(),
        )
        .await
        .unwrap();
        assert_eq!((s.online, s.max), (Some(online), Some(max)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_stand_in_proven_by_mcstatus_then_probed() {
    let (online, max) = counts();
    let port = free_udp_port();
    let _server = udp_peer("query", port, online, max, &[]);
    // 1. The stand-in is right: the independent client mcstatus reads the same counts.
    let truth = python_json(&format!(
        "import json; from mcstatus import JavaServer; q = JavaServer('127.0.0.1', {port}).query(); \
         print(json.dumps({{'online': q.players.online, 'max': q.players.max, 'names': q.players.list}}))"
    ));
    assert_eq!(truth["online"], online);
    assert_eq!(truth["max"], max);
    assert_eq!(truth["names"].as_array().unwrap().len(), online as usize);
    // 2. The agent's probe agrees.
    let s = probe_until_up(Protocol::MinecraftQuery, port).await;
    assert_eq!((s.online, s.max), (Some(online), Some(max)), "{s:?}");
    assert_eq!(s.version.as_deref(), Some("1.20.4"));
    assert!(s.latency.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2s_stand_in_proven_by_python_a2s_then_probed() {
    let (online, max) = (fastrand::u32(1..100), fastrand::u32(100..255));
    let port = free_udp_port();
    let _server = udp_peer("a2s", port, online, max, &[]);
    let truth = python_json(&format!(
        "import json, a2s; i = a2s.info(('127.0.0.1', {port}), timeout=5); \
         print(json.dumps({{'online': i.player_count, 'max': i.max_players, 'name': i.server_name}}))"
    ));
    assert_eq!(
        (truth["online"].as_u64(), truth["max"].as_u64()),
        (Some(online as u64), Some(max as u64))
    );
    let s = probe_until_up(Protocol::SourceA2s, port).await;
    assert_eq!((s.online, s.max), (Some(online), Some(max)), "{s:?}");
    assert_eq!(s.motd.as_deref(), Some("peer-test srcds"));

    // A Rust server: one-byte counts wrap, the cp/mp keywords carry the truth.
    let port = free_udp_port();
    let _rust = udp_peer("a2s", port, 260, 300, &["--keywords", "mp300,cp260,qp0"]);
    let truth = python_json(&format!(
        "import json, a2s; i = a2s.info(('127.0.0.1', {port}), timeout=5); \
         print(json.dumps({{'online': i.player_count, 'max': i.max_players, 'keywords': i.keywords}}))"
    ));
    assert_eq!(truth["keywords"], "mp300,cp260,qp0");
    assert_eq!(
        truth["max"],
        300 % 256,
        "the byte wraps, as on real Rust servers"
    );
    let s = probe_until_up(Protocol::SourceA2s, port).await;
    assert_eq!((s.online, s.max), (Some(260), Some(300)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_refused_and_down() {
    let port = free_port();
    let e = probe::probe(Protocol::MinecraftJava, "127.0.0.1", addr(port), &limits())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert_eq!(e.kind.state(), State::Down);
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

/// The detection walk: an egg we know nothing about gets the generic scan (Java, Bedrock, A2S on
/// the game port); the A2S answer wins and is remembered; Wings' state gates probing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_detects_remembers_and_gates() {
    let (online, max) = (fastrand::u32(1..50), fastrand::u32(50..100));
    let port = free_udp_port();
    let _server = udp_peer("a2s", port, online, max, &["--no-challenge"]);
    probe_until_up(Protocol::SourceA2s, port).await;
    let mut prober = Prober::new(
        ProbeConfig::default(),
        Limits::from_timeout(Duration::from_secs(3)),
        None,
        4,
    );
    let server = ServerInfo {
        uuid: "8d4f0e7a-0000-4000-8000-000000000001".into(),
        name: "mystery".into(),
        state: "running".into(),
        image: "ghcr.io/parkervcp/yolks:debian".into(),
        invocation: "./start".into(),
        default_alloc: ("0.0.0.0".into(), port),
        ports: vec![port],
        ..Default::default()
    };
    let r = prober.pass(std::slice::from_ref(&server)).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].protocol, Protocol::SourceA2s, "{:?}", r[0]);
    assert_eq!(r[0].state, State::Up);
    assert_eq!(r[0].address, "127.0.0.1");
    let st = r[0].status.as_ref().unwrap();
    assert_eq!((st.online, st.max), (Some(online), Some(max)));
    // Second pass: straight to the remembered winner.
    let r = prober.pass(std::slice::from_ref(&server)).await;
    assert_eq!(
        (r[0].protocol, r[0].state),
        (Protocol::SourceA2s, State::Up)
    );
    // Wings says offline: not probed, down.
    let mut off = server.clone();
    off.state = "offline".into();
    let r = prober.pass(&[off]).await;
    assert_eq!((r[0].state, r[0].probed), (State::Down, false));
    // Wings says starting, nothing answers: starting, not down.
    let mut starting = server.clone();
    starting.state = "starting".into();
    starting.default_alloc.1 = free_port();
    let r = prober.pass(&[starting]).await;
    assert_eq!(
        (r[0].state, r[0].probed),
        (State::Starting, true),
        "{:?}",
        r[0]
    );
}
