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

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

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
        _ => {
            eprintln!(
                "usage: node-agent-bench floor FILES MOUNTS INTERVAL_MS CYCLES [SLOW_FILES SLOW_EVERY] | replay PAYLOAD BATCHES"
            );
            std::process::exit(2);
        }
    }
}
