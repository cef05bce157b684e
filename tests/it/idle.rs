//! An idle agent wakes for its cycles, not for timers: counted in the kernel's context switches
//! of the real binary, not timed.
//!
//! Between two cycles the agent has nothing to do unless data waits: the queue's watchdog and the
//! disk writer sleep while delivery is prompt, the logs batcher and the agent's own log arm their
//! flush with their first line, the follower reaper ticks only while a follower waits to restart,
//! and the GPU thread is not asked while the host has no GPU. Before, those timers woke the agent
//! about 13 times a second: some 40 thread switches per 2 s cycle against about 5 now.

use crate::delivery::passes;
use crate::harness::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// Voluntary context switches of each thread of `pid`, by thread ID (with its name).
fn switches(pid: i32) -> BTreeMap<String, (String, u64)> {
    let mut out = BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let name = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
        let n = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let tid = t.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(tid, (name.trim().to_string(), n));
    }
    out
}

#[test]
fn an_idle_agent_wakes_for_its_cycles_not_for_timers() {
    let work = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[]);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let spool = work.path().join("spool");
    let state = work.path().join("state");
    let agent = Agent::start(
        work.path(),
        "agent",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "2"),
            ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "2"),
            // The spool is on (its disk writer runs), the logs source runs (its batcher and
            // reaper) with no Docker to follow, the local endpoint is off.
            ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
            ("NODE_AGENT_STATE_DIR", state.to_str().unwrap()),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
            ("WINGS_CONFIG", "/nonexistent/wings/config.yml"),
            ("NODE_AGENT_HTTP_LISTEN", "off"),
        ],
    );
    wait_until(Duration::from_secs(60), "two samples received", || {
        passes(&receiver).len() >= 2
    });
    let pid = agent.proc.pid();
    let before = switches(pid);
    let samples_before = passes(&receiver).len();
    std::thread::sleep(Duration::from_secs(10));
    let after = switches(pid);
    let cycles = (passes(&receiver).len() - samples_before).max(1) as u64;
    let per_thread: Vec<String> = after
        .iter()
        .map(|(tid, (name, n))| {
            let was = before.get(tid).map_or(0, |b| b.1);
            format!("{name} ({tid}): {}", n - was)
        })
        .collect();
    let total: u64 = after
        .iter()
        .map(|(tid, (_, n))| n - before.get(tid).map_or(0, |b| b.1))
        .sum();
    eprintln!("{total} voluntary switches in {cycles} cycles: {per_thread:?}");
    // About 5 per cycle measured (the cycle's timer, the request and its answer, a Docker
    // reconnect now and then); timers ticking twice a second would add 20 or more.
    assert!(
        total <= 15 * cycles,
        "{total} voluntary switches in {cycles} cycles: {per_thread:?}\nlog:\n{}",
        agent.log()
    );
    assert!(
        cycles >= 3,
        "only {cycles} samples in 10 s at a 2 s interval"
    );
}
