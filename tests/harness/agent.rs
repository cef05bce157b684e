//! The agent under test: the real binary, its log in a file the test can read while it runs.

use super::{Proc, agent_command};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A running agent; stopped by PID when dropped.
pub struct Agent {
    pub proc: Proc,
    log: PathBuf,
}

impl Agent {
    /// `node-agent run` with `env` (and text logs in `dir/<name>.log`).
    pub fn start(dir: &Path, name: &str, env: &[(&str, &str)]) -> Agent {
        Agent::start_with(dir, name, env, &["run"])
    }

    /// The agent with other arguments.
    pub fn start_with(dir: &Path, name: &str, env: &[(&str, &str)], args: &[&str]) -> Agent {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = agent_command();
        cmd.args(args)
            .env("NODE_AGENT_LOG_FORMAT", "text")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        Agent {
            proc: Proc::spawn(name, &mut cmd),
            log,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; asserts a clean exit and returns how many node samples it took (from its
    /// `node-agent stopped samples=N` line) and its log.
    pub fn stop(mut self, within: Duration) -> (u64, String) {
        self.proc.signal(libc::SIGTERM);
        let status = self.proc.wait_timeout(within);
        let log = self.log();
        assert!(
            status.is_some_and(|s| s.success()),
            "agent exit {status:?}; log:\n{log}"
        );
        let n = log
            .lines()
            .find(|l| l.contains("node-agent stopped"))
            .and_then(|l| l.split("samples=").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `samples=` in the log:\n{log}"));
        (n, log)
    }
}
