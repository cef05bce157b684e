//! Which containers and game servers this node has: one discovery pass.
//!
//! Every `AGENT_DISCOVERY_INTERVAL_SEC` the runtime runs one pass, which asks Docker for every container (`all=true`,
//! with labels) and Wings for its servers, joins them by container name = server UUID
//! (`<uuid>_installer` joins too), and finds each running container's cgroup: inspect gives the
//! host PID, `/proc/<pid>/cgroup` gives the path in each hierarchy ([`crate::sources::cgroup::paths`]); the
//! driver's known paths are the fallback. Inspect is only called for containers that are new,
//! whose state changed, or that `docker update` changed (the engine's `update` events since the
//! previous pass), so a steady host costs one list and one events call per pass and no per-cycle
//! API call. Inspect also gives the CPU limit (`HostConfig`), so the sampler does not re-read it
//! from the cgroup every cycle.
//!
//! A slow or hostile Docker cannot stall a pass: inspects run a few at a time
//! ([`INSPECT_CONCURRENCY`]) under one deadline for the pass (the discovery interval, at least the
//! HTTP timeout); containers left over keep their previous inspect or wait for the next pass, and
//! the pass says so. Wings is asked at the same time, not after Docker.
//!
//! The result is an immutable [`Inventory`] swapped in whole; the sampler (`sampler.rs`) reads it in
//! the node cycle. Wings re-creates a server's container on every start: the old ID simply drops
//! out of the next inventory and its series end, the new one starts its own with its own start
//! time. When Docker or Wings fail, the other source still counts: containers are measured without
//! Wings, and servers are reported without Docker. Each error is logged once per change and counted
//! in `node_agent.sampler.errors` (`docker`, `wings`).

use super::docker::{self, Docker, DockerError};
use super::wings::{Server, Wings, WingsConfig, WingsError};
use crate::sources::cgroup::paths::{self, Dirs, Layout, Mounts};
use crate::sys::clock::now_nanos;
use crate::sys::mountinfo::MountTable;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Inspect calls in flight at once.
pub(crate) const INSPECT_CONCURRENCY: usize = 8;

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
    /// The CPU limit Docker holds for the container (`Some(None)`: unlimited); `None` when not
    /// known from Docker, then the sampler reads it from the cgroup.
    pub docker_cpu_limit: Option<Option<f64>>,
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

/// Everything one discovery pass found. Containers are shared (`Arc`) between passes: an
/// unchanged container costs a pointer per pass, not a copy.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub layout: Option<Layout>,
    pub containers: Vec<Arc<ContainerInfo>>,
    pub servers: Vec<Server>,
    pub docker: SourceState,
    pub wings: SourceState,
    pub cgroup_driver: Option<String>,
    pub runtime_version: Option<String>,
    pub wings_version: Option<String>,
    /// Positions by container ID and server UUID, for [`Inventory::container`] and
    /// [`Inventory::server`].
    pub lookup: Lookup,
}

/// Container positions by ID and server positions by UUID, built at the first lookup. The logs
/// source asks which server each container is at every resync: a scan per container made that
/// N² (a million ID comparisons per resync at 1000 containers). It is meant for a published
/// inventory, which nothing changes; still, a clone starts empty, an entry found is checked
/// against the list before it is believed, and a list that grew or shrank since the index was
/// built is scanned. (An ID replaced in place after the first lookup would be missed.)
#[derive(Default)]
pub struct Lookup(std::sync::OnceLock<LookupMaps>);

struct LookupMaps {
    containers: HashMap<String, usize>,
    servers: HashMap<String, usize>,
    lens: (usize, usize),
}

impl Clone for Lookup {
    fn clone(&self) -> Self {
        Lookup::default()
    }
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Lookup(built)"
        } else {
            "Lookup"
        })
    }
}

impl Inventory {
    fn maps(&self) -> &LookupMaps {
        self.lookup.0.get_or_init(|| LookupMaps {
            containers: (self.containers.iter().enumerate().rev())
                .map(|(i, c)| (c.id.clone(), i))
                .collect(),
            servers: (self.servers.iter().enumerate().rev())
                .map(|(i, s)| (s.uuid.clone(), i))
                .collect(),
            lens: (self.containers.len(), self.servers.len()),
        })
    }

    /// The container with this ID (the first, if listed twice).
    pub fn container(&self, id: &str) -> Option<&ContainerInfo> {
        let m = self.maps();
        match m.containers.get(id).and_then(|&i| self.containers.get(i)) {
            Some(c) if c.id == id => Some(c),
            None if m.lens.0 == self.containers.len() => None,
            _ => self.containers.iter().find(|c| c.id == id).map(|c| &**c),
        }
    }

    /// The Wings server with this UUID (the first, if listed twice).
    pub fn server(&self, uuid: &str) -> Option<&Server> {
        let m = self.maps();
        match m.servers.get(uuid).and_then(|&i| self.servers.get(i)) {
            Some(s) if s.uuid == uuid => Some(s),
            None if m.lens.1 == self.servers.len() => None,
            _ => self.servers.iter().find(|s| s.uuid == uuid),
        }
    }
}

/// Joins Wings servers to containers: name = UUID, or `<uuid>_installer`; each server gets the
/// ID of its container (named by the UUID).
pub(crate) fn join(containers: &mut [Arc<ContainerInfo>], servers: &mut [Server]) {
    let by_name: HashMap<&str, &str> = containers
        .iter()
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    for s in servers.iter_mut() {
        s.container_id = by_name.get(s.uuid.as_str()).map(|id| id.to_string());
    }
    let by_uuid: HashMap<&str, &Server> = servers.iter().map(|s| (s.uuid.as_str(), s)).collect();
    for c in containers {
        let key = c.name.strip_suffix("_installer").unwrap_or(&c.name);
        let (uuid, name) = match by_uuid.get(key) {
            Some(s) => (Some(s.uuid.as_str()), Some(s.name.as_str())),
            None => {
                // Without Wings, a Wings-labelled container is still a Pterodactyl server: its
                // name is the UUID.
                let labelled = c.labels.get("Service").map(String::as_str) == Some("Pterodactyl");
                (labelled.then_some(key), None)
            }
        };
        // Copied only when the join changed it.
        if c.server_uuid.as_deref() != uuid || c.server_name.as_deref() != name {
            let (uuid, name) = (uuid.map(str::to_string), name.map(str::to_string));
            let c = Arc::make_mut(c);
            c.server_uuid = uuid;
            c.server_name = name;
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
    docker: Arc<Docker>,
    wings: Result<Option<Arc<Wings>>, Arc<WingsError>>,
    /// Inspects of one pass must end by then (from the start of the pass).
    inspect_deadline: Duration,
    /// Unix seconds the last events query ended at: the next one starts there.
    events_since: Option<f64>,
    /// What the last pass left over, for the source's detail.
    pass_counts: String,
    proc_path: PathBuf,
    sys_path: PathBuf,
    mount_table: Arc<MountTable>,
    /// Inspected containers by ID, with the list state they were inspected in.
    cache: HashMap<String, Arc<ContainerInfo>>,
    last_docker_error: Option<String>,
    last_wings_error: Option<String>,
    wings_version: Option<String>,
    docker_info: Option<docker::EngineInfo>,
}

impl Discovery {
    /// Discovery as `cfg` says, reading cgroup mounts from the shared host mount table.
    pub(crate) fn new(cfg: &DiscoveryConfig, mount_table: Arc<MountTable>) -> Discovery {
        Discovery {
            docker: Arc::new(Docker::new(&cfg.docker_host, cfg.http_timeout)),
            wings: Wings::from_config(&cfg.wings)
                .map(|w| w.map(Arc::new))
                .map_err(Arc::new),
            inspect_deadline: cfg.interval.max(cfg.http_timeout),
            events_since: None,
            pass_counts: String::new(),
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

    /// Docker's containers, inspecting only new, changed or updated ones, a few at a time and
    /// within the pass's deadline. `Ok(None)` when there is no Docker on this node. The string
    /// is a problem short of failure (inspects left over, failed or timed out).
    async fn docker_pass(
        &mut self,
        mounts: &Mounts,
        started: Instant,
    ) -> Result<Option<(Vec<Arc<ContainerInfo>>, Option<String>)>, DockerError> {
        let list = match self.docker.list().await {
            Ok(l) => l,
            Err(e) if e.is_absent() => {
                self.cache.clear();
                self.events_since = None;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if self.docker_info.is_none()
            && let Ok(info) = self.docker.info().await
        {
            self.docker_info = Some(info);
        }
        // `docker update` since the previous pass: those are inspected again for their limit.
        let until = now_nanos() as f64 / 1e9;
        let mut updated = HashSet::new();
        let mut problems = Vec::new();
        match self.events_since {
            Some(since) => match self.docker.updated_since(since, until).await {
                Ok(ids) => {
                    updated.extend(ids);
                    self.events_since = Some(until);
                }
                // Tried again from the same point next pass; the limits stay as they were.
                Err(e) => problems.push(format!("update events: {e}")),
            },
            None => self.events_since = Some(until),
        }
        let mut out: Vec<Option<Arc<ContainerInfo>>> = Vec::with_capacity(list.len());
        let mut to_inspect = Vec::new();
        for s in list {
            if s.id.is_empty() {
                continue;
            }
            // Re-inspect when the state changed, when the known PID is gone (restarted in
            // place), or when the container was updated.
            let pid_alive = |c: &ContainerInfo| {
                !c.is_running() || self.proc_path.join(c.pid.to_string()).exists()
            };
            match self.cache.get(&s.id) {
                Some(c) if c.state == s.state && pid_alive(c) && !updated.contains(&s.id) => {
                    out.push(Some(Arc::clone(c)))
                }
                _ => {
                    let c = ContainerInfo {
                        id: s.id.clone(),
                        name: s.name(),
                        image: s.image.clone(),
                        state: s.state.clone(),
                        labels: s.labels.clone().unwrap_or_default(),
                        started_nanos: (s.created.max(0) as u64).saturating_mul(1_000_000_000),
                        ..Default::default()
                    };
                    if c.is_running() {
                        to_inspect.push(out.len());
                    }
                    out.push(Some(Arc::new(c)));
                }
            }
        }
        let deadline = started + self.inspect_deadline;
        let (inspected, left, failed) = self.inspect_all(&out, &to_inspect, deadline).await;
        for (i, result) in inspected {
            let Some(c) = out[i].as_mut().map(Arc::make_mut) else {
                continue;
            };
            match result {
                Ok(ins) => {
                    c.pid = ins.state.pid;
                    if let Some(t) = docker::parse_rfc3339_nanos(&ins.state.started_at) {
                        c.started_nanos = t;
                    }
                    c.docker_cpu_limit = Some(ins.host_config.cpu_limit());
                    c.dirs = self.resolve(mounts, &c.id, c.pid);
                }
                // Removed between list and inspect: churn, not an error.
                Err(e) if e.is_not_found() => out[i] = None,
                Err(_) => {}
            }
        }
        // Not inspected (deadline or error): the previous inspect if there is one, else listed
        // without a cgroup until a later pass gets to it.
        for &i in left.iter().chain(failed.iter().map(|(i, _)| i)) {
            if let Some(c) = &out[i]
                && let Some(old) = self.cache.get(&c.id)
                && old.is_running()
            {
                out[i] = Some(Arc::new(ContainerInfo {
                    state: c.state.clone(),
                    ..(**old).clone()
                }));
            }
        }
        // The problem text stays the same while the situation does (it is logged once per
        // change); the counts go into the source's detail.
        let mut counts = Vec::new();
        if !left.is_empty() {
            problems.push(format!(
                "containers not inspected within {:.0} s (Docker slow to answer); they are measured once a later pass gets to them",
                self.inspect_deadline.as_secs_f64()
            ));
            counts.push(format!(
                "{} of {} not inspected yet",
                left.len(),
                to_inspect.len()
            ));
        }
        if let Some((_, e)) = failed.first() {
            problems.push(format!("inspect failed: {e}"));
            counts.push(format!("{} inspects failed", failed.len()));
        }
        self.pass_counts = counts.join(", ");
        let mut fresh = HashMap::with_capacity(out.len());
        let mut containers = Vec::with_capacity(out.len());
        for mut info in out.into_iter().flatten() {
            // A cgroup that was not there yet (container just starting) is looked for again.
            if info.is_running() && info.dirs.is_none() && info.pid > 0 {
                let dirs = self.resolve(mounts, &info.id, info.pid);
                Arc::make_mut(&mut info).dirs = dirs;
            }
            fresh.insert(info.id.clone(), Arc::clone(&info));
            containers.push(info);
        }
        self.cache = fresh;
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        Ok(Some((containers, problem)))
    }

    /// Inspects `out[i]` for each `i` of `which`, [`INSPECT_CONCURRENCY`] at a time, until
    /// `deadline`. Returns the answers, the indices left over, and the failures.
    #[allow(clippy::type_complexity)]
    async fn inspect_all(
        &self,
        out: &[Option<Arc<ContainerInfo>>],
        which: &[usize],
        deadline: Instant,
    ) -> (
        Vec<(usize, Result<docker::Inspect, docker::DockerError>)>,
        Vec<usize>,
        Vec<(usize, String)>,
    ) {
        let mut set = tokio::task::JoinSet::new();
        let mut next = 0;
        let mut done = Vec::with_capacity(which.len());
        let mut failed = Vec::new();
        let mut pending: HashSet<usize> = HashSet::new();
        loop {
            while set.len() < INSPECT_CONCURRENCY && next < which.len() {
                let i = which[next];
                next += 1;
                let Some(id) = out[i].as_ref().map(|c| c.id.clone()) else {
                    continue;
                };
                let docker = self.docker.clone();
                pending.insert(i);
                set.spawn(async move { (i, docker.inspect(&id).await) });
            }
            if set.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok((i, r)))) => {
                    pending.remove(&i);
                    match r {
                        Err(e) if !e.is_not_found() => failed.push((i, e.to_string())),
                        r => done.push((i, r)),
                    }
                }
                Ok(Some(Err(_))) | Ok(None) => {}
                Err(_) => {
                    set.abort_all();
                    break;
                }
            }
        }
        let mut left: Vec<usize> = pending.into_iter().collect();
        left.extend(which[next..].iter().copied());
        left.sort_unstable();
        (done, left, failed)
    }

    /// One discovery pass: Docker and Wings asked at the same time.
    pub(crate) async fn pass(&mut self) -> (Inventory, Vec<(&'static str, Option<String>)>) {
        let started = Instant::now();
        let mounts = self.mounts();
        let mut inv = Inventory {
            layout: mounts.layout(),
            ..Default::default()
        };
        let mut outcomes = Vec::new();
        let wings = match &self.wings {
            Ok(w) => Ok(w.clone()),
            Err(e) => Err(e.to_string()),
        };
        let need_version = self.wings_version.is_none();
        let wings_pass = async move {
            match wings {
                Ok(None) => None,
                Err(e) => Some(Err(e)),
                Ok(Some(w)) => Some(match w.servers().await {
                    Ok(s) => {
                        let version = if need_version {
                            w.version().await.ok().filter(|v| !v.is_empty())
                        } else {
                            None
                        };
                        Ok((s, version, w.base_url.clone()))
                    }
                    Err(e) => Err(e.to_string()),
                }),
            }
        };
        let (docker, wings) = tokio::join!(self.docker_pass(&mounts, started), wings_pass);
        match docker {
            Ok(None) => {
                inv.docker = SourceState::NotConfigured;
                log_change("docker", &mut self.last_docker_error, None);
            }
            Ok(Some((c, problem))) => {
                let running = c.iter().filter(|c| c.is_running()).count();
                inv.docker = SourceState::Ok(match &problem {
                    None => format!("{} containers, {running} running", c.len()),
                    Some(p) => format!(
                        "{} containers, {running} running ({}); {p}",
                        c.len(),
                        self.pass_counts
                    ),
                });
                inv.containers = c;
                log_change("docker", &mut self.last_docker_error, problem.as_deref());
                outcomes.push(("docker", problem));
            }
            Err(e) => {
                let e = e.to_string();
                inv.docker = SourceState::Failed(e.clone());
                log_change("docker", &mut self.last_docker_error, Some(&e));
                outcomes.push(("docker", Some(e)));
            }
        }
        match wings {
            None => {}
            Some(Err(e)) => {
                inv.wings = SourceState::Failed(e.clone());
                log_change("wings", &mut self.last_wings_error, Some(&e));
                outcomes.push(("wings", Some(e)));
            }
            Some(Ok((s, version, url))) => {
                if version.is_some() {
                    self.wings_version = version;
                }
                inv.wings = SourceState::Ok(format!("{} servers from {url}", s.len()));
                inv.servers = s;
                log_change("wings", &mut self.last_wings_error, None);
                outcomes.push(("wings", None));
            }
        }
        join(&mut inv.containers, &mut inv.servers);
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

    #[test]
    fn lookups_by_id_and_uuid_agree_with_the_lists() {
        let mut inv = Inventory::default();
        for i in 0..50 {
            inv.containers.push(Arc::new(ContainerInfo {
                id: format!("id{i}"),
                ..Default::default()
            }));
            inv.servers.push(Server {
                uuid: format!("u{i}"),
                ..Default::default()
            });
        }
        // Listed twice: the first wins, as a scan would.
        inv.containers.push(Arc::new(ContainerInfo {
            id: "id7".into(),
            name: "second".into(),
            ..Default::default()
        }));
        for i in 0..50 {
            assert_eq!(
                inv.container(&format!("id{i}")).unwrap().id,
                format!("id{i}")
            );
            assert_eq!(inv.server(&format!("u{i}")).unwrap().uuid, format!("u{i}"));
        }
        assert_eq!(inv.container("id7").unwrap().name, "");
        assert!(inv.container("nope").is_none() && inv.server("nope").is_none());
        // Changed after the index was built: still right.
        inv.containers.push(Arc::new(ContainerInfo {
            id: "late".into(),
            ..Default::default()
        }));
        inv.containers.swap(0, 1);
        assert_eq!(inv.container("late").unwrap().id, "late");
        assert_eq!(inv.container("id0").unwrap().id, "id0");
        // A clone builds its own.
        let copy = inv.clone();
        assert!(format!("{:?}", copy.lookup) == "Lookup");
        assert_eq!(copy.container("late").unwrap().id, "late");
    }

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
        let mut servers = vec![Server {
            uuid: u.into(),
            name: "Survival".into(),
            ..Default::default()
        }];
        let mut cs: Vec<Arc<ContainerInfo>> = vec![
            c(u, true).into(),
            c(&format!("{u}_installer"), true).into(),
            c("redis", false).into(),
            c("0a1b2c3d-0000-4000-8000-000000000000", true).into(),
        ];
        Arc::make_mut(&mut cs[0]).id = "c0".into();
        join(&mut cs, &mut servers);
        assert_eq!(servers[0].container_id.as_deref(), Some("c0"));
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
