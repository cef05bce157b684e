//! The logs source alone, for the benchmark (`scripts/bench-logs.sh`): follows every container
//! of the Docker at `$1` with cursors under `$2`, acknowledges every batch at once (a sink that
//! costs nothing), and exits once `$3` records arrived, printing what it cost as JSON.

use node_agent::export::logs::{LogBatch, LogSink};
use node_agent::runtime::logs::LogsSource;
use node_agent::sources::logs::{ByLabels, LogsConfig, Selection};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Count {
    records: AtomicU64,
    first: parking_lot::Mutex<Option<Instant>>,
}

impl LogSink for Count {
    fn submit(&self, batch: LogBatch) {
        self.first.lock().get_or_insert_with(Instant::now);
        self.records
            .fetch_add(batch.records as u64, Ordering::Relaxed);
        batch.ack.durable();
    }
}

/// CPU seconds (user, system) and the peak resident set in KiB. The peak is the kernel's
/// `VmHWM`: `ru_maxrss` keeps the peak of the process image before `exec` (a large parent's).
fn usage() -> (f64, f64, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let hwm = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (s(r.ru_utime), s(r.ru_stime), hwm)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, host, state, want] = &args[..] else {
        eprintln!("usage: logs_follow <docker host> <state dir> <records to wait for>");
        std::process::exit(2);
    };
    let want: u64 = want.parse().expect("a number of records");
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into());
    node_agent::logging::init(&level, node_agent::logging::LogFormat::Text, None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let sink = Arc::new(Count::default());
    let cfg = LogsConfig {
        selection: Selection::All,
        state_dir: state.into(),
        docker_host: host.clone(),
        budget_lines: u64::MAX / 2,
        budget_bytes: u64::MAX / 2,
        ..Default::default()
    };
    let source = LogsSource::start(cfg, sink.clone(), Arc::new(ByLabels), vec![], vec![])
        .expect("logs source");
    let t0 = Instant::now();
    println!("{{\"ready\":true}}");
    while sink.records.load(Ordering::Relaxed) < want {
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = Instant::now();
    let (user, sys, rss_kib) = usage();
    let report = source.report();
    let first = sink.first.lock().unwrap_or(t0);
    println!(
        "{}",
        serde_json::json!({
            "records": sink.records.load(Ordering::Relaxed),
            "since_first_batch_s": done.duration_since(first).as_secs_f64(),
            "since_start_s": done.duration_since(t0).as_secs_f64(),
            "cpu_user_s": user,
            "cpu_sys_s": sys,
            "max_rss_kib": rss_kib,
            "memory_peak": report.memory_peak,
            "memory_limit": report.memory_limit,
            "dropped": report.containers.iter().map(|c| c.dropped_budget + c.dropped_memory).sum::<u64>(),
        })
    );
    drop(source);
}
