//! `node-agent top` driven the way a person uses it: in a real terminal (a tmux pane of 160x45,
//! on a tmux server of the test's own), read back with `capture-pane`, quit with `q`. One test
//! on the bare node (CPU figures shown, the screen refreshed between two captures 4 s apart),
//! one against a real Docker engine with a container made the way Wings makes a server's, whose
//! row must show the CPU its `--cpus` limit allows.

use crate::harness::docker::Dockerd;
use crate::harness::{agent_bin, schedstat_ns, wait_until};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A tmux server on its own socket (so the developer's tmux is never touched), killed on drop.
struct Tmux {
    socket: String,
    /// Where the pane's shell writes top's exit status (tmux learns it only when it reaps the
    /// pane's process, which a loaded machine may delay).
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `node-agent top` in a detached 160x45 pane with only `env` in its environment.
    fn top(env: &[(&str, &str)]) -> Tmux {
        assert!(
            Path::new("/usr/bin/tmux").exists(),
            "tmux is missing: run scripts/install-test-deps.sh"
        );
        let socket = format!("node-agent-top-{}-{}", std::process::id(), nonce());
        let mut cmd = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=xterm-256color NODE_AGENT_HTTP_LISTEN=off"
            .to_string();
        for (k, v) in env {
            cmd.push_str(&format!(" {k}='{v}'"));
        }
        let dir = tempfile::tempdir().unwrap();
        cmd.push_str(&format!(
            " {} top; echo $? > {}/status",
            agent_bin().display(),
            dir.path().display()
        ));
        let t = Tmux { socket, dir };
        let ok = t
            .tmux(&[
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "45",
                "-s",
                "top",
                &cmd,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session failed");
        // Keep the pane after the program exits, so its exit status can be read.
        t.tmux(&["set-option", "-t", "top", "remain-on-exit", "on"])
            .status()
            .unwrap();
        t
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        c
    }

    fn capture(&self) -> String {
        let out = self
            .tmux(&["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `(dead, exit status)` of the pane's program.
    fn pane_state(&self) -> (bool, String) {
        let out = self
            .tmux(&[
                "display-message",
                "-p",
                "-t",
                "top",
                "#{pane_dead} #{pane_dead_status}#{?pane_dead_signal, signal #{pane_dead_signal},}",
            ])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (dead, status) = s.split_once(' ').unwrap_or((&s, ""));
        (dead == "1", status.to_string())
    }

    fn quit(&self) {
        let shell = self.pane_pid();
        self.tmux(&["send-keys", "-t", "top", "q"])
            .status()
            .unwrap();
        let file = self.dir.path().join("status");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(s) = std::fs::read_to_string(&file)
                && s.ends_with('\n')
            {
                break s.trim().to_string();
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "top did not quit on q within 20 s (pane dead, status: {:?}); the pane's \
                     processes: {}\nscreen:\n{}",
                    self.pane_state(),
                    process_report(shell),
                    self.capture()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            status,
            "0",
            "exit status of top; screen:\n{}",
            self.capture()
        );
    }

    /// The PID of the pane's program.
    fn pane_pid(&self) -> u32 {
        let out = self
            .tmux(&["display-message", "-p", "-t", "top", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

/// What a process and its threads are doing, from /proc (for a failure message).
fn process_report(pid: u32) -> String {
    let read = |p: String| std::fs::read_to_string(p).unwrap_or_else(|e| format!("({e})"));
    let mut out = format!(
        "pid {pid}: {}",
        read(format!("/proc/{pid}/cmdline")).replace('\0', " ")
    );
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path().display().to_string();
            let stat = read(format!("{p}/stat"));
            let state = stat
                .rsplit(") ")
                .next()
                .unwrap_or("")
                .chars()
                .next()
                .unwrap_or('?');
            out.push_str(&format!(
                "\n  task {} {} state {state} wchan {} stack {}",
                t.file_name().to_string_lossy(),
                read(format!("{p}/comm")).trim(),
                read(format!("{p}/wchan")),
                read(format!("{p}/stack")).replace('\n', " | ")
            ));
        }
    }
    let children = read(format!("/proc/{pid}/task/{pid}/children"));
    for c in children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
    {
        out.push_str(&format!("\nchild of {pid}: {}", process_report(c)));
    }
    out
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]).status();
    }
}

fn nonce() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// The busy and iowait percentages of the CPU line, if shown.
fn cpu_figures(screen: &str) -> Option<(f64, f64)> {
    let line = screen.lines().find(|l| l.starts_with("CPU"))?;
    let mut nums = line
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('%')?.parse::<f64>().ok());
    Some((nums.next()?, nums.next()?))
}

#[test]
fn top_in_a_160x45_tmux_pane_shows_cpu_refreshes_and_quits_on_q() {
    let t = Tmux::top(&[]);
    wait_until(Duration::from_secs(10), "CPU figures on screen", || {
        cpu_figures(&t.capture()).is_some()
    });
    let first = t.capture();
    let (busy, iowait) = cpu_figures(&first).unwrap();
    assert!((0.0..=100.0).contains(&busy) && (0.0..=100.0).contains(&iowait));
    assert!(first.contains("Mem ") && first.contains("NAME"), "{first}");
    assert!(first.contains("q quit"), "{first}");
    // Make the memory figure move: hold 768 MiB of touched pages through the second capture.
    let mut hold = vec![0u8; 768 << 20];
    for i in (0..hold.len()).step_by(4096) {
        hold[i] = 1;
    }
    std::thread::sleep(Duration::from_secs(4));
    let second = t.capture();
    assert!(cpu_figures(&second).is_some(), "{second}");
    assert_ne!(first, second, "the screen did not change in 4 s");
    let mem = |s: &str| s.lines().find(|l| l.starts_with("Mem")).map(str::to_string);
    assert_ne!(
        mem(&first),
        mem(&second),
        "the memory line did not change with 768 MiB more in use"
    );
    assert!(second.lines().count() <= 45);
    assert!(second.lines().all(|l| l.chars().count() <= 160));
    drop(hold);
    // Sorting by another key says so in the footer.
    t.tmux(&["send-keys", "-t", "top", "m"]).status().unwrap();
    wait_until(Duration::from_secs(3), "sort by memory", || {
        t.capture().contains("sort: memory")
    });
    t.quit();
}

#[test]
fn top_shows_a_wings_style_container_row_with_the_right_cpu() {
    let docker = Dockerd::start();
    let image = docker.build_image();
    const UUID: &str = "5e1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    // A busy loop in one process under `--cpus 0.25`.
    let id = docker.run_server(UUID, &image, "0.25", "while :; do :; done");
    let pid: i64 = docker.inspect(UUID, "{{.State.Pid}}").parse().unwrap();
    let t = Tmux::top(&[
        ("DOCKER_HOST", &docker.host()),
        ("AGENT_DISCOVERY_INTERVAL_SEC", "1"),
    ]);
    let row = |s: &str| s.lines().find(|l| l.starts_with(UUID)).map(str::to_string);
    wait_until(Duration::from_secs(30), "the server's row with CPU", || {
        row(&t.capture()).is_some_and(|r| r.split_whitespace().nth(2).is_some_and(|c| c != "-"))
    });
    std::thread::sleep(Duration::from_secs(2));
    // Ground truth outside cgroups: the scheduler's run time of the container's only process,
    // against the mean of what the screen showed over the same seconds (each figure covers the
    // second before it; a busy 2-core machine may give the loop less than its limit).
    let (t0, ns0) = (std::time::Instant::now(), schedstat_ns(pid));
    let mut shown = Vec::new();
    let mut last = String::new();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(1));
        last = row(&t.capture()).unwrap();
        let cols: Vec<&str> = last.split_whitespace().collect();
        // NAME STATUS CPU %LIM LIMIT MEM WRITE/s PLAYERS ID (160 columns: the wide layout).
        assert_eq!(cols[1], "running", "{last}");
        let cpu: f64 = cols[2].parse().unwrap();
        let pct: f64 = cols[3].trim_end_matches('%').parse().unwrap();
        assert_eq!(cols[4], "0.25", "limit: {last}");
        assert!(
            (pct - cpu / 0.25 * 100.0).abs() <= 3.0,
            "% of limit: {last}"
        );
        assert_ne!(cols[5], "-", "memory: {last}");
        assert_eq!(cols[8], &id[..12], "{last}");
        shown.push(cpu);
    }
    let truth = (schedstat_ns(pid) - ns0) as f64 / 1e9 / t0.elapsed().as_secs_f64();
    let mean = shown.iter().sum::<f64>() / shown.len() as f64;
    assert!(
        (mean - truth).abs() <= 0.05,
        "top showed {shown:?} cores (mean {mean:.3}), the scheduler says {truth:.3}: {last}"
    );
    assert!(truth <= 0.25 * 1.1, "the loop ran over its limit: {truth}");
    t.quit();
}

/// Wings servers (the stand-in with the documented shapes) and a real Java server (npm
/// minecraft-protocol) on the lobby's allocation: the lobby's row shows the players the server was
/// started with and Wings' state; the offline server has a row of its own, without figures.
#[test]
fn top_shows_wings_servers_with_their_players() {
    use crate::harness::free_port;
    use crate::harness::wings::{Wings, server};
    let online = 1 + std::process::id() % 150;
    let max = online + 50;
    let port = free_port();
    let _java = crate::probe_e2e::java_server(port, online, max);
    let mut lobby = server("0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6", "Lobby", "running");
    lobby["configuration"]["allocations"] = serde_json::json!({"force_outgoing_ip": false,
        "default": {"ip": "127.0.0.1", "port": port}, "mappings": {"127.0.0.1": [port]}});
    let off = server(
        "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d",
        "Old world",
        "offline",
    );
    let wings = Wings::start("wings-tok", &serde_json::json!([lobby, off]));
    let dir = tempfile::tempdir().unwrap();
    let no_docker = format!("unix://{}/no-docker.sock", dir.path().display());
    let t = Tmux::top(&[
        ("WINGS_BASE_URL", &wings.url()),
        ("WINGS_TOKEN", "wings-tok"),
        ("DOCKER_HOST", &no_docker),
    ]);
    let want = format!("{online}/{max}");
    let row = |s: &str, name: &str| s.lines().find(|l| l.starts_with(name)).map(str::to_string);
    wait_until(Duration::from_secs(30), "the lobby's players", || {
        row(&t.capture(), "Lobby").is_some_and(|r| r.contains(&want))
    });
    let screen = t.capture();
    let lobby = row(&screen, "Lobby").unwrap();
    let cols: Vec<&str> = lobby.split_whitespace().collect();
    assert_eq!(cols[1], "running", "{lobby}");
    assert_eq!(cols[7], want, "{lobby}");
    let off = row(&screen, "Old world").unwrap_or_else(|| panic!("no offline row:\n{screen}"));
    let cols: Vec<&str> = off.split_whitespace().collect();
    // NAME (two words) STATUS CPU %LIM LIMIT MEM WRITE/s PLAYERS
    assert_eq!(cols[2], "offline", "{off}");
    assert!(cols[3..].iter().all(|c| *c == "-"), "{off}");
    // Sorting by players puts the lobby first.
    t.tmux(&["send-keys", "-t", "top", "p"]).status().unwrap();
    wait_until(Duration::from_secs(3), "sort by players", || {
        let s = t.capture();
        s.contains("sort: players desc")
            && s.lines()
                .skip_while(|l| !l.starts_with("NAME"))
                .nth(1)
                .is_some_and(|l| l.starts_with("Lobby"))
    });
    t.quit();
}

/// A copy of the host's /proc (links) whose `stat` is a FIFO nobody writes to: opening it blocks,
/// as a read of a hung mount would, so the view never finishes its first sample.
fn proc_with_a_hanging_stat() -> tempfile::TempDir {
    let proc = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n == "stat" || n.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), proc.path().join(&name)).unwrap();
    }
    std::os::unix::fs::symlink("/proc/1", proc.path().join("1")).unwrap();
    let fifo = std::ffi::CString::new(proc.path().join("stat").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    proc
}

/// top on a /proc whose reads hang, with no Docker.
fn stuck_top() -> (Tmux, tempfile::TempDir, tempfile::TempDir) {
    let proc = proc_with_a_hanging_stat();
    let dir = tempfile::tempdir().unwrap();
    let no_docker = format!("unix://{}/no-docker.sock", dir.path().display());
    let t = Tmux::top(&[
        ("NODE_AGENT_PROC_PATH", proc.path().to_str().unwrap()),
        ("DOCKER_HOST", &no_docker),
    ]);
    // Let it reach the stuck read.
    std::thread::sleep(Duration::from_secs(2));
    (t, proc, dir)
}

/// `q` quits even when a sample is stuck in a read that never returns: the input thread ends the
/// process itself.
#[test]
fn top_quits_on_q_even_when_a_read_hangs() {
    let (t, _proc, _dir) = stuck_top();
    t.quit();
}

/// A hangup (the SSH session or the terminal went away) ends a view stuck in a read too, so no
/// `top` is left behind.
#[test]
fn top_ends_on_hangup_even_when_a_read_hangs() {
    let (t, _proc, _dir) = stuck_top();
    let shell = t.pane_pid();
    let children =
        std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
    let top: i32 = children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .expect("top runs under the pane's shell");
    // Killing the tmux server closes the terminal: the kernel sends SIGHUP.
    drop(t);
    wait_until(
        Duration::from_secs(20),
        "top to end after the hangup",
        || {
            // SAFETY: signal 0 only checks that the process exists.
            let gone = unsafe { libc::kill(top, 0) } != 0;
            gone || std::fs::read_to_string(format!("/proc/{top}/stat"))
                .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
        },
    );
}
