//! Kept-descriptor reads of /proc, /sys and cgroup files.
//!
//! On our machines a sampling cycle is dominated by `open` (path lookup in procfs/kernfs), not by
//! reading or parsing (docs/benchmarks.md#where-a-cycles-time-goes): re-reading a kept descriptor with `pread` at
//! offset 0 returns fresh values and is 5–10× cheaper. [`ProcFile`] keeps the descriptor and a
//! reusable buffer, reopens once when a read fails (the file was replaced), and reports the path
//! in every error.
//!
//! Two exceptions to "keep it open": a file may be read **transiently** (opened, read, closed)
//! when the agent is past its descriptor budget ([`ProcFile::set_keep`]); and a file whose kernel
//! side caches what it returns per open file may be **reopened when the previous read is recent**
//! ([`ProcFile::fresh_within`]): cgroup v1 `cgroup.procs` hands a kept descriptor the pid list it
//! built at the previous read for as long as that list lives (destroyed 1 s after the last read,
//! `CGROUP_PIDLIST_DESTROY_DELAY`), so at short intervals a process that joined later would never
//! be seen.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a [`ProcFile`] is: a path of its own, or a name in a directory shared with the other
/// files of the same cgroup. A container keeps about nine files in four or five directories
/// whose paths run to ~100 bytes; one allocation per directory instead of one per file is
/// about 1 KB less per container (1 MB at 1000 containers).
#[derive(Debug, Clone)]
pub(crate) enum FilePath {
    Own(PathBuf),
    In(Arc<Path>, &'static str),
}

impl FilePath {
    /// The path; joined (an allocation) for a file in a shared directory: only when the file is
    /// opened or an error names it.
    pub(crate) fn to_path(&self) -> Cow<'_, Path> {
        match self {
            FilePath::Own(p) => Cow::Borrowed(p),
            FilePath::In(dir, name) => Cow::Owned(dir.join(name)),
        }
    }

    /// `name` in `dir` when the file exists.
    pub(crate) fn existing(dir: &Arc<Path>, name: &'static str) -> Option<FilePath> {
        dir.join(name)
            .exists()
            .then(|| FilePath::In(dir.clone(), name))
    }
}

/// An error that carries the file it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    pub(crate) fn new(path: &Path, source: io::Error) -> Self {
        FileError {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file is gone (process exited, cgroup removed): the caller should forget it.
    pub(crate) fn is_gone(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH)
        )
    }
}

/// A file that is read again and again through one descriptor.
#[derive(Debug)]
pub(crate) struct ProcFile {
    path: FilePath,
    file: Option<File>,
    buf: Vec<u8>,
    /// Keep the descriptor between reads (the default); otherwise close it after each read.
    keep: bool,
    /// Reopen before reading when the previous read is younger than this.
    fresh_within: Option<Duration>,
    last_read: Option<Instant>,
    /// A kept descriptor failed and the path opened again: the file was replaced (a cgroup
    /// removed and created again under the same path).
    replaced: bool,
}

/// Files above this size are cut: nothing we parse is anywhere near it, and a bound keeps a
/// misbehaving file from growing our memory.
const MAX_FILE_BYTES: usize = 4 << 20;
/// The first read of a file uses this much, so one `pread` gets a whole typical file; the buffer
/// is then cut to the file's size plus headroom (most cgroup files are a few bytes to 1 KiB).
const FIRST_READ_BYTES: usize = 4096;
const MIN_BUF_BYTES: usize = 128;

impl ProcFile {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        ProcFile::at(FilePath::Own(path.into()))
    }

    /// A file at `path`, which may share its directory with other files ([`FilePath::In`]).
    pub(crate) fn at(path: FilePath) -> Self {
        ProcFile {
            path,
            file: None,
            buf: Vec::new(),
            keep: true,
            fresh_within: None,
            last_read: None,
            replaced: false,
        }
    }

    /// A file whose kernel side caches per open file for about `d` after a read: it is opened
    /// again whenever the previous read is younger than `d`, and kept otherwise.
    pub(crate) fn fresh_within(mut self, d: Duration) -> Self {
        self.fresh_within = Some(d);
        self
    }

    pub(crate) fn path(&self) -> Cow<'_, Path> {
        self.path.to_path()
    }

    /// Whether the descriptor is kept between reads. Turning it off closes it now.
    pub(crate) fn set_keep(&mut self, keep: bool) {
        self.keep = keep;
        if !keep {
            self.file = None;
        }
    }

    /// Whether a descriptor is held open right now.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// True once after a read that found the kept descriptor stale and the path there again.
    pub(crate) fn take_replaced(&mut self) -> bool {
        std::mem::take(&mut self.replaced)
    }

    /// Reads the whole file and returns its bytes (valid until the next read).
    pub(crate) fn read(&mut self) -> Result<&[u8], FileError> {
        let mut own = std::mem::take(&mut self.buf);
        let r = self.read_into(&mut own, true);
        self.buf = own;
        r.map(|n| &self.buf[..n])
    }

    /// Reads the whole file into `scratch`, a buffer shared by many files (the container
    /// sampler's: thousands of kept files need no buffer each), and returns it as text.
    pub(crate) fn read_str_in<'b>(
        &mut self,
        scratch: &'b mut Vec<u8>,
    ) -> Result<&'b str, FileError> {
        let n = self.read_into(scratch, false)?;
        std::str::from_utf8(&scratch[..n]).map_err(|_| {
            FileError::new(
                &self.path(),
                io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"),
            )
        })
    }

    fn read_into(&mut self, buf: &mut Vec<u8>, own: bool) -> Result<usize, FileError> {
        if let (Some(d), Some(at)) = (self.fresh_within, self.last_read)
            && at.elapsed() < d
        {
            self.file = None;
        }
        let result = match self.read_once(buf, own) {
            Ok(n) => Ok(n),
            Err(first) => {
                // A kept descriptor can go stale (the file was replaced); reopen once.
                if self.file.take().is_some() {
                    let n = self.read_once(buf, own);
                    self.replaced |= n.is_ok();
                    n
                } else {
                    Err(first)
                }
            }
        };
        if !self.keep {
            self.file = None;
        }
        if self.fresh_within.is_some() {
            self.last_read = Some(Instant::now());
        }
        result
    }

    /// For files that signal changes through `poll` (`/proc/<pid>/mountinfo` raises
    /// `POLLPRI|POLLERR` once after each change of the mount table): whether the file must be read
    /// again. True until it has been opened, and whenever `poll` cannot tell.
    pub(crate) fn changed(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(f) = &self.file else { return true };
        let mut p = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n != 0 || p.revents & (libc::POLLPRI | libc::POLLERR | libc::POLLNVAL) != 0
    }

    /// Reads the file as text (lossless for the ASCII files of procfs and cgroupfs).
    pub(crate) fn read_str(&mut self) -> Result<&str, FileError> {
        let n = self.read()?.len();
        match std::str::from_utf8(&self.buf[..n]) {
            Ok(s) => Ok(s),
            Err(_) => Err(FileError::new(
                &self.path(),
                io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"),
            )),
        }
    }

    /// One read of the whole file into `buf`. An own buffer is cut to the file's size after the
    /// first read; a shared one only grows.
    fn read_once(&mut self, buf: &mut Vec<u8>, own: bool) -> Result<usize, FileError> {
        if self.file.is_none() {
            let path = self.path();
            let file = File::open(&path).map_err(|e| FileError::new(&path, e))?;
            self.file = Some(file);
        }
        let file = self.file.as_ref().expect("opened above");
        let first = buf.is_empty();
        if first {
            buf.resize(FIRST_READ_BYTES, 0);
        }
        let mut filled = 0;
        loop {
            let n = file
                .read_at(&mut buf[filled..], filled as u64)
                .map_err(|e| FileError::new(&self.path(), e))?;
            if n == 0 {
                break;
            }
            filled += n;
            // procfs, sysfs and cgroupfs (seq_file/kernfs) fill the whole buffer unless the file
            // ends first: a short read is the end, so a file costs one `pread`, not two.
            if filled < buf.len() {
                break;
            }
            if filled == buf.len() {
                if buf.len() >= MAX_FILE_BYTES {
                    break;
                }
                let grown = (buf.len() * 2).min(MAX_FILE_BYTES);
                buf.resize(grown, 0);
            }
        }
        if first && own {
            // Keep a buffer sized to this file (with room to grow) rather than a page per file:
            // a node with hundreds of containers keeps over a thousand of them.
            let keep = (filled + filled / 2 + 64)
                .next_power_of_two()
                .max(MIN_BUF_BYTES);
            if keep < buf.len() {
                buf.truncate(keep);
                buf.shrink_to_fit();
            }
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file named in a shared directory reads like one with its own path, and its errors
    /// name the whole path.
    #[test]
    fn a_file_in_a_shared_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "4096\n").unwrap();
        let shared: Arc<Path> = Arc::from(dir.path());
        assert!(FilePath::existing(&shared, "memory.stat").is_none());
        let mut f = ProcFile::at(FilePath::existing(&shared, "memory.current").unwrap());
        assert_eq!(f.read_str().unwrap(), "4096\n");
        assert_eq!(f.path(), dir.path().join("memory.current"));
        std::fs::remove_file(dir.path().join("memory.current")).unwrap();
        let mut gone = ProcFile::at(FilePath::In(shared, "memory.current"));
        let e = gone.read().unwrap_err();
        assert!(e.is_gone());
        assert_eq!(e.path, dir.path().join("memory.current"));
    }

    #[test]
    fn rereads_fresh_content_through_kept_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let mut f = ProcFile::new(&p);
        assert_eq!(f.read_str().unwrap(), "one");
        std::fs::write(&p, "two, longer").unwrap();
        assert_eq!(f.read_str().unwrap(), "two, longer");
    }

    #[test]
    fn grows_for_big_files_and_reports_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'x'; 10_000]).unwrap();
        assert_eq!(ProcFile::new(&p).read().unwrap().len(), 10_000);
        let err = ProcFile::new(dir.path().join("missing"))
            .read()
            .unwrap_err();
        assert!(err.to_string().contains("missing") && err.is_gone());
    }

    #[test]
    fn small_files_keep_small_buffers_and_still_grow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "12345\n").unwrap();
        let mut f = ProcFile::new(&p);
        assert_eq!(f.read_str().unwrap(), "12345\n");
        assert_eq!(f.buf.len(), MIN_BUF_BYTES);
        let long = "x".repeat(3000);
        std::fs::write(&p, &long).unwrap();
        assert_eq!(f.read_str().unwrap(), long);
    }

    #[test]
    fn mountinfo_is_read_again_only_after_a_change() {
        let mut f = ProcFile::new("/proc/self/mountinfo");
        assert!(f.changed(), "never read: must read");
        assert!(f.read_str().unwrap().contains(" / "));
        assert!(!f.changed(), "no mount happened since the read");
        assert!(!f.changed());
    }

    #[test]
    fn transient_files_close_after_each_read_and_replacement_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "1").unwrap();
        let mut f = ProcFile::new(&p);
        assert_eq!(f.read_str().unwrap(), "1");
        assert!(f.is_open() && !f.take_replaced());
        f.set_keep(false);
        assert!(!f.is_open());
        std::fs::write(&p, "2").unwrap();
        assert_eq!(f.read_str().unwrap(), "2");
        assert!(!f.is_open());
        // cgroupfs answers ENODEV on a removed cgroup's kept descriptor; a plain file keeps its
        // old inode, so the replaced flag is exercised against the real kernel in tests/it.
        let mut g = ProcFile::new(dir.path().join("missing"));
        assert!(g.read().is_err() && !g.take_replaced());
    }

    #[test]
    fn a_shared_buffer_serves_many_files_and_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "x".repeat(6000)).unwrap();
        std::fs::write(&b, "short").unwrap();
        let mut scratch = Vec::new();
        let (mut fa, mut fb) = (ProcFile::new(&a), ProcFile::new(&b));
        assert_eq!(fa.read_str_in(&mut scratch).unwrap().len(), 6000);
        assert_eq!(fb.read_str_in(&mut scratch).unwrap(), "short");
        assert_eq!(scratch.len(), 8192);
        assert!(
            fa.buf.is_empty() && fb.buf.is_empty(),
            "no buffer of their own"
        );
    }

    #[test]
    fn fresh_within_reopens_only_recent_rereads() {
        let mut f = ProcFile::new("/proc/self/stat").fresh_within(Duration::from_secs(3600));
        assert!(f.read_str().unwrap().contains(')'));
        assert!(f.is_open());
        assert!(f.read_str().is_ok());
        let mut g = ProcFile::new("/proc/self/stat").fresh_within(Duration::ZERO);
        assert!(g.read_str().is_ok() && g.read_str().is_ok() && g.is_open());
    }

    #[test]
    fn reads_proc_stat() {
        let mut f = ProcFile::new("/proc/stat");
        assert!(f.read_str().unwrap().starts_with("cpu "));
        assert!(f.read_str().unwrap().starts_with("cpu "));
    }
}
