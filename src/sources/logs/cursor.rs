//! Where each container's log was read up to, kept on disk so a restart resumes exactly there.
//!
//! The daemon's `since` is an inclusive filter at nanosecond resolution, and several lines can
//! share one timestamp (every piece of a long line has its first piece's time, and two lines may
//! be stamped alike), so a time alone cannot say where to resume. A [`StreamPos`] is the time of
//! the last line taken from one stream and how many lines with exactly that time were taken;
//! within one stream Docker's times never go down, so on a re-read every line older than the
//! position, and the first `n` at its time, are the ones already taken. The two streams keep
//! separate positions because Docker stamps stdout and stderr in separate goroutines (and a long
//! stdout line keeps its first piece's time while stderr lines are logged between its pieces), so
//! their times interleave out of order; the request asks from the older of the two.
//!
//! A stream that has been quiet is moved up to five seconds behind the newest time seen on the
//! other one ([`RAISE_MARGIN`]), so one stderr line at boot does not make every resume re-read
//! the whole log. Files are `<state_dir>/logs/<container id>.json`, written atomically (temporary
//! file, fsync, rename, directory fsync) by one thread off the async workers, batched: a busy
//! container is written at most once per sink acknowledgement, never per line. A file goes away
//! only when Docker destroys the container.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::decode::Stream;

/// How far behind the newest time seen a quiet stream's position is moved up: the daemon stamps
/// a line before it writes it, and the two streams' writers may pass each other by that much.
pub(crate) const RAISE_MARGIN: u64 = 5_000_000_000;

/// One stream's position: the Docker time of the last line taken and how many lines with exactly
/// that time were taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamPos {
    pub ts: u64,
    pub n: u64,
}

/// A container's position in its log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub stdout: StreamPos,
    pub stderr: StreamPos,
    /// `State.FinishedAt` of the stop through which the whole log was read: a stopped container
    /// still showing this needs no reading after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<String>,
}

impl Position {
    fn get_mut(&mut self, s: Stream) -> &mut StreamPos {
        match s {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// A line of stream `s` stamped `ts` was taken.
    pub(crate) fn advance(&mut self, s: Stream, ts: u64) {
        let p = self.get_mut(s);
        if ts > p.ts {
            *p = StreamPos { ts, n: 1 };
        } else if ts == p.ts {
            p.n += 1;
        }
        // Older than the position: the daemon's clock stepped back. The position stays (see
        // docs/logs.md: lines around such a step may be read twice after a restart).
        self.drained = None;
    }

    /// Stream `s` is known to have nothing older than `floor` still to come.
    pub(crate) fn raise(&mut self, s: Stream, floor: u64) {
        let p = self.get_mut(s);
        if floor > p.ts {
            *p = StreamPos { ts: floor, n: 0 };
        }
    }

    /// The `since` to ask from: the older of the streams in use (0: from the beginning).
    pub(crate) fn since(&self, tty: bool) -> u64 {
        if tty {
            self.stdout.ts
        } else {
            self.stdout.ts.min(self.stderr.ts)
        }
    }

    /// Keeps whichever is further along, stream by stream (a position recovered from the sink
    /// may be ahead of the file).
    pub fn merge(&mut self, other: &Position) {
        let ahead = other.stdout >= self.stdout && other.stderr >= self.stderr;
        self.stdout = self.stdout.max(other.stdout);
        self.stderr = self.stderr.max(other.stderr);
        if ahead {
            self.drained = other.drained.clone();
        }
    }
}

/// Which lines of a re-read were already taken: per stream, everything older than the position
/// and the first `n` at its time; after the first line that is new, nothing more is skipped.
#[derive(Debug)]
pub(crate) struct Skip {
    pos: [StreamPos; 2],
    seen: [u64; 2],
    active: [bool; 2],
}

impl Skip {
    pub(crate) fn new(p: &Position) -> Skip {
        Skip {
            pos: [p.stdout, p.stderr],
            seen: [0, 0],
            active: [
                p.stdout != StreamPos::default(),
                p.stderr != StreamPos::default(),
            ],
        }
    }

    pub(crate) fn skip(&mut self, s: Stream, ts: u64) -> bool {
        let i = s as usize;
        if !self.active[i] {
            return false;
        }
        let p = self.pos[i];
        if ts < p.ts {
            return true;
        }
        if ts == p.ts && self.seen[i] < p.n {
            self.seen[i] += 1;
            return true;
        }
        self.active[i] = false;
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("log cursors {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CursorError + '_ {
    move |source| CursorError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A container ID as Docker writes it (hex); anything else never becomes a file name.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Serialize, Deserialize)]
struct File {
    v: u32,
    id: String,
    #[serde(flatten)]
    pos: Position,
}

/// The cursors of `dir` as they are, without creating or repairing anything (for `check`).
pub(crate) fn peek(dir: &Path) -> std::io::Result<HashMap<String, Position>> {
    let mut out = HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) else {
            continue;
        };
        if let Ok(f) = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<File>(&b).map_err(|e| e.to_string()))
            && f.v == 1
            && f.id == id
        {
            out.insert(id.to_string(), f.pos);
        }
    }
    Ok(out)
}

/// The cursor files of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct CursorDir {
    dir: PathBuf,
}

impl CursorDir {
    /// Creates the directory (0700) and reads every cursor in it; leftover temporary files from
    /// a write cut short are removed, unreadable cursors are logged and set aside as `.bad`.
    pub(crate) fn open(dir: &Path) -> Result<(CursorDir, HashMap<String, Position>), CursorError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let mut out = HashMap::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let path = e.map_err(io_err(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) else {
                continue;
            };
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<File>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(f) if f.v == 1 && f.id == id => {
                    out.insert(id.to_string(), f.pos);
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "log cursor for another container or version: ignored")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable log cursor set aside: this container's log is read again");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        Ok((
            CursorDir {
                dir: dir.to_path_buf(),
            },
            out,
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes (or, for `None`, removes) each cursor, then makes the directory entries durable.
    pub(crate) fn write(&self, updates: &[(String, Option<Position>)]) -> Result<(), CursorError> {
        for (id, pos) in updates {
            if !valid_id(id) {
                continue;
            }
            let path = self.dir.join(format!("{id}.json"));
            match pos {
                Some(pos) => {
                    let tmp = self.dir.join(format!("{id}.json.tmp"));
                    let body = serde_json::to_vec(&File {
                        v: 1,
                        id: id.clone(),
                        pos: pos.clone(),
                    })
                    .unwrap_or_default();
                    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
                    f.write_all(&body).map_err(io_err(&tmp))?;
                    f.sync_all().map_err(io_err(&tmp))?;
                    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
                }
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                },
            }
        }
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
}

#[derive(Default)]
struct Pending {
    dirty: HashMap<String, Option<Position>>,
    /// Rounds asked for and rounds done: `flush` waits until they meet.
    asked: u64,
    done: u64,
    stop: bool,
    /// The last write's failure, until a write succeeds.
    error: Option<String>,
}

/// The one thread that writes cursor files: callers hand it updates and never wait on the disk;
/// updates that arrive while it writes are coalesced into the next round.
pub(crate) struct CursorWriter {
    shared: Arc<(parking_lot::Mutex<Pending>, parking_lot::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CursorWriter {
    pub(crate) fn start(dir: CursorDir) -> CursorWriter {
        let shared = Arc::new((
            parking_lot::Mutex::new(Pending::default()),
            parking_lot::Condvar::new(),
        ));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-cursors".into())
            .spawn(move || {
                let mut last_error: Option<String> = None;
                loop {
                    let (batch, round) = {
                        let mut p = s.0.lock();
                        while p.dirty.is_empty() && p.asked == p.done && !p.stop {
                            s.1.wait(&mut p);
                        }
                        if p.stop && p.dirty.is_empty() {
                            return;
                        }
                        (std::mem::take(&mut p.dirty), p.asked)
                    };
                    let batch: Vec<_> = batch.into_iter().collect();
                    let written = dir.write(&batch);
                    s.0.lock().error = written.as_ref().err().map(|e| e.to_string());
                    match written {
                        Ok(()) => {
                            if last_error.take().is_some() {
                                tracing::info!(dir = %dir.path().display(), "log cursors are written again");
                            }
                        }
                        Err(e) => {
                            let text = e.to_string();
                            if last_error.as_deref() != Some(&text) {
                                tracing::error!(error = %text, "cannot write log cursors: a restart would read those lines again");
                            }
                            last_error = Some(text);
                            // Keep them for the next round unless newer ones came in.
                            let mut p = s.0.lock();
                            for (id, pos) in batch {
                                p.dirty.entry(id).or_insert(pos);
                            }
                            drop(p);
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                    let mut p = s.0.lock();
                    p.done = p.done.max(round);
                    s.1.notify_all();
                }
            })
            .ok();
        CursorWriter { shared, thread }
    }

    pub(crate) fn submit(&self, updates: impl IntoIterator<Item = (String, Option<Position>)>) {
        let mut p = self.shared.0.lock();
        p.dirty.extend(updates);
        p.asked += 1;
        self.shared.1.notify_all();
    }

    /// The last write's failure, while writes fail.
    pub(crate) fn error(&self) -> Option<String> {
        self.shared.0.lock().error.clone()
    }

    /// Waits until everything submitted so far is on disk (or `timeout`); `true` when it is.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut p = self.shared.0.lock();
        let want = p.asked;
        while p.done < want || !p.dirty.is_empty() {
            if self.shared.1.wait_until(&mut p, deadline).timed_out() {
                return false;
            }
        }
        true
    }
}

impl Drop for CursorWriter {
    fn drop(&mut self) {
        self.shared.0.lock().stop = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(ts: u64, n: u64) -> StreamPos {
        StreamPos { ts, n }
    }

    #[test]
    fn positions_advance_raise_and_merge() {
        let mut p = Position::default();
        p.advance(Stream::Stdout, 10);
        p.advance(Stream::Stdout, 10);
        p.advance(Stream::Stdout, 9);
        assert_eq!(p.stdout, sp(10, 2));
        p.raise(Stream::Stderr, 7);
        assert_eq!(p.since(false), 7);
        assert_eq!(p.since(true), 10);
        p.raise(Stream::Stdout, 10);
        assert_eq!(p.stdout, sp(10, 2));
        let mut q = Position::default();
        q.advance(Stream::Stdout, 11);
        q.drained = Some("x".into());
        let mut m = p.clone();
        m.merge(&q);
        assert_eq!(
            (m.stdout, m.stderr, m.drained.clone()),
            (sp(11, 1), sp(7, 0), None)
        );
        q.stderr = sp(8, 0);
        m.merge(&q);
        assert_eq!(m.drained.as_deref(), Some("x"));
    }

    #[test]
    fn skip_takes_the_already_taken_prefix_only() {
        let p = Position {
            stdout: sp(10, 2),
            ..Default::default()
        };
        let mut s = Skip::new(&p);
        assert!(s.skip(Stream::Stdout, 5));
        assert!(s.skip(Stream::Stdout, 10));
        assert!(s.skip(Stream::Stdout, 10));
        assert!(!s.skip(Stream::Stdout, 10)); // the third at 10 is new
        assert!(!s.skip(Stream::Stdout, 3)); // after a new line nothing is skipped
        assert!(!s.skip(Stream::Stderr, 1)); // no position: nothing to skip
    }

    #[test]
    fn files_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("logs");
        let (cd, all) = CursorDir::open(&d).unwrap();
        assert!(all.is_empty());
        let id = "ab".repeat(32);
        let mut p = Position::default();
        p.advance(Stream::Stderr, 42);
        cd.write(&[
            (id.clone(), Some(p.clone())),
            ("../evil".into(), Some(p.clone())),
        ])
        .unwrap();
        std::fs::write(d.join(format!("{}.json.tmp", "cd".repeat(32))), b"torn").unwrap();
        std::fs::write(d.join(format!("{}.json", "ef".repeat(32))), b"{garbage").unwrap();
        let (_, all) = CursorDir::open(&d).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[&id], p);
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with(".bad")), "{names:?}");
        cd.write(&[(id.clone(), None)]).unwrap();
        assert!(CursorDir::open(&d).unwrap().1.is_empty());
    }

    #[test]
    fn writer_coalesces_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let (cd, _) = CursorDir::open(dir.path()).unwrap();
        let w = CursorWriter::start(cd);
        let id = "01".repeat(32);
        for ts in 1..=100 {
            let mut p = Position::default();
            p.advance(Stream::Stdout, ts);
            w.submit([(id.clone(), Some(p))]);
        }
        assert!(w.flush(Duration::from_secs(10)));
        let (_, all) = CursorDir::open(dir.path()).unwrap();
        assert_eq!(all[&id].stdout, sp(100, 1));
    }
}
