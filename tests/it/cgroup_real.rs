//! The container sampler against the real kernel: the test creates cgroups in the v1 hierarchies
//! and in the v2 `unified` one (both exist on our hybrid CI machines; on a pure-v2 host the v2
//! half runs alone), puts processes in them, and checks the sampler's numbers against ground truth
//! that does not come from cgroups:
//!
//! - CPU: the scheduler's own per-task runtime (`/proc/<pid>/schedstat`, ns) of the burner, over
//!   the same window as the sampler's two readings; the burner is held to 0.5 core by a CFS quota
//!   with a 50 ms period (v1 `cpu.cfs_*`, or `cpu.max` on a pure-v2 host), so a reader assuming
//!   100 ms would read 0.25.
//! - Disk: the bytes `dd` was told to write (32 MiB buffered, then 32 MiB with O_DIRECT), written
//!   in chunks by short-lived children that the shell reaps while the sampler is reading, so the
//!   reaping fold-in and exits are exercised.

use crate::harness::{Proc, schedstat_ns};
use node_agent::sources::cgroup::paths::{self, Dirs, Layout, Mounts};
use node_agent::sources::containers::sampler::Sampler;
use node_agent::sources::containers::{ContainerInfo, Inventory, SourceState};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cgroups created by the test in every mounted hierarchy it needs; removed on drop.
struct TestCgroup {
    mounts: Mounts,
    dirs: Vec<PathBuf>,
    v1: Vec<PathBuf>,
    v2: Option<PathBuf>,
}

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let mounts = Mounts::parse(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
            Path::new("/sys"),
        );
        let mut t = TestCgroup {
            mounts: mounts.clone(),
            dirs: vec![],
            v1: vec![],
            v2: None,
        };
        for ctrl in ["cpu", "cpuacct", "memory", "blkio", "pids"] {
            if let Some(m) = mounts.v1_mount(ctrl) {
                let d = m.point.join(name);
                if !t.dirs.contains(&d) {
                    std::fs::create_dir_all(&d).unwrap();
                    t.dirs.push(d.clone());
                    t.v1.push(d);
                }
            }
        }
        if let Some(m) = &mounts.v2 {
            let d = m.point.join(name);
            std::fs::create_dir_all(&d).unwrap();
            t.dirs.push(d.clone());
            t.v2 = Some(d);
        }
        assert!(!t.dirs.is_empty(), "no cgroup hierarchy is mounted");
        t
    }

    fn enter(&self, pid: i32) {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
    }

    fn cpu_dir(&self) -> Option<PathBuf> {
        let m = self.mounts.v1_mount("cpu")?;
        self.v1.iter().find(|d| d.starts_with(&m.point)).cloned()
    }

    /// The inventories the sampler would get from discovery: one reading the v1 files (hybrid
    /// layout), one reading the v2 cgroup as on a pure-v2 host.
    fn inventories(&self, pid: i32) -> Vec<(&'static str, Arc<Inventory>)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let from_proc = paths::from_proc(&self.mounts, &text);
        let mut out = vec![];
        let inv = |layout: Layout, dirs: Dirs| {
            Arc::new(Inventory {
                layout: Some(layout),
                docker: SourceState::Ok(String::new()),
                containers: vec![Arc::new(ContainerInfo {
                    id: "t".into(),
                    name: "t".into(),
                    state: "running".into(),
                    pid: pid as i64,
                    dirs: Some(dirs),
                    ..Default::default()
                })],
                ..Default::default()
            })
        };
        if !self.v1.is_empty() {
            let layout = if self.v2.is_some() {
                Layout::Hybrid
            } else {
                Layout::V1
            };
            assert_eq!(
                from_proc
                    .cpuacct
                    .as_ref()
                    .map(|p| p.parent().unwrap().to_path_buf()),
                self.mounts.v1_mount("cpuacct").map(|m| m.point.clone())
            );
            out.push(("v1", inv(layout, from_proc.clone())));
        }
        if let Some(v2) = &self.v2 {
            assert_eq!(from_proc.v2.as_ref(), Some(v2));
            out.push((
                "v2",
                inv(
                    Layout::V2,
                    Dirs {
                        v2: Some(v2.clone()),
                        ..Default::default()
                    },
                ),
            ));
        }
        out
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn name(what: &str) -> String {
    format!("node-agent-test-{what}-{}", std::process::id())
}

#[test]
fn cpu_usage_matches_the_scheduler_within_003_core() {
    let cg = TestCgroup::new(&name("cpu"));
    if let Some(cpu) = cg.cpu_dir() {
        std::fs::write(cpu.join("cpu.cfs_period_us"), "50000").unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "25000").unwrap();
    }
    // On a pure-v2 host (the `cpu` controller enabled for our cgroup) the quota goes to cpu.max.
    let v2_quota = cg
        .v2
        .as_ref()
        .map(|d| d.join("cpu.max"))
        .filter(|p| p.exists());
    if let Some(max) = &v2_quota {
        std::fs::write(max, "25000 50000").unwrap();
    }
    let mut burner = Proc::spawn(
        "burner",
        Command::new("sh")
            .args(["-c", "read go; while :; do :; done"])
            .stdin(Stdio::piped()),
    );
    cg.enter(burner.pid());
    writeln!(burner.child.stdin.as_mut().unwrap(), "go").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut samplers: Vec<(&str, Arc<Inventory>, Sampler)> = cg
        .inventories(burner.pid())
        .into_iter()
        .map(|(n, inv)| (n, inv, Sampler::new(PathBuf::from("/proc"))))
        .collect();
    // Ground truth is read right after each sample, with the instant: the same window as the
    // sampler's own two readings, to within microseconds.
    let mut first = vec![];
    for (label, inv, s) in samplers.iter_mut() {
        let (_, errors) = s.sample(inv, 0);
        assert!(errors.is_empty(), "{label}: {errors:?}");
        first.push((schedstat_ns(burner.pid() as i64), Instant::now()));
    }
    std::thread::sleep(Duration::from_secs(3));
    for ((label, inv, s), (ns0, at0)) in samplers.iter_mut().zip(first) {
        let (sample, errors) = s.sample(inv, 0);
        let (ns1, at1) = (schedstat_ns(burner.pid() as i64), Instant::now());
        assert!(errors.is_empty(), "{label}: {errors:?}");
        let c = &sample.containers[0];
        let truth = (ns1 - ns0) as f64 / 1e9 / at1.duration_since(at0).as_secs_f64();
        let usage = c.cpu_usage.expect("a rate on the second sample");
        eprintln!(
            "{label}: container.cpu.usage {usage:.4} cores; scheduler ground truth {truth:.4} cores; limit {:?}",
            c.cpu_limit
        );
        assert!(
            (usage - truth).abs() <= 0.03,
            "{label}: usage {usage} vs truth {truth}"
        );
        if cg.cpu_dir().is_some() {
            assert!(
                truth <= 0.53,
                "{label}: the quota holds the burner at 0.5 core"
            );
        }
        if *label == "v1" {
            assert_eq!(
                c.cpu_limit,
                Some(0.5),
                "quota/period read with a 50 ms period"
            );
        }
    }
}

/// Runs one write phase: the shell in the cgroup forks a subshell 8 times that runs `dd` (4 MiB,
/// `flags` added), reaps it and lingers 0.3 s, while every sampler reads every 150 ms: the
/// samplers see the subshell alive holding dd's folded-in bytes, then see it vanish and its bytes
/// fold into the shell. Counting both would double the total. Returns, per sampler, the growth of the
/// write counter and the integral of the write-rate gauge over the phase.
fn write_phase(
    shell: &mut Proc,
    lines: &std::sync::mpsc::Receiver<String>,
    samplers: &mut [(&'static str, Arc<Inventory>, Sampler)],
    flags: &str,
) -> Vec<(u64, f64)> {
    let mut start = vec![];
    let mut last_at = vec![];
    for (label, inv, s) in samplers.iter_mut() {
        let (sample, errors) = s.sample(inv, 0);
        assert!(errors.is_empty(), "{label}: {errors:?}");
        start.push(sample.containers[0].io.expect("disk bytes").write);
        last_at.push(Instant::now());
    }
    let mut integral = vec![0.0; samplers.len()];
    writeln!(shell.child.stdin.as_mut().unwrap(), "{flags}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = false;
    // Keep sampling until the shell says the phase is over, then once more.
    loop {
        std::thread::sleep(Duration::from_millis(150));
        if !done {
            done = lines.try_recv().is_ok();
        }
        let mut ends = vec![];
        for (i, (label, inv, s)) in samplers.iter_mut().enumerate() {
            let (sample, errors) = s.sample(inv, 0);
            let now = Instant::now();
            assert!(errors.is_empty(), "{label}: {errors:?}");
            let c = &sample.containers[0];
            let (_, w) = c.io_rate.expect("a rate from the second sample on");
            assert!(w >= 0.0);
            integral[i] += w * now.duration_since(last_at[i]).as_secs_f64();
            last_at[i] = now;
            ends.push(c.io.unwrap().write);
        }
        if done {
            return ends
                .into_iter()
                .zip(start.iter())
                .zip(integral)
                .map(|((end, start), int)| (end - start, int))
                .collect();
        }
        assert!(Instant::now() < deadline, "the writer did not finish");
    }
}

#[test]
fn disk_writes_buffered_and_direct_within_5_percent() {
    let cg = TestCgroup::new(&name("io"));
    let data =
        tempfile::tempdir_in(std::env::var_os("CARGO_TARGET_TMPDIR").unwrap_or("/var/tmp".into()))
            .unwrap();
    // Each line on stdin starts a phase with those dd flags; "done" on stdout ends it.
    let script = format!(
        "cd {}; n=0; while read flags; do for i in 1 2 3 4 5 6 7 8; do n=$((n+1)); \
         (dd if=/dev/zero of=f$n bs=1M count=4 $flags 2>/dev/null; sleep 0.3); done; echo done; done",
        data.path().display()
    );
    let mut shell = Proc::spawn(
        "writer",
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    cg.enter(shell.pid());
    let stdout = shell.child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let mut samplers: Vec<(&str, Arc<Inventory>, Sampler)> = cg
        .inventories(shell.pid())
        .into_iter()
        .map(|(n, inv)| (n, inv, Sampler::new(PathBuf::from("/proc"))))
        .collect();
    let blkio = cg
        .v1
        .iter()
        .find(|d| d.join("blkio.throttle.io_service_bytes").exists())
        .cloned();
    const N: f64 = 32.0 * 1024.0 * 1024.0;
    // conv=fsync: the buffered phase still goes through the page cache, but is written back
    // before dd exits, so io.stat (which charges at writeback) sees it within the phase too.
    for (phase, flags) in [("buffered", "conv=fsync"), ("O_DIRECT", "oflag=direct")] {
        let results = write_phase(&mut shell, &lines, &mut samplers, flags);
        for ((label, inv, s), (grew, integral)) in samplers.iter_mut().zip(results) {
            let source = s.sample(inv, 0).0.containers[0].io_source;
            eprintln!(
                "{phase} via {label} ({source:?}): container.disk.io write grew {grew} B, \
                 ∫ container.disk.io.rate dt = {integral:.0} B, dd wrote {N} B"
            );
            assert!(
                (grew as f64 - N).abs() <= 0.05 * N,
                "{phase} {label}: counter {grew}"
            );
            assert!(
                (integral - N).abs() <= 0.05 * N,
                "{phase} {label}: rate integral {integral}"
            );
        }
        if let Some(b) = &blkio {
            let text = std::fs::read_to_string(b.join("blkio.throttle.io_service_bytes")).unwrap();
            eprintln!(
                "{phase}: blkio.throttle.io_service_bytes writes = {} (why v1 uses per-task counters)",
                node_agent::sources::cgroup::v1::parse_blkio(&text).write
            );
        }
    }
}

/// Samples every sampler once; returns each one's first container.
fn sample_all(
    samplers: &mut [(&'static str, Arc<Inventory>, Sampler)],
) -> Vec<node_agent::sources::containers::sampler::ContainerSample> {
    samplers
        .iter_mut()
        .map(|(label, inv, s)| {
            let (sample, errors) = s.sample(inv, 0);
            assert!(errors.is_empty(), "{label}: {errors:?}");
            sample.containers[0].clone()
        })
        .collect()
}

/// The inventories, plus one that reads the process list from v1's `cgroup.procs` (no v2
/// directory), whose kept descriptor the kernel serves a cached pid list.
fn inventories_with_v1_procs(cg: &TestCgroup, pid: i32) -> Vec<(&'static str, Arc<Inventory>)> {
    let mut out = cg.inventories(pid);
    if let Some((_, hybrid)) = out.iter().find(|(l, _)| *l == "v1")
        && hybrid.containers[0].dirs.as_ref().unwrap().v2.is_some()
    {
        let mut inv = (**hybrid).clone();
        let c = Arc::make_mut(&mut inv.containers[0]);
        c.dirs.as_mut().unwrap().v2 = None;
        out.push(("v1 cgroup.procs", Arc::new(inv)));
    }
    out
}

/// A process that joins the container later, as `docker exec` does (its parent, the shim, is
/// outside the cgroup, so nothing inside ever reaps it): at a 300 ms interval, where v1's kept
/// `cgroup.procs` would keep serving the list of the first read, it must be seen and its writes
/// counted.
#[test]
fn a_process_that_joins_later_is_seen_at_short_intervals() {
    let cg = TestCgroup::new(&name("exec"));
    let data =
        tempfile::tempdir_in(std::env::var_os("CARGO_TARGET_TMPDIR").unwrap_or("/var/tmp".into()))
            .unwrap();
    let init = Proc::spawn("init", Command::new("sleep").arg("600"));
    cg.enter(init.pid());
    let mut samplers: Vec<(&str, Arc<Inventory>, Sampler)> =
        inventories_with_v1_procs(&cg, init.pid())
            .into_iter()
            .map(|(n, inv)| (n, inv, Sampler::new(PathBuf::from("/proc"))))
            .collect();
    let before: Vec<u64> = sample_all(&mut samplers)
        .iter()
        .map(|c| c.io.expect("disk bytes").write)
        .collect();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        sample_all(&mut samplers);
    }
    // The "exec": waits on stdin, joins the cgroup, writes 8 MiB with O_DIRECT (through a dd it
    // reaps itself), lingers over two samples, exits (reaped by this test, outside the cgroup).
    const N: u64 = 8 << 20;
    let mut exec = Proc::spawn(
        "exec",
        Command::new("sh")
            .args([
                "-c",
                &format!(
                    "read go; dd if=/dev/zero of={}/x bs=1M count=8 oflag=direct 2>/dev/null; sleep 1",
                    data.path().display()
                ),
            ])
            .stdin(Stdio::piped()),
    );
    cg.enter(exec.pid());
    writeln!(exec.child.stdin.as_mut().unwrap(), "go").unwrap();
    let mut seen = vec![0usize; samplers.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while exec.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the exec'd process did not finish"
        );
        std::thread::sleep(Duration::from_millis(300));
        for (i, c) in sample_all(&mut samplers).iter().enumerate() {
            seen[i] = seen[i].max(c.processes.unwrap_or(0));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = sample_all(&mut samplers);
    for (((label, _, _), c), (b, seen)) in samplers.iter().zip(&after).zip(before.iter().zip(&seen))
    {
        let grew = c.io.unwrap().write - b;
        eprintln!(
            "{label}: a later process seen ({seen} processes at most), writes grew {grew} B of {N}"
        );
        assert!(*seen >= 2, "{label}: the joining process was never listed");
        assert!(
            (grew as f64 - N as f64).abs() <= 0.05 * N as f64,
            "{label}: counted {grew} of {N} bytes"
        );
    }
}

/// A 32 MiB file written and deleted before writeback never reaches the disk: the writes are
/// taken back (`cancelled_write_bytes`), even though the deleting process is not the writer and
/// both are reaped inside the container.
#[test]
fn a_file_deleted_before_writeback_is_not_written() {
    let cg = TestCgroup::new(&name("cancel"));
    let data =
        tempfile::tempdir_in(std::env::var_os("CARGO_TARGET_TMPDIR").unwrap_or("/var/tmp".into()))
            .unwrap();
    let mut shell = Proc::spawn(
        "writer",
        Command::new("sh")
            .args([
                "-c",
                &format!(
                    "cd {}; read go; dd if=/dev/zero of=tmp bs=1M count=32 2>/dev/null; rm tmp; \
                     dd if=/dev/zero of=kept bs=1M count=4 conv=fsync 2>/dev/null; echo done; sleep 600",
                    data.path().display()
                ),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    cg.enter(shell.pid());
    let mut samplers: Vec<(&str, Arc<Inventory>, Sampler)> = cg
        .inventories(shell.pid())
        .into_iter()
        .map(|(n, inv)| (n, inv, Sampler::new(PathBuf::from("/proc"))))
        .collect();
    let before: Vec<u64> = sample_all(&mut samplers)
        .iter()
        .map(|c| c.io.unwrap().write)
        .collect();
    writeln!(shell.child.stdin.as_mut().unwrap(), "go").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(shell.child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "done");
    let after = sample_all(&mut samplers);
    const KEPT: f64 = 4.0 * 1024.0 * 1024.0;
    for (((label, _, _), c), b) in samplers.iter().zip(&after).zip(&before) {
        let grew = (c.io.unwrap().write - b) as f64;
        eprintln!(
            "{label} ({:?}): 32 MiB written and deleted + 4 MiB kept: container.disk.io write grew {grew} B",
            c.io_source
        );
        assert!(
            (grew - KEPT).abs() <= 0.05 * KEPT + 1024.0 * 1024.0,
            "{label}: {grew} B counted, the disk got {KEPT} (+ metadata)"
        );
    }
}

/// Past the descriptor budget the files are opened for each read instead of kept: the same
/// numbers, fewer descriptors.
#[test]
fn past_the_descriptor_budget_files_are_read_by_opening_them() {
    let cg = TestCgroup::new(&name("budget"));
    let p = Proc::spawn("sleeper", Command::new("sleep").arg("600"));
    cg.enter(p.pid());
    let (label, inv) = cg.inventories(p.pid()).remove(0);
    // A limit whose budget (7/8) holds none of this container's files.
    let mut tight = Sampler::with_fd_limit(PathBuf::from("/proc"), 2);
    let mut roomy = Sampler::new(PathBuf::from("/proc"));
    for _ in 0..3 {
        let (a, ea) = tight.sample(&inv, 0);
        let (b, eb) = roomy.sample(&inv, 0);
        assert!(ea.is_empty() && eb.is_empty(), "{label}: {ea:?} {eb:?}");
        let (a, b) = (&a.containers[0], &b.containers[0]);
        assert!(a.cpu_seconds.is_some() && a.io.is_some() && a.memory_bytes.is_some());
        assert_eq!((a.processes, a.cpu_limit), (b.processes, b.cpu_limit));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (s, _) = tight.sample(&inv, 0);
    let d = s.descriptors;
    eprintln!("{label}: {d:?}");
    assert_eq!((d.kept, d.containers_per_read), (0, 1), "{d:?}");
    assert!(d.note().unwrap().contains("opened for each read"));
    assert!(roomy.sample(&inv, 0).0.descriptors.note().is_none());
}
