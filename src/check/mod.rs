//! `node-agent check`: one sampling pass of everything the agent can see, and whether the OTLP
//! endpoint answers, as a readable report or one JSON document. Exit 0 when healthy, 1 when a
//! source or the endpoint fails.

mod logs;
mod render;

pub(crate) use render::render_text;

use crate::config::Config;
use crate::export::{ExporterKind, Transport};
use crate::otlp::{MetricsBuilder, attr_str};
use crate::runtime::discovery::publish;
use crate::runtime::node::{containers_cycle, gpu_cycle};
use crate::sources::containers::sampler::ContainersSample;
use crate::sources::containers::{Discovery, SourceState};
use crate::sources::gpu::Gpu;
use crate::sources::node::{NodeSample, NodeSampler};
use crate::sources::probe::prober::{Prober, TargetResult, summary};
use crate::sources::probe::targets::{self, ServerInfo};
use crate::state::Context;
use crate::sys::clock::now_nanos;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Result of one source (node, docker, wings, gpu, game servers, …).
#[derive(Debug, Serialize)]
pub(crate) struct SourceStatus {
    pub(crate) name: String,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

/// What `check` found out about the export destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndpointState {
    /// The collector accepted an empty export request.
    Answers,
    /// A configured collector did not accept it: a failure (exit 1).
    Down,
    /// Nothing configured and nothing answers at the specification's default: a note.
    NotConfigured,
    /// `OTEL_METRICS_EXPORTER=console`: samples go to stdout, nothing was sent.
    Console,
    /// `OTEL_METRICS_EXPORTER=none`: samples are not exported.
    Off,
}

#[derive(Debug, Serialize)]
pub(crate) struct EndpointStatus {
    pub(crate) exporter: String,
    pub(crate) protocol: String,
    pub(crate) url: String,
    /// Whether the endpoint was configured (an OTLP endpoint setting or the orchestrator mode)
    /// rather than the specification's default.
    pub(crate) configured: bool,
    pub(crate) state: EndpointState,
    pub(crate) ok: bool,
    pub(crate) error: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) version: &'static str,
    pub(crate) healthy: bool,
    pub(crate) resource: BTreeMap<String, String>,
    pub(crate) node: NodeSample,
    /// Every GPU found, with one reading.
    pub(crate) gpus: Vec<Gpu>,
    pub(crate) containers: ContainersSample,
    pub(crate) sources: Vec<SourceStatus>,
    /// One probe pass over the game servers (static targets; Wings servers once wired in).
    pub(crate) game_servers: Vec<TargetResult>,
    pub(crate) endpoint: EndpointStatus,
    /// The containers whose console is followed, and their cursors (when logs are on).
    pub(crate) logs: Option<logs::LogsCheck>,
}

/// The gap between the two node readings that give CPU utilization.
pub(crate) const CPU_WINDOW: Duration = Duration::from_millis(1000);

pub(crate) async fn build_report(cfg: Config) -> Report {
    let ctx = Context::new(cfg);
    let cfg = &ctx.cfg;
    let mut sampler = NodeSampler::new(&cfg.node, ctx.mounts.clone());
    let started = std::time::Instant::now();
    let mut discovery = Discovery::new(&cfg.discovery, ctx.mounts.clone());
    let (inv, outcomes) = discovery.pass().await;
    let (docker_state, wings_state) = (inv.docker.clone(), inv.wings.clone());
    publish(&ctx, inv, outcomes, started.elapsed());
    let mut scratch = MetricsBuilder::new(0);
    let _ = sampler.sample();
    containers_cycle(&ctx, now_nanos(), &mut scratch);
    tokio::time::sleep(CPU_WINDOW).await;
    let (node, errors) = sampler.sample();
    let containers = containers_cycle(&ctx, now_nanos(), &mut scratch);
    ctx.record_node_caps(&node);
    let mut sources = vec![SourceStatus {
        name: "node".into(),
        ok: errors.is_empty(),
        detail: if errors.is_empty() {
            format!(
                "{} filesystems, {} disks, {} interfaces",
                node.filesystems.len(),
                node.disks.len(),
                node.interfaces.len()
            )
        } else {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        },
    }];
    if !node.stale_mounts.is_empty() {
        sources.push(SourceStatus {
            name: "filesystems".into(),
            ok: false,
            detail: format!("statfs timed out on: {}", node.stale_mounts.join(", ")),
        });
    }
    let gpu = gpu_cycle(&ctx, 0, &mut MetricsBuilder::new(0));
    if cfg.gpu.enabled {
        sources.push(SourceStatus {
            name: "gpu".into(),
            ok: gpu.errors.is_empty(),
            detail: if !gpu.errors.is_empty() {
                gpu.errors.join("; ")
            } else if gpu.sample.gpus.is_empty() {
                "no GPU found".into()
            } else {
                format!("{} GPU(s)", gpu.sample.gpus.len())
            },
        });
    }
    for (name, state) in [("docker", docker_state), ("wings", wings_state)] {
        match state {
            SourceState::NotConfigured => sources.push(SourceStatus {
                name: name.into(),
                ok: true,
                detail: "not configured on this node".into(),
            }),
            SourceState::Ok(detail) => sources.push(SourceStatus {
                name: name.into(),
                ok: true,
                detail,
            }),
            SourceState::Failed(detail) => sources.push(SourceStatus {
                name: name.into(),
                ok: false,
                detail,
            }),
        }
    }
    let problems: Vec<String> = containers
        .containers
        .iter()
        .filter_map(|c| {
            Some(format!(
                "{}: {}",
                containers.info(c).name,
                c.problem.as_ref()?
            ))
        })
        .collect();
    let descriptors = containers
        .descriptors
        .note()
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    sources.push(SourceStatus {
        name: "containers".into(),
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!("{} measured{descriptors}", containers.containers.len())
        } else {
            problems.join("; ") + &descriptors
        },
    });
    if let Some(dir) = &cfg.queue.spool_dir {
        let (ok, detail) = crate::export::spool::inspect(dir);
        sources.push(SourceStatus {
            name: "spool".into(),
            ok,
            detail,
        });
    }
    let (logs, logs_status) = logs::check(&ctx).await;
    sources.push(logs_status);
    let wings_servers = targets::from_inventory(&ctx.containers.inventory());
    let game_servers = game_servers(cfg, &wings_servers, &mut sources).await;
    let endpoint = endpoint_status(cfg).await;
    if let Some(o) = &cfg.opamp {
        let (ok, detail) = crate::control::probe(o).await;
        sources.push(SourceStatus {
            name: "opamp".into(),
            ok,
            detail,
        });
    }
    let resource = ctx
        .resource()
        .iter()
        .map(|a| {
            (
                a.key.clone(),
                a.value.as_ref().map(attr_str).unwrap_or_default(),
            )
        })
        .collect();
    let healthy = sources.iter().all(|s| s.ok) && endpoint.ok;
    Report {
        version: env!("CARGO_PKG_VERSION"),
        healthy,
        resource,
        node,
        gpus: gpu.sample.gpus,
        containers,
        sources,
        game_servers,
        endpoint,
        logs,
    }
}

/// One probe pass (a down game server is not a failure of the agent).
async fn game_servers(
    cfg: &Config,
    servers: &[ServerInfo],
    sources: &mut Vec<SourceStatus>,
) -> Vec<TargetResult> {
    let results = Prober::from_config(&cfg.players).pass(servers).await;
    if !results.is_empty() {
        sources.push(SourceStatus {
            name: "game servers".into(),
            ok: true,
            detail: summary(&results),
        });
    }
    results
}

async fn endpoint_status(cfg: &Config) -> EndpointStatus {
    let e = &cfg.export;
    let mut status = EndpointStatus {
        exporter: e.exporter.name().into(),
        protocol: e.protocol.name().into(),
        url: crate::runtime::startup::display_url(&e.endpoint),
        configured: e.endpoint_explicit,
        state: EndpointState::Answers,
        ok: true,
        error: None,
    };
    match e.exporter {
        ExporterKind::Console => status.state = EndpointState::Console,
        ExporterKind::None => status.state = EndpointState::Off,
        ExporterKind::Otlp => {
            let result = match Transport::new(e) {
                Ok(t) => t.probe().await.map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            };
            if let Err(err) = result {
                status.error = Some(err);
                if e.endpoint_explicit {
                    status.state = EndpointState::Down;
                    status.ok = false;
                } else {
                    status.state = EndpointState::NotConfigured;
                }
            }
        }
    }
    status
}

pub async fn run(cfg: Config, json: bool) -> i32 {
    let report = build_report(cfg).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render_text(&report));
    }
    if report.healthy { 0 } else { 1 }
}
