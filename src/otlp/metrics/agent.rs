//! The agent's own telemetry, which doubles as its heartbeat: per-sampler duration, errors and
//! last success, delivery outcomes and queue depth, and the process's memory and CPU.
//!
//! An orchestrator that stops seeing these knows the agent is gone; `last_success` tells a dead
//! sampler from an empty host.

use crate::otlp::builder::{MetricsBuilder, kv};
use crate::sources::agent::{ProcessUsage, SamplerHealth};
use std::collections::BTreeMap;

/// Delivery counters at the time of the sample (the export stage fills it in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeliveryCounts {
    pub(crate) sent: u64,
    pub(crate) retried: u64,
    /// Dropped batches by reason (`spool_full`, `unreadable`, `rejected`, `queue_full`,
    /// `shutdown`).
    pub(crate) dropped: [(&'static str, u64); 5],
    /// Data points the collector rejected inside accepted requests (partial success).
    pub(crate) rejected: u64,
    pub(crate) memory_batches: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) disk_batches: u64,
    pub(crate) disk_bytes: u64,
}

/// What the self-metrics are made of.
pub(crate) struct AgentSample<'a> {
    pub(crate) samplers: &'a BTreeMap<&'static str, SamplerHealth>,
    pub(crate) delivery: DeliveryCounts,
    pub(crate) process: Option<ProcessUsage>,
    /// When the agent started: the start of every counter here.
    pub(crate) start_nanos: u64,
}

/// The self-metrics of one node sample.
pub(crate) fn agent(a: &AgentSample<'_>, b: &mut MetricsBuilder) {
    let (samplers, export, start_nanos) = (a.samplers, &a.delivery, a.start_nanos);
    let by_sampler = |name: &str| vec![kv("node_agent.sampler", name.to_string())];
    b.gauge(
        "node_agent.sampler.duration",
        "s",
        "Duration of the sampler's last pass",
        samplers
            .iter()
            .map(|(n, h)| (h.last_duration_sec, by_sampler(n))),
    );
    b.sum(
        "node_agent.sampler.errors",
        "{error}",
        "Failed sampler passes since the agent started",
        true,
        samplers
            .iter()
            .map(|(n, h)| (h.errors, start_nanos, by_sampler(n))),
    );
    b.sum(
        "node_agent.sampler.passes",
        "{pass}",
        "Sampler passes since the agent started, this one included (a per-sample sequence number)",
        true,
        samplers
            .iter()
            .map(|(n, h)| (h.passes, start_nanos, by_sampler(n))),
    );
    b.gauge(
        "node_agent.sampler.last_success",
        "s",
        "Unix time of the sampler's last successful pass",
        samplers
            .iter()
            .map(|(n, h)| (h.last_success, by_sampler(n))),
    );
    let outcome = |o: &str| vec![kv("outcome", o.to_string())];
    let dropped = |reason: &str| {
        vec![
            kv("outcome", "dropped".to_string()),
            kv("reason", reason.to_string()),
        ]
    };
    b.sum(
        "node_agent.export.batches",
        "{batch}",
        "Batches by outcome: sent, retried (a failed attempt that will be repeated), dropped (by reason)",
        true,
        [
            (export.sent, start_nanos, outcome("sent")),
            (export.retried, start_nanos, outcome("retried")),
        ]
        .into_iter()
        .chain(
            export
                .dropped
                .iter()
                .map(|&(r, n)| (n, start_nanos, dropped(r))),
        ),
    );
    b.sum(
        "node_agent.export.rejected",
        "{data_point}",
        "Data points the collector rejected inside requests it accepted (OTLP partial success; not retried)",
        true,
        [(export.rejected, start_nanos, vec![])],
    );
    let tier = |t: &str| vec![kv("node_agent.queue.tier", t.to_string())];
    b.sum(
        "node_agent.queue.batches",
        "{batch}",
        "Batches waiting for delivery, by tier (memory, disk spool)",
        false,
        [
            (export.memory_batches, start_nanos, tier("memory")),
            (export.disk_batches, start_nanos, tier("disk")),
        ],
    );
    b.sum(
        "node_agent.queue.bytes",
        "By",
        "Bytes waiting for delivery, by tier (memory, disk spool)",
        false,
        [
            (export.memory_bytes, start_nanos, tier("memory")),
            (export.disk_bytes, start_nanos, tier("disk")),
        ],
    );
    if let Some(p) = a.process {
        let (rss, user, system) = (p.rss_bytes, p.user_seconds, p.system_seconds);
        b.sum(
            "process.memory.usage",
            "By",
            "Resident memory of the agent",
            false,
            [(rss, start_nanos, vec![])],
        );
        b.sum(
            "process.cpu.time",
            "s",
            "CPU seconds used by the agent",
            true,
            [
                (user, start_nanos, vec![kv("cpu.mode", "user")]),
                (system, start_nanos, vec![kv("cpu.mode", "system")]),
            ],
        );
    }
}
