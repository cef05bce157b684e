//! The local HTTP endpoint (on by default at 127.0.0.1:9464, `http_listen`): `/healthz` (the
//! process answers), `/readyz` (samplers succeeding recently, delivery not stuck, the logs'
//! cursors written; 503 with a JSON body naming what is not; the OpAMP connection is shown but
//! does not gate readiness),
//! `/metrics` (Prometheus text rendered from each sampler's latest OTLP request, see [`prom`]).
//!
//! It is meant for loopback or a pod network, and it is bounded against whoever can reach it:
//! - a request head is at most 8 KiB and 32 headers (hyper answers 431 past that), a request
//!   with a body is refused (413): every request here is a bodiless GET;
//! - at most [`conns::MAX_CONNECTIONS`] connections live at once; past the cap the oldest one that
//!   has not sent a complete request is closed ([`conns`]), so a flood of half-open connections
//!   can neither grow memory nor starve `/healthz`;
//! - a connection must finish its request head within [`HEADER_TIMEOUT`] of connecting or of its
//!   previous response (that is also the keep-alive idle timeout), and lives at most
//!   [`CONNECTION_LIFETIME`] (a client that never reads its response);
//! - accept errors (out of descriptors) close an idle connection or back off, never spin;
//! - `/metrics` is rendered once per new sample and shared by every response, so concurrent
//!   scrapes cost one body, not one each;
//! - text that came from peers (error messages in `/readyz`) is cut and escaped.

pub(crate) mod conns;
pub(crate) mod prom;

use crate::state::{Context, LogsState};
use crate::sys::text::one_line;
use bytes::Bytes;
use conns::{AcceptErrors, Conns};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use parking_lot::Mutex;
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A request head must be complete this long after the connection opened or its previous
/// response went out; also how long an idle keep-alive connection is kept.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives, whatever it does.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// hyper's smallest read buffer: the largest request head accepted.
const MAX_HEAD_BYTES: usize = 8192;
const MAX_HEADERS: usize = 32;
/// Peer text in `/readyz` (an error message) is cut to this many characters.
const MAX_ERROR_CHARS: usize = 300;

/// An error message as `/readyz` shows it: escaped and cut (it may quote a peer).
fn shown(e: &str) -> String {
    one_line(format_args!("{e}"), MAX_ERROR_CHARS)
}

/// An exporter's JSON with its error texts (which quote the collector) [`shown`].
fn shown_errors(exporter: &mut serde_json::Value) {
    for at in ["/last_error", "/spool/last_error"] {
        if let Some(err) = exporter.pointer_mut(at)
            && let Some(text) = err.as_str()
        {
            *err = shown(text).into();
        }
    }
}

/// The listen backlog (the kernel caps it at `net.core.somaxconn`): a burst of connections waits
/// in the kernel's queue for the accept loop instead of having its SYNs dropped, which would
/// delay a health probe caught in the burst by a whole SYN retransmission (1 s).
const BACKLOG: u32 = 4096;

pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What the handlers share besides the agent's state.
struct Shared {
    ctx: Arc<Context>,
    metrics: Mutex<MetricsCache>,
}

/// The last `/metrics` body and the payloads it was rendered from. They are compared by
/// identity (a new sample is a new buffer); holding them keeps their buffers alive, so a new
/// payload can never be allocated at an old one's address and be taken for it.
#[derive(Default)]
struct MetricsCache {
    from: Vec<Bytes>,
    body: Bytes,
}

/// Accepts connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(a) = listener.local_addr() {
        tracing::info!(addr = %a, "serving /healthz, /readyz, /metrics");
    }
    let shared = Arc::new(Shared {
        ctx,
        metrics: Mutex::new(MetricsCache::default()),
    });
    let conns = Conns::new(conns::MAX_CONNECTIONS);
    let mut errors = AcceptErrors::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    errors.ok();
                    s
                }
                Err(e) => {
                    let wait = errors.failed(&e, &conns);
                    if wait.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let shared = shared.clone();
        let http = http.clone();
        conns.admit(move |guard, state| {
            tokio::spawn(async move {
                let _guard = guard;
                state.store(conns::READING, Ordering::Relaxed);
                let svc = hyper::service::service_fn(move |req| {
                    state.store(conns::SERVED, Ordering::Relaxed);
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&shared, &req)) }
                });
                let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            })
            .abort_handle()
        });
        // Let the new connection read its request (and evicted ones close) before the next
        // accept: under a flood the accept loop would otherwise run a whole cooperative budget
        // of accepts first.
        tokio::task::yield_now().await;
    }
}

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, ctype)
        .body(Full::new(body.into()))
        .expect("static response parts")
}

fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    // Bodies are never read: a request that announces one is refused and its connection closed.
    if !req.body().is_end_stream() {
        let mut r = reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            "requests here carry no body\n",
        );
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return r;
    }
    let ctx = &shared.ctx;
    match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            let (ready, body) = readiness(ctx, crate::sys::clock::now_nanos() / 1_000_000_000);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body.to_string())
        }
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_body(shared),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /healthz, /readyz or /metrics\n",
        ),
    }
}

/// The `/metrics` text, rendered again only when a sampler has a new request.
fn metrics_body(shared: &Shared) -> Bytes {
    let latest = shared.ctx.latest();
    let same = |a: &Bytes, b: &Bytes| a.as_ptr() == b.as_ptr() && a.len() == b.len();
    let mut cache = shared.metrics.lock();
    let fresh = cache.from.len() == latest.len()
        && cache.from.iter().zip(&latest).all(|(a, b)| same(a, b))
        && !cache.body.is_empty();
    if !fresh {
        let requests: Vec<ExportMetricsServiceRequest> = latest
            .iter()
            .filter_map(|b| ExportMetricsServiceRequest::decode(b.clone()).ok())
            .collect();
        cache.body = Bytes::from(prom::render(&requests));
        cache.from = latest;
    }
    cache.body.clone()
}

/// Ready when every sampler succeeded recently and delivery has not been failing for long.
pub(crate) fn readiness(ctx: &Context, now: u64) -> (bool, serde_json::Value) {
    let cfg = &ctx.cfg;
    // A sampler is stale after three of its longest intervals (plus slack for a slow pass).
    let stale_after = (ctx.live().sample_interval.1 * 3).as_secs() + 10;
    let mut samplers = serde_json::Map::new();
    let mut ready = true;
    let health = ctx.health.snapshot();
    if health.is_empty() {
        ready = false;
    }
    for (name, h) in &health {
        let ok = h.last_success > 0 && now.saturating_sub(h.last_success) <= stale_after;
        ready &= ok;
        samplers.insert(
            name.to_string(),
            serde_json::json!({
                "ready": ok,
                "last_success": h.last_success,
                "errors": h.errors,
                "last_error": h.last_error.as_deref().map(shown),
            }),
        );
    }
    let e = &ctx.export;
    // Stuck: every attempt failed for longer than two full backoffs plus a request timeout.
    let stuck_after = (cfg.queue.backoff_max * 2 + cfg.export.timeout.max(cfg.logs_export.timeout))
        .as_secs()
        + 10;
    let failing_since = e.snapshot().failing_since;
    let stuck = failing_since > 0 && now.saturating_sub(failing_since) > stuck_after;
    // A spool disk that has not finished an operation for a while (the queue runs from memory).
    let disk_stalled = e.disk_stalled().is_some();
    ready &= !stuck && !disk_stalled;
    let mut exporter = e.to_json();
    exporter["ready"] = (!stuck && !disk_stalled).into();
    shown_errors(&mut exporter);
    let logs = ctx.logs().map(|l| {
        let (ok, part) = logs_readiness(&l, stuck_after, now);
        ready &= ok;
        part
    });
    let body = serde_json::json!({
        "ready": ready,
        "samplers": samplers,
        "exporter": exporter,
        "logs": logs,
        // The control plane, informational: the agent works on without it (offline mode).
        "opamp": ctx.control_status().map(|mut c| {
            c.last_error = c.last_error.as_deref().map(shown);
            if let Some(r) = c.remote_config.as_mut() {
                r.error = r.error.as_deref().map(shown);
            }
            c
        }),
    });
    (ready, body)
}

/// The logs signal's part: not ready while its cursors cannot be written (a restart would read
/// lines again) or its lane has failed every attempt for longer than `stuck_after` seconds.
fn logs_readiness(l: &LogsState, stuck_after: u64, now: u64) -> (bool, serde_json::Value) {
    let r = (l.report)();
    let mut exporter = l.export.as_ref().map(|e| e.to_json());
    let failing_since = l.export.as_ref().map_or(0, |e| e.snapshot().failing_since);
    let stuck = failing_since > 0 && now.saturating_sub(failing_since) > stuck_after;
    if let Some(e) = exporter.as_mut() {
        e["ready"] = (!stuck).into();
        shown_errors(e);
    }
    let ok = !stuck && r.cursor_error.is_none();
    let retrying: Vec<serde_json::Value> = r
        .containers
        .iter()
        .filter_map(|c| match &c.status {
            crate::sources::logs::Status::Retrying(e) => {
                Some(serde_json::json!({"container": c.name, "id": c.id, "error": shown(e)}))
            }
            _ => None,
        })
        .collect();
    (
        ok,
        serde_json::json!({
            "ready": ok,
            "selection": r.selection,
            "containers": r.containers.len(),
            "retrying": retrying,
            "cursor_dir": r.cursor_dir,
            "cursor_error": r.cursor_error.as_deref().map(shown),
            "memory": {"used": r.memory_used, "peak": r.memory_peak, "limit": r.memory_limit},
            "lines": {
                "read": r.containers.iter().map(|c| c.lines).sum::<u64>(),
                "sent": r.containers.iter().map(|c| c.sent).sum::<u64>(),
                "dropped": r.containers.iter().map(|c| c.dropped_budget + c.dropped_memory + c.dropped_sink).sum::<u64>(),
            },
            "exporter": exporter,
        }),
    )
}
