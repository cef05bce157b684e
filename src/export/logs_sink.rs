//! The logs signal's way into the queue: [`LogSink`] on the exporter's logs lane.
//!
//! Each [`LogBatch`] becomes one encoded `ExportLogsServiceRequest` on the logs lane, with the
//! container positions it completes stored beside it in the spool (the record's meta, as JSON).
//! The batch's [`Ack`] is answered by the lane's hook: durable once delivered or spooled,
//! dropped when the lane gave up on it (counted and logged there). After a restart,
//! [`LaneLogSink::recovered`] folds the positions of the batches still in the spool (the newest
//! per container) for the logs source to start from, so a `kill -9` between the spool write and
//! the cursor write reads nothing twice.

use super::logs::{Ack, LogBatch, LogSink};
use super::stats::Settled;
use super::{Exporter, Signal};
use crate::sources::logs::Position;
use bytes::Bytes;
use prost::Message;
use std::collections::BTreeMap;

/// A [`LogSink`] that queues on the exporter's logs lane.
#[derive(Clone)]
pub struct LaneLogSink {
    exporter: Exporter,
}

impl LaneLogSink {
    pub fn new(exporter: Exporter) -> LaneLogSink {
        LaneLogSink { exporter }
    }

    /// The newest position per container among the batches found in the spool at start.
    pub async fn recovered(&self) -> Vec<(String, Position)> {
        let mut newest = BTreeMap::new();
        for meta in self.exporter.recovered(Signal::Logs).await {
            // The agent's own log shares the lane; its batches carry no positions.
            if meta.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Vec<(String, Position)>>(&meta) {
                Ok(ps) => newest.extend(ps),
                Err(e) => {
                    tracing::warn!(error = %e, "spool: a logs batch's positions cannot be read; its lines may be read again")
                }
            }
        }
        newest.into_iter().collect()
    }
}

fn answer(ack: Ack) -> super::OnSettled {
    Box::new(move |s: Settled| {
        if s.is_durable() {
            ack.durable()
        } else {
            ack.dropped()
        }
    })
}

impl LogSink for LaneLogSink {
    fn submit(&self, batch: LogBatch) {
        let payload = Bytes::from(batch.request.encode_to_vec());
        let meta = serde_json::to_vec(&batch.positions).unwrap_or_default();
        self.exporter.submit(
            Signal::Logs,
            payload,
            Bytes::from(meta),
            Some(answer(batch.ack)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{FsyncPolicy, LaneBudget, QueueConfig, Transport};
    use std::time::Duration;

    fn cfg(dir: &std::path::Path) -> QueueConfig {
        QueueConfig {
            memory_bytes: 1 << 20,
            memory_auto: false,
            spool_dir: Some(dir.to_path_buf()),
            spool_max_bytes: 1 << 20,
            fsync: FsyncPolicy::Never,
            backoff_max: Duration::from_millis(100),
            logs: Some(LaneBudget {
                memory_bytes: 1 << 20,
                memory_auto: false,
                spool_max_bytes: 1 << 20,
            }),
        }
    }

    /// OTLP/HTTP to a port nothing listens on.
    fn unreachable() -> Transport {
        crate::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut layers = crate::config::Layers::load(Default::default(), None).unwrap();
        layers.env = [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let c = crate::config::Config::from_layers(&layers).unwrap();
        Transport::new(&c.export).unwrap()
    }

    fn batch(
        k: u64,
        tx: &tokio::sync::mpsc::UnboundedSender<(u64, super::super::logs::Outcome)>,
    ) -> LogBatch {
        let mut p = Position::default();
        p.stdout.ts = k;
        LogBatch {
            request: Default::default(),
            records: 1,
            positions: vec![(format!("c{}", k % 2), p)],
            ack: Ack::new(k, tx.clone()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_answer_and_spooled_positions_come_back() {
        let d = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Delivered (the `none` exporter accepts everything): durable.
        let e = Exporter::start(Transport::Discard, cfg(d.path())).unwrap();
        let sink = LaneLogSink::new(e.clone());
        assert!(sink.recovered().await.is_empty());
        sink.submit(batch(1, &tx));
        let (seq, o) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((seq, o), (1, super::super::logs::Outcome::Durable));
        e.shutdown(Duration::from_secs(1)).await;
        // A collector that is not there: kept in the spool, their positions come back.
        let e = Exporter::start(unreachable(), cfg(d.path())).unwrap();
        let sink = LaneLogSink::new(e.clone());
        for k in 2..6 {
            sink.submit(batch(k, &tx));
        }
        for _ in 2..6 {
            let (_, o) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(o, super::super::logs::Outcome::Durable, "spooled");
        }
        e.shutdown(Duration::from_secs(1)).await;
        let e = Exporter::start(Transport::Discard, cfg(d.path())).unwrap();
        let got = LaneLogSink::new(e.clone()).recovered().await;
        let ts: Vec<(String, u64)> = got.into_iter().map(|(c, p)| (c, p.stdout.ts)).collect();
        assert_eq!(ts, vec![("c0".into(), 4), ("c1".into(), 5)]);
        e.shutdown(Duration::from_secs(1)).await;
    }
}
