//! Filesystems: `system.filesystem.usage`, `.limit`, `.utilization`.
//!
//! From `statvfs`: `used` = (blocks − bfree) × frsize, `free` = bavail × frsize (what unprivileged
//! users can still write), `reserved` = (bfree − bavail) × frsize (root's reserve); the three add
//! up to the size. Utilization is used / (used + free), as df and the Collector compute it.
//!
//! Mounts come from the host's `mountinfo` (pid 1's, so a containerised agent with the host's
//! /proc still sees the host). Only real filesystems are reported: block-device backed ones and
//! network filesystems, one mount per device (bind mounts of the same device are left out), none of
//! the pseudo filesystems and none of Docker's per-container overlay mounts.
//!
//! `statfs` on a dead NFS/FUSE server blocks forever and has hung other agents for good
//! (node_exporter#244, #1353). Network and FUSE mounts are therefore measured on a helper thread
//! with a deadline; a mount that misses it is reported stale and skipped until that thread
//! returns, so a hung mount costs one thread, never a sampling cycle.

use crate::sys::mountinfo::MountEntry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FsMount {
    pub(crate) device_id: String,
    pub(crate) mountpoint: String,
    pub(crate) fs_type: String,
    pub(crate) source: String,
    pub(crate) read_only: bool,
}

impl FsMount {
    /// Network and FUSE filesystems can hang in statfs.
    pub(crate) fn may_hang(&self) -> bool {
        is_network_fs(&self.fs_type) || self.fs_type.starts_with("fuse")
    }
}

const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "fuse.lxcfs",
    "fuse.portal",
    "iso9660",
    "aufs",
    "shiftfs",
    "tracefs",
    "nfsd",
];

fn is_network_fs(t: &str) -> bool {
    matches!(
        t,
        "nfs"
            | "nfs4"
            | "cifs"
            | "smb3"
            | "smbfs"
            | "ceph"
            | "glusterfs"
            | "9p"
            | "virtiofs"
            | "lustre"
            | "beegfs"
    )
}

const EXCLUDED_MOUNT_PREFIXES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run/docker",
    "/var/lib/docker/",
    "/var/lib/containers/",
    "/run/containerd",
    "/var/lib/kubelet/",
    "/snap/",
];

/// Keeps the real filesystems of the mount table, one mount per device (the shortest mount point
/// of a device wins, so bind mounts of the same filesystem are left out).
pub(crate) fn real_mounts(table: &[MountEntry]) -> Vec<FsMount> {
    let mut by_device: HashMap<&str, FsMount> = HashMap::new();
    let mut order = Vec::new();
    for e in table {
        if PSEUDO_FS.contains(&e.fs_type.as_str()) {
            continue;
        }
        let mountpoint = &e.mount_point;
        if EXCLUDED_MOUNT_PREFIXES
            .iter()
            .any(|p| mountpoint == p.trim_end_matches('/') || mountpoint.starts_with(p))
        {
            continue;
        }
        let real = e.source.starts_with("/dev/")
            || is_network_fs(&e.fs_type)
            || matches!(
                e.fs_type.as_str(),
                "zfs" | "btrfs" | "xfs" | "ext4" | "ext3" | "ext2" | "f2fs" | "bcachefs"
            )
            || e.fs_type.starts_with("fuse.");
        if !real {
            continue;
        }
        let mount = FsMount {
            device_id: e.device_id.clone(),
            mountpoint: mountpoint.clone(),
            fs_type: e.fs_type.clone(),
            source: e.source.clone(),
            read_only: e.read_only(),
        };
        match by_device.get(e.device_id.as_str()) {
            Some(existing) if existing.mountpoint.len() <= mount.mountpoint.len() => {}
            _ => {
                if !by_device.contains_key(e.device_id.as_str()) {
                    order.push(e.device_id.as_str());
                }
                by_device.insert(e.device_id.as_str(), mount);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|d| by_device.remove(d))
        .collect()
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct FsSample {
    pub(crate) device: String,
    pub(crate) mountpoint: String,
    pub(crate) fs_type: String,
    pub(crate) mode: &'static str,
    pub(crate) total: u64,
    pub(crate) used: u64,
    pub(crate) free: u64,
    pub(crate) reserved: u64,
}

impl FsSample {
    /// `used / (used + free)`: what df shows as Use% (rounded up there) and hostmetrics reports
    /// as `system.filesystem.utilization`; blocks reserved for root count as neither. `None` for
    /// a filesystem with no usable blocks at all.
    pub(crate) fn utilization(&self) -> Option<f64> {
        let usable = self.used.saturating_add(self.free);
        (usable > 0).then(|| self.used as f64 / usable as f64)
    }
}

#[derive(Debug, Clone, Copy)]
struct StatFs {
    total: u64,
    free_root: u64,
    avail: u64,
}

fn statvfs(path: &Path) -> std::io::Result<StatFs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let f = st.f_frsize as u64;
    Ok(StatFs {
        total: (st.f_blocks as u64).saturating_mul(f),
        free_root: (st.f_bfree as u64).saturating_mul(f),
        avail: (st.f_bavail as u64).saturating_mul(f),
    })
}

/// Measures mounts, keeping track of mounts whose statfs hangs.
#[derive(Debug)]
pub(crate) struct FsState {
    rootfs: PathBuf,
    timeout: Duration,
    /// Mounts with a statfs thread still blocked.
    hung: HashMap<String, Arc<AtomicBool>>,
    reported_hung: HashSet<String>,
}

impl FsState {
    pub(crate) fn new(rootfs: PathBuf, timeout: Duration) -> Self {
        FsState {
            rootfs,
            timeout,
            hung: HashMap::new(),
            reported_hung: HashSet::new(),
        }
    }

    fn host_path(&self, mountpoint: &str) -> PathBuf {
        self.rootfs.join(mountpoint.trim_start_matches('/'))
    }

    /// Measures every mount; returns the samples and the mountpoints skipped as stale.
    pub(crate) fn sample(&mut self, mounts: &[FsMount]) -> (Vec<FsSample>, Vec<String>) {
        let mut out = Vec::with_capacity(mounts.len());
        let mut stale = Vec::new();
        let mut pending = Vec::new();
        let (tx, rx) = mpsc::channel();
        for (i, m) in mounts.iter().enumerate() {
            let path = self.host_path(&m.mountpoint);
            if !m.may_hang() {
                if let Ok(st) = statvfs(&path) {
                    out.push((i, st));
                }
                continue;
            }
            if let Some(flag) = self.hung.get(&m.mountpoint)
                && flag.load(Ordering::Acquire)
            {
                stale.push(m.mountpoint.clone());
                continue;
            }
            let flag = Arc::new(AtomicBool::new(true));
            self.hung.insert(m.mountpoint.clone(), flag.clone());
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("statfs".into())
                .spawn(move || {
                    let r = statvfs(&path);
                    flag.store(false, Ordering::Release);
                    let _ = tx.send((i, r));
                });
            if spawned.is_ok() {
                pending.push(i);
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, r)) => {
                    pending.retain(|p| *p != i);
                    if let Ok(st) = r {
                        out.push((i, st));
                    }
                }
                Err(_) => break,
            }
        }
        for i in pending {
            let mp = &mounts[i].mountpoint;
            if self.reported_hung.insert(mp.clone()) {
                tracing::warn!(mountpoint = %mp, timeout_ms = self.timeout.as_millis() as u64, "statfs did not return in time; mount reported stale and skipped until it answers");
            }
            stale.push(mp.clone());
        }
        out.sort_by_key(|(i, _)| *i);
        let samples = out
            .into_iter()
            .map(|(i, st)| {
                let m = &mounts[i];
                self.reported_hung.remove(&m.mountpoint);
                FsSample {
                    device: m.source.clone(),
                    mountpoint: m.mountpoint.clone(),
                    fs_type: m.fs_type.clone(),
                    mode: if m.read_only { "ro" } else { "rw" },
                    total: st.total,
                    used: st.total.saturating_sub(st.free_root),
                    free: st.avail,
                    reserved: st.free_root.saturating_sub(st.avail),
                }
            })
            .collect();
        (samples, stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
28 27 254:0 /data /srv/bind rw,relatime - ext4 /dev/vda rw\n\
30 27 0:40 / /mnt/nas\\040share ro,relatime - nfs4 srv:/export ro\n\
31 27 0:41 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw\n\
32 27 0:42 / /run rw - tmpfs tmpfs rw\n\
garbage line\n";

    #[test]
    fn keeps_real_mounts_once() {
        let m = real_mounts(&crate::sys::mountinfo::parse(MOUNTINFO));
        let points: Vec<_> = m.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, vec!["/", "/mnt/nas share"]);
        assert!(m[1].read_only && m[1].may_hang() && !m[0].may_hang());
    }

    #[test]
    fn measures_root() {
        let mounts = vec![FsMount {
            device_id: "x".into(),
            mountpoint: "/".into(),
            fs_type: "ext4".into(),
            source: "/dev/x".into(),
            read_only: false,
        }];
        let (s, stale) = FsState::new("/".into(), Duration::from_secs(1)).sample(&mounts);
        assert!(stale.is_empty());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].used + s[0].free + s[0].reserved, s[0].total);
    }
}
