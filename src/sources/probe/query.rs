//! Minecraft Query (GameSpy4 over UDP; `enable-query=true`), docs/game-protocols.md#minecraft-query-gamespy4.
//!
//! Handshake → challenge token → full stat, from one connected socket (the server keys tokens by
//! the client's address). The session id is masked with `0x0F0F0F0F` because vanilla mangles
//! bytes ≥ 0x80, and every reply must echo it. Vanilla tells basic from full stat only by the
//! request length (15 bytes = full). Full stat carries the counts and the player names; we count
//! `numplayers` (the names list is checked for shape but not kept). Caps: one 64 KiB receive
//! buffer per probe, ≤ 64 key/value pairs, ≤ 1024 names.

use super::{ErrorKind, Limits, Status, count_str, cstr, short_text};
use std::net::SocketAddr;
use std::time::Instant;

pub(crate) const SESSION_MASK: i32 = 0x0F0F_0F0F;
pub(crate) const MAX_PAIRS: usize = 64;
pub(crate) const MAX_NAMES: usize = 1024;
const RECV_BUF: usize = 64 * 1024;

pub(crate) fn handshake_request(session: i32) -> [u8; 7] {
    let s = session.to_be_bytes();
    [0xfe, 0xfd, 0x09, s[0], s[1], s[2], s[3]]
}

pub(crate) fn full_stat_request(session: i32, token: i32) -> [u8; 15] {
    let mut out = [0u8; 15];
    out[..3].copy_from_slice(&[0xfe, 0xfd, 0x00]);
    out[3..7].copy_from_slice(&session.to_be_bytes());
    out[7..11].copy_from_slice(&token.to_be_bytes());
    out
}

#[cfg(test)]
pub(crate) fn basic_stat_request(session: i32, token: i32) -> [u8; 11] {
    let mut out = [0u8; 11];
    out.copy_from_slice(&full_stat_request(session, token)[..11]);
    out
}

/// Type byte and session id of a reply.
fn header(buf: &[u8], kind: u8) -> Result<(i32, &[u8]), ErrorKind> {
    match buf {
        [k, a, b, c, d, rest @ ..] if *k == kind => {
            Ok((i32::from_be_bytes([*a, *b, *c, *d]), rest))
        }
        [k, ..] => Err(ErrorKind::malformed(format!(
            "reply type {k:#04x}, expected {kind:#04x}"
        ))),
        [] => Err(ErrorKind::malformed("empty datagram")),
    }
}

/// Handshake reply → (session id, challenge token). The token is decimal ASCII; some servers send
/// negative or > 2^31 values, so it is parsed wide and sent as two's-complement i32.
pub(crate) fn parse_handshake(buf: &[u8]) -> Result<(i32, i32), ErrorKind> {
    let (sid, rest) = header(buf, 0x09)?;
    let mut pos = 0;
    let token = cstr(rest, &mut pos).ok_or_else(|| ErrorKind::malformed("unterminated token"))?;
    let token = std::str::from_utf8(token)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .filter(|t| (i32::MIN as i64..=u32::MAX as i64).contains(t))
        .ok_or_else(|| ErrorKind::malformed("token is not an integer"))?;
    Ok((sid, token as i32))
}

/// A full-stat reply: session id and the status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FullStat {
    pub(crate) session: i32,
    pub(crate) status: Status,
    pub(crate) players_listed: usize,
}

/// Parses a full-stat reply.
pub(crate) fn parse_full(buf: &[u8]) -> Result<FullStat, ErrorKind> {
    let (session, rest) = header(buf, 0x00)?;
    let rest = rest
        .strip_prefix(b"splitnum\0")
        .ok_or_else(|| ErrorKind::malformed("no splitnum padding"))?;
    let mut pos = 2; // 0x80 0x00
    if rest.len() < pos {
        return Err(ErrorKind::malformed("short padding"));
    }
    let mut status = Status::default();
    let mut pairs = 0;
    loop {
        let key = cstr(rest, &mut pos).ok_or_else(|| ErrorKind::malformed("unterminated key"))?;
        if key.is_empty() {
            break;
        }
        pairs += 1;
        if pairs > MAX_PAIRS {
            return Err(ErrorKind::malformed("too many key/value pairs"));
        }
        let value =
            cstr(rest, &mut pos).ok_or_else(|| ErrorKind::malformed("unterminated value"))?;
        let v = String::from_utf8_lossy(value);
        match key {
            b"hostname" => status.motd = Some(short_text(&v)),
            b"version" => status.version = Some(short_text(&v)),
            b"numplayers" => status.online = count_str(&v),
            b"maxplayers" => status.max = count_str(&v),
            _ => {}
        }
    }
    // "\x01player_\0\0", then names until an empty one.
    let mut names = 0;
    if let Some(tail) = rest.get(pos..)
        && let Some(list) = tail.strip_prefix(b"\x01player_\0\0")
    {
        let mut p = 0;
        while let Some(name) = cstr(list, &mut p) {
            if name.is_empty() {
                break;
            }
            names += 1;
            if names > MAX_NAMES {
                return Err(ErrorKind::malformed("too many player names"));
            }
        }
    }
    Ok(FullStat {
        session,
        status,
        players_listed: names,
    })
}

/// Parses a basic-stat reply (`motd gametype map numplayers maxplayers hostport(LE) hostip`):
/// the agent asks for the full stat, but servers and the fuzz corpus have both.
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn parse_basic(buf: &[u8]) -> Result<(i32, Status), ErrorKind> {
    let (session, rest) = header(buf, 0x00)?;
    let mut pos = 0;
    let mut field = |what: &'static str| {
        cstr(rest, &mut pos)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .ok_or_else(|| ErrorKind::malformed(format!("basic stat: no {what}")))
    };
    let motd = field("motd")?;
    let _gametype = field("gametype")?;
    let _map = field("map")?;
    let online = field("numplayers")?;
    let max = field("maxplayers")?;
    Ok((
        session,
        Status {
            online: count_str(&online),
            max: count_str(&max),
            motd: Some(short_text(&motd)),
            version: None,
            latency: None,
        },
    ))
}

/// Reference entry point for the tests: a full stat if it parses as one, else a basic stat.
#[cfg(test)]
pub(crate) fn parse(buf: &[u8]) -> Result<Status, ErrorKind> {
    match parse_full(buf) {
        Ok(f) => Ok(f.status),
        Err(_) => parse_basic(buf).map(|(_, s)| s),
    }
}

/// Handshake, then full stat. Latency is the full-stat round trip.
pub(crate) async fn probe(addr: SocketAddr, limits: &Limits) -> Result<Status, ErrorKind> {
    let sock = super::udp_connect(addr).await?;
    let session = fastrand::i32(..) & SESSION_MASK;
    let mut buf = vec![0u8; RECV_BUF];
    let token = super::udp_exchange(&sock, &handshake_request(session), limits, &mut buf, |d| {
        match parse_handshake(d) {
            Ok((sid, token)) if sid == session => Some(Ok(token)),
            _ => None,
        }
    })
    .await?;
    let sent = Instant::now();
    let mut status = super::udp_exchange(
        &sock,
        &full_stat_request(session, token),
        limits,
        &mut buf,
        |d| match parse_full(d) {
            Ok(f) if f.session == session => Some(Ok(f.status)),
            Ok(_) => None,
            Err(e) if d.first() == Some(&0x00) && d.get(1..5) == Some(&session.to_be_bytes()) => {
                Some(Err(e))
            }
            Err(_) => None,
        },
    )
    .await?;
    status.latency = Some(sent.elapsed());
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_match_the_reference_hex() {
        assert_eq!(handshake_request(1), [0xfe, 0xfd, 0x09, 0, 0, 0, 1]);
        let (sid, token) = parse_handshake(&[
            0x09, 0, 0, 0, 1, b'9', b'5', b'1', b'3', b'3', b'0', b'7', 0,
        ])
        .unwrap();
        assert_eq!((sid, token), (1, 9513307));
        assert_eq!(token.to_be_bytes(), [0x00, 0x91, 0x29, 0x5b]);
        assert_eq!(
            basic_stat_request(1, token),
            [0xfe, 0xfd, 0, 0, 0, 0, 1, 0x00, 0x91, 0x29, 0x5b]
        );
        assert_eq!(full_stat_request(1, token).len(), 15);
        assert_eq!(parse_handshake(b"\x09\0\0\0\x01-5\0").unwrap().1, -5);
        assert!(parse_handshake(b"\x09\0\0\0\x01abc\0").is_err());
        assert!(parse_handshake(b"\x09\0\0\0\x0112").is_err());
    }

    fn full_reply(online: &str, names: &[&str]) -> Vec<u8> {
        let mut b = vec![0x00, 0, 0, 0, 1];
        b.extend_from_slice(b"splitnum\0\x80\0");
        for (k, v) in [
            ("hostname", "A Minecraft Server"),
            ("gametype", "SMP"),
            ("game_id", "MINECRAFT"),
            ("version", "1.20.4"),
            ("plugins", ""),
            ("map", "world"),
            ("numplayers", online),
            ("maxplayers", "20"),
            ("hostport", "25565"),
            ("hostip", "127.0.0.1"),
        ] {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b.extend_from_slice(b"\x01player_\0\0");
        for n in names {
            b.extend_from_slice(n.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn parses_full_stat() {
        let f = parse_full(&full_reply("2", &["alice", "bob"])).unwrap();
        assert_eq!(f.session, 1);
        assert_eq!((f.status.online, f.status.max), (Some(2), Some(20)));
        assert_eq!(f.status.version.as_deref(), Some("1.20.4"));
        assert_eq!(f.players_listed, 2);
    }

    #[test]
    fn parses_the_reference_basic_stat() {
        let mut b = vec![0x00, 0, 0, 0, 1];
        b.extend_from_slice(b"A Minecraft Server\0SMP\0world\x002\x0020\0\xdd\x63127.0.0.1\0");
        let (sid, s) = parse_basic(&b).unwrap();
        assert_eq!(sid, 1);
        assert_eq!((s.online, s.max), (Some(2), Some(20)));
        assert_eq!(parse(&b).unwrap().online, Some(2));
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let full = full_reply("2", &["a"]);
        for cut in 0..30 {
            assert!(parse_full(&full[..cut]).is_err(), "cut {cut}");
        }
        assert!(parse(&[0x00]).is_err());
        assert!(parse(b"\x09\0\0\0\x01").is_err());
        // Non-numeric counts are invalid, not zero.
        assert_eq!(
            parse_full(&full_reply("lots", &[])).unwrap().status.online,
            None
        );
    }
}
