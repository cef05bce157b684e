//! The cgroup reader on every layout x driver our machines cannot produce, from fixture trees in
//! the kernel's real file formats (`tests/fixtures/cgroup/generate.py`): paths resolved from
//! `/proc/<pid>/cgroup` and mountinfo (with /sys remapped to the fixture), the driver-path
//! fallback, and every number checked against the values written into the tree.

use node_agent::sources::cgroup::Reader;
use node_agent::sources::cgroup::paths::{self, Mounts};
use std::path::PathBuf;

const SETUPS: [&str; 6] = [
    "v1-cgroupfs",
    "v1-systemd",
    "v2-cgroupfs",
    "v2-systemd",
    "hybrid-cgroupfs",
    "hybrid-systemd",
];

fn dir(setup: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cgroup")
        .join(setup)
}

#[test]
fn every_layout_and_driver() {
    for setup in SETUPS {
        let d = dir(setup);
        let e: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap())
                .unwrap();
        let mounts = Mounts::parse(
            &std::fs::read_to_string(d.join("mountinfo")).unwrap(),
            &d.join("sys"),
        );
        let layout = mounts.layout().unwrap();
        assert_eq!(layout.as_str(), e["layout"], "{setup}: layout");
        let dirs = paths::from_proc(
            &mounts,
            &std::fs::read_to_string(d.join("proc/100/cgroup")).unwrap(),
        );
        assert_eq!(dirs.driver, e["driver"].as_str(), "{setup}: driver");
        // The fallback finds the same cgroup without the process.
        let id = e["id"].as_str().unwrap();
        let fallback = paths::from_driver_paths(&mounts, id);
        assert_eq!(fallback.driver, dirs.driver, "{setup}: fallback driver");
        assert_eq!(
            (&fallback.cpuacct, &fallback.memory, &fallback.v2),
            (&dirs.cpuacct, &dirs.memory, &dirs.v2),
            "{setup}: fallback dirs"
        );
        let mut reader = Reader::new(layout, dirs, &d.join("proc"));
        let (r, errors) = reader.read();
        assert!(errors.is_empty(), "{setup}: {errors:?}");
        assert_eq!(r.cpu_ns, e["cpu_ns"].as_u64(), "{setup}: cpu");
        assert_eq!(r.cpu_limit, e["cpu_limit"].as_f64(), "{setup}: limit");
        assert_eq!(
            r.throttled_ns,
            e["throttled_ns"].as_u64(),
            "{setup}: throttled"
        );
        assert_eq!(r.memory, e["memory"].as_u64(), "{setup}: memory");
        let io = r.io.unwrap();
        assert_eq!(
            (io.read, io.write),
            (
                e["io"]["read"].as_u64().unwrap(),
                e["io"]["write"].as_u64().unwrap()
            ),
            "{setup}: io"
        );
        assert_eq!(
            reader.io_source().map(|s| s.as_str()),
            e["io_source"].as_str(),
            "{setup}: io source"
        );
        assert_eq!(
            r.pressure.iter().flatten().count() as u64,
            e["pressure"].as_u64().unwrap(),
            "{setup}: psi"
        );
        if let Some(cpu) = r.pressure[0] {
            assert_eq!(cpu.some_total_us, 4_200_000);
        }
        // A second reading through the kept descriptors gives the same values.
        let (again, _) = reader.read();
        assert_eq!(again.cpu_ns, r.cpu_ns);
        assert_eq!(again.io, r.io);
    }
}

/// Per-task counters that cannot be read (the agent is not in the host PID namespace) are an
/// error naming the file, never a silent 0.
#[test]
fn unreadable_task_counters_are_an_error_not_zero() {
    let d = dir("v1-cgroupfs");
    let mounts = Mounts::parse(
        &std::fs::read_to_string(d.join("mountinfo")).unwrap(),
        &d.join("sys"),
    );
    let dirs = paths::from_proc(
        &mounts,
        &std::fs::read_to_string(d.join("proc/100/cgroup")).unwrap(),
    );
    let empty_proc = tempfile::tempdir().unwrap();
    let mut reader = Reader::new(mounts.layout().unwrap(), dirs, empty_proc.path());
    let (r, errors) = reader.read();
    assert_eq!(r.io, None);
    assert_eq!(r.cpu_ns, Some(7_000_000_000));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(
        msg.contains("100/io") || msg.contains("cgroup.procs"),
        "{msg}"
    );
}
