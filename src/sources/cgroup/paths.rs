//! Where a container's cgroup lives, on every layout.
//!
//! The robust way needs no guessing: `/proc/<pid>/cgroup` of a process in the container names its
//! cgroup in each hierarchy (`N:cpu,cpuacct:/docker/<id>` on v1, `0::/system.slice/docker-<id>.scope`
//! on v2), and the host's mountinfo says where each hierarchy is mounted and which part of it the
//! mount shows (its root). This is the only correct method when a `CgroupParent` is set. When the
//! process cannot be read (it just exited, or the agent runs in another PID namespace), the
//! driver's known paths are tried: `system.slice/docker-<id>.scope` (systemd driver) and
//! `docker/<id>` (cgroupfs driver), under each mounted hierarchy (docs/containers.md#where-a-containers-cgroup-is).

use crate::sys::mountinfo::MountEntry;
use std::path::{Path, PathBuf};

/// The cgroup hierarchies mounted on the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mounts {
    /// The cgroup2 mount (`/sys/fs/cgroup` on v2, `/sys/fs/cgroup/unified` on hybrid) and its root.
    pub v2: Option<Hierarchy>,
    /// The v1 hierarchies, each with its controllers (`cpu`, `cpuacct`, `name=systemd`, …).
    pub(crate) v1: Vec<Hierarchy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    pub point: PathBuf,
    /// The part of the hierarchy the mount shows (`/` on the host).
    pub root: String,
    pub controllers: Vec<String>,
}

/// The cgroup layout: `1`, `2` or `hybrid` (v1 controllers plus a v2 `unified` mount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Layout {
    V1,
    V2,
    Hybrid,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::V1 => "1",
            Layout::V2 => "2",
            Layout::Hybrid => "hybrid",
        }
    }
}

impl Mounts {
    /// The cgroup hierarchies of the host's mount table. `sys_path` replaces a leading `/sys` of
    /// the mount points (the agent may see the host's /sys elsewhere, e.g. `/host/sys`).
    pub(crate) fn from_table(table: &[MountEntry], sys_path: &Path) -> Mounts {
        let mut m = Mounts::default();
        for e in table {
            let point = match e.mount_point.strip_prefix("/sys") {
                Some(rest) if sys_path != Path::new("/sys") => {
                    sys_path.join(rest.trim_start_matches('/'))
                }
                _ => PathBuf::from(&e.mount_point),
            };
            let mount = |controllers| Hierarchy {
                point: point.clone(),
                root: e.root.clone(),
                controllers,
            };
            match e.fs_type.as_str() {
                // The first cgroup2 mount wins (a later bind mount of a subtree is not it).
                "cgroup2" if m.v2.is_none() => m.v2 = Some(mount(Vec::new())),
                "cgroup" => {
                    let controllers: Vec<String> = e
                        .super_options
                        .split(',')
                        .filter(|o| {
                            !matches!(
                                *o,
                                "rw" | "ro"
                                    | "relatime"
                                    | "noatime"
                                    | "nosuid"
                                    | "nodev"
                                    | "noexec"
                            ) && !o.starts_with("release_agent")
                                && *o != "clone_children"
                                && *o != "xattr"
                                && *o != "noprefix"
                                && *o != "cpuset_v2_mode"
                        })
                        .map(str::to_string)
                        .collect();
                    if !m.v1.iter().any(|x| x.controllers == controllers) {
                        m.v1.push(mount(controllers));
                    }
                }
                _ => {}
            }
        }
        m
    }

    /// Parses mountinfo text (tests and fixtures).
    pub fn parse(mountinfo: &str, sys_path: &Path) -> Mounts {
        Mounts::from_table(&crate::sys::mountinfo::parse(mountinfo), sys_path)
    }

    pub fn layout(&self) -> Option<Layout> {
        let v1 = self.v1.iter().any(|m| !m.is_named_only());
        match (v1, &self.v2) {
            (true, Some(_)) => Some(Layout::Hybrid),
            (true, None) => Some(Layout::V1),
            (false, Some(_)) => Some(Layout::V2),
            (false, None) => None,
        }
    }

    /// The v1 mount that carries `controller`.
    pub fn v1_mount(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
    }
}

impl Hierarchy {
    fn is_named_only(&self) -> bool {
        self.controllers.iter().all(|c| c.starts_with("name="))
    }

    /// The directory of the cgroup `path` (as `/proc/<pid>/cgroup` writes it) under this mount.
    pub(crate) fn dir_of(&self, path: &str) -> PathBuf {
        let rel = if self.root != "/" {
            path.strip_prefix(self.root.as_str()).unwrap_or(path)
        } else {
            path
        };
        self.point.join(rel.trim_start_matches('/'))
    }
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Membership {
    /// Empty for the v2 line `0::/…`.
    pub(crate) controllers: Vec<String>,
    pub(crate) path: String,
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            if !path.starts_with('/') {
                return None;
            }
            Some(Membership {
                controllers: ctrl
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// The directories of one container's cgroup, per hierarchy. `None` where the hierarchy is not
/// mounted or the container is not in it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Dirs {
    /// The v2 cgroup (on hybrid hosts runc also creates one under `unified`).
    pub v2: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    /// How the directories were found: `proc` (/proc/<pid>/cgroup) or `driver-path`.
    pub method: &'static str,
    /// `systemd` or `cgroupfs`, from the shape of the path.
    pub driver: Option<&'static str>,
}

impl Dirs {
    pub(crate) fn is_empty(&self) -> bool {
        self.v2.is_none()
            && self.cpu.is_none()
            && self.cpuacct.is_none()
            && self.memory.is_none()
            && self.blkio.is_none()
    }

    /// Some directory whose `cgroup.procs` lists the container's processes: the v2 one when
    /// there is one (on hybrid hosts too: v1's `cgroup.procs` serves a kept descriptor a cached
    /// list, v2's walks the cgroup's tasks at every read), else the first v1 one.
    pub(crate) fn procs_dir(&self, layout: Layout) -> Option<&Path> {
        let v1 = [
            &self.cpuacct,
            &self.cpu,
            &self.memory,
            &self.pids,
            &self.blkio,
        ];
        let first_v1 = v1.iter().find_map(|d| d.as_deref());
        match layout {
            Layout::V2 => self.v2.as_deref(),
            Layout::Hybrid => self.v2.as_deref().or(first_v1),
            Layout::V1 => first_v1.or(self.v2.as_deref()),
        }
    }
}

/// `systemd` for `…/docker-<id>.scope` paths, `cgroupfs` for `…/<parent>/<id>`.
pub(crate) fn driver_of(path: &str) -> Option<&'static str> {
    let last = path.rsplit('/').next().unwrap_or("");
    if last.ends_with(".scope") || path.contains(".slice") {
        Some("systemd")
    } else if last.len() == 64 && last.bytes().all(|c| c.is_ascii_hexdigit()) {
        Some("cgroupfs")
    } else {
        None
    }
}

/// Resolves the directories from a process's `/proc/<pid>/cgroup`.
pub fn from_proc(mounts: &Mounts, proc_cgroup: &str) -> Dirs {
    let mut d = Dirs {
        method: "proc",
        ..Default::default()
    };
    for m in parse_proc_cgroup(proc_cgroup) {
        // A container is never in a root cgroup: `/` means the v2 root of a hybrid host, or a
        // private cgroup namespace hiding the real path. Then the driver paths are the way.
        if m.path == "/" {
            continue;
        }
        if m.controllers.is_empty() {
            if let Some(v2) = &mounts.v2 {
                d.v2 = Some(v2.dir_of(&m.path));
            }
            continue;
        }
        d.driver = d.driver.or(driver_of(&m.path));
        let Some(mount) = mounts
            .v1
            .iter()
            .find(|x| x.controllers.iter().any(|c| m.controllers.contains(c)))
        else {
            continue;
        };
        let dir = mount.dir_of(&m.path);
        for c in &m.controllers {
            let slot = match c.as_str() {
                "cpu" => &mut d.cpu,
                "cpuacct" => &mut d.cpuacct,
                "memory" => &mut d.memory,
                "blkio" => &mut d.blkio,
                "pids" => &mut d.pids,
                _ => continue,
            };
            *slot = Some(dir.clone());
        }
    }
    if d.driver.is_none() {
        let v2_path = parse_proc_cgroup(proc_cgroup)
            .into_iter()
            .find(|m| m.controllers.is_empty())
            .map(|m| m.path);
        d.driver = v2_path.as_deref().and_then(driver_of);
    }
    d
}

/// Relative cgroup paths Docker uses for container `id`, systemd driver first.
pub(crate) fn driver_paths(id: &str) -> [(&'static str, String); 2] {
    [
        ("systemd", format!("system.slice/docker-{id}.scope")),
        ("cgroupfs", format!("docker/{id}")),
    ]
}

/// Fallback: the driver's known paths that exist under the mounted hierarchies.
pub fn from_driver_paths(mounts: &Mounts, id: &str) -> Dirs {
    let mut d = Dirs {
        method: "driver-path",
        ..Default::default()
    };
    for (driver, rel) in driver_paths(id) {
        let mut found = false;
        if let Some(v2) = &mounts.v2 {
            let dir = v2.point.join(&rel);
            if dir.is_dir() {
                d.v2 = Some(dir);
                found = true;
            }
        }
        for (ctrl, slot) in [
            ("cpu", &mut d.cpu),
            ("cpuacct", &mut d.cpuacct),
            ("memory", &mut d.memory),
            ("blkio", &mut d.blkio),
            ("pids", &mut d.pids),
        ] {
            if let Some(m) = mounts.v1_mount(ctrl) {
                let dir = m.point.join(&rel);
                if dir.is_dir() {
                    *slot = Some(dir);
                    found = true;
                }
            }
        }
        if found {
            d.driver = Some(driver);
            break;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
38 33 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
39 33 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
40 33 0:35 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
";

    #[test]
    fn parses_hybrid_mounts_and_resolves_proc_paths() {
        let m = Mounts::parse(HYBRID, Path::new("/sys"));
        assert_eq!(m.layout(), Some(Layout::Hybrid));
        assert_eq!(
            m.v2.as_ref().unwrap().point,
            Path::new("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            m.v1_mount("cpuacct").unwrap().point,
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        let id = "a".repeat(64);
        let pc = format!(
            "12:blkio:/docker/{id}\n4:memory:/docker/{id}\n3:cpu,cpuacct:/docker/{id}\n1:name=systemd:/docker/{id}\n0::/docker/{id}\n"
        );
        let d = from_proc(&m, &pc);
        assert_eq!(d.driver, Some("cgroupfs"));
        assert_eq!(
            d.cpuacct,
            Some(PathBuf::from(format!(
                "/sys/fs/cgroup/cpu,cpuacct/docker/{id}"
            )))
        );
        assert_eq!(d.cpu, d.cpuacct);
        assert_eq!(
            d.blkio,
            Some(PathBuf::from(format!("/sys/fs/cgroup/blkio/docker/{id}")))
        );
        assert_eq!(
            d.v2,
            Some(PathBuf::from(format!("/sys/fs/cgroup/unified/docker/{id}")))
        );
        assert_eq!(d.procs_dir(Layout::Hybrid), d.v2.as_deref());
        assert_eq!(d.procs_dir(Layout::V1), d.cpuacct.as_deref());
    }

    #[test]
    fn v2_systemd_and_remapped_sys() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let m = Mounts::parse(mi, Path::new("/host/sys"));
        assert_eq!(m.layout(), Some(Layout::V2));
        let id = "b".repeat(64);
        let d = from_proc(&m, &format!("0::/system.slice/docker-{id}.scope\n"));
        assert_eq!(d.driver, Some("systemd"));
        assert_eq!(
            d.v2,
            Some(PathBuf::from(format!(
                "/host/sys/fs/cgroup/system.slice/docker-{id}.scope"
            )))
        );
        // A root path (private cgroup namespace) is never taken for the container's cgroup.
        assert!(from_proc(&m, "0::/\n").is_empty());
    }

    #[test]
    fn mount_root_is_stripped_and_garbage_ignored() {
        let mi = "40 33 0:35 /docker /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\nnot a line\n - x\n";
        let m = Mounts::parse(mi, Path::new("/sys"));
        let d = from_proc(&m, "4:memory:/docker/abc\ngarbage\n5:cpu:relative\n");
        assert_eq!(d.memory, Some(PathBuf::from("/sys/fs/cgroup/memory/abc")));
        assert!(parse_proc_cgroup("\u{0}\u{1}::").is_empty());
        use crate::sys::mountinfo::unescape;
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("x\\"), "x\\");
    }
}
