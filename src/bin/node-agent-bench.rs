//! Benchmark helpers (built only with `--features bench`; driven by `scripts/bench.sh`).
//!
//! - `floor FILES MOUNTS INTERVAL_MS CYCLES [SLOW_FILES SLOW_EVERY]`: the raw-read floor. Opens
//!   every file listed in FILES (and SLOW_FILES) once, then each cycle `pread`s each file of FILES
//!   whole through the kept descriptor (those of SLOW_FILES every SLOW_EVERY-th cycle, as the agent
//!   reads them) and `statfs`es each mount point in MOUNTS, then sleeps. No parsing, no encoding,
//!   no export: what a cycle cannot cost less than. The lists are the agent's own kept
//!   descriptors, so both read exactly the same files.
//! - `replay PAYLOAD BATCHES`: replay speed after an outage through the agent's real delivery
//!   queue (`export::Exporter`) and OTLP/HTTP (gzip) transport. BATCHES copies of PAYLOAD (an
//!   encoded `ExportMetricsServiceRequest`, one node cycle) are queued while the endpoint is down;
//!   then a receiver comes up, decodes every request and counts the samples in it (the queue
//!   merges several into one request): samples per second from its first to its last request.
//! - `parsers [ROUNDS]`: the agent's parsers of the node-level files read every cycle against
//!   `procfs-core`'s (`FromBufRead`/`FromRead` fed from the same bytes, as they would be from the
//!   kept descriptor's buffer), on this host's live files read once: nanoseconds and heap
//!   allocations per parse, after checking that both read the same values. Prints a table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Counts the calling thread's allocations (for `parsers`); a thread-local counter, so the
/// other commands' threads do not contend on it.
struct Counting;

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn open_all(list: &str) -> Vec<std::fs::File> {
    std::fs::read_to_string(list)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|p| std::fs::File::open(p).ok())
        .collect()
}

fn read_all(fds: &[std::fs::File], buf: &mut [u8]) {
    for f in fds {
        let mut off = 0;
        while let Ok(n) = f.read_at(&mut buf[off..], off as u64) {
            if n == 0 || off + n == buf.len() {
                break;
            }
            off += n;
        }
    }
}

fn floor(files: &str, mounts: &str, interval_ms: u64, cycles: u64, slow: Option<(&str, u64)>) {
    let fds = open_all(files);
    let (slow_fds, every) = slow.map_or((Vec::new(), 1), |(f, e)| (open_all(f), e.max(1)));
    let mps: Vec<std::ffi::CString> = std::fs::read_to_string(mounts)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|m| std::ffi::CString::new(m).expect("mount path"))
        .collect();
    println!(
        "floor: {} files, {} more every {every} cycles, {} mounts",
        fds.len(),
        slow_fds.len(),
        mps.len()
    );
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: statvfs is plain old data.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    for cycle in 0..cycles {
        read_all(&fds, &mut buf);
        if cycle % every == 0 {
            read_all(&slow_fds, &mut buf);
        }
        for m in &mps {
            // SAFETY: a valid C string and a valid out pointer.
            unsafe { libc::statvfs(m.as_ptr(), &mut st) };
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}

type Stamp = std::sync::Arc<std::sync::Mutex<Option<Instant>>>;

async fn replay(payload: &str, batches: u64) {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let payload = bytes::Bytes::from(std::fs::read(payload).expect("payload"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut layers = node_agent::config::Layers::load(Default::default(), None).expect("layers");
    for (k, v) in [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
    ] {
        layers.env.insert(k.into(), v);
    }
    let cfg = node_agent::config::Config::from_layers(&layers).expect("config");
    let transport = node_agent::export::Transport::new(&cfg.export).expect("transport");
    let exporter = node_agent::export::Exporter::start(
        transport,
        node_agent::export::QueueConfig {
            memory_bytes: u64::MAX / 4,
            memory_auto: false,
            spool_dir: None,
            spool_max_bytes: 0,
            fsync: node_agent::export::FsyncPolicy::Never,
            backoff_max: Duration::from_millis(500),
            logs: None,
        },
    )
    .expect("exporter");
    // The outage: nothing listens on the port while the backlog builds up.
    for _ in 0..batches {
        exporter.enqueue(payload.clone());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let wire = Arc::new(AtomicU64::new(0));
    let first: Stamp = Default::default();
    let last: Stamp = Default::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind receiver");
    let (g, r, w, f, l) = (
        got.clone(),
        requests.clone(),
        wire.clone(),
        first.clone(),
        last.clone(),
    );
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (g, r, w, f, l) = (g.clone(), r.clone(), w.clone(), f.clone(), l.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (g, r, w, f, l) = (g.clone(), r.clone(), w.clone(), f.clone(), l.clone());
                    async move {
                        let gz = req
                            .headers()
                            .get("content-encoding")
                            .is_some_and(|v| v == "gzip");
                        let body = req.into_body().collect().await?.to_bytes();
                        w.fetch_add(body.len() as u64, Ordering::Relaxed);
                        let now = Instant::now();
                        f.lock().expect("lock").get_or_insert(now);
                        *l.lock().expect("lock") = Some(now);
                        g.fetch_add(samples_in(&body, gz), Ordering::Relaxed);
                        r.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("Content-Type", "application/x-protobuf")
                                .body(Full::new(bytes::Bytes::new()))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    // `drain` gives up at once while the collector is still marked failing (until the first
    // retry after the outage succeeds): ask again until the backlog is out or 10 minutes passed.
    let until = Instant::now() + Duration::from_secs(600);
    let drained = loop {
        if exporter.drain(Duration::from_secs(1)).await {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let n = got.load(Ordering::Relaxed);
    let reqs = requests.load(Ordering::Relaxed);
    let f = first.lock().expect("lock").expect("nothing received");
    let l = last.lock().expect("lock").expect("nothing received");
    let secs = l.duration_since(f).as_secs_f64();
    // From the first request's arrival to the last's: the samples of the first are not timed.
    let first_samples = n / reqs.max(1);
    let rate = n.saturating_sub(first_samples) as f64 / secs.max(1e-9);
    println!(
        "{{\"batches\": {batches}, \"samples\": {n}, \"requests\": {reqs}, \"drained\": {drained}, \"seconds\": {secs:.4}, \"samples_per_s\": {rate:.1}, \"payload_bytes\": {}, \"wire_bytes_per_request\": {}}}",
        payload.len(),
        wire.load(Ordering::Relaxed) / reqs.max(1)
    );
}

/// Node samples in one request: resources that are not a container's (one per node cycle).
fn samples_in(body: &[u8], gz: bool) -> u64 {
    use prost::Message;
    use std::io::Read;
    let mut raw = Vec::new();
    let bytes: &[u8] = if gz {
        if flate2::read::GzDecoder::new(body)
            .read_to_end(&mut raw)
            .is_err()
        {
            return 0;
        }
        &raw
    } else {
        body
    };
    let Ok(req) =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
            bytes,
        )
    else {
        return 0;
    };
    req.resource_metrics
        .iter()
        .filter(|r| {
            !r.resource
                .as_ref()
                .is_some_and(|res| res.attributes.iter().any(|a| a.key == "container.id"))
        })
        .count() as u64
}

/// Nanoseconds and allocations per call of `f`, over `rounds` calls.
fn per_call<T>(rounds: u32, mut f: impl FnMut() -> T) -> (f64, f64) {
    for _ in 0..rounds / 10 {
        std::hint::black_box(f());
    }
    let a0 = ALLOCS.with(Cell::get);
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(f());
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(rounds);
    (ns, (ALLOCS.with(Cell::get) - a0) as f64 / f64::from(rounds))
}

/// Two of the values a parser read (`None`: it failed), to check that both parsers agree.
#[derive(PartialEq)]
struct Values(Option<(u64, u64)>);

impl<A: TryInto<u64>, B: TryInto<u64>> From<Option<(A, B)>> for Values {
    fn from(v: Option<(A, B)>) -> Values {
        Values(v.and_then(|(a, b)| Some((a.try_into().ok()?, b.try_into().ok()?))))
    }
}

/// One file's line of the `parsers` table.
struct Row {
    file: &'static str,
    bytes: usize,
    /// The agent's parser: nanoseconds and allocations per parse.
    agent: (f64, f64),
    /// procfs-core's.
    procfs: (f64, f64),
    /// Both read the same values.
    same: bool,
}

fn parsers(rounds: u32) {
    use node_agent::sources::parsers as ours;
    use procfs_core::{FromBufRead, FromBufReadSI, FromRead};
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let si = procfs_core::ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: tck,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    let mut rows = Vec::new();
    let mut compare =
        |file: &'static str, ours: &dyn Fn(&str) -> Values, pc: &dyn Fn(&str) -> Values| {
            let text = read(file);
            rows.push(Row {
                file,
                bytes: text.len(),
                agent: per_call(rounds, || ours(&text)),
                procfs: per_call(rounds, || pc(&text)),
                same: ours(&text) == pc(&text),
            });
        };
    compare("/proc/stat", &|t| Values::from(ours::proc_stat(t)), &|t| {
        let k = procfs_core::KernelStats::from_buf_read(t.as_bytes(), &si).ok();
        Values::from(k.map(|k| (k.total.user, k.btime)))
    });
    compare("/proc/meminfo", &|t| Values::from(ours::meminfo(t)), &|t| {
        let m = procfs_core::Meminfo::from_buf_read(t.as_bytes()).ok();
        Values::from(m.and_then(|m| Some((m.mem_total, m.mem_available?))))
    });
    compare(
        "/proc/uptime",
        &|t| Values::from(ours::uptime(t).map(|u| (u.to_bits(), 0))),
        &|t| {
            let u = procfs_core::Uptime::from_read(t.as_bytes()).ok();
            Values::from(u.map(|u| (u.uptime.to_bits(), 0)))
        },
    );
    compare(
        "/proc/diskstats",
        &|t| Values::from(Some(ours::diskstats(t))),
        &|t| {
            let d = procfs_core::DiskStats::from_buf_read(t.as_bytes()).ok();
            Values::from(d.map(|d| {
                (
                    d.0.len(),
                    d.0.iter().map(|d| d.sectors_read * 512).sum::<u64>(),
                )
            }))
        },
    );
    // The agent leaves out `lo` and `veth*`; so does the sum over procfs-core's map.
    compare(
        "/proc/self/net/dev",
        &|t| Values::from(Some(ours::net_dev(t))),
        &|t| {
            let m = procfs_core::net::InterfaceDeviceStatus::from_buf_read(t.as_bytes()).ok();
            Values::from(m.map(|m| {
                let kept =
                    m.0.values()
                        .filter(|d| d.name != "lo" && !d.name.starts_with("veth"));
                kept.fold((0, 0), |(n, b), d| (n + 1, b + d.recv_bytes))
            }))
        },
    );
    compare(
        "/proc/self/stat",
        &|t| Values::from(ours::self_stat(t).map(|(u, s)| (u as u64, s as u64))),
        &|t| {
            let s = procfs_core::process::Stat::from_read(t.as_bytes()).ok();
            Values::from(s.map(|s| (s.utime, s.stime)))
        },
    );
    compare(
        "/proc/self/statm",
        &|t| Values::from(ours::self_statm(t).map(|r| (r, 0))),
        &|t| {
            let s = procfs_core::process::StatM::from_read(t.as_bytes()).ok();
            Values::from(s.map(|s| (s.resident, 0)))
        },
    );
    println!(
        "| file | bytes | agent: ns per parse | allocations | procfs-core: ns per parse | allocations | procfs-core / agent | same values |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (file, bytes, (an, aa), (pn, pa), same) = (r.file, r.bytes, r.agent, r.procfs, r.same);
        println!(
            "| `{file}` | {bytes} | {an:.0} | {aa:.1} | {pn:.0} | {pa:.1} | {:.1}× | {} |",
            pn / an.max(1.0),
            if same { "yes" } else { "NO" }
        );
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("floor") if a.len() == 6 || a.len() == 8 => floor(
            &a[2],
            &a[3],
            a[4].parse().expect("interval ms"),
            a[5].parse().expect("cycles"),
            (a.len() == 8).then(|| (a[6].as_str(), a[7].parse().expect("slow every"))),
        ),
        Some("replay") if a.len() == 4 => {
            node_agent::install_crypto_provider();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(replay(&a[2], a[3].parse().expect("batches")))
        }
        Some("parsers") if a.len() <= 3 => {
            parsers(a.get(2).map_or(20_000, |r| r.parse().expect("rounds")))
        }
        _ => {
            eprintln!(
                "usage: node-agent-bench floor FILES MOUNTS INTERVAL_MS CYCLES [SLOW_FILES SLOW_EVERY] | replay PAYLOAD BATCHES | parsers [ROUNDS]"
            );
            std::process::exit(2);
        }
    }
}
