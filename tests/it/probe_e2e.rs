//! End to end: the real agent binary, a static target in its config file, a real Java server
//! (npm minecraft-protocol) on loopback, and the decoding OTLP receiver (reference
//! opentelemetry-proto classes). The players count that arrives must be the one the server was
//! started with, with the contract's attributes. `node-agent check` shows the same target.

use crate::harness::{
    Proc, Receiver, agent_command, free_port, peers_dir, repo_root, require, wait_for_port,
    wait_until,
};
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) fn java_server(port: u16, online: u32, max: u32) -> Proc {
    let nm = require(&peers_dir().join("npm-java/node_modules"));
    let p = Proc::spawn(
        "java_slp_server.js",
        Command::new("node")
            .arg(repo_root().join("tests/peers/java_slp_server.js"))
            .args([
                port.to_string(),
                online.to_string(),
                max.to_string(),
                "e2e lobby".into(),
            ])
            .env("NODE_PATH", nm)
            .stdout(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(30));
    p
}

fn config(dir: &std::path::Path, port: u16, dead_port: u16) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"players_interval_min_sec = 1
players_interval_max_sec = 1
sample_interval_min_sec = 60
sample_interval_max_sec = 60

[[static_targets]]
name = "lobby"
address = "127.0.0.1"
port = {port}
protocol = "minecraft-java"

[[static_targets]]
name = "gone"
address = "127.0.0.1"
port = {dead_port}
protocol = "minecraft-java"
"#
        ),
    )
    .unwrap();
    path
}

fn point_for(metric: &serde_json::Value, port: u16) -> Vec<&serde_json::Value> {
    metric["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attrs"]["server.port"] == port)
        .collect()
}

#[test]
fn agent_exports_players_of_a_real_java_server() {
    let online = fastrand::u32(1..500);
    let max = online + fastrand::u32(1..500);
    let port = free_port();
    let dead_port = free_port();
    let _server = java_server(port, online, max);
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), port, dead_port);
    let mut agent = Proc::spawn(
        "node-agent",
        agent_command()
            .args(["--config", cfg.to_str().unwrap(), "run"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("NODE_AGENT_SPOOL_DIR", dir.path().join("spool"))
            .stdout(Stdio::null()),
    );
    let find = |name: &str| {
        receiver
            .metrics()
            .into_iter()
            .filter(|m| m["name"] == name)
            .collect::<Vec<_>>()
    };
    wait_until(
        Duration::from_secs(60),
        "gameserver metrics at the receiver",
        || !find("gameserver.players.online").is_empty() && !find("gameserver.status").is_empty(),
    );
    let online_m = &find("gameserver.players.online")[0];
    assert_eq!(online_m["unit"], "{player}");
    assert_eq!(online_m["kind"], "gauge");
    let pts = point_for(online_m, port);
    assert_eq!(pts.len(), 1, "{online_m}");
    assert_eq!(pts[0]["value"], online);
    let attrs = &pts[0]["attrs"];
    assert_eq!(attrs["gameserver.protocol"], "minecraft-java");
    assert_eq!(attrs["server.address"], "127.0.0.1");
    assert_eq!(attrs["server.port"], port);
    assert!(
        attrs.get("pterodactyl.server.uuid").is_none(),
        "static targets have no uuid"
    );
    // The dead target has no players point but a status.
    assert!(point_for(online_m, dead_port).is_empty());

    let max_m = &find("gameserver.players.max")[0];
    assert_eq!(point_for(max_m, port)[0]["value"], max);

    let status = &find("gameserver.status")[0];
    let state_of = |p: u16| {
        let pts = point_for(status, p);
        assert_eq!(pts.len(), 3, "all three states are emitted");
        pts.iter()
            .filter(|p| p["value"] == 1)
            .map(|p| p["attrs"]["gameserver.state"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(state_of(port), ["up"]);
    assert_eq!(state_of(dead_port), ["down"]);

    let ping = &find("gameserver.ping.duration")[0];
    assert_eq!(ping["unit"], "s");
    let rtt = point_for(ping, port)[0]["value"].as_f64().unwrap();
    assert!(rtt > 0.0 && rtt < 5.0, "{rtt}");

    // A clean shutdown.
    agent.signal(libc::SIGTERM);
    let status = agent
        .wait_timeout(Duration::from_secs(30))
        .expect("agent exits on SIGTERM");
    assert!(status.success());
}

#[test]
fn check_shows_each_target() {
    let online = fastrand::u32(1..500);
    let max = online + 7;
    let port = free_port();
    let dead_port = free_port();
    let _server = java_server(port, online, max);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), port, dead_port);
    let out = agent_command()
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .env("OTEL_METRICS_EXPORTER", "none")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("lobby"))
        .unwrap_or_else(|| panic!("no lobby line in:\n{text}"));
    assert!(line.contains("minecraft-java"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}/tcp")), "{line}");
    assert!(line.contains(" up "), "{line}");
    assert!(line.contains(&format!("{online}/{max}")), "{line}");
    let gone = text.lines().find(|l| l.contains("gone")).unwrap();
    assert!(gone.contains(" down "), "{gone}");

    let out = agent_command()
        .args(["--config", cfg.to_str().unwrap(), "check", "--json"])
        .env("OTEL_METRICS_EXPORTER", "none")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let games = report["game_servers"].as_array().unwrap();
    assert_eq!(games.len(), 2);
    assert_eq!(games[0]["state"], "up");
    assert_eq!(games[0]["status"]["online"], online);
    assert!(games[0]["status"]["latency"].as_f64().unwrap() > 0.0);
    assert_eq!(games[1]["state"], "down");
}

#[test]
fn a_bad_static_target_stops_the_agent_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[static_targets]]\naddress = \"127.0.0.1\"\nport = 1\nprotocol = \"gopher\"\n",
    )
    .unwrap();
    let out = agent_command()
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .env("NODE_AGENT_SPOOL_DIR", dir.path().join("spool"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("unknown protocol `gopher`"), "{all}");
}

/// No game-server configuration at all: the servers Wings reports (stand-in with the documented
/// shapes) are probed on their allocation, by the protocol the heuristics pick from the image and
/// invocation, and the points carry the server's UUID. An offline server is not probed.
#[test]
fn servers_discovered_from_wings_are_probed() {
    use crate::harness::wings::{Wings, server};
    const LOBBY: &str = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
    const OFF: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d";
    let online = fastrand::u32(1..200);
    let max = online + fastrand::u32(1..200);
    let port = free_port();
    let off_port = free_port();
    let _server = java_server(port, online, max);
    let mut lobby = server(LOBBY, "Lobby", "running");
    lobby["configuration"]["allocations"] = serde_json::json!({"force_outgoing_ip": false, "default": {"ip": "127.0.0.1", "port": port}, "mappings": {"127.0.0.1": [port]}});
    let mut off = server(OFF, "Old world", "offline");
    off["configuration"]["allocations"] = serde_json::json!({"force_outgoing_ip": false, "default": {"ip": "127.0.0.1", "port": off_port}, "mappings": {"127.0.0.1": [off_port]}});
    let wings = Wings::start("wings-tok", &serde_json::json!([lobby, off]));
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Proc::spawn(
        "node-agent",
        agent_command()
            .arg("run")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url())
            .env("WINGS_BASE_URL", wings.url())
            .env("WINGS_TOKEN", "wings-tok")
            .env(
                "DOCKER_HOST",
                format!("unix://{}/no-docker.sock", dir.path().display()),
            )
            .env("AGENT_DISCOVERY_INTERVAL_SEC", "0.5")
            .env("AGENT_PLAYERS_INTERVAL_MIN_SEC", "0.5")
            .env("AGENT_PLAYERS_INTERVAL_MAX_SEC", "0.5")
            .env("NODE_AGENT_SPOOL_DIR", dir.path().join("spool"))
            .stdout(Stdio::null()),
    );
    let lobby_points = || {
        receiver
            .metrics()
            .into_iter()
            .filter(|m| m["name"] == "gameserver.players.online")
            .flat_map(|m| m["points"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["attrs"]["pterodactyl.server.uuid"] == LOBBY)
            .collect::<Vec<_>>()
    };
    wait_until(
        Duration::from_secs(60),
        "players of the Wings server",
        || !lobby_points().is_empty(),
    );
    let p = &lobby_points()[0];
    assert_eq!(p["value"], online);
    assert_eq!(p["attrs"]["gameserver.protocol"], "minecraft-java");
    assert_eq!(p["attrs"]["server.port"], port);
    // The offline server gets no players point (it is not probed).
    let off_players = receiver
        .metrics()
        .into_iter()
        .filter(|m| m["name"] == "gameserver.players.online")
        .flat_map(|m| m["points"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["attrs"]["pterodactyl.server.uuid"] == OFF)
        .count();
    assert_eq!(off_players, 0);
    agent.signal(libc::SIGTERM);
    assert!(
        agent
            .wait_timeout(Duration::from_secs(30))
            .expect("exits")
            .success()
    );
}
