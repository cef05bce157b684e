//! What one screen of `node-agent top` shows, built from the samplers' plain sample structs: the
//! node's figures (rates from two consecutive samples) and one row per container, Wings server
//! without a container, or static probe target, with the players of its latest probe.

use crate::sources::containers::sampler::ContainersSample;
use crate::sources::node::NodeSample;
use crate::sources::probe::prober::TargetResult;
use std::cmp::Ordering;
use std::collections::HashMap;

/// The node's figures at the top of the screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NodeView {
    pub(crate) logical_cpus: u32,
    /// Busy and iowait shares of all CPU time, percent (from the second sample on).
    pub(crate) busy_pct: Option<f64>,
    pub(crate) iowait_pct: Option<f64>,
    pub(crate) mem_total: u64,
    pub(crate) mem_used: u64,
    pub(crate) mem_available: u64,
    /// (device, read bytes/s, written bytes/s).
    pub(crate) disks: Vec<(String, f64, f64)>,
    /// (mount point, used bytes, total bytes).
    pub(crate) filesystems: Vec<(String, u64, u64)>,
    pub(crate) uptime_sec: f64,
}

/// Disk counters of the previous sample, for rates.
#[derive(Debug, Default)]
pub(crate) struct DiskRates {
    prev: HashMap<String, (u64, u64)>,
    prev_at: Option<std::time::Instant>,
}

impl DiskRates {
    /// Bytes per second per disk since the previous call (0 on the first).
    pub(crate) fn rates(
        &mut self,
        node: &NodeSample,
        at: std::time::Instant,
    ) -> Vec<(String, f64, f64)> {
        let secs = self
            .prev_at
            .map(|p| at.duration_since(p).as_secs_f64())
            .filter(|s| *s > 0.0);
        let out = node
            .disks
            .iter()
            .map(|d| {
                let (r, w) = match (secs, self.prev.get(&d.device)) {
                    (Some(s), Some(&(pr, pw))) => (
                        d.read_bytes.saturating_sub(pr) as f64 / s,
                        d.write_bytes.saturating_sub(pw) as f64 / s,
                    ),
                    _ => (0.0, 0.0),
                };
                (d.device.clone(), r, w)
            })
            .collect();
        self.prev = node
            .disks
            .iter()
            .map(|d| (d.device.clone(), (d.read_bytes, d.write_bytes)))
            .collect();
        self.prev_at = Some(at);
        out
    }
}

impl NodeView {
    pub(crate) fn new(node: &NodeSample, disks: Vec<(String, f64, f64)>) -> NodeView {
        NodeView {
            logical_cpus: node.cpu.logical_cpus,
            busy_pct: node.cpu.busy_pct(),
            iowait_pct: node.cpu.iowait_pct(),
            mem_total: node.memory.total,
            mem_used: node.memory.used,
            mem_available: node.memory.available,
            disks,
            filesystems: node
                .filesystems
                .iter()
                .map(|f| (f.mountpoint.clone(), f.used, f.total))
                .collect(),
            uptime_sec: node.uptime_sec,
        }
    }
}

/// Players of a probed server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Players {
    /// Not probed (not a game server, or no probe yet).
    Unknown,
    /// The probe's state when it gave no counts (`down`, `starting`).
    State(&'static str),
    Counts(u32, Option<u32>),
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) name: String,
    /// The Wings server state when there is one, else the container's.
    pub(crate) status: String,
    /// Cores used.
    pub(crate) cpu: Option<f64>,
    /// Cores allowed.
    pub(crate) cpu_limit: Option<f64>,
    pub(crate) memory: Option<u64>,
    /// Bytes written per second.
    pub(crate) disk_write: Option<f64>,
    pub(crate) players: Players,
    /// Short container ID (empty for a server without a container or a static target).
    pub(crate) id: String,
}

impl Row {
    /// CPU as a percentage of the limit.
    pub(crate) fn cpu_limit_pct(&self) -> Option<f64> {
        match (self.cpu, self.cpu_limit) {
            (Some(c), Some(l)) if l > 0.0 => Some(100.0 * c / l),
            _ => None,
        }
    }

    fn players_key(&self) -> i64 {
        match self.players {
            Players::Counts(n, _) => n as i64,
            Players::State(_) => -1,
            Players::Unknown => -2,
        }
    }
}

fn players_of(r: &TargetResult) -> Players {
    if !r.probed {
        // Wings says the server is off: its status column already says so.
        return Players::Unknown;
    }
    match r.status.as_ref().and_then(|s| s.online) {
        Some(n) => Players::Counts(n, r.status.as_ref().and_then(|s| s.max)),
        None => Players::State(r.state.name()),
    }
}

/// The table's rows: containers first matched to their probe results by server UUID, then Wings
/// servers without a container, then static targets.
pub(crate) fn rows(containers: &ContainersSample, probes: &[TargetResult]) -> Vec<Row> {
    let by_uuid: HashMap<&str, &TargetResult> = probes
        .iter()
        .filter_map(|p| Some((p.uuid.as_deref()?, p)))
        .collect();
    let servers: HashMap<&str, &str> = containers
        .inventory
        .servers
        .iter()
        .map(|s| (s.uuid.as_str(), s.state.as_str()))
        .collect();
    let mut out = Vec::new();
    for c in &containers.containers {
        let info = containers.info(c);
        let uuid = info.server_uuid.as_deref();
        let status = uuid
            .and_then(|u| servers.get(u))
            .map_or(info.state.clone(), |s| s.to_string());
        out.push(Row {
            name: info
                .server_name
                .clone()
                .unwrap_or_else(|| info.name.clone()),
            status,
            cpu: c.cpu_usage,
            cpu_limit: c.cpu_limit,
            memory: c.memory_bytes,
            disk_write: c.io_rate.map(|(_, w)| w),
            players: uuid
                .and_then(|u| by_uuid.get(u))
                .map_or(Players::Unknown, |p| players_of(p)),
            id: info.id.chars().take(12).collect(),
        });
    }
    for s in &containers.inventory.servers {
        let has_row = containers
            .containers
            .iter()
            .any(|c| containers.info(c).server_uuid.as_deref() == Some(s.uuid.as_str()));
        if !has_row {
            out.push(Row {
                name: s.name.clone(),
                status: s.state.clone(),
                cpu: None,
                cpu_limit: None,
                memory: None,
                disk_write: None,
                players: by_uuid
                    .get(s.uuid.as_str())
                    .map_or(Players::Unknown, |p| players_of(p)),
                id: String::new(),
            });
        }
    }
    for p in probes.iter().filter(|p| p.uuid.is_none()) {
        out.push(Row {
            name: p.name.clone(),
            status: format!("{}:{}", p.address, p.port),
            cpu: None,
            cpu_limit: None,
            memory: None,
            disk_write: None,
            players: players_of(p),
            id: String::new(),
        });
    }
    out
}

/// The column the table is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortKey {
    Cpu,
    Memory,
    DiskWrite,
    Players,
    Name,
    Status,
}

impl SortKey {
    /// The key that selects each column, as shown in the header.
    pub(crate) const KEYS: [(char, SortKey, &'static str); 6] = [
        ('c', SortKey::Cpu, "cpu"),
        ('m', SortKey::Memory, "memory"),
        ('w', SortKey::DiskWrite, "write"),
        ('p', SortKey::Players, "players"),
        ('n', SortKey::Name, "name"),
        ('s', SortKey::Status, "status"),
    ];

    pub(crate) fn from_char(c: char) -> Option<SortKey> {
        Self::KEYS
            .iter()
            .find(|(k, _, _)| *k == c.to_ascii_lowercase())
            .map(|(_, s, _)| *s)
    }

    pub(crate) fn label(self) -> &'static str {
        Self::KEYS
            .iter()
            .find(|(_, s, _)| *s == self)
            .map_or("", |(_, _, l)| l)
    }

    /// Figures sort largest first, words A to Z.
    pub(crate) fn descending_by_default(self) -> bool {
        !matches!(self, SortKey::Name | SortKey::Status)
    }
}

fn cmp_opt(a: Option<f64>, b: Option<f64>) -> Ordering {
    // Missing figures sort below every number.
    a.unwrap_or(f64::NEG_INFINITY)
        .total_cmp(&b.unwrap_or(f64::NEG_INFINITY))
}

/// Sorts in place; `descending` flips the order. Ties keep the name order, so rows do not jump
/// around between refreshes.
pub(crate) fn sort(rows: &mut [Row], key: SortKey, descending: bool) {
    rows.sort_by(|a, b| {
        let o = match key {
            SortKey::Cpu => cmp_opt(a.cpu, b.cpu),
            SortKey::Memory => cmp_opt(a.memory.map(|m| m as f64), b.memory.map(|m| m as f64)),
            SortKey::DiskWrite => cmp_opt(a.disk_write, b.disk_write),
            SortKey::Players => a.players_key().cmp(&b.players_key()),
            SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            SortKey::Status => a.status.cmp(&b.status),
        };
        let o = if descending { o.reverse() } else { o };
        o.then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
            .then_with(|| a.id.cmp(&b.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::containers::sampler::ContainerSample;
    use crate::sources::containers::wings::Server;
    use crate::sources::containers::{ContainerInfo, Inventory};
    use std::sync::Arc;

    fn container(name: &str, uuid: Option<&str>) -> Arc<ContainerInfo> {
        Arc::new(ContainerInfo {
            id: format!("{name}0123456789abcdef"),
            name: name.into(),
            state: "running".into(),
            server_uuid: uuid.map(Into::into),
            server_name: uuid.map(|_| format!("srv-{name}")),
            ..Default::default()
        })
    }

    fn sample(index: usize, cpu: f64, limit: Option<f64>) -> ContainerSample {
        ContainerSample {
            index,
            cpu_usage: Some(cpu),
            cpu_limit: limit,
            memory_bytes: Some(1 << 20),
            io_rate: Some((0.0, 4096.0)),
            ..Default::default()
        }
    }

    #[test]
    fn rows_join_servers_and_sort() {
        let server = |uuid: &str, name: &str, state: &str| Server {
            uuid: uuid.into(),
            name: name.into(),
            state: state.into(),
            ..Default::default()
        };
        let sample = ContainersSample {
            inventory: Arc::new(Inventory {
                containers: vec![container("a", Some("u-a")), container("b", None)],
                servers: vec![
                    server("u-a", "srv-a", "starting"),
                    server("u-off", "stopped one", "offline"),
                ],
                ..Default::default()
            }),
            containers: vec![sample(0, 0.5, Some(2.0)), sample(1, 1.5, None)],
            ..Default::default()
        };
        let mut r = rows(&sample, &[]);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].name, "srv-a");
        assert_eq!(r[0].status, "starting", "the Wings state wins");
        assert_eq!(r[0].cpu_limit_pct(), Some(25.0));
        assert_eq!(r[0].id, "a0123456789a");
        assert_eq!(r[2].name, "stopped one");
        assert_eq!(r[2].cpu, None);
        sort(&mut r, SortKey::Cpu, true);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "srv-a", "stopped one"]);
        sort(&mut r, SortKey::Name, false);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "srv-a", "stopped one"]);
        sort(&mut r, SortKey::Status, false);
        assert_eq!(r[0].status, "offline");
    }

    #[test]
    fn disk_rates_come_from_two_samples() {
        use crate::sources::node::disk::DiskSample;
        let mut n = NodeSample::default();
        n.disks.push(DiskSample {
            device: "sda".into(),
            read_bytes: 1000,
            write_bytes: 0,
            reads: 0,
            writes: 0,
        });
        let mut d = DiskRates::default();
        let t0 = std::time::Instant::now();
        assert_eq!(d.rates(&n, t0)[0].1, 0.0);
        n.disks[0].read_bytes = 3000;
        n.disks[0].write_bytes = 500;
        let r = d.rates(&n, t0 + std::time::Duration::from_secs(2));
        assert_eq!(r[0], ("sda".to_string(), 1000.0, 250.0));
    }
}
