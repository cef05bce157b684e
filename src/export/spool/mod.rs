//! The on-disk tier of the delivery queue: per signal, append-only segment files of checksummed
//! records, and an `ack` file saying how far delivery got.
//!
//! Why this shape: the Collector's persistent queue loses data at the edges (shutdown while the
//! backend is down, restart with `fsync: false`, torn writes;
//! docs/design.md#delivery-and-transports-are-the-agents-own). Here a torn tail or a corrupted
//! span is found by checksum and skipped ([`record`]), records are written at their known offset
//! (so a short write is overwritten, never followed by misaddressed records), an `ack` that does
//! not name a record boundary is ignored rather than trusted to skip data, and the directory is
//! re-created when it disappears. [`lock`] keeps a second agent out.
//!
//! Layout: `<spool_dir>/lock`, and per signal `<spool_dir>/<signal>/NNNNNNNNNNNNNNNNNNNN.seg`
//! (20-digit increasing id) and `<spool_dir>/<signal>/ack` (`segment offset`: everything before
//! it was delivered). Only the disk writer thread touches these files.

pub(crate) mod lock;
pub(crate) mod record;

use bytes::Bytes;
use record::{Damage, Decoded};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// When spool writes are flushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FsyncPolicy {
    /// After every record and every `ack` update.
    Always,
    /// Once the writer has nothing more to write (a burst, usually one sampling cycle).
    Batch,
    /// Never (the kernel writes back when it likes).
    Never,
}

const ACK: &str = "ack";

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn segment_ids(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn identity(dir: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(dir)?;
    Ok((m.dev(), m.ino()))
}

/// Size of the filesystem holding `dir`, bytes.
fn fs_size(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs(3) on a NUL-terminated path into a zeroed struct we own.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0).then(|| s.f_blocks * s.f_frsize)
}

/// A record found when the spool was opened.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) seg: u64,
    pub(crate) off: u64,
    pub(crate) len: u64,
    pub(crate) batches: u64,
    pub(crate) meta: Bytes,
}

/// What opening a spool found.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) spool: Spool,
    /// Undelivered records, oldest first.
    pub(crate) found: Vec<Found>,
    pub(crate) skipped_spans: u64,
    pub(crate) skipped_bytes: u64,
}

/// What removed a part of the spool while the agent ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vanished {
    /// The whole directory (removed or replaced).
    Dir(String),
    /// One segment file.
    Segment(u64, String),
}

/// One signal's segment files. Owned by the disk writer thread.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    fsync: FsyncPolicy,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segment id → length of its valid part (where the next record goes, for the tail).
    segs: BTreeMap<u64, u64>,
    total: u64,
    tail: Option<(u64, File)>,
    reader: Option<(u64, File)>,
    next_id: u64,
    dirty: bool,
    ident: (u64, u64),
    ack: Option<(u64, u64)>,
}

/// Why an `ack` file is not trusted.
#[derive(Debug, thiserror::Error)]
enum BadAck {
    #[error("`{0}` is not `segment offset`")]
    Format(String),
    #[error("offset {off} is not a record boundary of segment {seg}")]
    NotABoundary { seg: u64, off: u64 },
    #[error("segment {seg} offset {off} is past the end of the spool (last segment {last})")]
    PastTheEnd { seg: u64, off: u64, last: u64 },
}

/// Parses and checks an `ack` against the segments found: `Ok(None)` when there is none,
/// `Err(why)` when it does not name a place in the data (then it is ignored, never trusted to
/// skip anything).
fn check_ack(
    text: Option<String>,
    ids: &[u64],
    boundaries: &BTreeMap<u64, Vec<u64>>,
) -> Result<Option<(u64, u64)>, BadAck> {
    let Some(text) = text else { return Ok(None) };
    let mut it = text.split_ascii_whitespace();
    let (Some(Ok(seg)), Some(Ok(off)), None) = (
        it.next().map(str::parse::<u64>),
        it.next().map(str::parse::<u64>),
        it.next(),
    ) else {
        return Err(BadAck::Format(text.trim().chars().take(64).collect()));
    };
    let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
        return Ok(Some((seg, off)));
    };
    if seg < first {
        return Ok(None);
    }
    match boundaries.get(&seg) {
        Some(b) if off == 0 || b.contains(&off) => Ok(Some((seg, off))),
        Some(_) => Err(BadAck::NotABoundary { seg, off }),
        None if seg <= last + 1 && off == 0 => Ok(Some((seg, 0))),
        None => Err(BadAck::PastTheEnd { seg, off, last }),
    }
}

impl Spool {
    /// Opens (creating) one signal's spool directory and scans every segment. Damaged spans are
    /// logged and skipped; an `ack` that does not name a record boundary is logged and ignored
    /// (everything is replayed: at-least-once rather than a silent loss).
    pub(crate) fn open(dir: &Path, max_bytes: u64, fsync: FsyncPolicy) -> std::io::Result<Opened> {
        std::fs::create_dir_all(dir)?;
        let ids = segment_ids(dir)?;
        let ack_text = std::fs::read_to_string(dir.join(ACK)).ok();
        let total_fs = fs_size(dir).unwrap_or(u64::MAX);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            fsync,
            max_bytes,
            segment_bytes: (max_bytes.min(total_fs) / 16).clamp(16 << 10, 16 << 20),
            segs: BTreeMap::new(),
            total: 0,
            tail: None,
            reader: None,
            next_id: ids.last().copied().unwrap_or(0) + 1,
            dirty: false,
            ident: identity(dir)?,
            ack: None,
        };
        // Scan everything first: the ack is checked against what is really there.
        let mut per_seg: Vec<(u64, u64, Vec<Found>)> = Vec::new();
        let mut boundaries: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let (mut skipped_spans, mut skipped_bytes) = (0, 0);
        for &id in &ids {
            let path = seg_path(dir, id);
            let f = File::open(&path)?;
            let len = f.metadata()?.len();
            let mut found = Vec::new();
            let b = boundaries.entry(id).or_default();
            for s in record::scan(&f, 0, len, |off, d| {
                b.push(d.end);
                found.push(Found {
                    seg: id,
                    off,
                    len: d.end - off,
                    batches: d.batches,
                    meta: d.meta.clone(),
                });
            }) {
                let what = if s.tail {
                    "spool: skipped a torn or corrupted tail"
                } else {
                    "spool: skipped a corrupted span"
                };
                tracing::warn!(file = %path.display(), offset = s.offset, bytes = s.bytes, "{what}");
                skipped_spans += 1;
                skipped_bytes += s.bytes;
            }
            per_seg.push((id, len, found));
        }
        let ack = check_ack(ack_text, &ids, &boundaries).unwrap_or_else(|why| {
            tracing::warn!(file = %dir.join(ACK).display(), %why, "spool: ignoring a bad ack file; replaying every intact record (some may be delivered twice)");
            None
        });
        let mut found = Vec::new();
        for (id, len, recs) in per_seg {
            let keep: Vec<Found> = recs
                .into_iter()
                .filter(|r| ack.is_none_or(|(s, o)| (r.seg, r.off) >= (s, o)))
                .collect();
            if keep.is_empty() {
                // Delivered (before a valid ack) or holding nothing valid (logged above).
                let _ = std::fs::remove_file(seg_path(dir, id));
                continue;
            }
            spool.segs.insert(id, len);
            spool.total += len;
            found.extend(keep);
        }
        spool.ack = ack;
        Ok(Opened {
            spool,
            found,
            skipped_spans,
            skipped_bytes,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the segment files (what the budget bounds).
    pub(crate) fn bytes(&self) -> u64 {
        self.total
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub(crate) fn oldest_segment(&self) -> Option<u64> {
        self.segs.keys().next().copied()
    }

    /// Appends one record where the tail's valid part ends; a failed write is cut back off, so
    /// the next record lands where this one should have.
    pub(crate) fn append(&mut self, rec: &[u8]) -> std::io::Result<(u64, u64)> {
        let rotate = match &self.tail {
            None => true,
            Some((id, _)) => self.segs.get(id).is_none_or(|&l| l >= self.segment_bytes),
        };
        if rotate {
            let id = self.next_id;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(seg_path(&self.dir, id))?;
            self.next_id += 1;
            self.segs.insert(id, 0);
            self.tail = Some((id, f));
            if self.fsync == FsyncPolicy::Always {
                self.sync_dir();
            }
        }
        let (id, f) = self.tail.as_ref().expect("tail open");
        let id = *id;
        let off = self.segs[&id];
        if let Err(e) = f.write_all_at(rec, off) {
            let _ = f.set_len(off);
            return Err(e);
        }
        *self.segs.get_mut(&id).expect("tail segment") += rec.len() as u64;
        self.total += rec.len() as u64;
        self.dirty = true;
        if self.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok((id, off))
    }

    /// Forgets a segment and deletes its file.
    pub(crate) fn remove_segment(&mut self, id: u64) {
        if let Some(len) = self.segs.remove(&id) {
            self.total -= len;
        }
        if self.tail.as_ref().is_some_and(|t| t.0 == id) {
            self.tail = None;
        }
        if self.reader.as_ref().is_some_and(|t| t.0 == id) {
            self.reader = None;
        }
        let _ = std::fs::remove_file(seg_path(&self.dir, id));
    }

    /// Reads back the record the index places at `seg`/`off`, `len` bytes long.
    pub(crate) fn read(&mut self, seg: u64, off: u64, len: u64) -> Result<Decoded, Damage> {
        if let Some((id, f)) = &self.tail
            && *id == seg
        {
            return record::read_exact(f, off, len);
        }
        if self.reader.as_ref().is_none_or(|r| r.0 != seg) {
            self.reader = Some((seg, File::open(seg_path(&self.dir, seg))?));
        }
        let (_, f) = self.reader.as_ref().expect("just opened");
        record::read_exact(f, off, len)
    }

    /// Records delivery progress: everything before `head` (the oldest undelivered record), or
    /// everything (`None`), is done. The `ack` is replaced first, then the segments wholly
    /// before it are deleted, so a crash in between replays nothing twice and loses nothing.
    pub(crate) fn advance(&mut self, head: Option<(u64, u64)>) -> std::io::Result<()> {
        let ack = head.unwrap_or((self.next_id, 0));
        if self.ack != Some(ack) {
            let tmp = self.dir.join("ack.tmp");
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{} {}\n", ack.0, ack.1).as_bytes())?;
            if self.fsync == FsyncPolicy::Always {
                f.sync_data()?;
            }
            std::fs::rename(&tmp, self.dir.join(ACK))?;
            if self.fsync == FsyncPolicy::Always {
                self.sync_dir();
            }
            self.ack = Some(ack);
        }
        let done: Vec<u64> = self.segs.range(..ack.0).map(|(&id, _)| id).collect();
        for id in done {
            self.remove_segment(id);
        }
        Ok(())
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// fsyncs the tail (policy permitting).
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.dirty = false;
        match &self.tail {
            Some((_, f)) if self.fsync != FsyncPolicy::Never => f.sync_data(),
            _ => Ok(()),
        }
    }

    fn sync_dir(&self) {
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }

    /// Whether the directory or the tail segment was removed behind our back (writes to an
    /// unlinked file succeed and vanish at close, so this is checked before trusting them).
    pub(crate) fn vanished(&self) -> Option<Vanished> {
        match identity(&self.dir) {
            Err(e) => {
                return Some(Vanished::Dir(format!(
                    "the spool directory {} is gone ({e})",
                    self.dir.display()
                )));
            }
            Ok(id) if id != self.ident => {
                return Some(Vanished::Dir(format!(
                    "the spool directory {} was replaced",
                    self.dir.display()
                )));
            }
            Ok(_) => {}
        }
        let (id, f) = self.tail.as_ref()?;
        match f.metadata() {
            Ok(m) if m.nlink() == 0 => Some(Vanished::Segment(
                *id,
                format!("{} was deleted", seg_path(&self.dir, *id).display()),
            )),
            _ => None,
        }
    }

    /// Starts over in a fresh directory after [`Spool::vanished`] said it was gone.
    pub(crate) fn reset(&mut self) -> std::io::Result<()> {
        self.segs.clear();
        self.total = 0;
        self.tail = None;
        self.reader = None;
        self.ack = None;
        self.dirty = false;
        std::fs::create_dir_all(&self.dir)?;
        self.ident = identity(&self.dir)?;
        Ok(())
    }
}

/// Moves a spool written before there were signals (segments straight in `spool_dir`) into the
/// metrics directory, once.
pub(crate) fn migrate_flat_layout(root: &Path, metrics: &Path) {
    let Ok(ids) = segment_ids(root) else { return };
    if ids.is_empty() {
        return;
    }
    if segment_ids(metrics).is_ok_and(|m| !m.is_empty()) {
        tracing::warn!(dir = %root.display(), "spool: old-layout segments next to a metrics spool; leaving them untouched");
        return;
    }
    let moved = std::fs::create_dir_all(metrics).and_then(|_| {
        for id in &ids {
            std::fs::rename(seg_path(root, *id), seg_path(metrics, *id))?;
        }
        match std::fs::rename(root.join(ACK), metrics.join(ACK)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    });
    match moved {
        Ok(()) => {
            tracing::info!(from = %root.display(), to = %metrics.display(), segments = ids.len(), "spool: moved to the per-signal layout")
        }
        Err(e) => {
            tracing::error!(dir = %root.display(), error = %e, "spool: cannot move the old layout into metrics/")
        }
    }
}

/// What `node-agent check` says about the spool, without changing it: whether the directory can
/// be written, who holds it, and how much waits in it.
pub(crate) fn inspect(root: &Path) -> (bool, String) {
    let probe_in = if root.exists() {
        root.to_path_buf()
    } else {
        match root.ancestors().find(|a| a.exists()) {
            Some(a) => a.to_path_buf(),
            None => root.to_path_buf(),
        }
    };
    let probe = probe_in.join(format!(".node-agent-check-{}", std::process::id()));
    let writable = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map(|_| {
            let _ = std::fs::remove_file(&probe);
        });
    let mut parts = Vec::new();
    if !root.exists() {
        parts.push("not created yet (made at start)".to_string());
    }
    let mut dirs = vec![("", root.to_path_buf())];
    dirs.extend(
        super::Signal::ALL
            .iter()
            .map(|s| (s.name(), root.join(s.name()))),
    );
    for (name, d) in dirs {
        let Ok(ids) = segment_ids(&d) else { continue };
        if ids.is_empty() {
            continue;
        }
        let bytes: u64 = ids
            .iter()
            .filter_map(|id| std::fs::metadata(seg_path(&d, *id)).ok())
            .map(|m| m.len())
            .sum();
        let label = if name.is_empty() { "old layout" } else { name };
        parts.push(format!(
            "{label}: {} segment file(s), {bytes} bytes waiting",
            ids.len()
        ));
    }
    if let Some(pid) = lock::holder(root) {
        parts.push(format!("in use by node-agent PID {pid}"));
    }
    if let Err(e) = &writable {
        parts.push(format!(
            "NOT writable ({e}): the agent would run memory-only"
        ));
    }
    if parts.is_empty() {
        parts.push("empty".into());
    }
    (
        writable.is_ok(),
        format!("{}: {}", root.display(), parts.join("; ")),
    )
}

#[cfg(test)]
mod tests;
