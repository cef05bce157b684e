//! The on-disk tier of the delivery queue: append-only segment files of checksummed records.
//!
//! Why this shape: the Collector's persistent queue loses data at the edges (shutdown while the
//! backend is down, restart with `fsync: false`, torn writes; docs/design.md#delivery-and-transports-are-the-agents-own). Here every record is
//! `magic | length | batches | crc32 | payload`, so a torn tail or a corrupted span is detected on read and
//! skipped (the reader resynchronises on the next valid magic+checksum), and what is intact is kept.
//! Delivery progress is an `ack` file (`segment offset`) written by rename, so a restart replays
//! exactly what was not yet delivered, oldest first. The spool is bounded by bytes: past the budget
//! whole oldest segments are deleted and the records in them counted as dropped.
//!
//! Files: `NNNNNNNNNNNNNNNNNNNN.seg` (segment id, increasing) and `ack`.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What [`Spool::append`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Records (oldest first) dropped to make room.
    pub(crate) dropped: u64,
    /// Whether the segment the sender is reading from was among them.
    pub(crate) pinned_gone: bool,
    /// Whether the payload itself was stored.
    pub(crate) stored: bool,
}

/// When spool writes are flushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FsyncPolicy {
    /// After every write.
    Always,
    /// Once per sampling cycle.
    Batch,
    /// Never (the kernel writes back when it likes).
    Never,
}

const MAGIC: [u8; 4] = *b"NAS1";
const HEADER: u64 = 16;
/// No request we write is near this; a larger length field is corruption.
const MAX_RECORD: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) seg: u64,
    pub(crate) end: u64,
    /// Batches (samples) the records up to `end` carry.
    pub(crate) batches: u64,
}

#[derive(Debug)]
struct Segment {
    /// File length.
    bytes: u64,
    /// Batches in valid records not yet delivered.
    records: u64,
}

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    fsync: FsyncPolicy,
    max_bytes: u64,
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    /// First undelivered byte: (segment, offset).
    ack: (u64, u64),
    tail: Option<(u64, File)>,
    dirty: bool,
    next_id: u64,
    /// Segment the sender is reading from; dropping it cancels the batch in flight.
    pub(crate) pinned: Option<u64>,
}

/// What opening a spool found.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) skipped_spans: u64,
    pub(crate) skipped_bytes: u64,
}

fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Reads the record at `off`, checking magic, bounds and checksum.
fn read_at(f: &File, off: u64, len: u64) -> Option<(Bytes, u64, u64)> {
    if off + HEADER > len {
        return None;
    }
    let mut h = [0u8; HEADER as usize];
    f.read_exact_at(&mut h, off).ok()?;
    if h[0..4] != MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(h[4..8].try_into().ok()?) as u64;
    let batches = u32::from_le_bytes(h[8..12].try_into().ok()?) as u64;
    let sum = u32::from_le_bytes(h[12..16].try_into().ok()?);
    if n > MAX_RECORD || off + HEADER + n > len {
        return None;
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact_at(&mut buf, off + HEADER).ok()?;
    if crc(&buf) != sum || batches == 0 {
        return None;
    }
    Some((Bytes::from(buf), off + HEADER + n, batches))
}

/// The next offset after `from` where a valid record starts, scanning for the magic.
fn resync(f: &File, from: u64, len: u64) -> Option<u64> {
    let mut pos = from;
    let mut chunk = vec![0u8; 64 << 10];
    while pos + HEADER <= len {
        let want = ((len - pos) as usize).min(chunk.len());
        let got = f.read_at(&mut chunk[..want], pos).ok()?;
        if got < MAGIC.len() {
            return None;
        }
        for i in 0..=got - MAGIC.len() {
            if chunk[i..i + 4] == MAGIC && read_at(f, pos + i as u64, len).is_some() {
                return Some(pos + i as u64);
            }
        }
        pos += (got - MAGIC.len() + 1) as u64;
    }
    None
}

/// Reads the next valid record at or after `off`; logs a skipped span.
/// Returns (payload, end offset, batches, bytes skipped before it).
fn next_record(f: &File, off: u64, len: u64) -> Option<(Bytes, u64, u64, u64)> {
    if let Some((p, end, n)) = read_at(f, off, len) {
        return Some((p, end, n, 0));
    }
    if off >= len {
        return None;
    }
    match resync(f, off + 1, len) {
        Some(next) => {
            let (p, end, n) = read_at(f, next, len)?;
            Some((p, end, n, next - off))
        }
        None => None,
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`, scanning every segment: torn or corrupted spans are
    /// logged and skipped, intact records kept.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        fsync: FsyncPolicy,
    ) -> std::io::Result<(Spool, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let next_id = ids.last().copied().unwrap_or(0) + 1;
        let ack = std::fs::read_to_string(dir.join("ack"))
            .ok()
            .and_then(|s| {
                let mut it = s.split_ascii_whitespace();
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
            })
            .unwrap_or((0, 0));
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            fsync,
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(16 << 10, 16 << 20),
            segments: BTreeMap::new(),
            ack: (0, 0),
            tail: None,
            dirty: false,
            next_id: 1,
            pinned: None,
        };
        let mut rec = Recovery::default();
        for id in ids {
            let path = seg_path(dir, id);
            if id < ack.0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let f = File::open(&path)?;
            let len = f.metadata()?.len();
            let mut off = if id == ack.0 { ack.1.min(len) } else { 0 };
            if spool.segments.is_empty() {
                spool.ack = (id, off);
            }
            let mut records = 0;
            while let Some((_, end, n, skipped)) = next_record(&f, off, len) {
                if skipped > 0 {
                    tracing::warn!(file = %path.display(), offset = off, bytes = skipped, "spool: skipped a corrupted span");
                    rec.skipped_spans += 1;
                    rec.skipped_bytes += skipped;
                }
                records += n;
                off = end;
            }
            if off < len {
                tracing::warn!(file = %path.display(), offset = off, bytes = len - off, "spool: skipped a torn or corrupted tail");
                rec.skipped_spans += 1;
                rec.skipped_bytes += len - off;
            }
            if records == 0 {
                let _ = std::fs::remove_file(&path);
                if spool.ack.0 == id {
                    spool.ack = (0, 0);
                }
                continue;
            }
            rec.records += records;
            spool.segments.insert(
                id,
                Segment {
                    bytes: len,
                    records,
                },
            );
        }
        if let Some((&first, _)) = spool.segments.iter().next()
            && spool.ack.0 != first
        {
            spool.ack = (first, 0);
        }
        spool.next_id = next_id.max(spool.ack.0 + 1).max(ack.0 + 1);
        rec.bytes = spool.bytes();
        Ok((spool, rec))
    }

    /// Undelivered batches.
    pub(crate) fn records(&self) -> u64 {
        self.segments.values().map(|s| s.records).sum()
    }

    /// Bytes on disk (what the budget bounds).
    pub(crate) fn bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records() == 0
    }

    /// Deletes the oldest segment; returns (records dropped, whether it was the pinned one).
    fn drop_oldest(&mut self) -> Option<(u64, bool)> {
        let (&id, _) = self.segments.iter().next()?;
        let seg = self.segments.remove(&id).expect("present");
        if self.tail.as_ref().is_some_and(|(t, _)| *t == id) {
            self.tail = None;
        }
        let _ = std::fs::remove_file(seg_path(&self.dir, id));
        let pinned = self.pinned == Some(id);
        if pinned {
            self.pinned = None;
        }
        self.ack = match self.segments.iter().next() {
            Some((&next, _)) => (next, 0),
            None => (id + 1, 0),
        };
        tracing::warn!(
            segment = id,
            records = seg.records,
            "spool full: dropped the oldest segment"
        );
        Some((seg.records, pinned))
    }

    /// Appends one record, first dropping the oldest segments past the budget.
    pub(crate) fn append(&mut self, payload: &[u8], batches: u64) -> Appended {
        let need = HEADER + payload.len() as u64;
        let mut dropped = 0;
        let mut pinned_gone = false;
        if need > self.max_bytes {
            return Appended::default();
        }
        while self.bytes() + need > self.max_bytes {
            match self.drop_oldest() {
                Some((n, p)) => {
                    dropped += n;
                    pinned_gone |= p;
                }
                None => break,
            }
        }
        let stored = match self.write(payload, batches) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "spool write failed");
                false
            }
        };
        Appended {
            dropped,
            pinned_gone,
            stored,
        }
    }

    fn write(&mut self, payload: &[u8], batches: u64) -> std::io::Result<()> {
        let rotate = match &self.tail {
            None => true,
            Some((id, _)) => self
                .segments
                .get(id)
                .is_none_or(|s| s.bytes >= self.segment_bytes),
        };
        if rotate {
            if self.dirty {
                self.sync();
            }
            let id = self.next_id;
            self.next_id += 1;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(seg_path(&self.dir, id))?;
            if self.segments.is_empty() {
                self.ack = (id, 0);
            }
            self.segments.insert(
                id,
                Segment {
                    bytes: f.metadata()?.len(),
                    records: 0,
                },
            );
            self.tail = Some((id, f));
        }
        let (id, f) = self.tail.as_mut().expect("tail open");
        let mut rec = Vec::with_capacity(HEADER as usize + payload.len());
        rec.extend_from_slice(&MAGIC);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&(batches.clamp(1, u32::MAX as u64) as u32).to_le_bytes());
        rec.extend_from_slice(&crc(payload).to_le_bytes());
        rec.extend_from_slice(payload);
        f.write_all(&rec)?;
        let seg = self.segments.get_mut(id).expect("tail segment");
        seg.bytes += rec.len() as u64;
        seg.records += batches.max(1);
        self.dirty = true;
        if self.fsync == FsyncPolicy::Always {
            self.sync();
        }
        Ok(())
    }

    /// Where the next record appended will start, for a cursor over records about to be written.
    pub(crate) fn tail_position(&self) -> Option<(u64, u64)> {
        let (id, _) = self.tail.as_ref()?;
        Some((*id, self.segments.get(id)?.bytes))
    }

    /// fsyncs what was written (policy `batch` calls this once per enqueue).
    pub(crate) fn sync(&mut self) {
        if let Some((_, f)) = &self.tail
            && self.fsync != FsyncPolicy::Never
        {
            let _ = f.sync_data();
        }
        self.dirty = false;
    }

    pub(crate) fn sync_if_batch(&mut self) {
        if self.dirty && self.fsync == FsyncPolicy::Batch {
            self.sync();
        }
    }

    /// Reads undelivered records from the head segment, oldest first, up to `limit` bytes (at least
    /// one). Pins the segment.
    pub(crate) fn peek(&mut self, limit: usize) -> Option<(Vec<Bytes>, Cursor)> {
        let mut batches = 0;
        loop {
            let (&id, seg) = self.segments.iter().next()?;
            if self.ack.0 != id {
                self.ack = (id, 0);
            }
            let path = seg_path(&self.dir, id);
            let mut out = Vec::new();
            let mut size = 0usize;
            let mut off = self.ack.1;
            if seg.records > 0
                && let Ok(f) = File::open(&path)
            {
                let len = seg.bytes;
                while let Some((p, end, n, skipped)) = next_record(&f, off, len) {
                    if skipped > 0 {
                        tracing::warn!(file = %path.display(), offset = off, bytes = skipped, "spool: skipped a corrupted span");
                    }
                    if !out.is_empty() && size + p.len() > limit {
                        break;
                    }
                    size += p.len();
                    out.push(p);
                    batches += n;
                    off = end;
                    if size >= limit || batches >= seg.records {
                        break;
                    }
                }
            }
            if out.is_empty() {
                // Nothing readable left in this segment (corruption since it was scanned, or a
                // fully delivered one): count what it claimed as dropped and move on.
                let lost = seg.records;
                self.remove_segment(id);
                if lost > 0 {
                    tracing::error!(file = %path.display(), records = lost, "spool segment unreadable; its records are lost");
                }
                continue;
            }
            self.pinned = Some(id);
            return Some((
                out,
                Cursor {
                    seg: id,
                    end: off,
                    batches,
                },
            ));
        }
    }

    fn remove_segment(&mut self, id: u64) {
        self.segments.remove(&id);
        if self.tail.as_ref().is_some_and(|(t, _)| *t == id) {
            self.tail = None;
        }
        let _ = std::fs::remove_file(seg_path(&self.dir, id));
        self.ack = match self.segments.iter().next() {
            Some((&next, _)) => (next, 0),
            None => (id + 1, 0),
        };
    }

    /// Marks the records up to `c` delivered and persists the position.
    pub(crate) fn commit(&mut self, c: Cursor) {
        if self.pinned == Some(c.seg) {
            self.pinned = None;
        }
        let Some(seg) = self.segments.get_mut(&c.seg) else {
            return;
        };
        seg.records = seg.records.saturating_sub(c.batches);
        self.ack = (c.seg, c.end);
        if seg.records == 0 && c.end >= seg.bytes {
            self.remove_segment(c.seg);
            if self.segments.is_empty() {
                self.ack = (c.seg + 1, 0);
            }
        }
        self.write_ack();
    }

    pub(crate) fn write_ack(&self) {
        let tmp = self.dir.join("ack.tmp");
        let body = format!("{} {}\n", self.ack.0, self.ack.1);
        let ok = (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            if self.fsync == FsyncPolicy::Always {
                f.sync_data()?;
            }
            std::fs::rename(&tmp, self.dir.join("ack"))
        })();
        if let Err(e) = ok {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot record the spool position");
        }
    }
}

/// What `node-agent check` says about the spool, without changing it: whether the directory is
/// usable, and how much is waiting there.
pub(crate) fn inspect(dir: &Path) -> (bool, String) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                true,
                format!("{}: not created yet (made at start)", dir.display()),
            );
        }
        Err(e) => return (false, format!("{}: {e}", dir.display())),
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(".seg") {
            files += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: access(2) on a NUL-terminated path.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    let detail = format!(
        "{}: {files} segment file(s), {bytes} bytes waiting{}",
        dir.display(),
        if writable { "" } else { "; NOT writable" }
    );
    (writable, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max: u64) -> (Spool, Recovery) {
        Spool::open(dir, max, FsyncPolicy::Never).unwrap()
    }

    fn drain(s: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((recs, c)) = s.peek(1 << 20) {
            out.extend(recs.iter().map(|r| r.to_vec()));
            s.commit(c);
        }
        out
    }

    #[test]
    fn replays_in_order_after_reopen_and_remembers_progress() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = open(d.path(), 1 << 20);
        for i in 0..10u8 {
            s.append(&[i; 100], 1);
        }
        let (recs, c) = s.peek(250).unwrap();
        assert_eq!(recs.len(), 2);
        s.commit(c);
        drop(s);
        let (mut s, rec) = open(d.path(), 1 << 20);
        assert_eq!(rec.records, 8);
        let got = drain(&mut s);
        assert_eq!(got, (2..10u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
        drop(s);
        let (s, rec) = open(d.path(), 1 << 20);
        assert_eq!((rec.records, s.records()), (0, 0));
    }

    #[test]
    fn torn_tail_and_corrupted_middle_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = open(d.path(), 1 << 20);
        for i in 0..5u8 {
            s.append(&[i; 50], 1);
        }
        drop(s);
        let seg = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        // Flip a payload byte of record 1 (66 bytes per record) and tear record 4 in half.
        bytes[66 + 20] ^= 0xff;
        bytes.truncate(66 * 4 + 30);
        std::fs::write(&seg, &bytes).unwrap();
        let (mut s, rec) = open(d.path(), 1 << 20);
        assert_eq!(rec.records, 3);
        assert_eq!(rec.skipped_spans, 2);
        assert_eq!(rec.skipped_bytes, 66 + 30);
        let got = drain(&mut s);
        assert_eq!(got, vec![vec![0u8; 50], vec![2u8; 50], vec![3u8; 50]]);
    }

    #[test]
    fn full_spool_drops_oldest_segments_and_counts_them() {
        let d = tempfile::tempdir().unwrap();
        // 16 KiB segments, 64 KiB budget; 1000-byte records (1016 on disk).
        let (mut s, _) = open(d.path(), 64 << 10);
        let mut dropped = 0;
        for i in 0..200u32 {
            let a = s.append(&[(i % 251) as u8; 1000], 1);
            let (n, ok) = (a.dropped, a.stored);
            assert!(ok);
            dropped += n;
            assert!(s.bytes() <= 64 << 10);
        }
        let left = drain(&mut s);
        assert_eq!(dropped + left.len() as u64, 200);
        // What is left is the newest, in order.
        let first = 200 - left.len() as u32;
        for (k, r) in left.iter().enumerate() {
            assert_eq!(r[0], ((first + k as u32) % 251) as u8);
        }
    }
}
