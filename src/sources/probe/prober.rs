//! One players pass: probe every target with at most `probe_concurrency` probes in flight.
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
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Failures in a row of the remembered winner before the candidates are scanned again.
pub(crate) const REDETECT_AFTER: u32 = 3;

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

/// The players loop's configuration: targets and overrides from the config file, probe limits,
/// the node's public address and the schedule.
#[derive(Debug, Clone)]
pub(crate) struct PlayersConfig {
    pub(crate) targets: ProbeConfig,
    pub(crate) limits: Limits,
    pub(crate) node_ip: Option<String>,
    /// Probes in flight at once.
    pub(crate) concurrency: usize,
    /// The pause between passes is drawn from `[min, max]`.
    pub(crate) interval: (Duration, Duration),
}

/// Keeps the detection memory between passes.
pub struct Prober {
    pub(crate) config: ProbeConfig,
    pub(crate) limits: Limits,
    pub(crate) node_ip: Option<String>,
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

    /// The prober `cfg` describes.
    pub(crate) fn from_config(cfg: &PlayersConfig) -> Self {
        Prober::new(
            cfg.targets.clone(),
            cfg.limits.clone(),
            cfg.node_ip.clone(),
            cfg.concurrency,
        )
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

/// A short summary for logs and `check`.
pub(crate) fn summary(results: &[TargetResult]) -> String {
    let n = |s| results.iter().filter(|r| r.state == s).count();
    format!(
        "{} targets: {} up, {} starting, {} down",
        results.len(),
        n(State::Up),
        n(State::Starting),
        n(State::Down)
    )
}
