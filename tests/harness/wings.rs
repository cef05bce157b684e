//! The Wings stand-in (`tests/peers/wings_standin.py`): the routes, auth answers and JSON shapes
//! of docs/containers.md#calls, since no real Wings can run here.

use super::{Proc, free_port, wait_for_port};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Wings stand-in, with its server list and mode files.
pub struct Wings {
    pub port: u16,
    dir: tempfile::TempDir,
    _proc: Proc,
}

impl Wings {
    pub fn start(token: &str, servers: &Value) -> Wings {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("servers.json"), servers.to_string()).unwrap();
        std::fs::write(dir.path().join("mode"), "ok").unwrap();
        let port = free_port();
        let proc = Proc::spawn(
            "wings_standin.py",
            Command::new("python3")
                .arg(super::repo_root().join("tests/peers/wings_standin.py"))
                .arg(port.to_string())
                .arg(token)
                .arg(dir.path().join("servers.json"))
                .arg(dir.path().join("mode"))
                .stdout(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(20));
        Wings {
            port,
            dir,
            _proc: proc,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn mode(&self, m: &str) {
        std::fs::write(self.dir.path().join("mode"), m).unwrap();
    }
}

/// The documented example server (tests/fixtures/wings/servers.json, docs/containers.md#calls) under a given UUID, name and state.
pub fn server(uuid: &str, name: &str, state: &str) -> Value {
    let text =
        std::fs::read_to_string(super::repo_root().join("tests/fixtures/wings/servers.json"))
            .unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let mut s = v[0].take();
    s["state"] = state.into();
    s["utilization"]["state"] = state.into();
    s["configuration"]["uuid"] = uuid.into();
    s["configuration"]["meta"]["name"] = name.into();
    s["configuration"]["environment"]["P_SERVER_UUID"] = uuid.into();
    s
}
