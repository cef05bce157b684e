//! Container consoles through the real agent: `node-agent run` against a real Docker engine
//! (Debian's dockerd on its own socket), the real rotel collector and the decoding receiver,
//! which decodes `/v1/logs` with the reference protobuf classes. Sizes are small enough for CI
//! here; `scripts/logs-e2e.sh` runs the same tests at the issue's sizes (docs/logs.md records
//! the numbers). Nothing here asserts a time.
//!
//! - **Exactly once across `kill -9`** (gRPC through rotel): three Wings-style server containers
//!   (a TTY on the `local` driver as Wings makes them, a plain one, and one that stops half-way
//!   and is started again) print ten bursts of numbered lines, stderr lines, a 40,000-byte line,
//!   an invalid UTF-8 line and a last line without newline, while the agent is SIGKILLed and
//!   restarted twice; every line arrives once, in order per container and stream, whole, with
//!   the container's identity.
//! - **A flood** (OTLP/HTTP straight to the receiver): one container printing as fast as it can:
//!   the agent's memory stays within its budget, every line is received or counted as dropped,
//!   the quiet neighbour's lines all arrive; its delay and the flood's rate with and without
//!   the agent are printed.
//! - **Collector down** (gRPC, rotel stopped and started again on the same ports): the lines
//!   wait in the spool and arrive afterwards, none lost or doubled.

use crate::harness::docker::Dockerd;
use crate::harness::{Agent, Receiver, Rotel, wait_until};
use crate::logs::support::{Rec, SCRIPT, expected, not_a_server, server, state_of};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const UA: &str = "0a1b2c3d-0000-4000-8000-0000000000e1";
const UB: &str = "0a1b2c3d-0000-4000-8000-0000000000e2";
const UC: &str = "0a1b2c3d-0000-4000-8000-0000000000e3";
/// rotel (0.x) cuts its batches at 8,192 records by default, and the part of a ResourceLogs cut
/// off that way arrives without its Resource (seen with 50,000-line bursts: thousands of records
/// with an empty resource). Batches bounded by time only keep every Resource.
const ROTEL_ARGS: &[&str] = &[
    "--logs-batch-max-size",
    "1000000",
    "--batch-timeout",
    "200ms",
];

/// Lines per burst (ten bursts per container): 500 in `cargo test` (5,000 numbered lines per
/// container, to stay well under 30 s); `NODE_AGENT_LOGS_E2E_BURST=5000` for the issue's 50,000
/// (`scripts/logs-e2e.sh` runs it and prints the numbers recorded in docs/logs.md).
fn burst() -> usize {
    std::env::var("NODE_AGENT_LOGS_E2E_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The records decoded so far per receiver file, and the length read: the file grows to
/// hundreds of MB in the 50,000-line run, so each look parses only what was appended.
type Seen = BTreeMap<std::path::PathBuf, (usize, Vec<(Rec, u64)>)>;
static SEEN: std::sync::LazyLock<parking_lot::Mutex<Seen>> =
    std::sync::LazyLock::new(Default::default);

/// Runs `f` over every log record the receiver decoded, with the time its request arrived
/// (Unix ns).
fn with_received<T>(r: &Receiver, f: impl FnOnce(&[(Rec, u64)]) -> T) -> T {
    let mut seen = SEEN.lock();
    let (read, recs) = seen.entry(r.out.clone()).or_default();
    let bytes = std::fs::read(&r.out).unwrap_or_default();
    let end = bytes[*read..]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(*read, |i| *read + i + 1);
    for line in bytes[*read..end].split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let req: serde_json::Value = serde_json::from_slice(line).expect("a receiver line");
        let at = req["at"].as_u64().unwrap_or(0);
        for l in req["logs"].as_array().into_iter().flatten() {
            assert!(l.get("decode_error").is_none(), "undecodable: {l}");
            let resource: BTreeMap<String, String> = l["resource"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect();
            let attrs = &l["attrs"];
            recs.push((
                Rec {
                    container: resource.get("container.id").cloned().unwrap_or_default(),
                    stream: text(&attrs["log.iostream"]),
                    ts: l["time"].as_u64().unwrap_or(0),
                    observed: l["observed"].as_u64().unwrap_or(0),
                    body: text(&l["body"]),
                    truncated: attrs.get("node_agent.log.truncated").is_some(),
                    original_size: attrs["node_agent.log.original_size"].as_i64(),
                    resource,
                },
                at,
            ));
        }
    }
    *read = end;
    f(recs)
}

/// Every log record the receiver decoded, with the time its request arrived (Unix ns).
fn received(r: &Receiver) -> Vec<(Rec, u64)> {
    with_received(r, |recs| recs.to_vec())
}

/// How many records came from these containers.
fn count_of(r: &Receiver, ids: &[&str]) -> usize {
    with_received(r, |recs| {
        recs.iter()
            .filter(|(rec, _)| ids.contains(&rec.container.as_str()))
            .count()
    })
}

/// The agent's environment: Docker, state, logs on for server containers, fast batches.
fn agent_env(
    docker: &Dockerd,
    state: &Path,
    endpoint: &str,
    protocol: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DOCKER_HOST", docker.host()),
        ("NODE_AGENT_STATE_DIR", state.display().to_string()),
        ("WINGS_CONFIG", "/nonexistent/config.yml".into()),
        ("NODE_AGENT_LOGS", "servers".into()),
        ("NODE_AGENT_LOGS_FLUSH_INTERVAL_MS", "200".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
        ("NODE_ID", "logs-e2e".into()),
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1".into()),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1".into()),
        ("AGENT_SEND_BACKOFF_MAX_SEC", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

fn start_agent(dir: &Path, name: &str, env: &[(String, String)]) -> Agent {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Agent::start(dir, name, &env)
}

/// One container's records: exactly the expected lines per stream, in order, with its identity.
fn check_container(
    recs: &[Rec],
    id: &str,
    name: &str,
    image: &str,
    want: (Vec<String>, Vec<String>),
) {
    let mine: Vec<&Rec> = recs.iter().filter(|r| r.container == id).collect();
    assert!(!mine.is_empty(), "{name}: nothing received");
    for (stream, want) in [("stdout", want.0), ("stderr", want.1)] {
        // The collector exports its batches concurrently, so requests may arrive out of order:
        // the order of a stream is its records' Docker times (arrival order among equal times).
        let mut got: Vec<&Rec> = mine
            .iter()
            .copied()
            .filter(|r| r.stream == stream)
            .collect();
        got.sort_by_key(|r| r.ts);
        let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
        if bodies != want {
            // The missing and repeated numbered lines, as ranges.
            let num = |b: &str| -> Option<u64> { b.rsplit(' ').next()?.parse().ok() };
            let got_n: std::collections::BTreeSet<u64> = bodies
                .iter()
                .filter(|b| b.contains(" out "))
                .filter_map(|b| num(b))
                .collect();
            let want_n: Vec<u64> = want
                .iter()
                .filter(|b| b.contains(" out "))
                .filter_map(|b| num(b))
                .collect();
            let mut gaps = Vec::new();
            let mut start: Option<u64> = None;
            for w in &want_n {
                match (got_n.contains(w), start) {
                    (false, None) => start = Some(*w),
                    (true, Some(s)) => {
                        gaps.push((s, *w - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                gaps.push((s, *want_n.last().unwrap()));
            }
            eprintln!("{name} {stream}: missing ranges {gaps:?}");
            let first = bodies.iter().zip(&want).position(|(a, b)| a != b);
            let dup = {
                let mut seen = std::collections::HashSet::new();
                bodies.iter().filter(|b| !seen.insert(**b)).count()
            };
            panic!(
                "{name} {stream}: {} lines, want {} ({dup} repeated); first difference at {first:?}: got {:?} want {:?}",
                bodies.len(),
                want.len(),
                first.map(|i| bodies[i].chars().take(60).collect::<String>()),
                first.map(|i| want[i].chars().take(60).collect::<String>()),
            );
        }
        for r in &got {
            assert!(r.ts > 1_600_000_000_000_000_000 && r.observed + 1_000_000 >= r.ts);
            assert!(!r.truncated);
        }
    }
    let res = &mine[0].resource;
    assert_eq!(res["container.id"], id);
    assert_eq!(res["container.name"], name);
    assert_eq!(res["container.image.name"], image);
    assert_eq!(res["pterodactyl.server.uuid"], name);
    assert_eq!(res["service.name"], "node-agent");
    assert_eq!(res["service.instance.id"], "logs-e2e");
    assert!(res.contains_key("host.name"));
    assert!(
        !res.keys().any(|k| k.starts_with("node.")),
        "capability counts stay off the logs: {res:?}"
    );
    assert!(mine.iter().all(|r| r.resource == *res));
}

#[test]
fn every_console_line_once_through_the_agent_across_two_sigkills() {
    let docker = Dockerd::start();
    let image = docker.build_image();
    let receiver = Receiver::start(&[]);
    let rotel = Rotel::start(&receiver.url(), ROTEL_ARGS);
    let dir = tempfile::tempdir().unwrap();
    eprintln!("agent logs in {}", dir.path().display());
    let state = dir.path().join("state");
    let env = agent_env(
        &docker,
        &state,
        &format!("http://127.0.0.1:{}", rotel.grpc_port),
        "grpc",
        &[
            ("NODE_AGENT_LOGS_BUDGET_LINES", "10000000"),
            ("NODE_AGENT_LOGS_BUDGET_BYTES", "1073741824"),
        ],
    );
    let mut agent = start_agent(dir.path(), "agent-1", &env);
    let n_burst = burst();
    let step = n_burst * 3 * 10 / 8;
    let burst = format!("BURST={n_burst}");
    // Longer pauses between larger bursts, so both kills land while lines still flow.
    let pause = |base: f64| format!("PAUSE={:.1}", base * (n_burst as f64 / 1000.0).max(1.0));
    let (pa, pb, pc) = (pause(0.5), pause(0.6), pause(0.4));
    // As Wings makes a server: the `local` driver (5 MB, one file) and a TTY.
    let wings_log = [
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=5m",
        "--log-opt",
        "max-file=1",
        "--log-opt",
        "compress=false",
    ];
    let a = server(
        &docker,
        &image,
        UA,
        true,
        &wings_log,
        &["TAG=A", &burst, &pa],
        SCRIPT,
    );
    let b = server(
        &docker,
        &image,
        UB,
        false,
        &["--log-driver", "local"],
        &["TAG=B", &burst, &pb],
        SCRIPT,
    );
    let c = server(
        &docker,
        &image,
        UC,
        false,
        &["--log-driver", "local"],
        &["TAG=C", &burst, &pc, "PARTS=2"],
        SCRIPT,
    );
    not_a_server(&docker, &image);
    let mut rng = fastrand::Rng::with_seed(29);
    let count = |ids: &[&String]| {
        let ids: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
        count_of(&receiver, &ids)
    };
    // Kill 1: once some lines arrived, at a random moment.
    wait_until(
        Duration::from_secs(60),
        "first lines at the receiver",
        || count(&[&a, &b, &c]) > step,
    );
    std::thread::sleep(Duration::from_millis(rng.u64(0..700)));
    agent.proc.signal(libc::SIGKILL);
    agent.proc.wait_timeout(Duration::from_secs(10)).unwrap();
    let at_kill1 = count(&[&a, &b, &c]);
    agent = start_agent(dir.path(), "agent-2", &env);
    // C stops half-way (its text so far ending without newline); start it again.
    wait_until(Duration::from_secs(90), "C to stop half-way", || {
        state_of(&docker, UC) == "exited"
    });
    docker.run(&["start", UC]);
    // Kill 2: mid-stream again, once the second agent delivered something.
    wait_until(
        Duration::from_secs(60),
        "the second agent to deliver",
        || count(&[&a, &b, &c]) > at_kill1 + step,
    );
    std::thread::sleep(Duration::from_millis(rng.u64(0..700)));
    agent.proc.signal(libc::SIGKILL);
    agent.proc.wait_timeout(Duration::from_secs(10)).unwrap();
    let at_kill2 = count(&[&a, &b, &c]);
    let agent = start_agent(dir.path(), "agent-3", &env);
    wait_until(Duration::from_secs(180), "all containers to finish", || {
        [UA, UB, UC]
            .iter()
            .all(|n| state_of(&docker, n) == "exited")
    });
    let want = [
        expected("A", n_burst, true, 1, false),
        expected("B", n_burst, false, 1, false),
        expected("C", n_burst, false, 2, false),
    ];
    let total: usize = want.iter().map(|(o, e)| o.len() + e.len()).sum();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut n = 0;
    while Instant::now() < deadline {
        n = count(&[&a, &b, &c]);
        if n >= total {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // A little longer: anything repeated would arrive now.
    std::thread::sleep(Duration::from_secs(2));
    let (_, log) = agent.stop(Duration::from_secs(30));
    if std::env::var_os("NODE_AGENT_TEST_KEEP").is_some() {
        let _ = dir.keep();
    }
    eprintln!(
        "lines at the receiver at the kills: {at_kill1}, {at_kill2}; in the end {n} of {total}"
    );
    if n != total {
        let log = rotel.log();
        eprintln!(
            "rotel's log (end):\n{}",
            &log[log.len().saturating_sub(4000)..]
        );
    }
    let recs: Vec<Rec> = received(&receiver).into_iter().map(|(r, _)| r).collect();
    SEEN.lock().remove(&receiver.out);
    let orphans = recs.iter().filter(|r| r.resource.is_empty()).count();
    assert_eq!(orphans, 0, "records that arrived without their Resource");
    let [wa, wb, wc] = want;
    check_container(&recs, &a, UA, &image, wa);
    check_container(&recs, &b, UB, &image, wb);
    check_container(&recs, &c, UC, &image, wc);
    assert!(
        recs.iter().all(|r| [&a, &b, &c].contains(&&r.container)),
        "only the three servers are followed"
    );
    assert!(!log.contains("ERROR"), "{log}");
    // Cursors in the state directory, one per container.
    let cursors: Vec<String> = std::fs::read_dir(state.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for id in [&a, &b, &c] {
        assert!(cursors.contains(&format!("{id}.json")), "{cursors:?}");
    }
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peak resident memory of a process (`VmHWM`), bytes.
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The newest value of the agent's own counter `name` for `container`, per `reason` attribute.
fn self_metric(r: &Receiver, name: &str, container: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for m in r.metrics() {
        if m["name"] != name {
            continue;
        }
        for p in m["points"].as_array().into_iter().flatten() {
            if p["attrs"]["container.id"].as_str() == Some(container) {
                let reason = text(&p["attrs"]["reason"]);
                out.insert(reason, p["value"].as_f64().unwrap_or(0.0));
            }
        }
    }
    out
}

/// Prints `N <i>` as fast as a shell can for `$FLOOD` seconds, then `N total <count>`.
const FLOOD: &str = r#"
end=$(( $(busybox date +%s) + FLOOD )); i=0
while [ $(busybox date +%s) -lt $end ]; do
  j=0; while [ $j -lt 2000 ]; do echo "N $i"; i=$((i+1)); j=$((j+1)); done
done
echo "N total $i""#;

/// The numbers a flood container printed (its last line, read from Docker).
fn flood_total(docker: &Dockerd, name: &str) -> u64 {
    wait_until(Duration::from_secs(120), "the flood to end", || {
        state_of(docker, name) == "exited"
    });
    let out = docker.run(&["logs", "--tail", "1", name]);
    out.trim()
        .strip_prefix("N total ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: last line {out:?}"))
}

/// A server container printing as fast as it can beside a quiet one: the agent's memory stays
/// within its budget (logs memory 4 MiB and logs queue 4 MiB here; the whole process under
/// 64 MiB resident), the noisy container's lines past its budget are dropped and counted
/// (received + dropped = printed, exactly), every quiet line arrives exactly once. The latency
/// of the quiet lines and the flood's rate with and without the agent are printed, not
/// asserted (`scripts/logs-e2e.sh` runs it for 30 s and docs/logs.md records the numbers).
#[test]
fn flooding_container_is_bounded_counted_and_does_not_hold_up_the_others() {
    let secs = env_secs("NODE_AGENT_LOGS_E2E_FLOOD_SEC", 6);
    let docker = Dockerd::start();
    let image = docker.build_image();
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let script = FLOOD.replace("FLOOD", &secs.to_string());
    // Alone first: how fast the container prints with nobody following it.
    let alone = server(&docker, &image, "flood-alone", false, &[], &[], &script);
    let alone_total = flood_total(&docker, &alone);
    docker.run(&["rm", &alone]);
    let env = agent_env(
        &docker,
        &dir.path().join("state"),
        &receiver.url(),
        "http/protobuf",
        &[
            ("NODE_AGENT_LOGS_MEMORY_BYTES", "4194304"),
            ("NODE_AGENT_LOGS_QUEUE_MEMORY_BYTES", "4194304"),
            // The default rate (50,000 lines per 10 s), spread over 1 s windows.
            ("NODE_AGENT_LOGS_BUDGET_INTERVAL_SEC", "1"),
            ("NODE_AGENT_LOGS_BUDGET_LINES", "5000"),
        ],
    );
    let agent = start_agent(dir.path(), "agent", &env);
    let pid = agent.proc.pid();
    let quiet_n = secs * 10 + 20;
    let quiet = server(
        &docker,
        &image,
        UA,
        false,
        &[],
        &[],
        &format!("i=0; while [ $i -lt {quiet_n} ]; do echo \"Q $i\"; i=$((i+1)); sleep 0.1; done"),
    );
    wait_until(Duration::from_secs(30), "the quiet lines to flow", || {
        count_of(&receiver, &[&quiet]) > 0
    });
    let noisy = server(&docker, &image, UB, false, &[], &[], &script);
    let with_total = flood_total(&docker, &noisy);
    wait_until(Duration::from_secs(60), "every quiet line", || {
        state_of(&docker, UA) == "exited" && count_of(&receiver, &[&quiet]) as u64 >= quiet_n
    });
    // The noisy container's counters settle (its last lines, the next self-metrics export).
    let noisy_got = |rx: &Receiver| count_of(rx, &[&noisy]) as u64;
    let mut settled = (0, 0.0);
    wait_until(
        Duration::from_secs(30),
        "received + dropped = printed",
        || {
            let dropped: f64 = self_metric(&receiver, "node_agent.logs.dropped", &noisy)
                .values()
                .sum();
            settled = (noisy_got(&receiver), dropped);
            settled.0 + dropped as u64 == with_total + 1
        },
    );
    let peak = peak_rss(pid);
    let drops = self_metric(&receiver, "node_agent.logs.dropped", &noisy);
    let mem_peak = receiver
        .metrics()
        .iter()
        .filter(|m| m["name"] == "node_agent.logs.memory.usage")
        .flat_map(|m| m["points"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["value"].as_f64())
        .fold(0.0, f64::max);
    let (_, log) = agent.stop(Duration::from_secs(30));
    // The quiet container: every line once, in order, and how late each arrived.
    let mut quiet_recs: Vec<(Rec, u64)> = received(&receiver)
        .into_iter()
        .filter(|(r, _)| r.container == quiet)
        .collect();
    quiet_recs.sort_by_key(|(r, _)| r.ts);
    let bodies: Vec<&str> = quiet_recs.iter().map(|(r, _)| r.body.as_str()).collect();
    let want: Vec<String> = (0..quiet_n).map(|i| format!("Q {i}")).collect();
    assert_eq!(
        bodies, want,
        "the quiet container's lines, once each, in order"
    );
    let mut late: Vec<f64> = quiet_recs
        .iter()
        .map(|(r, at)| at.saturating_sub(r.ts) as f64 / 1e9)
        .collect();
    late.sort_by(f64::total_cmp);
    let p99 = late[(late.len() * 99 / 100).min(late.len() - 1)];
    // The agent's part: from Docker's time to when the agent read the line.
    let read_max = quiet_recs
        .iter()
        .map(|(r, _)| r.observed.saturating_sub(r.ts) as f64 / 1e9)
        .fold(0.0, f64::max);
    eprintln!(
        "flood {secs} s: printed alone {alone_total} lines ({:.0}/s), with the agent {with_total} ({:.0}/s, ratio {:.2}); \
         received {} + dropped {drops:?}; quiet lines read within {read_max:.3} s, at the receiver p99 {p99:.3} s, max {:.3} s; \
         agent peak RSS {:.1} MiB, logs memory peak {:.2} MiB",
        alone_total as f64 / secs as f64,
        with_total as f64 / secs as f64,
        with_total as f64 / alone_total as f64,
        settled.0,
        late.last().unwrap(),
        peak as f64 / 1048576.0,
        mem_peak / 1048576.0,
    );
    assert!(
        drops.get("budget").copied().unwrap_or(0.0) > 0.0,
        "{drops:?}"
    );
    assert!(
        log.contains("container over its log budget"),
        "the drop episode is logged:\n{log}"
    );
    assert!(mem_peak <= 4.0 * 1048576.0, "logs memory {mem_peak}");
    assert!(peak < 64 << 20, "peak RSS {peak}");
}

/// The collector (rotel) stops for a while (`NODE_AGENT_LOGS_E2E_OUTAGE_SEC`, 10 s here, 120 s
/// by `scripts/logs-e2e.sh`) while a server prints a numbered line every 50 ms: the lines wait in
/// the agent's spool and arrive after the collector is back, none lost or doubled.
#[test]
fn collector_down_lines_spool_and_arrive_after_once() {
    let outage = env_secs("NODE_AGENT_LOGS_E2E_OUTAGE_SEC", 10);
    let docker = Dockerd::start();
    let image = docker.build_image();
    let receiver = Receiver::start(&[]);
    let (grpc, http) = (crate::harness::free_port(), crate::harness::free_port());
    let mut rotel = Rotel::start_on(&receiver.url(), grpc, http, ROTEL_ARGS);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = agent_env(
        &docker,
        &state,
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
        &[],
    );
    let agent = start_agent(dir.path(), "agent", &env);
    let n = (outage + 8) * 20;
    let id = server(
        &docker,
        &image,
        UC,
        false,
        &[],
        &[],
        &format!(
            "i=0; while [ $i -lt {n} ]; do echo \"T $i\"; i=$((i+1)); sleep 0.05; done; printf 'T end'"
        ),
    );
    let mine = |r: &Receiver| -> Vec<Rec> {
        with_received(r, |recs| {
            recs.iter()
                .filter(|(r, _)| r.container == id)
                .map(|(r, _)| r.clone())
                .collect()
        })
    };
    wait_until(Duration::from_secs(30), "the first lines", || {
        mine(&receiver).len() > 20
    });
    rotel.proc.signal(libc::SIGTERM);
    rotel.proc.wait_timeout(Duration::from_secs(10));
    drop(rotel);
    let before = mine(&receiver).len();
    std::thread::sleep(Duration::from_secs(outage));
    // Meanwhile the lines went to the spool, and none reached the receiver.
    let spooled: u64 = std::fs::read_dir(state.join("spool/logs"))
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let during = mine(&receiver).len();
    rotel = Rotel::start_on(&receiver.url(), grpc, http, ROTEL_ARGS);
    wait_until(Duration::from_secs(60), "the container to finish", || {
        state_of(&docker, UC) == "exited"
    });
    wait_until(
        Duration::from_secs(60),
        "every line after the outage",
        || mine(&receiver).len() as u64 > n,
    );
    std::thread::sleep(Duration::from_secs(2));
    let (_, log) = agent.stop(Duration::from_secs(30));
    let orphans = with_received(&receiver, |recs| {
        recs.iter().filter(|(r, _)| r.resource.is_empty()).count()
    });
    assert_eq!(orphans, 0, "records that arrived without their Resource");
    let mut got = mine(&receiver);
    got.sort_by_key(|r| r.ts);
    let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
    let mut want: Vec<String> = (0..n).map(|i| format!("T {i}")).collect();
    want.push("T end".into());
    eprintln!(
        "outage {outage} s: {before} lines before, {during} during, {} in the end of {}; {spooled} bytes spooled at the end of the outage",
        bodies.len(),
        want.len()
    );
    assert_eq!(bodies, want, "every line once, in order");
    assert_eq!(
        during, before,
        "nothing arrives while the collector is down"
    );
    assert!(spooled > 0, "the lines waited in the spool");
    assert!(!log.contains("ERROR"), "{log}");
    drop(rotel);
}
