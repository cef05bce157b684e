//! Docker's log stream, decoded into lines.
//!
//! `GET /containers/{id}/logs?timestamps=1` writes one message per entry of the container's log:
//! a timestamp, a space, and the text the daemon's copier read, which is either a whole line with
//! its `\n` or a *piece*: the copier reads at most 16 KiB before it logs what it has, so longer
//! lines arrive as several messages sharing the first piece's timestamp; the `local` driver ends
//! the last piece without `\n`, json-file with one; a last line without a newline (or text held
//! when the container stopped) is a piece too. Without a TTY the response is the multiplexed
//! format (an 8-byte header per message: stream and length), so each piece's end is known
//! ([`MuxDecoder`]). With a TTY it is raw bytes, all on stdout ([`RawDecoder`]): a piece ends at
//! the next message's timestamp, recognised by Docker's own fixed format and by not being older
//! than the message it ends (text a program prints itself is older than the time the daemon read
//! it). docs/logs.md has the observed shapes.
//!
//! [`Lines`] joins pieces back into lines, so a multi-byte character cut at a 16 KiB boundary is
//! whole again, strips the line ending (`\n`, and the `\r` a TTY adds), bounds every line
//! (`max_line`; past it the rest is counted and left out, never splitting a character) and charges
//! what it holds to the shared [`Memory`]. A piece shorter than 16 KiB without a newline ends its
//! line; a full one may continue, so its line stays open until the next message of that stream
//! (same timestamp: continued; another: ended) or until the container has stopped. The decoders
//! never panic on any input and give the same lines however the bytes are split into reads (the
//! fuzz targets check both).

use super::budget::{Charge, Memory};
use super::timestamp::{MAX_PREFIX, Prefix, parse_prefix};
use memchr::memmem::Finder;
use std::sync::Arc;

/// The daemon copier's buffer: a piece this long may be continued by the next message.
pub(crate) const PIECE: usize = 16 * 1024;
/// An in-band error message from the daemon (stream 3) is kept up to this many bytes.
const MAX_DAEMON_MSG: usize = 4096;

/// Which of the container's output streams a line came from (`log.iostream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One finished line.
#[derive(Debug)]
pub(crate) struct Line {
    pub stream: Stream,
    /// Docker's timestamp of the line's first piece, Unix nanoseconds.
    pub ts: u64,
    /// Without its line ending; at most `max_line` bytes, possibly invalid UTF-8.
    pub body: Vec<u8>,
    /// Bytes left out past the bound (0: the line is whole).
    pub cut: u64,
    pub charge: Charge,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum DecodeError {
    #[error("malformed stream header {0:02x?}")]
    Frame([u8; 8]),
    #[error("error from the daemon in the stream: {0}")]
    Daemon(String),
}

/// How many bytes at the end of `b` are an incomplete UTF-8 sequence (0 to 3).
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(4) {
        let c = b[b.len() - back];
        if c & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let need = match c {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back < need { back } else { 0 };
    }
    0
}

/// Joins the pieces of one stream into bounded lines.
#[derive(Debug)]
pub(crate) struct Lines {
    stream: Stream,
    max_line: usize,
    mem: Arc<Memory>,
    buf: Vec<u8>,
    charged: usize,
    cut: u64,
    line_ts: u64,
    has_line: bool,
    /// The open line's last piece was full: the next message may continue it.
    pending: bool,
    msg_ts: u64,
    /// Content bytes since the message began or since its last newline.
    piece: usize,
}

impl Drop for Lines {
    fn drop(&mut self) {
        if self.charged > 0 {
            self.mem.release(self.charged);
        }
    }
}

impl Lines {
    pub(crate) fn new(stream: Stream, max_line: usize, mem: Arc<Memory>) -> Lines {
        Lines {
            stream,
            max_line,
            mem,
            buf: Vec::new(),
            charged: 0,
            cut: 0,
            line_ts: 0,
            has_line: false,
            pending: false,
            msg_ts: 0,
            piece: 0,
        }
    }

    /// A line is being assembled (it will be emitted later).
    pub(crate) fn is_open(&self) -> bool {
        self.has_line
    }

    /// A message with Docker's time `ts` begins.
    fn begin(&mut self, ts: u64, out: &mut Vec<Line>) {
        if self.has_line && !(self.pending && ts == self.line_ts) {
            self.emit(out);
        }
        self.pending = false;
        self.msg_ts = ts;
        self.piece = 0;
    }

    fn append(&mut self, b: &[u8]) {
        if !self.has_line {
            self.has_line = true;
            self.line_ts = self.msg_ts;
        }
        if self.cut > 0 {
            self.cut += b.len() as u64; // once cut, never a hole in the middle
            return;
        }
        let room = (self.max_line - self.buf.len()).min(b.len());
        let take = if room > 0 {
            self.mem.charge_upto(room)
        } else {
            0
        };
        self.buf.extend_from_slice(&b[..take]);
        self.charged += take;
        self.cut += (b.len() - take) as u64;
    }

    /// Message text (any bytes; `\n` ends a line).
    fn content(&mut self, mut b: &[u8], out: &mut Vec<Line>) {
        while let Some(i) = memchr::memchr(b'\n', b) {
            self.append(&b[..i]);
            self.emit(out);
            self.piece = 0;
            b = &b[i + 1..];
        }
        if !b.is_empty() {
            self.append(b);
            self.piece += b.len();
        }
    }

    /// The message ended.
    fn end(&mut self, out: &mut Vec<Line>) {
        if self.has_line {
            if self.piece >= PIECE {
                self.pending = true;
            } else {
                self.emit(out);
            }
        }
    }

    /// The stream is over for good (the container stopped and everything was read).
    fn finish(&mut self, out: &mut Vec<Line>) {
        if self.has_line {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut Vec<Line>) {
        let mut body = std::mem::take(&mut self.buf);
        let mut cut = std::mem::take(&mut self.cut);
        if cut > 0 {
            let k = incomplete_tail(&body);
            body.truncate(body.len() - k);
            cut += k as u64;
        } else {
            while body.last() == Some(&b'\r') {
                body.pop();
            }
        }
        out.push(Line {
            stream: self.stream,
            ts: self.line_ts,
            body,
            cut,
            charge: Charge::new(&self.mem, std::mem::take(&mut self.charged)),
        });
        self.has_line = false;
        self.pending = false;
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Out(Stream),
    Daemon,
}

/// The multiplexed stream of a container without a TTY: `[stream, 0, 0, 0, len(be32)]` + payload.
#[derive(Debug)]
pub(crate) struct MuxDecoder {
    out: Lines,
    err: Lines,
    hdr: [u8; 8],
    hdr_len: usize,
    remaining: usize,
    kind: Kind,
    prefix: [u8; MAX_PREFIX],
    prefix_len: usize,
    in_prefix: bool,
    daemon_msg: Vec<u8>,
    last_ts: u64,
    max_ts: u64,
    errors: u64,
}

impl MuxDecoder {
    pub(crate) fn new(max_line: usize, mem: Arc<Memory>) -> MuxDecoder {
        MuxDecoder {
            out: Lines::new(Stream::Stdout, max_line, mem.clone()),
            err: Lines::new(Stream::Stderr, max_line, mem),
            hdr: [0; 8],
            hdr_len: 0,
            remaining: 0,
            kind: Kind::Out(Stream::Stdout),
            prefix: [0; MAX_PREFIX],
            prefix_len: 0,
            in_prefix: false,
            daemon_msg: Vec::new(),
            last_ts: 0,
            max_ts: 0,
            errors: 0,
        }
    }

    fn lines(&mut self, s: Stream) -> &mut Lines {
        match s {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        }
    }

    pub(crate) fn feed(&mut self, mut d: &[u8], out: &mut Vec<Line>) -> Result<(), DecodeError> {
        while !d.is_empty() {
            if self.remaining == 0 {
                let take = (8 - self.hdr_len).min(d.len());
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&d[..take]);
                self.hdr_len += take;
                d = &d[take..];
                if self.hdr_len < 8 {
                    return Ok(());
                }
                self.hdr_len = 0;
                let h = self.hdr;
                if h[1..4] != [0, 0, 0] {
                    return Err(DecodeError::Frame(h));
                }
                self.kind = match h[0] {
                    0 | 1 => Kind::Out(Stream::Stdout),
                    2 => Kind::Out(Stream::Stderr),
                    3 => Kind::Daemon,
                    _ => return Err(DecodeError::Frame(h)),
                };
                self.remaining = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                self.in_prefix = true;
                self.prefix_len = 0;
                self.daemon_msg.clear();
                continue;
            }
            let take = self.remaining.min(d.len());
            let (chunk, rest) = d.split_at(take);
            d = rest;
            self.remaining -= take;
            self.payload(chunk, out);
            if self.remaining == 0 {
                self.frame_end(out)?;
            }
        }
        Ok(())
    }

    fn payload(&mut self, mut c: &[u8], out: &mut Vec<Line>) {
        let s = match self.kind {
            Kind::Daemon => {
                let take =
                    (MAX_DAEMON_MSG - self.daemon_msg.len().min(MAX_DAEMON_MSG)).min(c.len());
                self.daemon_msg.extend_from_slice(&c[..take]);
                return;
            }
            Kind::Out(s) => s,
        };
        if self.in_prefix {
            let want = memchr::memchr(b' ', c).map_or(c.len(), |i| i + 1);
            let n = want.min(MAX_PREFIX - self.prefix_len);
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&c[..n]);
            self.prefix_len += n;
            c = &c[n..];
            if self.prefix[self.prefix_len - 1] != b' ' && self.prefix_len < MAX_PREFIX {
                return; // the prefix continues in the next read
            }
            self.decide_prefix(s, out);
        }
        if !c.is_empty() {
            self.lines(s).content(c, out);
        }
    }

    fn decide_prefix(&mut self, s: Stream, out: &mut Vec<Line>) {
        self.in_prefix = false;
        let p = self.prefix;
        let p = &p[..self.prefix_len];
        match parse_prefix(p, false) {
            Prefix::Time(ts, _) => {
                self.last_ts = ts;
                self.max_ts = self.max_ts.max(ts);
                self.lines(s).begin(ts, out);
            }
            _ => {
                // Not a timestamp: keep the text, on the stream's last time.
                self.errors += 1;
                let ts = self.last_ts;
                let l = self.lines(s);
                l.begin(ts, out);
                l.content(p, out);
            }
        }
    }

    fn frame_end(&mut self, out: &mut Vec<Line>) -> Result<(), DecodeError> {
        match self.kind {
            Kind::Daemon => Err(DecodeError::Daemon(
                String::from_utf8_lossy(&self.daemon_msg).trim().to_string(),
            )),
            Kind::Out(s) => {
                if self.in_prefix {
                    self.decide_prefix(s, out);
                }
                self.lines(s).end(out);
                Ok(())
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.hdr_len == 0
    }
}

/// The raw stream of a container with a TTY: messages back to back, all stdout.
#[derive(Debug)]
pub(crate) struct RawDecoder {
    lines: Lines,
    hold: Vec<u8>,
    in_prefix: bool,
    /// `YYYY-` of the current message's year and the next one: where a boundary may start.
    needles: Option<([u8; 4], Finder<'static>, Finder<'static>)>,
    last_ts: u64,
    max_ts: u64,
    errors: u64,
}

enum Boundary {
    At(usize),
    Undecided(usize),
    None,
}

impl RawDecoder {
    pub(crate) fn new(max_line: usize, mem: Arc<Memory>) -> RawDecoder {
        RawDecoder {
            lines: Lines::new(Stream::Stdout, max_line, mem),
            hold: Vec::new(),
            in_prefix: true,
            needles: None,
            last_ts: 0,
            max_ts: 0,
            errors: 0,
        }
    }

    fn set_year(&mut self, year: &[u8]) {
        let y: [u8; 4] = match year.try_into() {
            Ok(y) => y,
            Err(_) => return,
        };
        if self.needles.as_ref().is_some_and(|n| n.0 == y) {
            return;
        }
        let this = format!("{}-", String::from_utf8_lossy(&y));
        let next = std::str::from_utf8(&y)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .map_or_else(|| this.clone(), |n| format!("{:04}-", n + 1));
        self.needles = Some((
            y,
            Finder::new(this.as_bytes()).into_owned(),
            Finder::new(next.as_bytes()).into_owned(),
        ));
    }

    /// The first place in `region` (text before the next newline) where a newer message starts.
    fn boundary(&self, region: &[u8], rest: &[u8]) -> Boundary {
        let Some((_, a, b)) = &self.needles else {
            return Boundary::None;
        };
        let mut from = 0;
        while from < region.len() {
            let hay = &region[from..];
            let j = match (a.find(hay), b.find(hay)) {
                (Some(x), Some(y)) => x.min(y),
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => return Boundary::None,
            } + from;
            match parse_prefix(&rest[j..], true) {
                Prefix::Time(ts, _) if ts >= self.lines.msg_ts => return Boundary::At(j),
                Prefix::NeedMore => return Boundary::Undecided(j),
                _ => from = j + 1,
            }
        }
        Boundary::None
    }

    /// How many bytes at the end of `region` could be the start of a needle.
    fn needle_tail(&self, region: &[u8]) -> usize {
        let Some((_, a, b)) = &self.needles else {
            return 0;
        };
        for k in (1..=region.len().min(4)).rev() {
            let tail = &region[region.len() - k..];
            if a.needle().starts_with(tail) || b.needle().starts_with(tail) {
                return k;
            }
        }
        0
    }

    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<Line>) {
        let joined;
        let input: &[u8] = if self.hold.is_empty() {
            data
        } else {
            let mut v = std::mem::take(&mut self.hold);
            v.extend_from_slice(data);
            joined = v;
            &joined
        };
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            if self.in_prefix {
                match parse_prefix(rest, false) {
                    Prefix::Time(ts, n) => {
                        self.set_year(&rest[..4]);
                        self.last_ts = ts;
                        self.max_ts = self.max_ts.max(ts);
                        self.lines.begin(ts, out);
                        i += n;
                    }
                    Prefix::NeedMore => {
                        self.hold.extend_from_slice(rest);
                        return;
                    }
                    Prefix::Invalid => {
                        self.errors += 1;
                        self.lines.begin(self.last_ts, out);
                    }
                }
                self.in_prefix = false;
                continue;
            }
            let nl = memchr::memchr(b'\n', rest);
            let region = &rest[..nl.unwrap_or(rest.len())];
            match self.boundary(region, rest) {
                Boundary::At(j) => {
                    self.lines.content(&rest[..j], out);
                    self.lines.end(out);
                    self.in_prefix = true;
                    i += j;
                }
                Boundary::Undecided(j) => {
                    self.lines.content(&rest[..j], out);
                    self.hold.extend_from_slice(&rest[j..]);
                    return;
                }
                Boundary::None => match nl {
                    Some(k) => {
                        self.lines.content(&rest[..=k], out);
                        self.lines.end(out);
                        self.in_prefix = true;
                        i += k + 1;
                    }
                    None => {
                        let keep = self.needle_tail(region);
                        self.lines.content(&rest[..rest.len() - keep], out);
                        self.hold.extend_from_slice(&rest[rest.len() - keep..]);
                        return;
                    }
                },
            }
        }
    }

    /// Nothing more arrived for a while: a piece shorter than 16 KiB without a newline is the
    /// end of its line (Docker writes each message whole, so its rest is not on the way).
    pub(crate) fn idle(&mut self, out: &mut Vec<Line>) {
        if self.in_prefix {
            return;
        }
        let held = std::mem::take(&mut self.hold);
        self.lines.content(&held, out);
        if self.lines.piece < PIECE {
            self.lines.end(out);
            self.in_prefix = true;
        }
    }

    fn finish(&mut self, out: &mut Vec<Line>) {
        let held = std::mem::take(&mut self.hold);
        if self.in_prefix && !held.is_empty() {
            self.errors += 1;
            self.lines.begin(self.last_ts, out);
        }
        self.lines.content(&held, out);
        self.lines.end(out);
        self.lines.finish(out);
        self.in_prefix = true;
    }
}

/// Either decoder, chosen by the container's `Config.Tty` (one per pass, so its size is moot).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoder {
    Mux(MuxDecoder),
    Raw(RawDecoder),
}

impl Decoder {
    pub(crate) fn new(tty: bool, max_line: usize, mem: Arc<Memory>) -> Decoder {
        if tty {
            Decoder::Raw(RawDecoder::new(max_line, mem))
        } else {
            Decoder::Mux(MuxDecoder::new(max_line, mem))
        }
    }

    pub(crate) fn feed(&mut self, d: &[u8], out: &mut Vec<Line>) -> Result<(), DecodeError> {
        match self {
            Decoder::Mux(m) => m.feed(d, out),
            Decoder::Raw(r) => {
                r.feed(d, out);
                Ok(())
            }
        }
    }

    pub(crate) fn idle(&mut self, out: &mut Vec<Line>) {
        if let Decoder::Raw(r) = self {
            r.idle(out);
        }
    }

    /// The container stopped and its log was read to the end: open lines are complete. `false`
    /// when the stream ended inside a frame (then nothing is emitted: it will be read again).
    pub(crate) fn finish(&mut self, out: &mut Vec<Line>) -> bool {
        match self {
            Decoder::Mux(m) => {
                if !m.at_boundary() {
                    return false;
                }
                m.out.finish(out);
                m.err.finish(out);
                true
            }
            Decoder::Raw(r) => {
                r.finish(out);
                true
            }
        }
    }

    /// Whether stream `s` has a line being assembled.
    pub(crate) fn is_open(&self, s: Stream) -> bool {
        match (self, s) {
            (Decoder::Mux(m), Stream::Stdout) => m.out.is_open(),
            (Decoder::Mux(m), Stream::Stderr) => m.err.is_open(),
            (Decoder::Raw(r), Stream::Stdout) => r.lines.is_open() || !r.in_prefix,
            (Decoder::Raw(_), Stream::Stderr) => false,
        }
    }

    /// Whether a message is half-read (a stall here is an error, not a quiet container).
    pub(crate) fn mid_message(&self) -> bool {
        match self {
            Decoder::Mux(m) => !m.at_boundary(),
            Decoder::Raw(r) => !r.hold.is_empty() && r.in_prefix,
        }
    }

    /// The newest message time seen.
    pub(crate) fn max_ts(&self) -> u64 {
        match self {
            Decoder::Mux(m) => m.max_ts,
            Decoder::Raw(r) => r.max_ts,
        }
    }

    /// Prefixes that were not timestamps (the text was kept).
    pub(crate) fn errors(&self) -> u64 {
        match self {
            Decoder::Mux(m) => m.errors,
            Decoder::Raw(r) => r.errors,
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
