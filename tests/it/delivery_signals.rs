//! The queue's second signal, before there is a logs source: a synthetic producer submits
//! numbered `ExportLogsServiceRequest`s next to metrics through the library's exporter, against
//! the real rotel collector (gRPC `LogsService`) and the decoding receiver (HTTP `/v1/logs`).
//! Proven: the logs lane has its own memory and disk budgets (a flood of logs drops logs, never
//! metrics), its own spool directory and transport path, the acknowledgement hook says
//! delivered/spooled/dropped exactly once per batch, and a restart hands back the metas of the
//! spooled batches. Against the answering stand-in: logs as strict OTLP/JSON, and a logs partial
//! success counted as rejected items.

use crate::harness::*;
use bytes::Bytes;
use node_agent::export::{
    DropReason, Exporter, FsyncPolicy, LaneBudget, QueueConfig, Settled, Signal, Transport,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use parking_lot::Mutex;
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn transport(endpoint: &str, protocol: &str) -> Transport {
    node_agent::install_crypto_provider();
    let env: BTreeMap<String, String> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Only these settings: the test process's own environment is left out.
    let mut layers = node_agent::config::Layers::load(BTreeMap::new(), None).unwrap();
    layers.env = env;
    let cfg = node_agent::config::Config::from_layers(&layers).unwrap();
    Transport::new(&cfg.export).unwrap()
}

const LOGS: LaneBudget = LaneBudget {
    memory_bytes: 64 << 10,
    memory_auto: false,
    spool_max_bytes: 96 << 10,
};

fn queue(spool: &Path) -> QueueConfig {
    QueueConfig {
        memory_bytes: 64 << 10,
        memory_auto: false,
        spool_dir: Some(spool.to_path_buf()),
        spool_max_bytes: 1 << 20,
        fsync: FsyncPolicy::Batch,
        backoff_max: Duration::from_millis(300),
        logs: Some(LOGS),
    }
}

/// One log record, "line K" padded to about `size` bytes.
fn log_batch(k: u64, size: usize) -> Bytes {
    let body = format!("line {k} {}", "x".repeat(size));
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: k,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body)),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(req.encode_to_vec())
}

fn metric_batch(k: u64) -> Bytes {
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: format!("synthetic.{k}"),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000 + k,
                            value: Some(number_data_point::Value::AsInt(k as i64)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(req.encode_to_vec())
}

type Heard = Arc<Mutex<Vec<(u64, Settled)>>>;

/// Submits batches `ks` at a producer's pace (a batch every `pace`).
async fn submit_logs(
    e: &Exporter,
    heard: &Heard,
    ks: std::ops::Range<u64>,
    size: usize,
    pace: Duration,
) {
    for k in ks {
        tokio::time::sleep(pace).await;
        let h = heard.clone();
        e.submit(
            Signal::Logs,
            log_batch(k, size),
            Bytes::from(format!("pos={k}")),
            Some(Box::new(move |s| h.lock().push((k, s)))),
        );
    }
}

/// Line numbers of the log records received, and the paths they came on.
fn lines(r: &Receiver) -> (Vec<u64>, Vec<String>) {
    let mut ks = Vec::new();
    let mut paths = Vec::new();
    for req in r.requests() {
        if let Some(logs) = req["logs"].as_array() {
            paths.push(req["path"].as_str().unwrap().to_string());
            for l in logs {
                let body = l["body"].as_str().unwrap();
                ks.push(body.split(' ').nth(1).unwrap().parse().unwrap());
            }
        }
    }
    (ks, paths)
}

fn metric_names(r: &Receiver) -> Vec<String> {
    r.metrics()
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with("synthetic."))
        .collect()
}

#[test]
fn a_second_signal_has_its_own_lane_budgets_path_and_acknowledgements() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let work = tempfile::tempdir().unwrap();
        let spool = work.path().join("spool");
        let heard: Heard = Arc::default();

        // 1. The collector answers: logs go through rotel's gRPC LogsService, acked delivered.
        let receiver = Receiver::start(&[]);
        let rotel = Rotel::start(&receiver.url(), &[]);
        let e = Exporter::start(
            transport(&format!("http://127.0.0.1:{}", rotel.grpc_port), "grpc"),
            queue(&spool),
        )
        .unwrap();
        submit_logs(&e, &heard, 0..20, 100, Duration::ZERO).await;
        for k in 0..5 {
            e.enqueue(metric_batch(k));
        }
        for _ in 0..200 {
            if lines(&receiver).0.len() >= 20 && metric_names(&receiver).len() >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut ks, paths) = lines(&receiver);
        ks.sort_unstable();
        assert_eq!(ks, (0..20).collect::<Vec<_>>());
        assert!(paths.iter().all(|p| p == "/v1/logs"), "{paths:?}");
        assert_eq!(metric_names(&receiver).len(), 5);
        // Each answered once, durable (delivered, or spooled first if an attempt failed).
        let h = heard.lock().clone();
        assert_eq!(
            h.iter().map(|x| x.0).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        assert!(h.iter().all(|x| x.1.is_durable()), "{h:?}");

        // 2. The collector is gone and logs flood: they are spooled (acked durable at once),
        // and past the logs lane's own budgets the oldest logs go. Metrics lose nothing.
        drop(rotel);
        heard.lock().clear();
        submit_logs(&e, &heard, 20..320, 1000, Duration::from_millis(2)).await;
        for k in 5..15 {
            e.enqueue(metric_batch(k));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let logs = e.stats_of(Signal::Logs).unwrap().snapshot();
        let metrics = e.stats().snapshot();
        assert!(
            logs.balanced() && metrics.balanced(),
            "{logs:?} {metrics:?}"
        );
        assert!(logs.disk_bytes <= LOGS.spool_max_bytes, "{logs:?}");
        assert!(logs.memory_bytes <= 2 * LOGS.memory_bytes, "{logs:?}");
        assert!(
            logs.dropped_total() > 0,
            "the flood passed the logs budgets: {logs:?}"
        );
        assert_eq!(metrics.dropped_total(), 0, "{metrics:?}");
        assert_eq!(metrics.queued(), 10);
        {
            let h = heard.lock();
            assert_eq!(h.len(), 300, "every batch answered once");
            // Written ahead as they came: durable at once. (A writer thread starved of CPU
            // for longer than the hand-off allows drops instead: said to the hook, counted.)
            assert!(
                h.iter().all(|x| matches!(
                    x.1,
                    Settled::Spooled | Settled::Dropped(DropReason::QueueFull)
                )),
                "{h:?}"
            );
            let refused = h.iter().filter(|x| !x.1.is_durable()).count() as u64;
            assert_eq!(refused, logs.dropped[3], "{logs:?}");
        }
        let not_spooled: Vec<u64> = heard
            .lock()
            .iter()
            .filter(|x| !x.1.is_durable())
            .map(|x| x.0)
            .collect();
        let segs = |d: &str| {
            std::fs::read_dir(spool.join(d))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count()
        };
        assert!(segs("logs") >= 2 && segs("metrics") >= 1);
        let left = e.shutdown(Duration::from_secs(2)).await;
        // Only a logs batch whose spooled copy was dropped for room (the oldest, in flight) can
        // be lost at exit; metrics lose nothing.
        let logs = e.stats_of(Signal::Logs).unwrap().snapshot();
        assert_eq!(e.stats().snapshot().dropped_total(), 0);
        assert_eq!(left.lost, logs.dropped[4], "{logs:?}");
        assert!(logs.balanced(), "{logs:?}");

        // 3. A restart: the spooled logs' metas come back (the newest, contiguous, in order),
        // and everything spooled is delivered over HTTP to /v1/logs and /v1/metrics.
        let receiver = Receiver::start(&[]);
        let e =
            Exporter::start(transport(&receiver.url(), "http/protobuf"), queue(&spool)).unwrap();
        let metas: Vec<u64> = e
            .recovered(Signal::Logs)
            .await
            .iter()
            .map(|m| std::str::from_utf8(m).unwrap()[4..].parse().unwrap())
            .collect();
        assert!(!metas.is_empty());
        assert_eq!(*metas.last().unwrap(), 319);
        let expected: Vec<u64> = (metas[0]..=319)
            .filter(|k| !not_spooled.contains(k))
            .collect();
        assert_eq!(metas, expected, "the newest spooled, in order");
        for _ in 0..200 {
            if lines(&receiver).0.len() >= metas.len() && metric_names(&receiver).len() >= 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (ks, paths) = lines(&receiver);
        assert_eq!(ks, metas, "the spooled logs, once, in order");
        assert!(paths.iter().all(|p| p == "/v1/logs"), "{paths:?}");
        let names = metric_names(&receiver);
        assert_eq!(
            names,
            (5..15)
                .map(|k| format!("synthetic.{k}"))
                .collect::<Vec<_>>()
        );
        let logs = e.stats_of(Signal::Logs).unwrap().snapshot();
        assert_eq!(logs.recovered, metas.len() as u64);
        assert!(logs.balanced(), "{logs:?}");
        e.shutdown(Duration::from_secs(2)).await;
    });
}

/// Log bodies ("line K …") the answering stand-in received, per request.
fn answered_lines(peer: &crate::harness::answers::Answers) -> Vec<Vec<u64>> {
    peer.requests()
        .iter()
        .filter(|r| r["path"] == "/v1/logs")
        .map(|r| {
            assert!(r.get("decode_error").is_none(), "{r}");
            r["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    b.as_str()
                        .unwrap()
                        .split(' ')
                        .nth(1)
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect()
        })
        .collect()
}

/// The logs lane over OTLP/HTTP JSON and protobuf: every batch arrives once on `/v1/logs` as
/// strict proto3 JSON (parsed with unknown fields refused), and a partial success's rejected log
/// records are counted as items (not batches, not retried) while the batches count as sent.
#[test]
fn logs_over_http_json_and_partial_success_are_counted_as_items() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for protocol in ["http/json", "http/protobuf"] {
            let work = tempfile::tempdir().unwrap();
            let peer =
                crate::harness::answers::Answers::http(&["--rejected", "3", "--message", "old"]);
            let e = Exporter::start(
                transport(&peer.url(), protocol),
                queue(&work.path().join("spool")),
            )
            .unwrap();
            let heard: Heard = Arc::default();
            submit_logs(&e, &heard, 0..12, 50, Duration::from_millis(5)).await;
            let mut got = Vec::new();
            for _ in 0..200 {
                got = answered_lines(&peer);
                if got.iter().map(Vec::len).sum::<usize>() >= 12 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut all: Vec<u64> = got.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..12).collect::<Vec<_>>(), "{protocol}: each once");
            let reqs = peer.requests();
            assert!(
                reqs.iter().all(|r| r["ctype"]
                    == if protocol == "http/json" {
                        "application/json"
                    } else {
                        "application/x-protobuf"
                    }),
                "{reqs:?}"
            );
            // Let the last answer be booked.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let logs = e.stats_of(Signal::Logs).unwrap().snapshot();
            assert_eq!(logs.sent, 12, "{protocol}: {logs:?}");
            assert_eq!((logs.retried, logs.dropped_total()), (0, 0), "{logs:?}");
            assert_eq!(
                logs.rejected_items,
                3 * got.len() as u64,
                "{protocol}: 3 per request"
            );
            assert!(heard.lock().iter().all(|x| x.1 == Settled::Delivered));
            e.shutdown(Duration::from_secs(2)).await;
        }
    });
}
