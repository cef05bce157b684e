//! One agent per spool: an exclusive `flock(2)` on `<spool_dir>/lock`, held for the life of the
//! process, with the holder's PID written in the file so a second agent can say who holds it.
//!
//! Two agents on one spool would replay and delete each other's batches. `flock` is released by
//! the kernel when the process dies (even by `kill -9`), so a stale lock file never blocks a
//! restart; the PID in it is only for the message.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub(crate) const LOCK_FILE: &str = "lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct SpoolLock {
    _file: File,
}

/// Why the spool could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the spool directory {} is in use by another node-agent{}; give each agent its own spool_dir (NODE_AGENT_SPOOL_DIR)",
        dir.display(),
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
    )]
    Held { dir: PathBuf, pid: Option<u32> },
    #[error("cannot lock the spool directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The PID written in the lock file, if any.
fn read_pid(f: &mut File) -> Option<u32> {
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Takes the lock of `dir` (which must exist) without waiting.
pub(crate) fn lock(dir: &Path) -> Result<SpoolLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                pid: read_pid(&mut file),
            });
        }
        return Err(io(e));
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0).map_err(io)?;
    file.write_all_at(pid.as_bytes(), 0).map_err(io)?;
    Ok(SpoolLock { _file: file })
}

/// Who holds the lock of `dir`, without taking it: the PID in the lock file when that process
/// is alive (for `check`).
pub(crate) fn holder(dir: &Path) -> Option<u32> {
    let mut f = File::open(dir.join(LOCK_FILE)).ok()?;
    let pid = read_pid(&mut f)?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let held = lock(d.path()).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts just like another process would.
        match lock(d.path()) {
            Err(LockError::Held { pid, dir }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(dir, d.path());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(holder(d.path()), Some(std::process::id()));
        drop(held);
        assert!(lock(d.path()).is_ok());
    }
}
