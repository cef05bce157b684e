//! Valve Source query A2S_INFO (UDP), docs/game-protocols.md#source-a2s_info.
//!
//! The 25-byte request; a server with the Dec-2020 challenge on answers `A` + 4 bytes, and the
//! request is resent with those bytes appended. At most `Limits::challenge_rounds` (2) challenges
//! are honoured; a server that keeps challenging is reported as looping, never followed forever.
//! `players` is one byte and includes bots (what every A2S client shows, so that is what we
//! report); Rust servers carry the real counts past 255 in the `cp<N>`/`mp<N>` keywords, which
//! win when present. Unknown server-type/environment bytes are tolerated. Split (multi-packet)
//! replies are rejected: INFO fits one datagram on every server we know of, and a reassembler is
//! attack surface we do not need.

use super::{ErrorKind, Limits, Status, count, count_str, cstr, short_text};
use std::net::SocketAddr;
use std::time::Instant;

const HEADER: [u8; 4] = [0xff; 4];
const RECV_BUF: usize = 1400 * 2;

/// The request, with the challenge appended when the server asked for one.
pub(crate) fn request(challenge: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(29);
    out.extend_from_slice(&HEADER);
    out.push(0x54);
    out.extend_from_slice(b"Source Engine Query\0");
    if let Some(c) = challenge {
        out.extend_from_slice(&c);
    }
    out
}

/// The fields of S2A_INFO_SRC we use.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct A2sInfo {
    pub(crate) protocol: u8,
    pub(crate) name: String,
    pub(crate) map: String,
    pub(crate) folder: String,
    pub(crate) game: String,
    pub(crate) app_id: u16,
    pub(crate) players: u8,
    pub(crate) max_players: u8,
    pub(crate) bots: u8,
    pub(crate) server_type: u8,
    pub(crate) version: String,
    pub(crate) game_port: Option<u16>,
    pub(crate) keywords: Option<String>,
    pub(crate) game_id: Option<u64>,
}

impl A2sInfo {
    /// The status: Rust's `cp`/`mp` keywords beat the one-byte counts.
    pub(crate) fn status(&self) -> Status {
        let kw = |prefix: &str| {
            self.keywords.as_deref().and_then(|k| {
                k.split(',')
                    .filter_map(|t| t.trim().strip_prefix(prefix))
                    .find_map(count_str)
            })
        };
        Status {
            online: kw("cp").or(count(self.players as i64)),
            max: kw("mp").or(count(self.max_players as i64)),
            version: Some(short_text(&self.version)),
            motd: Some(short_text(&self.name)),
            latency: None,
        }
    }
}

/// A reply to A2S_INFO.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Challenge([u8; 4]),
    Info(Box<A2sInfo>),
}

struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn u8(&mut self) -> Result<u8, ErrorKind> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| ErrorKind::malformed("A2S_INFO truncated"))?;
        self.pos += 1;
        Ok(b)
    }
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ErrorKind> {
        let s = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| ErrorKind::malformed("A2S_INFO truncated"))?;
        self.pos += N;
        Ok(s.try_into().expect("N bytes"))
    }
    fn string(&mut self) -> Result<String, ErrorKind> {
        let s: &'a [u8] = cstr(self.buf, &mut self.pos)
            .ok_or_else(|| ErrorKind::malformed("unterminated string"))?;
        Ok(short_text(&String::from_utf8_lossy(s)))
    }
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

/// Parses one datagram of a reply.
pub(crate) fn parse(buf: &[u8]) -> Result<Reply, ErrorKind> {
    let body = match buf {
        [0xff, 0xff, 0xff, 0xff, rest @ ..] => rest,
        [0xfe, 0xff, 0xff, 0xff, ..] => {
            return Err(ErrorKind::malformed(
                "split A2S_INFO replies are not accepted",
            ));
        }
        _ => return Err(ErrorKind::malformed("no A2S header")),
    };
    match body {
        [0x41, a, b, c, d, ..] => Ok(Reply::Challenge([*a, *b, *c, *d])),
        [0x49, ..] => {
            let mut c = ByteReader { buf: body, pos: 1 };
            let mut i = A2sInfo {
                protocol: c.u8()?,
                name: c.string()?,
                map: c.string()?,
                folder: c.string()?,
                game: c.string()?,
                app_id: u16::from_le_bytes(c.bytes::<2>()?),
                players: c.u8()?,
                max_players: c.u8()?,
                bots: c.u8()?,
                server_type: c.u8()?,
                ..Default::default()
            };
            let _environment = c.u8()?;
            let _visibility = c.u8()?;
            let _vac = c.u8()?;
            if i.app_id == 2400 {
                c.bytes::<3>()?; // The Ship: mode, witnesses, duration
            }
            i.version = c.string()?;
            if !c.done() {
                let edf = c.u8()?;
                if edf & 0x80 != 0 {
                    i.game_port = Some(u16::from_le_bytes(c.bytes::<2>()?));
                }
                if edf & 0x10 != 0 {
                    c.bytes::<8>()?;
                }
                if edf & 0x40 != 0 {
                    c.bytes::<2>()?;
                    c.string()?;
                }
                if edf & 0x20 != 0 {
                    i.keywords = Some(c.string()?);
                }
                if edf & 0x01 != 0 {
                    i.game_id = Some(u64::from_le_bytes(c.bytes::<8>()?));
                }
            }
            Ok(Reply::Info(Box::new(i)))
        }
        [0x6d, ..] => Err(ErrorKind::malformed("obsolete GoldSrc reply")),
        [k, ..] => Err(ErrorKind::malformed(format!("reply type {k:#04x}"))),
        [] => Err(ErrorKind::malformed("empty reply")),
    }
}

/// A2S_INFO with the challenge round-trip (bounded).
pub(crate) async fn probe(addr: SocketAddr, limits: &Limits) -> Result<Status, ErrorKind> {
    let sock = super::udp_connect(addr).await?;
    let mut buf = vec![0u8; RECV_BUF];
    let mut challenge = None;
    for _round in 0..=limits.challenge_rounds {
        let sent = Instant::now();
        let reply = super::udp_exchange(&sock, &request(challenge), limits, &mut buf, |d| {
            match parse(d) {
                Ok(r) => Some(Ok(r)),
                // Garbage from the server we asked is an answer, and a bad one.
                Err(e) => Some(Err(e)),
            }
        })
        .await?;
        match reply {
            Reply::Info(info) => {
                let mut status = info.status();
                status.latency = Some(sent.elapsed());
                return Ok(status);
            }
            Reply::Challenge(c) => challenge = Some(c),
        }
    }
    Err(ErrorKind::ChallengeLoop(limits.challenge_rounds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// The real TF2 capture decoded in docs/game-protocols.md#source-a2s_info.
    const TF2: &str = "ff ff ff ff 49 11 4c 69 6e 75 78 47 53 4d 00 6b 6f 74 68 5f 68 61 72 76 65 73 74 5f 65 76 65 6e 74 00 74 66 00
54 65 61 6d 20 46 6f 72 74 72 65 73 73 00 b8 01 00 20 00 64 6c 00 01 36 38 33 30 38 39 39 00 b1 87 69
07 f8 d1 0b e6 48 40 01 63 70 2c 69 6e 63 72 65 61 73 65 64 5f 6d 61 78 70 6c 61 79 65 72 73 00 b8 01 00 00 00 00 00 00";

    #[test]
    fn parses_the_real_tf2_capture() {
        let Reply::Info(i) = parse(&hex(TF2)).unwrap() else {
            panic!("not info")
        };
        assert_eq!(i.protocol, 17);
        assert_eq!(i.name, "LinuxGSM");
        assert_eq!(i.map, "koth_harvest_event");
        assert_eq!(i.app_id, 440);
        assert_eq!((i.players, i.max_players, i.bots), (0, 32, 0));
        assert_eq!(i.version, "6830899");
        assert_eq!(i.game_port, Some(27015));
        assert_eq!(i.keywords.as_deref(), Some("cp,increased_maxplayers"));
        assert_eq!(i.game_id, Some(440));
        let s = i.status();
        // "cp" without a number is not a Rust count tag.
        assert_eq!((s.online, s.max), (Some(0), Some(32)));
    }

    #[test]
    fn request_and_challenge() {
        assert_eq!(request(None).len(), 25);
        let r = request(Some([0x29, 0xf9, 0xd5, 0x3c]));
        assert_eq!(r.len(), 29);
        assert_eq!(&r[25..], &[0x29, 0xf9, 0xd5, 0x3c]);
        assert_eq!(
            parse(&hex("ff ff ff ff 41 29 f9 d5 3c")).unwrap(),
            Reply::Challenge([0x29, 0xf9, 0xd5, 0x3c])
        );
    }

    #[test]
    fn rust_keywords_beat_the_byte_counts() {
        let mut b = hex("ff ff ff ff 49 11");
        for s in ["Rust", "Procedural Map", "rust", "Rust"] {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        b.extend_from_slice(&[0x1c, 0x03, 200, 44, 0, b'd', b'l', 0, 1]);
        b.extend_from_slice(b"2400\0");
        b.push(0x20);
        b.extend_from_slice(b"mp300,cp260,qp5,v2400\0");
        let Reply::Info(i) = parse(&b).unwrap() else {
            panic!()
        };
        let s = i.status();
        assert_eq!((s.online, s.max), (Some(260), Some(300)));
    }

    #[test]
    fn rejects_truncated_split_and_garbage() {
        let full = hex(TF2);
        for cut in 0..60 {
            assert!(parse(&full[..cut]).is_err(), "cut {cut}");
        }
        assert!(parse(&hex("fe ff ff ff 01 00 00 00 02 00")).is_err());
        assert!(parse(&hex("ff ff ff ff 6d")).is_err());
        assert!(parse(&hex("ff ff ff ff 41 01")).is_err());
    }
}
