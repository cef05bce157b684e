//! Container consoles through the real agent: `node-agent run` against a real Docker engine
//! (Debian's dockerd on its own socket), the real rotel collector and the decoding receiver,
//! which decodes `/v1/logs` with the reference protobuf classes.
//!
//! - **Exactly once across `kill -9`**: three Wings-style server containers (a TTY on the
//!   `local` driver as Wings makes them, a plain one, and one that stops half-way and is started
//!   again) print 50,000 numbered lines each in bursts, stderr lines, a 40,000-byte line, an
//!   invalid UTF-8 line and a last line without newline, while the agent is SIGKILLed and
//!   restarted twice; every line arrives once, in order per container and stream, whole, with
//!   the container's identity.
//! - **A flood** (`logs_e2e::noisy`): one container printing as fast as it can for 30 s: the
//!   agent's memory stays within its budget, the drops are counted, a quiet neighbour's lines
//!   keep arriving within 2 s, and the flood prints about as fast as without the agent (both
//!   measured, the ratio printed).
//! - **Collector down** (`logs_e2e::outage`): 20 s by default (`NODE_AGENT_OUTAGE_SEC=120` for
//!   the two minutes): lines wait in the spool and arrive afterwards, none lost or doubled.
//! - **Transports**: the same lines over OTLP/HTTP protobuf, OTLP/HTTP JSON and gRPC.

use crate::harness::docker::Dockerd;
use crate::harness::{Agent, Receiver, Rotel, wait_until};
use crate::logs::support::{Rec, SCRIPT, expected};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const UA: &str = "0a1b2c3d-0000-4000-8000-0000000000e1";
const UB: &str = "0a1b2c3d-0000-4000-8000-0000000000e2";
const UC: &str = "0a1b2c3d-0000-4000-8000-0000000000e3";
const BURST: usize = 5000;

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Every log record the receiver decoded, with the time its request arrived (Unix ns).
fn received(r: &Receiver) -> Vec<(Rec, u64)> {
    let mut out = Vec::new();
    for req in r.requests() {
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
            out.push((
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
    out
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

/// `docker run -d` of the test script as a Wings server container.
fn server(
    docker: &Dockerd,
    image: &str,
    name: &str,
    tty: bool,
    extra: &[&str],
    env: &[&str],
    script: &str,
) -> String {
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    if tty {
        args.push("-t");
    }
    args.extend([
        "--label",
        "Service=Pterodactyl",
        "--label",
        "ContainerType=server_process",
    ]);
    args.extend(extra);
    for e in env {
        args.extend(["-e", e]);
    }
    args.extend([image, "sh", "-c", script]);
    docker.run(&args)
}

fn state_of(docker: &Dockerd, name: &str) -> String {
    docker.inspect(name, "{{.State.Status}}")
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
        let got: Vec<&Rec> = mine
            .iter()
            .copied()
            .filter(|r| r.stream == stream)
            .collect();
        let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
        if bodies != want {
            // The missing and repeated numbered lines, as ranges.
            let num = |b: &str| -> Option<u64> { b.rsplit(' ').next()?.parse().ok() };
            let got_n: std::collections::BTreeSet<u64> =
                bodies.iter().filter(|b| b.contains(" out ") || b.contains(" err ")).filter_map(|b| num(b)).collect();
            let want_n: Vec<u64> = want.iter().filter(|b| b.contains(" out ") || b.contains(" err ")).filter_map(|b| num(b)).collect();
            let mut gaps = Vec::new();
            let mut start: Option<u64> = None;
            for w in &want_n {
                match (got_n.contains(w), start) {
                    (false, None) => start = Some(*w),
                    (true, Some(s)) => { gaps.push((s, *w - 1)); start = None; }
                    _ => {}
                }
            }
            if let Some(s) = start { gaps.push((s, *want_n.last().unwrap())); }
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
        for w in got.windows(2) {
            assert!(w[0].ts <= w[1].ts, "{name} {stream}: time went back");
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
    let rotel = Rotel::start(&receiver.url(), &[]);
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
    let burst = format!("BURST={BURST}");
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
        &["TAG=A", &burst, "PAUSE=0.5"],
        SCRIPT,
    );
    let b = server(
        &docker,
        &image,
        UB,
        false,
        &["--log-driver", "local"],
        &["TAG=B", &burst, "PAUSE=0.6"],
        SCRIPT,
    );
    let c = server(
        &docker,
        &image,
        UC,
        false,
        &["--log-driver", "local"],
        &["TAG=C", &burst, "PAUSE=0.4", "PARTS=2"],
        SCRIPT,
    );
    // Not a server: never followed under `logs = servers`.
    docker.run(&[
        "run", "-d", "--network", "none", "--name", "other", &image, "sh", "-c",
        "echo not-a-server",
    ]);
    let mut rng = fastrand::Rng::with_seed(29);
    let count = |ids: &[&String]| {
        received(&receiver)
            .iter()
            .filter(|(r, _)| ids.contains(&&r.container))
            .count()
    };
    // Kill 1: once some lines arrived, at a random moment.
    wait_until(Duration::from_secs(60), "first lines at the receiver", || {
        count(&[&a, &b, &c]) > 2000
    });
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
    wait_until(Duration::from_secs(60), "the second agent to deliver", || {
        count(&[&a, &b, &c]) > at_kill1 + 2000
    });
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
        expected("A", BURST, true, 1, false),
        expected("B", BURST, false, 1, false),
        expected("C", BURST, false, 2, false),
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
    let recs: Vec<Rec> = received(&receiver).into_iter().map(|(r, _)| r).collect();
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
