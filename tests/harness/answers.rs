//! The answering OTLP stand-ins (`tests/peers/otlp_answers.py` over HTTP,
//! `tests/peers/otlp_grpc_answers.py` over gRPC): peers that answer with a partial success, a
//! chosen status, a huge error body or a redirect, and record what they received.

use super::{Proc, free_port, peers_dir, python_path, repo_root, require, wait_for_port};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Answers {
    pub port: u16,
    pub out: PathBuf,
    _dir: tempfile::TempDir,
    _proc: Proc,
}

impl Answers {
    /// The OTLP/HTTP stand-in with `args` (see the script's usage).
    pub fn http(args: &[&str]) -> Answers {
        Answers::start("otlp_answers.py", python_path().display().to_string(), args)
    }

    /// The OTLP/gRPC stand-in (grpcio) with `args`.
    pub fn grpc(args: &[&str]) -> Answers {
        let grpc = require(&peers_dir().join("py-grpc"));
        let path = format!("{}:{}", python_path().display(), grpc.display());
        Answers::start("otlp_grpc_answers.py", path, args)
    }

    fn start(script: &str, pythonpath: String, args: &[&str]) -> Answers {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("requests.jsonl");
        let proc = Proc::spawn(
            script,
            Command::new("python3")
                .arg(repo_root().join("tests/peers").join(script))
                .arg(port.to_string())
                .arg(&out)
                .args(args)
                .env("PYTHONPATH", pythonpath)
                .stdout(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(20));
        Answers {
            port,
            out,
            _dir: dir,
            _proc: proc,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received so far, as recorded.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Bytes of each error body the HTTP stand-in managed to write.
    pub fn error_bytes_written(&self) -> Vec<u64> {
        std::fs::read_to_string(self.out.with_extension("jsonl.written"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}
