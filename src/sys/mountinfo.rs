//! The host's mount table (`/proc/1/mountinfo`), parsed in one place.
//!
//! Three parts of the agent need it: the filesystem sampler (which mounts are real filesystems),
//! cgroup path resolution (where each hierarchy is mounted and which part of it a mount shows) and
//! the capabilities (cgroup v1, v2 or hybrid). [`MountTable`] keeps the file open and parses it
//! again only when the kernel says the table changed (`poll` raises `POLLPRI` after every mount
//! or unmount), so a steady host pays one `poll` per cycle, and all three share the same parse.
//! pid 1's table is used, so a containerised agent given the host's /proc still sees the host.

use super::procfile::{FileError, ProcFile};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One line of mountinfo (`proc(5)`), unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// `major:minor` of the device.
    pub(crate) device_id: String,
    /// The part of the filesystem the mount shows (`/` for a whole filesystem).
    pub(crate) root: String,
    pub(crate) mount_point: String,
    /// Per-mount options (`rw,relatime`).
    pub(crate) options: String,
    pub(crate) fs_type: String,
    /// The mount source (`/dev/vda1`, `server:/export`, `cgroup`).
    pub(crate) source: String,
    /// Per-superblock options; for cgroup v1 they name the controllers.
    pub(crate) super_options: String,
}

impl MountEntry {
    /// Mounted read-only.
    pub(crate) fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses mountinfo text. Lines without the ` - ` separator or with too few fields are skipped.
pub(crate) fn parse(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let mut r = right.split(' ');
        if l.len() < 5 {
            continue;
        }
        let Some(fs_type) = r.next().filter(|t| !t.is_empty()) else {
            continue;
        };
        out.push(MountEntry {
            device_id: l[2].to_string(),
            root: unescape(l[3]),
            mount_point: unescape(l[4]),
            options: l.get(5).map(|s| s.to_string()).unwrap_or_default(),
            fs_type: fs_type.to_string(),
            source: r.next().map(unescape).unwrap_or_default(),
            super_options: r.next().unwrap_or_default().to_string(),
        });
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` = space).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    if !b.contains(&b'\\') {
        return s.to_string();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup setup the mount table shows: `2` (unified at /sys/fs/cgroup), `hybrid` (v1
/// controllers plus a v2 `unified` mount) or `1`; `None` when no cgroup is mounted.
pub(crate) fn cgroup_version(mounts: &[MountEntry]) -> Option<&'static str> {
    let (mut v1, mut v2_root, mut v2_any) = (false, false, false);
    for m in mounts {
        if !m.mount_point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        match m.fs_type.as_str() {
            "cgroup2" => {
                v2_any = true;
                v2_root |= m.mount_point == "/sys/fs/cgroup";
            }
            "cgroup" => v1 = true,
            _ => {}
        }
    }
    match (v1, v2_root, v2_any) {
        (_, true, _) => Some("2"),
        (true, false, true) => Some("hybrid"),
        (true, false, false) => Some("1"),
        _ => None,
    }
}

/// The host's mount table, kept open and parsed again only after a change.
pub struct MountTable {
    file: Mutex<ProcFile>,
    parsed: Mutex<Arc<Vec<MountEntry>>>,
}

impl MountTable {
    /// pid 1's table under `proc_path`, or the agent's own when pid 1's cannot be seen.
    pub(crate) fn host(proc_path: &Path) -> MountTable {
        let pid1 = proc_path.join("1/mountinfo");
        let path: PathBuf = if pid1.exists() {
            pid1
        } else {
            proc_path.join("self/mountinfo")
        };
        MountTable::at(path)
    }

    /// The table in the file at `path` (tests use a fixture).
    pub(crate) fn at(path: PathBuf) -> MountTable {
        MountTable {
            file: Mutex::new(ProcFile::new(path)),
            parsed: Mutex::new(Arc::new(Vec::new())),
        }
    }

    /// The current table. A failed read forgets the previous table and reports the file.
    pub(crate) fn current(&self) -> Result<Arc<Vec<MountEntry>>, FileError> {
        let mut file = self.file.lock();
        if file.changed() {
            match file.read_str() {
                Ok(text) => *self.parsed.lock() = Arc::new(parse(text)),
                Err(e) => {
                    *self.parsed.lock() = Arc::new(Vec::new());
                    return Err(e);
                }
            }
        }
        Ok(self.parsed.lock().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes() {
        let t = "30 27 0:40 / /mnt/nas\\040share ro,relatime shared:1 - nfs4 srv:/export ro\n\
                 garbage line\n\
                 32 31 0:29 /docker /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n";
        let m = parse(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt/nas share");
        assert_eq!(
            (m[0].fs_type.as_str(), m[0].source.as_str()),
            ("nfs4", "srv:/export")
        );
        assert!(m[0].read_only());
        assert_eq!(
            (m[1].root.as_str(), m[1].super_options.as_str()),
            ("/docker", "rw,cpu,cpuacct")
        );
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("\\777x"), "\\777x");
    }

    #[test]
    fn cgroup_layouts() {
        let v = |t: &str| cgroup_version(&parse(t));
        let hybrid = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(v(hybrid), Some("hybrid"));
        assert_eq!(
            v("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            Some("2")
        );
        assert_eq!(
            v("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            Some("1")
        );
        assert_eq!(v(""), None);
    }

    #[test]
    fn host_table_is_parsed_once_until_it_changes() {
        let t = MountTable::host(Path::new("/proc"));
        let a = t.current().unwrap();
        assert!(a.iter().any(|m| m.mount_point == "/"));
        let b = t.current().unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "no mount happened: the same parse is shared"
        );
    }
}
