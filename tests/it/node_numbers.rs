//! Node numbers against their ground truth: filesystem utilization against a real ext4 filesystem
//! (loop-mounted by the test, so nothing else writes to it) as `df` and Python's `os.statvfs` see
//! it, and memory states against `/proc/meminfo` read by the test. What the agent sent is decoded
//! by the reference `opentelemetry-proto` classes (the receiver), not by our code.

use crate::harness::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A small ext4 filesystem on a loop device, mounted under a temporary directory; unmounted (and
/// its loop device released) on drop.
struct LoopFs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    fn new(mib: u64) -> LoopFs {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        // Default ext4: 5 % of the blocks reserved for root.
        sh(Command::new("mkfs.ext4").args(["-q", "-m", "5"]).arg(&img));
        sh(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        LoopFs { mnt, _dir: dir }
    }

    fn write(&self, name: &str, bytes: u64) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(self.mnt.join(name))?;
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(used, avail, size)` bytes from Python's `os.statvfs`, an implementation independent of ours.
fn python_statvfs(path: &Path) -> (u64, u64, u64) {
    let out = sh(Command::new("python3").arg("-c").arg(format!(
        "import os; s = os.statvfs({:?}); print((s.f_blocks - s.f_bfree) * s.f_frsize, s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize)",
        path.to_str().unwrap()
    )));
    let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

/// `(used, avail, Use%)` as df prints them.
fn df(path: &Path) -> (u64, u64, u64) {
    let out = sh(Command::new("df")
        .args(["-B1", "--output=used,avail,pcent"])
        .arg(path));
    let line = out.lines().nth(1).unwrap().replace('%', "");
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

fn metric<'a>(request: &'a Value, name: &str) -> &'a Value {
    request["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// The points of `name` whose attributes include `want`: `(attributes, value)`.
fn points(request: &Value, name: &str, want: &[(&str, &str)]) -> Vec<(Value, f64)> {
    metric(request, name)["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| want.iter().all(|(k, v)| p["attrs"][*k] == *v))
        .map(|p| (p["attrs"].clone(), num(&p["value"])))
        .collect()
}

fn one(request: &Value, name: &str, want: &[(&str, &str)]) -> f64 {
    let p = points(request, name, want);
    assert_eq!(p.len(), 1, "{name} {want:?}: {p:?}");
    p[0].1
}

/// Runs the agent against a fresh receiver until `n` node samples arrived; returns the last one.
fn node_sample(n: usize) -> Value {
    let receiver = Receiver::start(&[]);
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = agent_command();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url())
        .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.3")
        .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.3")
        .env("NODE_AGENT_SPOOL_DIR", spool.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _agent = Proc::spawn("node-agent", &mut cmd);
    let node = || receiver.requests_with("system.memory.usage");
    wait_until(Duration::from_secs(60), "node samples", || {
        node().len() >= n
    });
    node().pop().unwrap()
}

#[test]
fn filesystem_utilization_is_used_over_used_plus_available_like_df() {
    let fs = LoopFs::new(64);
    let mp = fs.mnt.to_str().unwrap().to_string();
    // About half full: used/size and used/(used+avail) differ by the 5 % reserve.
    fs.write("half", 28 << 20).unwrap();
    let sel = [("system.filesystem.mountpoint", mp.as_str())];
    let req = node_sample(2);
    let (used, avail, size) = python_statvfs(&fs.mnt);
    let (df_used, df_avail, df_pct) = df(&fs.mnt);
    assert_eq!((df_used, df_avail), (used, avail), "df and statvfs agree");
    let u = one(&req, "system.filesystem.utilization", &sel);
    let want = used as f64 / (used + avail) as f64;
    assert!((u - want).abs() < 1e-12, "utilization {u} vs {want}");
    // df's Use% is the same ratio rounded up to a whole percent.
    assert_eq!((u * 100.0).ceil() as u64, df_pct, "df says {df_pct}%");
    assert!(
        (u - used as f64 / size as f64).abs() > 0.01,
        "the test must tell the two formulas apart"
    );
    // One point per filesystem, no state attribute (like hostmetrics).
    let p = points(&req, "system.filesystem.utilization", &sel);
    assert!(
        p[0].0.get("system.filesystem.state").is_none(),
        "{:?}",
        p[0].0
    );
    assert_eq!(p[0].0["system.filesystem.type"], "ext4");
    // The byte states are the same numbers, and add up to the size.
    let state = |s: &str| {
        one(
            &req,
            "system.filesystem.usage",
            &[sel[0], ("system.filesystem.state", s)],
        ) as u64
    };
    assert_eq!(state("used"), used);
    assert_eq!(state("free"), avail);
    assert_eq!(state("used") + state("free") + state("reserved"), size);
    assert_eq!(one(&req, "system.filesystem.limit", &sel) as u64, size);

    // Full for everyone but root: df says 100 %, and so does the agent (used/size would say ~95 %).
    let _ = fs.write("fill", 64 << 20); // as root: runs into the reserve until ENOSPC
    let (_, _, size) = python_statvfs(&fs.mnt);
    let fill = std::fs::OpenOptions::new()
        .write(true)
        .open(fs.mnt.join("fill"))
        .unwrap();
    let len = fill.metadata().unwrap().len();
    // Give back part of the reserve: root could still write, nobody else can.
    fill.set_len(len.saturating_sub(size / 50)).unwrap();
    fill.sync_all().unwrap();
    let (used, avail, size) = python_statvfs(&fs.mnt);
    assert_eq!(avail, 0, "the filesystem should be full for non-root users");
    let req = node_sample(2);
    let u = one(&req, "system.filesystem.utilization", &sel);
    assert_eq!(u, 1.0);
    assert_eq!(df(&fs.mnt).2, 100);
    assert!((used as f64 / size as f64) < 0.99);
}

fn meminfo() -> std::collections::BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((
                k.to_string(),
                v.split_whitespace().next()?.parse::<u64>().ok()? * 1024,
            ))
        })
        .collect()
}

#[test]
fn memory_states_add_up_to_memtotal_and_match_meminfo() {
    let req = node_sample(2);
    let mi = meminfo();
    let total = mi["MemTotal"];
    let states = ["used", "free", "buffers", "cached"];
    let usage = |s: &str| one(&req, "system.memory.usage", &[("system.memory.state", s)]) as u64;
    // Exactly: the four states are the whole of MemTotal, and there is no fifth.
    assert_eq!(states.iter().map(|s| usage(s)).sum::<u64>(), total);
    assert_eq!(one(&req, "system.memory.limit", &[]) as u64, total);
    assert_eq!(points(&req, "system.memory.usage", &[]).len(), 4);
    assert!(
        points(
            &req,
            "system.memory.usage",
            &[("system.memory.state", "shared")]
        )
        .is_empty()
    );
    let util: f64 = states
        .iter()
        .map(|s| {
            one(
                &req,
                "system.memory.utilization",
                &[("system.memory.state", s)],
            )
        })
        .sum();
    assert!((util - 1.0).abs() < 1e-9, "utilizations add up to {util}");
    // Each state against the test's own reading a moment later, within 1 % of MemTotal (other
    // processes on the machine move memory between the two readings).
    let tol = total / 100;
    let cached = mi["Cached"] + mi["SReclaimable"];
    let expect = [
        ("free", mi["MemFree"]),
        ("buffers", mi["Buffers"]),
        ("cached", cached),
        ("used", total - mi["MemFree"] - mi["Buffers"] - cached),
    ];
    for (s, want) in expect {
        let got = usage(s);
        assert!(
            got.abs_diff(want) <= tol,
            "{s}: {got} vs /proc/meminfo {want}"
        );
    }
    let shared = one(&req, "system.memory.shared", &[]) as u64;
    assert!(
        shared.abs_diff(mi["Shmem"]) <= tol,
        "shared {shared} vs Shmem {}",
        mi["Shmem"]
    );
}
