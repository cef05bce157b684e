//! Which containers and game servers this node has: one discovery pass.
//!
//! Every `AGENT_DISCOVERY_INTERVAL_SEC` the runtime runs one pass, which asks Docker for every container (`all=true`,
//! with labels) and Wings for its servers, joins them by container name = server UUID
//! (`<uuid>_installer` joins too), and finds each running container's cgroup: inspect gives the
//! host PID, `/proc/<pid>/cgroup` gives the path in each hierarchy ([`crate::sources::cgroup::paths`]); the
//! driver's known paths are the fallback. Inspect is only called for containers that are new or
//! whose state changed, so a steady host costs one list call per pass and no per-cycle API call.
//!
//! The result is an immutable [`Inventory`] swapped in whole; the sampler (`sampler.rs`) reads it in
//! the node cycle. Wings re-creates a server's container on every start: the old ID simply drops
//! out of the next inventory and its series end, the new one starts its own with its own start
//! time. When Docker or Wings fail, the other source still counts: containers are measured without
//! Wings, and servers are reported without Docker. Each error is logged once per change and counted
//! in `node_agent.sampler.errors` (`docker`, `wings`).

use super::docker::{self, Docker};
use super::wings::{Server, Wings, WingsConfig};
use crate::sources::cgroup::paths::{self, Dirs, Layout, Mounts};
use crate::sys::mountinfo::MountTable;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where discovery looks, and how often.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// The Docker Engine API socket (`unix:///var/run/docker.sock`).
    pub(crate) docker_host: String,
    pub(crate) wings: WingsConfig,
    /// Timeout of one Docker or Wings call.
    pub(crate) http_timeout: Duration,
    /// Pause between passes.
    pub(crate) interval: Duration,
    /// The host's /proc (a container's init is read there) and /sys.
    pub(crate) proc_path: PathBuf,
    pub(crate) sys_path: PathBuf,
}

/// One container as discovery saw it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    /// Docker's state: created, running, paused, restarting, exited, removing, dead.
    pub state: String,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
    /// Host PID of the container's init (0 when not running).
    pub pid: i64,
    /// Unix nanoseconds the container (re)started: the start of its counters.
    pub started_nanos: u64,
    pub dirs: Option<Dirs>,
    pub server_uuid: Option<String>,
    pub server_name: Option<String>,
}

impl ContainerInfo {
    pub(crate) fn is_running(&self) -> bool {
        self.state == "running" || self.state == "paused"
    }
}

/// How a discovery source fared in the last pass.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum SourceState {
    #[default]
    NotConfigured,
    Ok(String),
    Failed(String),
}

/// Everything one discovery pass found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Inventory {
    pub layout: Option<Layout>,
    pub containers: Vec<ContainerInfo>,
    pub servers: Vec<Server>,
    pub docker: SourceState,
    pub wings: SourceState,
    pub cgroup_driver: Option<String>,
    pub runtime_version: Option<String>,
    pub wings_version: Option<String>,
}

/// Joins Wings servers to containers: name = UUID, or `<uuid>_installer`.
pub(crate) fn join(containers: &mut [ContainerInfo], servers: &[Server]) {
    let by_uuid: HashMap<&str, &Server> = servers.iter().map(|s| (s.uuid.as_str(), s)).collect();
    for c in containers {
        let key = c.name.strip_suffix("_installer").unwrap_or(&c.name);
        match by_uuid.get(key) {
            Some(s) => {
                c.server_uuid = Some(s.uuid.clone());
                c.server_name = Some(s.name.clone());
            }
            None => {
                // Without Wings, a Wings-labelled container is still a Pterodactyl server: its
                // name is the UUID.
                let labelled = c.labels.get("Service").map(String::as_str) == Some("Pterodactyl");
                c.server_uuid = labelled.then(|| key.to_string());
                c.server_name = None;
            }
        }
    }
}

/// Logs an error once per change of its text; `None` clears it (and logs the recovery).
fn log_change(what: &str, last: &mut Option<String>, now: Option<&str>) {
    match (last.as_deref(), now) {
        (Some(a), Some(b)) if a == b => {}
        (_, Some(b)) => tracing::warn!(source = what, error = %b, "discovery source failing"),
        (Some(_), None) => tracing::info!(source = what, "discovery source recovered"),
        (None, None) => {}
    }
    *last = now.map(str::to_string);
}

/// The discovery state kept between passes.
pub struct Discovery {
    docker: Docker,
    wings: Result<Option<Wings>, String>,
    proc_path: PathBuf,
    sys_path: PathBuf,
    mount_table: Arc<MountTable>,
    /// Inspected containers by ID, with the list state they were inspected in.
    cache: HashMap<String, ContainerInfo>,
    last_docker_error: Option<String>,
    last_wings_error: Option<String>,
    wings_version: Option<String>,
    docker_info: Option<docker::EngineInfo>,
}

impl Discovery {
    /// Discovery as `cfg` says, reading cgroup mounts from the shared host mount table.
    pub(crate) fn new(cfg: &DiscoveryConfig, mount_table: Arc<MountTable>) -> Discovery {
        Discovery {
            docker: Docker::new(&cfg.docker_host, cfg.http_timeout),
            wings: Wings::from_config(&cfg.wings).map_err(|e| e.to_string()),
            proc_path: cfg.proc_path.clone(),
            sys_path: cfg.sys_path.clone(),
            mount_table,
            cache: HashMap::new(),
            last_docker_error: None,
            last_wings_error: None,
            wings_version: None,
            docker_info: None,
        }
    }

    fn mounts(&self) -> Mounts {
        match self.mount_table.current() {
            Ok(table) => Mounts::from_table(&table, &self.sys_path),
            Err(_) => Mounts::default(),
        }
    }

    /// The cgroup of a running container: from its init's `/proc/<pid>/cgroup`, else the driver's
    /// known paths.
    fn resolve(&self, mounts: &Mounts, id: &str, pid: i64) -> Option<Dirs> {
        if pid > 0
            && let Ok(text) = std::fs::read_to_string(self.proc_path.join(format!("{pid}/cgroup")))
        {
            let d = paths::from_proc(mounts, &text);
            if !d.is_empty() {
                return Some(d);
            }
        }
        let d = paths::from_driver_paths(mounts, id);
        (!d.is_empty()).then_some(d)
    }

    /// Docker's containers, inspecting only new or changed ones.
    /// `Ok(None)` when there is no Docker on this node.
    async fn docker_pass(&mut self, mounts: &Mounts) -> Result<Option<Vec<ContainerInfo>>, String> {
        let list = match self.docker.list().await {
            Ok(l) => l,
            Err(e) if e.is_absent() => {
                self.cache.clear();
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        };
        if self.docker_info.is_none()
            && let Ok(info) = self.docker.info().await
        {
            self.docker_info = Some(info);
        }
        let mut out = Vec::with_capacity(list.len());
        let mut fresh = HashMap::with_capacity(list.len());
        for s in list {
            if s.id.is_empty() {
                continue;
            }
            // Re-inspect when the state changed, or when the known PID is gone (restarted in place).
            let pid_alive = |c: &ContainerInfo| {
                !c.is_running() || self.proc_path.join(c.pid.to_string()).exists()
            };
            let mut info = match self.cache.get(&s.id) {
                Some(c) if c.state == s.state && pid_alive(c) => c.clone(),
                _ => {
                    let mut c = ContainerInfo {
                        id: s.id.clone(),
                        name: s.name(),
                        image: s.image.clone(),
                        state: s.state.clone(),
                        labels: s.labels.clone().unwrap_or_default(),
                        started_nanos: (s.created.max(0) as u64).saturating_mul(1_000_000_000),
                        ..Default::default()
                    };
                    if c.is_running() {
                        match self.docker.inspect(&s.id).await {
                            Ok(i) => {
                                c.pid = i.state.pid;
                                if let Some(t) = docker::parse_rfc3339_nanos(&i.state.started_at) {
                                    c.started_nanos = t;
                                }
                                c.dirs = self.resolve(mounts, &s.id, c.pid);
                            }
                            // Removed between list and inspect: churn, not an error.
                            Err(e) if e.is_not_found() => continue,
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    c
                }
            };
            // A cgroup that was not there yet (container just starting) is looked for again.
            if info.is_running() && info.dirs.is_none() {
                info.dirs = self.resolve(mounts, &info.id, info.pid);
            }
            fresh.insert(info.id.clone(), info.clone());
            out.push(info);
        }
        self.cache = fresh;
        Ok(Some(out))
    }

    /// One discovery pass.
    pub(crate) async fn pass(&mut self) -> (Inventory, Vec<(&'static str, Option<String>)>) {
        let mounts = self.mounts();
        let mut inv = Inventory {
            layout: mounts.layout(),
            ..Default::default()
        };
        let mut outcomes = Vec::new();
        match self.docker_pass(&mounts).await {
            Ok(None) => {
                inv.docker = SourceState::NotConfigured;
                log_change("docker", &mut self.last_docker_error, None);
            }
            Ok(Some(c)) => {
                let running = c.iter().filter(|c| c.is_running()).count();
                inv.docker = SourceState::Ok(format!("{} containers, {running} running", c.len()));
                inv.containers = c;
                log_change("docker", &mut self.last_docker_error, None);
                outcomes.push(("docker", None));
            }
            Err(e) => {
                inv.docker = SourceState::Failed(e.clone());
                log_change("docker", &mut self.last_docker_error, Some(&e));
                outcomes.push(("docker", Some(e)));
            }
        }
        match &self.wings {
            Ok(None) => {}
            Err(e) => {
                inv.wings = SourceState::Failed(e.clone());
                let e = e.clone();
                log_change("wings", &mut self.last_wings_error, Some(&e));
                outcomes.push(("wings", Some(e)));
            }
            Ok(Some(w)) => match w.servers().await {
                Ok(s) => {
                    if self.wings_version.is_none() {
                        self.wings_version = w.version().await.ok().filter(|v| !v.is_empty());
                    }
                    inv.wings = SourceState::Ok(format!("{} servers from {}", s.len(), w.base_url));
                    inv.servers = s;
                    log_change("wings", &mut self.last_wings_error, None);
                    outcomes.push(("wings", None));
                }
                Err(e) => {
                    let e = e.to_string();
                    inv.wings = SourceState::Failed(e.clone());
                    log_change("wings", &mut self.last_wings_error, Some(&e));
                    outcomes.push(("wings", Some(e)));
                }
            },
        }
        join(&mut inv.containers, &inv.servers);
        inv.cgroup_driver = self
            .docker_info
            .as_ref()
            .map(|i| i.cgroup_driver.clone())
            .filter(|d| !d.is_empty())
            .or_else(|| {
                inv.containers
                    .iter()
                    .find_map(|c| c.dirs.as_ref()?.driver.map(str::to_string))
            });
        inv.runtime_version = self
            .docker_info
            .as_ref()
            .map(|i| i.server_version.clone())
            .filter(|v| !v.is_empty());
        inv.wings_version = self.wings_version.clone();
        (inv, outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, labelled: bool) -> ContainerInfo {
        let mut labels = BTreeMap::new();
        if labelled {
            labels.insert("Service".into(), "Pterodactyl".into());
        }
        ContainerInfo {
            name: name.into(),
            labels,
            ..Default::default()
        }
    }

    #[test]
    fn joins_by_uuid_and_installer_name() {
        let u = "d3b07384-d113-4ec6-a2f4-6c3b1f0e8a9f";
        let servers = vec![Server {
            uuid: u.into(),
            name: "Survival".into(),
            ..Default::default()
        }];
        let mut cs = vec![
            c(u, true),
            c(&format!("{u}_installer"), true),
            c("redis", false),
            c("0a1b2c3d-0000-4000-8000-000000000000", true),
        ];
        join(&mut cs, &servers);
        assert_eq!(cs[0].server_name.as_deref(), Some("Survival"));
        assert_eq!(cs[1].server_uuid.as_deref(), Some(u));
        assert_eq!(cs[2].server_uuid, None);
        // Labelled but unknown to Wings (Wings down): UUID from the name, no server name.
        assert_eq!(
            cs[3].server_uuid.as_deref(),
            Some("0a1b2c3d-0000-4000-8000-000000000000")
        );
        assert_eq!(cs[3].server_name, None);
    }

    #[test]
    fn errors_are_logged_once_per_change() {
        let mut last = None;
        log_change("x", &mut last, Some("a"));
        assert_eq!(last.as_deref(), Some("a"));
        log_change("x", &mut last, Some("a"));
        log_change("x", &mut last, None);
        assert_eq!(last, None);
    }
}
