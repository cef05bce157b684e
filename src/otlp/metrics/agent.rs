//! The agent's own telemetry, which doubles as its heartbeat: per-sampler duration, errors and
//! last success, delivery outcomes and queue depth, and the process's memory and CPU.
//!
//! An orchestrator that stops seeing these knows the agent is gone; `last_success` tells a dead
//! sampler from an empty host.

use crate::otlp::builder::{MetricsBuilder, kv};
use crate::sources::agent::{ProcessUsage, SamplerHealth};
use crate::sources::logs::{ContainerReport, Report, Status};
use opentelemetry_proto::tonic::common::v1::KeyValue;
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
    /// The logs lane's counters, when it exists (its points carry `signal` = `logs`).
    pub(crate) logs_delivery: Option<DeliveryCounts>,
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
    // The metrics lane's points as they always were; the logs lane's with `signal` = `logs`.
    let lanes: Vec<(&DeliveryCounts, Option<KeyValue>)> = std::iter::once((export, None))
        .chain(
            a.logs_delivery
                .as_ref()
                .map(|l| (l, Some(kv("signal", "logs")))),
        )
        .collect();
    let with = |mut attrs: Vec<KeyValue>, signal: &Option<KeyValue>| {
        attrs.extend(signal.clone());
        attrs
    };
    let outcome = |o: &str, s: &Option<KeyValue>| with(vec![kv("outcome", o.to_string())], s);
    let dropped = |reason: &str, s: &Option<KeyValue>| {
        with(
            vec![
                kv("outcome", "dropped".to_string()),
                kv("reason", reason.to_string()),
            ],
            s,
        )
    };
    b.sum(
        "node_agent.export.batches",
        "{batch}",
        "Batches by outcome: sent, retried (a failed attempt that will be repeated), dropped (by reason)",
        true,
        lanes.iter().flat_map(|(e, s)| {
            [
                (e.sent, start_nanos, outcome("sent", s)),
                (e.retried, start_nanos, outcome("retried", s)),
            ]
            .into_iter()
            .chain(
                e.dropped
                    .iter()
                    .map(move |&(r, n)| (n, start_nanos, dropped(r, s))),
            )
        }),
    );
    b.sum(
        "node_agent.export.rejected",
        "{data_point}",
        "Data points (log records on the logs lane) the collector rejected inside requests it accepted (OTLP partial success; not retried)",
        true,
        lanes
            .iter()
            .map(|(e, s)| (e.rejected, start_nanos, with(vec![], s))),
    );
    let tier =
        |t: &str, s: &Option<KeyValue>| with(vec![kv("node_agent.queue.tier", t.to_string())], s);
    b.sum(
        "node_agent.queue.batches",
        "{batch}",
        "Batches waiting for delivery, by tier (memory, disk spool)",
        false,
        lanes.iter().flat_map(|(e, s)| {
            [
                (e.memory_batches, start_nanos, tier("memory", s)),
                (e.disk_batches, start_nanos, tier("disk", s)),
            ]
        }),
    );
    b.sum(
        "node_agent.queue.bytes",
        "By",
        "Bytes waiting for delivery, by tier (memory, disk spool)",
        false,
        lanes.iter().flat_map(|(e, s)| {
            [
                (e.memory_bytes, start_nanos, tier("memory", s)),
                (e.disk_bytes, start_nanos, tier("disk", s)),
            ]
        }),
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

/// The logs signal's own numbers: per container, lines read, sent (taken by the queue for good)
/// and dropped by reason; the memory the source holds; records of the agent's own log dropped.
pub(crate) fn logs(
    r: &Report,
    own_log_dropped: Option<u64>,
    start_nanos: u64,
    b: &mut MetricsBuilder,
) {
    let who = |c: &ContainerReport| {
        let mut a = vec![
            kv("container.id", c.id.clone()),
            kv("container.name", c.name.clone()),
        ];
        if let Some(u) = &c.server_uuid {
            a.push(kv("pterodactyl.server.uuid", u.clone()));
        }
        a
    };
    let per = |f: fn(&ContainerReport) -> u64| {
        r.containers
            .iter()
            .map(move |c| (f(c), start_nanos, who(c)))
    };
    b.sum(
        "node_agent.logs.read",
        "{line}",
        "Console lines read from Docker, per container",
        true,
        per(|c| c.lines),
    );
    b.sum(
        "node_agent.logs.read.bytes",
        "By",
        "Console bytes read from Docker, per container",
        true,
        per(|c| c.bytes),
    );
    b.sum(
        "node_agent.logs.sent",
        "{line}",
        "Console lines the delivery queue took for good (delivered or spooled), per container",
        true,
        per(|c| c.sent),
    );
    b.sum(
        "node_agent.logs.truncated",
        "{line}",
        "Console lines longer than logs_max_line_bytes, sent cut and marked, per container",
        true,
        per(|c| c.cut),
    );
    let dropped = |c: &ContainerReport, reason: &str| {
        let mut a = who(c);
        a.push(kv("reason", reason.to_string()));
        a
    };
    b.sum(
        "node_agent.logs.dropped",
        "{line}",
        "Console lines dropped, per container, by reason: budget (over the container's allowance), memory (the source's memory full), queue (the delivery queue gave up on them)",
        true,
        r.containers.iter().flat_map(|c| {
            [
                (c.dropped_budget, start_nanos, dropped(c, "budget")),
                (c.dropped_memory, start_nanos, dropped(c, "memory")),
                (c.dropped_sink, start_nanos, dropped(c, "queue")),
            ]
        }),
    );
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &r.containers {
        let s = match c.status {
            Status::Starting => "starting",
            Status::Following => "following",
            Status::Drained => "stopped",
            Status::Gone => "gone",
            Status::Retrying(_) => "retrying",
        };
        *by_status.entry(s).or_default() += 1;
    }
    b.sum(
        "node_agent.logs.containers",
        "{container}",
        "Containers whose console the source knows, by state (following, retrying, stopped: read to its end)",
        false,
        by_status
            .into_iter()
            .map(|(s, n)| (n, start_nanos, vec![kv("node_agent.logs.state", s)])),
    );
    b.sum(
        "node_agent.logs.memory.usage",
        "By",
        "Memory held by console lines being assembled or not yet queued (bounded by logs_memory_bytes)",
        false,
        [(r.memory_used as u64, start_nanos, vec![])],
    );
    if let Some(n) = own_log_dropped {
        b.sum(
            "node_agent.log.dropped",
            "{record}",
            "Records of the agent's own log not exported because their buffer was full (log_export)",
            true,
            [(n, start_nanos, vec![])],
        );
    }
}
