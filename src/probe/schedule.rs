//! The players loop: every `players_interval` (jittered), probe every target with at most
//! `probe_concurrency` probes in flight, and turn the pass into one OTLP request.
//!
//! Detection memory: the (protocol, port) that answered last time is asked first; the candidate
//! list is walked again only when there is no winner yet, or after [`REDETECT_AFTER`] failures
//! in a row (a server restarting for a minute should not trigger a scan of every port).
//! Overrides and static targets are fixed: one candidate, no scan.
//!
//! State: Wings offline/stopping/suspended → down without probing; Wings starting → any failure
//! is starting; otherwise "accepted, then closed with nothing" is starting, other failures down;
//! a reply without player counts (or max 0) is starting.

use super::targets::{Gate, ProbeConfig, ServerInfo, Target};
use super::{Limits, Protocol, State, Status};
use crate::agent::{Context, jittered, sleep_or_shutdown};
use crate::export::Exporter;
use crate::otlp::{self, MetricsBuilder, kv, kv_int};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Semaphore, watch};

/// Failures in a row of the remembered winner before the candidates are scanned again.
pub const REDETECT_AFTER: u32 = 3;

/// What one target looked like in one pass.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub key: String,
    pub uuid: Option<String>,
    pub name: String,
    pub protocol: Protocol,
    pub address: String,
    pub port: u16,
    pub state: State,
    /// Whether a probe was sent (not for servers Wings says are off).
    pub probed: bool,
    pub status: Option<Status>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Memory {
    winner: Option<(Protocol, u16)>,
    failures: u32,
}

/// Keeps the detection memory between passes.
pub struct Prober {
    pub config: ProbeConfig,
    pub limits: Limits,
    pub node_ip: Option<String>,
    semaphore: Arc<Semaphore>,
    memory: HashMap<String, Memory>,
}

impl Prober {
    pub fn new(
        config: ProbeConfig,
        limits: Limits,
        node_ip: Option<String>,
        concurrency: usize,
    ) -> Self {
        Prober {
            config,
            limits,
            node_ip,
            semaphore: Arc::new(Semaphore::new(concurrency.max(1))),
            memory: HashMap::new(),
        }
    }

    /// From the agent's configuration (fails on a bad `[servers]`/`[[static_targets]]` section).
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, String> {
        let config = ProbeConfig::from_tables(&cfg.file_tables)?;
        let mut limits = Limits::from_timeout(cfg.minecraft_ping_timeout);
        limits.frame_cap = cfg.probe_max_frame_bytes;
        limits.json_cap = cfg.probe_max_frame_bytes;
        Ok(Prober::new(
            config,
            limits,
            cfg.node_ip.clone(),
            cfg.probe_concurrency,
        ))
    }

    /// One pass over `servers` and the static targets.
    pub async fn pass(&mut self, servers: &[ServerInfo]) -> Vec<TargetResult> {
        let targets = super::targets::plan(servers, &self.config, self.node_ip.as_deref());
        let mut set = tokio::task::JoinSet::new();
        for (i, t) in targets.into_iter().enumerate() {
            let mem = self.memory.get(&t.key).cloned().unwrap_or_default();
            let limits = self.limits.clone();
            let sem = self.semaphore.clone();
            set.spawn(async move {
                let (res, mem) = probe_target(&t, mem, &limits, &sem).await;
                (i, t.key, res, mem)
            });
        }
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, key, res, mem)) = joined {
                seen.insert(key, mem);
                out.push((i, res));
            }
        }
        // Forget servers that are gone.
        self.memory = seen;
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

async fn probe_once(
    t: &Target,
    protocol: Protocol,
    port: u16,
    limits: &Limits,
    sem: &Semaphore,
) -> Result<Status, super::ProbeError> {
    let _permit = sem.acquire().await.expect("semaphore is never closed");
    let addr = super::resolve(&t.host, port)
        .await
        .map_err(|kind| super::ProbeError {
            protocol,
            target: format!("{}:{port}", t.host),
            kind,
        })?;
    super::probe(protocol, &t.host, addr, limits).await
}

/// Probes one target, walking its candidates as the memory says.
async fn probe_target(
    t: &Target,
    mut mem: Memory,
    limits: &Limits,
    sem: &Semaphore,
) -> (TargetResult, Memory) {
    let first = t.candidates[0];
    let result = |(protocol, port): (Protocol, u16), state, status, error, probed| TargetResult {
        key: t.key.clone(),
        uuid: t.uuid.clone(),
        name: t.name.clone(),
        protocol,
        address: t.host.clone(),
        port,
        state,
        probed,
        status,
        error,
    };
    if mem.winner.is_some_and(|w| !t.candidates.contains(&w)) {
        mem = Memory::default();
    }
    if t.gate == Gate::Off {
        let at = mem.winner.unwrap_or(first);
        return (result(at, State::Down, None, None, false), mem);
    }
    let fail_state = |e: &super::ProbeError| match t.gate {
        Gate::Starting => State::Starting,
        _ => e.kind.state(),
    };
    let mut order: Vec<(Protocol, u16)> = Vec::new();
    if let Some(w) = mem.winner {
        order.push(w);
        if mem.failures + 1 >= REDETECT_AFTER && !t.fixed {
            order.extend(t.candidates.iter().filter(|c| **c != w));
        }
    } else {
        order.extend(&t.candidates);
    }
    let mut first_failure: Option<((Protocol, u16), super::ProbeError)> = None;
    for (i, cand) in order.iter().enumerate() {
        match probe_once(t, cand.0, cand.1, limits, sem).await {
            Ok(status) => {
                if i > 0 || mem.winner.is_none() {
                    tracing::info!(server = %t.name, protocol = %cand.0, port = cand.1, "game server protocol detected");
                }
                mem = Memory {
                    winner: Some(*cand),
                    failures: 0,
                };
                let state = match (status.state(), t.gate) {
                    (State::Up, _) => State::Up,
                    _ => State::Starting,
                };
                return (result(*cand, state, Some(status), None, true), mem);
            }
            Err(e) => {
                tracing::debug!(server = %t.name, error = %e, "game server probe failed");
                if first_failure.is_none() {
                    first_failure = Some((*cand, e));
                }
            }
        }
    }
    let (at, e) = first_failure.expect("at least one candidate was tried");
    if mem.winner.is_some() {
        mem.failures += 1;
        if mem.failures >= REDETECT_AFTER && !t.fixed {
            // The scan above found nothing better: start over next time.
            mem = Memory::default();
        }
    }
    let state = fail_state(&e);
    (result(at, state, None, Some(e.to_string()), true), mem)
}

/// Attributes of one target's points.
fn attributes(r: &TargetResult) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(4);
    if let Some(u) = &r.uuid {
        a.push(kv("pterodactyl.server.uuid", u.clone()));
    }
    a.push(kv("gameserver.protocol", r.protocol.attribute()));
    a.push(kv("server.address", r.address.clone()));
    a.push(kv_int("server.port", r.port as i64));
    a
}

/// The `gameserver.*` metrics of one pass.
pub fn metrics(results: &[TargetResult], b: &mut MetricsBuilder) {
    fn st(r: &TargetResult) -> Option<&Status> {
        r.status.as_ref()
    }
    b.gauge(
        "gameserver.players.online",
        "{player}",
        "Players online, as the game server reports it",
        results
            .iter()
            .filter_map(|r| Some((st(r)?.online? as i64, attributes(r)))),
    );
    b.gauge(
        "gameserver.players.max",
        "{player}",
        "Player slots, as the game server reports it",
        results
            .iter()
            .filter_map(|r| Some((st(r)?.max? as i64, attributes(r)))),
    );
    b.gauge(
        "gameserver.status",
        "1",
        "1 for the game server's current state (up, starting, down), 0 for the others",
        results.iter().flat_map(|r| {
            State::ALL.into_iter().map(move |s| {
                let mut a = attributes(r);
                a.push(kv("gameserver.state", s.name()));
                ((r.state == s) as i64, a)
            })
        }),
    );
    b.gauge(
        "gameserver.ping.duration",
        "s",
        "Round trip of the status ping",
        results
            .iter()
            .filter_map(|r| Some((st(r)?.latency?.as_secs_f64(), attributes(r)))),
    );
}

/// A short summary for logs and `check`.
pub fn summary(results: &[TargetResult]) -> String {
    let n = |s| results.iter().filter(|r| r.state == s).count();
    format!(
        "{} targets: {} up, {} starting, {} down",
        results.len(),
        n(State::Up),
        n(State::Starting),
        n(State::Down)
    )
}

/// The players loop, spawned by `agent::run` next to the node loop. `servers` carries the latest
/// Wings discovery (empty without Wings: static targets still work).
pub async fn players_loop(
    ctx: Arc<Context>,
    mut prober: Prober,
    exporter: Exporter,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // The servers Wings reported in the latest discovery pass (empty without Wings: static
        // targets are probed all the same).
        let list = crate::probe::targets::from_inventory(&ctx.containers.inventory());
        let started = Instant::now();
        let time = otlp::now_nanos();
        let results = prober.pass(&list).await;
        if !results.is_empty() {
            ctx.health.record("players", started.elapsed(), None);
            tracing::debug!(summary = %summary(&results), "players pass");
            let mut b = MetricsBuilder::new(time);
            metrics(&results, &mut b);
            let payload = Bytes::from(b.into_request(&ctx.resource()).encode_to_vec());
            // `/metrics` renders the latest request of every sampler.
            ctx.set_latest("players", &payload);
            exporter.enqueue(payload);
        }
        if sleep_or_shutdown(jittered(ctx.cfg.players_interval), &mut shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(state: State, status: Option<Status>) -> TargetResult {
        TargetResult {
            key: "u".into(),
            uuid: Some("u".into()),
            name: "n".into(),
            protocol: Protocol::MinecraftLegacy,
            address: "127.0.0.1".into(),
            port: 25565,
            state,
            probed: true,
            status,
            error: None,
        }
    }

    #[test]
    fn status_gauge_has_all_three_states() {
        let up = result(
            State::Up,
            Some(Status {
                online: Some(7),
                max: Some(50),
                latency: Some(Duration::from_millis(2)),
                ..Default::default()
            }),
        );
        let mut b = MetricsBuilder::new(1);
        metrics(&[up, result(State::Down, None)], &mut b);
        let names: Vec<_> = b.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gameserver.players.online",
                "gameserver.players.max",
                "gameserver.status",
                "gameserver.ping.duration"
            ]
        );
        let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) =
            &b.metrics[2].data
        else {
            panic!()
        };
        assert_eq!(g.data_points.len(), 6);
        let ones: i64 = g
            .data_points
            .iter()
            .map(|p| match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    i,
                )) => i,
                _ => 0,
            })
            .sum();
        assert_eq!(ones, 2);
        let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) =
            &b.metrics[0].data
        else {
            panic!()
        };
        assert_eq!(g.data_points.len(), 1);
        let keys: Vec<_> = g.data_points[0]
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "pterodactyl.server.uuid",
                "gameserver.protocol",
                "server.address",
                "server.port"
            ]
        );
        // The legacy ping is reported as minecraft-java.
        assert_eq!(
            g.data_points[0].attributes[1]
                .value
                .as_ref()
                .map(otlp::attr_str),
            Some("minecraft-java".into())
        );
    }
}
