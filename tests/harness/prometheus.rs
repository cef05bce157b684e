//! A real Prometheus (Debian's package) on a free loopback port, with its own data directory;
//! stopped by PID when dropped.

use super::{Proc, free_port, wait_for_port};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Prometheus {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes every second with `scrape_jobs` (YAML for `scrape_configs:`); the config is
    /// checked by promtool first. The remote-write receiver is on.
    pub fn start(scrape_jobs: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs: {scrape_jobs}\n"
            ),
        )
        .unwrap();
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "promtool check config: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let proc = Proc::spawn(
            "prometheus",
            Command::new("prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-remote-write-receiver")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(60));
        Prometheus {
            port,
            _proc: proc,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query's result vector (empty on any failure).
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let Ok(out) = Command::new("curl")
            .args(["-sf", "--max-time", "10"])
            .arg(format!("{}/api/v1/query", self.url()))
            .args(["--data-urlencode", &format!("query={expr}")])
            .output()
        else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}
