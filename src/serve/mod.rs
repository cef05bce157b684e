//! The local HTTP endpoint (on by default at 127.0.0.1:9464, `http_listen`): `/healthz` (the
//! process answers), `/readyz` (samplers succeeding recently, delivery not stuck, the logs'
//! cursors written; 503 with a JSON body naming what is not; the OpAMP connection is shown but
//! does not gate readiness),
//! `/metrics` (Prometheus text rendered from each sampler's latest OTLP request, see [`prom`]).
//!
//! It is meant for loopback or a pod network: requests are tiny GETs, bodies are ignored, and one
//! slow client cannot hold more than its own connection (each has a read timeout).

pub(crate) mod prom;

use crate::state::{Context, LogsState};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
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
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&ctx, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, ctype)
        .body(Full::new(body.into()))
        .expect("static response parts")
}

fn route(ctx: &Context, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
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
        "/metrics" => {
            let latest: Vec<ExportMetricsServiceRequest> = ctx
                .latest()
                .into_iter()
                .filter_map(|b| ExportMetricsServiceRequest::decode(b).ok())
                .collect();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                prom::render(&latest),
            )
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /healthz, /readyz or /metrics\n",
        ),
    }
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
                "last_error": h.last_error,
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
        "opamp": ctx.control_status(),
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
    }
    let ok = !stuck && r.cursor_error.is_none();
    let retrying: Vec<serde_json::Value> = r
        .containers
        .iter()
        .filter_map(|c| match &c.status {
            crate::sources::logs::Status::Retrying(e) => {
                Some(serde_json::json!({"container": c.name, "id": c.id, "error": e}))
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
            "cursor_error": r.cursor_error,
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
