//! The logs source against a real Docker engine (Debian's dockerd, started here on its own
//! socket; image built locally from the static busybox).
//!
//! Three Wings-style server containers print ten bursts of numbered lines, a stderr line every
//! thousand, a 40,000-byte line with an `é` across Docker's 16 KiB piece boundary, an invalid
//! UTF-8 line and a last line without newline: one with a TTY and the `local` driver (as Wings
//! makes them), one plain (`local`), one plain on json-file that stops half-way and is started
//! again. The source is stopped hard twice mid-stream (in-process: everything dropped, batches in
//! flight never acknowledged; and, in its own test, a child process killed with SIGKILL) and
//! started again. Every line must arrive exactly once, in order per container and stream, the
//! long line whole, with the container's identity; cursors survive stops and go with `destroy`.

#[path = "logs_support.rs"]
pub(crate) mod support;

use crate::harness::docker::Dockerd;
use crate::harness::{Proc, wait_until};
use node_agent::runtime::logs::LogsSource;
use node_agent::sources::logs::{ByLabels, LogsConfig, Selection, Servers, Status};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{MemSink, Rec, expected};
use support::{not_a_server, server, state_of};

const UA: &str = "0a1b2c3d-0000-4000-8000-00000000000a";
const UB: &str = "0a1b2c3d-0000-4000-8000-00000000000b";
const UC: &str = "0a1b2c3d-0000-4000-8000-00000000000c";
const BURST: usize = 5000;

/// Wings' labels, and a server name as the Wings API would give it.
struct Names;

impl Servers for Names {
    fn server(
        &self,
        id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<(String, Option<String>)> {
        ByLabels
            .server(id, name, labels)
            .map(|(u, _)| (u.clone(), Some(format!("server {}", &u[u.len() - 1..]))))
    }
}

fn config(docker: &Dockerd, state: &Path) -> LogsConfig {
    LogsConfig {
        selection: Selection::Servers,
        state_dir: state.to_path_buf(),
        docker_host: docker.host(),
        budget_lines: 10_000_000,
        budget_bytes: 1 << 30,
        flush_interval: Duration::from_millis(100),
        resync_interval: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Checks one container's records: exactly the expected lines per stream, in order, with its
/// identity and sane times.
fn check_container(
    recs: &[Rec],
    id: &str,
    name: &str,
    image: &str,
    want: (Vec<String>, Vec<String>),
) {
    let mine: Vec<&Rec> = recs.iter().filter(|r| r.container == id).collect();
    for (stream, want) in [("stdout", want.0), ("stderr", want.1)] {
        let got: Vec<&Rec> = mine
            .iter()
            .copied()
            .filter(|r| r.stream == stream)
            .collect();
        let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
        if bodies != want {
            let first = bodies.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "{name} {stream}: {} lines, want {}; first difference at {first:?}: got {:?} want {:?}",
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
    assert_eq!(
        res["pterodactyl.server.name"],
        format!("server {}", &name[name.len() - 1..])
    );
    assert!(mine.iter().all(|r| r.resource == *res));
}

fn cursor_files(state: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(state.join("logs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Acknowledges the sink's batches in the background, keeping two in flight.
fn pump(sink: &MemSink) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let run = Arc::new(AtomicBool::new(true));
    let (r, s) = (run.clone(), sink.clone());
    let h = std::thread::spawn(move || {
        while r.load(Ordering::Relaxed) {
            s.pump(2);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (run, h)
}

#[test]
fn every_line_exactly_once_across_hard_stops_and_a_container_restart() {
    // RUST_LOG=node_agent=debug to see the agent's side of a failure.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::ERROR)
        });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_test_writer()
        .finish()
        .with(level)
        .try_init();
    let docker = Dockerd::start();
    let image = docker.build_image();
    let state = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let sink = MemSink::default();
    let (pumping, pumper) = pump(&sink);
    let start = |recovered| {
        LogsSource::start(
            config(&docker, state.path()),
            sink.handle(),
            Arc::new(Names),
            vec![],
            recovered,
        )
        .unwrap()
    };
    let mut source = start(vec![]);
    let burst = format!("BURST={BURST}");
    let a = server(
        &docker,
        &image,
        UA,
        true,
        &["--log-driver", "local"],
        &["TAG=A", &burst, "PAUSE=0.25"],
        support::SCRIPT,
    );
    let b = server(
        &docker,
        &image,
        UB,
        false,
        &["--log-driver", "local"],
        &["TAG=B", &burst, "PAUSE=0.3"],
        support::SCRIPT,
    );
    let c = server(
        &docker,
        &image,
        UC,
        false,
        &["--log-driver", "json-file"],
        &["TAG=C", &burst, "PAUSE=0.2", "PARTS=2", "LONG_AT0=1"],
        support::SCRIPT,
    );
    not_a_server(&docker, &image);

    // First hard stop, mid-stream.
    let mut rng = fastrand::Rng::with_seed(13);
    std::thread::sleep(Duration::from_millis(rng.u64(800..1800)));
    drop(source);
    let lost = sink.crash();
    std::thread::sleep(Duration::from_millis(300));
    source = start(sink.recovered());

    // C stops half-way; start it again (same container, same log).
    wait_until(Duration::from_secs(60), "C to stop half-way", || {
        state_of(&docker, UC) == "exited"
    });
    docker.run(&["start", UC]);
    std::thread::sleep(Duration::from_millis(rng.u64(300..1200)));
    drop(source);
    let lost2 = sink.crash();
    source = start(sink.recovered());

    wait_until(Duration::from_secs(120), "all containers to finish", || {
        [UA, UB, UC]
            .iter()
            .all(|n| state_of(&docker, n) == "exited")
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = source.report();
        let drained = r
            .containers
            .iter()
            .filter(|c| c.status == Status::Drained)
            .count();
        if drained == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logs not read to their end: {:#?}",
            r.containers
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pumping.store(false, Ordering::Relaxed);
    pumper.join().unwrap();
    // The last positions may still be with the batcher or the sink (which holds its newest two
    // batches, and a batch without records waits behind them): answer everything until each
    // container's acknowledged position is where it was read to.
    wait_until(
        Duration::from_secs(20),
        "every read position acknowledged",
        || {
            sink.pump(0);
            let r = source.report();
            r.batches_in_flight == 0
                && r.containers
                    .iter()
                    .all(|c| c.cursor.as_ref() == Some(&c.read))
        },
    );
    eprintln!("batches lost in flight at the two stops: {lost}, {lost2}");

    let want = [
        (&a, UA, expected("A", BURST, true, 1, false)),
        (&b, UB, expected("B", BURST, false, 1, false)),
        (&c, UC, expected("C", BURST, false, 2, true)),
    ];
    // A last line without a line ending is batched when its stream ends, which a loaded machine
    // may report a moment after the container reads as drained: wait (answering the sink) until
    // every container has delivered at least as many lines as it printed, then compare exactly.
    let total: usize = want.iter().map(|w| w.2.0.len() + w.2.1.len()).sum();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.delivered().len() < total && Instant::now() < deadline {
        sink.pump(0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let recs = sink.delivered();
    for (id, name, w) in want {
        check_container(&recs, id, name, &image, w);
    }
    assert_eq!(
        recs.len(),
        recs.iter()
            .filter(|r| [&a, &b, &c].contains(&&r.container))
            .count()
    );
    // The first lines were followed live: read well within a second of Docker stamping them.
    let first_a = recs.iter().find(|r| r.container == a).unwrap();
    assert!(
        first_a.observed - first_a.ts < 1_000_000_000,
        "first line of A read after {} ns",
        first_a.observed - first_a.ts
    );
    let report = source.report();
    for c in &report.containers {
        assert_eq!(
            (c.dropped_budget, c.dropped_memory, c.dropped_sink, c.cut),
            (0, 0, 0, 0),
            "{c:?}"
        );
        assert_eq!(c.cursor.as_ref(), Some(&c.read), "{}", c.name);
    }
    assert!(report.memory_peak <= report.memory_limit);

    // Stopped containers keep their cursors; a restart of the source reads nothing twice.
    assert!(source.report().containers.len() == 3);
    rt.block_on(source.shutdown(Duration::from_secs(10)));
    let files = cursor_files(state.path());
    for id in [&a, &b, &c] {
        assert!(files.contains(&format!("{id}.json")), "{files:?}");
    }
    let before = sink.delivered().len();
    let source = start(sink.recovered());
    sink.pump(0);
    wait_until(
        Duration::from_secs(30),
        "the restarted source to settle",
        || {
            let r = source.report();
            r.containers.len() == 3 && r.containers.iter().all(|c| c.status == Status::Drained)
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    sink.pump(0);
    assert_eq!(
        sink.delivered().len(),
        before,
        "lines delivered again after a restart"
    );

    // Destroying a container deletes its cursor, and only its.
    docker.run(&["rm", UC]);
    wait_until(Duration::from_secs(10), "C's cursor to go", || {
        !cursor_files(state.path()).contains(&format!("{c}.json"))
    });
    assert!(cursor_files(state.path()).contains(&format!("{a}.json")));
    drop(source);
}

/// The environment variable that turns this test binary into the child the next test kills.
const CHILD: &str = "NODE_AGENT_LOGS_TEST_CHILD";

/// Not a test on its own: the body of the child process `source_killed_with_sigkill` runs (it
/// returns at once unless started by that test).
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let (sink, recovered) = support::FileSink::open(spec["out"].as_str().unwrap().into());
    let cfg = LogsConfig {
        selection: Selection::All,
        state_dir: spec["state"].as_str().unwrap().into(),
        docker_host: spec["docker"].as_str().unwrap().into(),
        budget_lines: 10_000_000,
        budget_bytes: 1 << 30,
        flush_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let _source =
        LogsSource::start(cfg, Arc::new(sink), Arc::new(Names), vec![], recovered).unwrap();
    std::thread::sleep(Duration::from_secs(3600));
}

fn child(docker: &Dockerd, state: &Path, out: &Path) -> Proc {
    let spec = serde_json::json!({
        "docker": docker.host(), "state": state, "out": out,
    });
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "logs::child_process_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, spec.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    Proc::spawn("logs child", &mut cmd)
}

#[test]
fn source_killed_with_sigkill_resumes_exactly() {
    let docker = Dockerd::start();
    let image = docker.build_image();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("delivered.jsonl");
    let mut proc = child(&docker, dir.path(), &out);
    let burst = format!("BURST={BURST}");
    let a = server(
        &docker,
        &image,
        UA,
        true,
        &["--log-driver", "local"],
        &["TAG=A", &burst, "PAUSE=0.6"],
        support::SCRIPT,
    );
    let b = server(
        &docker,
        &image,
        UB,
        false,
        &["--log-driver", "local"],
        &["TAG=B", &burst, "PAUSE=0.6"],
        support::SCRIPT,
    );
    let mut rng = fastrand::Rng::with_seed(9);
    let mut at_kill = vec![];
    for _ in 0..2 {
        // Kill once this child has delivered something (a slow start on a busy machine must not
        // turn two kills into one), at a random moment after.
        let before = at_kill.last().copied().unwrap_or(0);
        wait_until(Duration::from_secs(60), "the child to deliver", || {
            support::file_records(&out).len() > before
        });
        std::thread::sleep(Duration::from_millis(rng.u64(100..700)));
        proc.signal(libc::SIGKILL);
        proc.wait_timeout(Duration::from_secs(10))
            .expect("child killed");
        at_kill.push(support::file_records(&out).len());
        proc = child(&docker, dir.path(), &out);
    }
    wait_until(
        Duration::from_secs(120),
        "both containers to finish",
        || [UA, UB].iter().all(|n| state_of(&docker, n) == "exited"),
    );
    let (want_a, want_b) = (
        expected("A", BURST, true, 1, false),
        expected("B", BURST, false, 1, false),
    );
    let total = want_a.0.len() + want_a.1.len() + want_b.0.len() + want_b.1.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::file_records(&out).len() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    proc.signal(libc::SIGKILL);
    let recs = support::file_records(&out);
    // Both kills hit mid-stream.
    assert!(
        at_kill[0] > 0 && at_kill[1] > at_kill[0] && at_kill[1] < total,
        "{at_kill:?} of {total}"
    );
    check_container(&recs, &a, UA, &image, want_a);
    check_container(&recs, &b, UB, &image, want_b);
    assert_eq!(recs.len(), total);
}

/// One container printing as fast as it can, next to a quiet one, under a small budget and a
/// small memory bound: the noisy one is held to its budget (the rest counted as dropped), the
/// quiet one's lines all arrive within 2 s of being printed, memory stays within its bound, and
/// a container not labelled as a server is followed under `logs = all`.
#[test]
fn noisy_container_is_bounded_and_others_keep_flowing() {
    let docker = Dockerd::start();
    let image = docker.build_image();
    let state = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let sink = MemSink::default();
    let (pumping, pumper) = pump(&sink);
    let cfg = LogsConfig {
        selection: Selection::All,
        budget_interval: Duration::from_secs(1),
        budget_lines: 2000,
        budget_bytes: 1 << 20,
        memory: 2 << 20,
        flush_interval: Duration::from_millis(100),
        ..config(&docker, state.path())
    };
    let source = LogsSource::start(cfg, sink.handle(), Arc::new(ByLabels), vec![], vec![]).unwrap();
    let t0 = Instant::now();
    let noisy = docker.run(&[
        "run", "-d", "--network", "none", "--name", "noisy", &image, "sh", "-c",
        "i=0; while [ $i -lt 400000 ]; do echo \"noise $i and some more text to make it longer\"; i=$((i+1)); done",
    ]);
    let quiet = docker.run_detached(
        "quiet",
        &image,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do echo \"quiet $i\"; i=$((i+1)); sleep 0.1; done",
        ],
    );
    wait_until(Duration::from_secs(120), "both to finish", || {
        ["noisy", "quiet"]
            .iter()
            .all(|n| state_of(&docker, n) == "exited")
    });
    wait_until(Duration::from_secs(60), "both logs read", || {
        let r = source.report();
        r.containers
            .iter()
            .filter(|c| c.status == Status::Drained)
            .count()
            == 2
    });
    // The budget holds per second of reading (which may outlast the container).
    let secs = t0.elapsed().as_secs() + 1;
    std::thread::sleep(Duration::from_millis(500));
    pumping.store(false, Ordering::Relaxed);
    pumper.join().unwrap();
    sink.pump(0);
    let recs = sink.delivered();
    let q: Vec<&Rec> = recs.iter().filter(|r| r.container == quiet).collect();
    let want: Vec<String> = (0..40).map(|i| format!("quiet {i}")).collect();
    assert_eq!(q.iter().map(|r| r.body.clone()).collect::<Vec<_>>(), want);
    for r in &q {
        let latency = r.observed.saturating_sub(r.ts);
        assert!(
            latency < 2_000_000_000,
            "quiet line {} read {latency} ns late",
            r.body
        );
    }
    let report = source.report();
    let n = report.containers.iter().find(|c| c.id == noisy).unwrap();
    let got = recs.iter().filter(|r| r.container == noisy).count() as u64;
    assert_eq!(n.lines, 400_000, "{n:?}");
    assert!(n.dropped_budget > 0, "{n:?}");
    assert_eq!(got + n.dropped_budget + n.dropped_memory, n.lines, "{n:?}");
    assert!(got <= 2000 * (secs + 1), "{got} lines in {secs} s");
    assert!(report.memory_peak <= report.memory_limit, "{report:?}");
    eprintln!(
        "noisy: {} read, {got} sent, {} over budget, {} over memory; memory peak {} of {}",
        n.lines, n.dropped_budget, n.dropped_memory, report.memory_peak, report.memory_limit
    );
    drop(source);
}
