//! A real Docker engine for the tests: Debian's `dockerd` on its own socket, data root and exec
//! root (no bridge, no iptables), with an image built locally from the static busybox since no
//! image can be pulled here.

use super::{Proc, require, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn docker_cli() -> PathBuf {
    if Path::new("/usr/bin/docker").exists() {
        PathBuf::from("/usr/bin/docker")
    } else {
        PathBuf::from("docker")
    }
}

/// dockerd on its own socket, data root and exec root; shut down gracefully on drop.
pub struct Dockerd {
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        require(Path::new("/usr/sbin/dockerd"));
        // Short path: containerd's sockets live under the exec root (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("nad")
            .tempdir_in("/tmp")
            .unwrap();
        let p = |s: &str| dir.path().join(s);
        let proc = Proc::spawn(
            "dockerd",
            Command::new("/usr/sbin/dockerd")
                .arg("--data-root")
                .arg(p("data"))
                .arg("--exec-root")
                .arg(p("exec"))
                .arg("--pidfile")
                .arg(p("dockerd.pid"))
                .arg("-H")
                .arg(format!("unix://{}", p("docker.sock").display()))
                .args([
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                ])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(p("dockerd.log")).unwrap()),
        );
        let d = Dockerd {
            dir,
            proc: Some(proc),
        };
        wait_until(Duration::from_secs(60), "dockerd to answer", || {
            d.docker(&["version"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
        d
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new(docker_cli());
        c.args(args)
            .env("DOCKER_HOST", self.host())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.docker(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker run -d` of an unlabelled container without network, named `name`, running `cmd`
    /// in `image`. Returns the container ID.
    pub fn run_detached(&self, name: &str, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--network", "none", "--name", name, image];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// A container as Wings makes a server's: named by the server UUID, labelled
    /// `Service=Pterodactyl` and `ContainerType=server_process`, no network, `--cpus` as given,
    /// running `sh -c script` in `image`. Returns the container ID.
    pub fn run_server(&self, uuid: &str, image: &str, cpus: &str, script: &str) -> String {
        self.run(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            uuid,
            "--label",
            "Service=Pterodactyl",
            "--label",
            "ContainerType=server_process",
            "--cpus",
            cpus,
            image,
            "sh",
            "-c",
            script,
        ])
    }

    /// A local image: a static busybox in an otherwise empty root (no pulls possible here).
    pub fn build_image(&self) -> String {
        let busybox = require(Path::new("/bin/busybox"));
        let root = self.dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "dd", "sleep", "touch", "cat", "true"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let tar = self.dir.path().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        self.run(&["import", tar.to_str().unwrap(), "node-agent-test:local"]);
        "node-agent-test:local".into()
    }

    pub fn inspect(&self, name: &str, fmt: &str) -> String {
        self.run(&["inspect", "-f", fmt, name])
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self
            .docker(&["ps", "-aq"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let ids = String::from_utf8_lossy(&ids).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.docker(&args).status();
        }
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGTERM);
            let _ = p.wait_timeout(Duration::from_secs(30));
        }
    }
}
