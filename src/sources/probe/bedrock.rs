//! Minecraft Bedrock: RakNet unconnected ping (UDP), docs/game-protocols.md#minecraft-bedrock-raknet-unconnected-ping.
//!
//! One 33-byte `0x01` ping; the `0x1C` pong carries a `;`-separated server-id string. Fields 0–5
//! (edition, MOTD, protocol, version, online, max) are required, everything after is optional
//! and differs between implementations. PocketMine escapes `;` in the MOTD as `\;`. A pong is
//! accepted only if its magic is right, its string length equals the bytes that remain, and it
//! echoes our ping time (used as a nonce). Latency is measured on our own monotonic clock, not
//! from the echoed time.

use super::{ErrorKind, Limits, Status, count_str, short_text};
use std::net::SocketAddr;
use std::time::Instant;

pub const MAGIC: [u8; 16] = [
    0x00, 0xff, 0xff, 0x00, 0xfe, 0xfe, 0xfe, 0xfe, 0xfd, 0xfd, 0xfd, 0xfd, 0x12, 0x34, 0x56, 0x78,
];
/// Largest pong we read (the string length is a u16, so 35 + 65535 bytes).
const RECV_BUF: usize = 35 + 65535;

pub(crate) fn ping_request(time: i64, guid: i64) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = 0x01;
    out[1..9].copy_from_slice(&time.to_be_bytes());
    out[9..25].copy_from_slice(&MAGIC);
    out[25..33].copy_from_slice(&guid.to_be_bytes());
    out
}

/// A parsed pong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pong {
    pub(crate) time: i64,
    pub(crate) server_guid: i64,
    pub(crate) edition: String,
    pub(crate) status: Status,
}

/// Splits on `;` not preceded by a backslash (PocketMine's escaping), unescaping `\;`.
pub(crate) fn split_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&';') => {
                cur.push(';');
                chars.next();
            }
            ';' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
        if out.len() > 64 {
            break;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses an unconnected pong.
pub(crate) fn parse(buf: &[u8]) -> Result<Pong, ErrorKind> {
    if buf.first() != Some(&0x1c) {
        return Err(ErrorKind::malformed("not an unconnected pong (0x1c)"));
    }
    if buf.len() < 35 {
        return Err(ErrorKind::malformed("pong shorter than 35 bytes"));
    }
    let time = i64::from_be_bytes(buf[1..9].try_into().expect("8 bytes"));
    let server_guid = i64::from_be_bytes(buf[9..17].try_into().expect("8 bytes"));
    if buf[17..33] != MAGIC {
        return Err(ErrorKind::malformed("wrong RakNet magic"));
    }
    let len = u16::from_be_bytes([buf[33], buf[34]]) as usize;
    let text = &buf[35..];
    if text.len() != len {
        return Err(ErrorKind::malformed(format!(
            "string length {len} but {} bytes follow",
            text.len()
        )));
    }
    let s = String::from_utf8_lossy(text);
    let f = split_fields(&s);
    if f.len() < 6 {
        return Err(ErrorKind::malformed(format!(
            "server id has {} fields, at least 6 needed",
            f.len()
        )));
    }
    let online = count_str(&f[4]);
    let max = count_str(&f[5]);
    if online.is_none() || max.is_none() {
        return Err(ErrorKind::malformed("non-numeric player counts"));
    }
    Ok(Pong {
        time,
        server_guid,
        edition: short_text(&f[0]),
        status: Status {
            online,
            max,
            version: Some(short_text(&f[3])),
            motd: Some(short_text(&f[1])),
            latency: None,
        },
    })
}

/// One ping/pong exchange.
pub(crate) async fn probe(addr: SocketAddr, limits: &Limits) -> Result<Status, ErrorKind> {
    let sock = super::udp_connect(addr).await?;
    // A positive nonce in the range real clients use (milliseconds).
    let nonce = fastrand::i64(1..i64::MAX >> 16);
    let guid = fastrand::i64(..);
    let mut buf = vec![0u8; RECV_BUF];
    let sent = Instant::now();
    let mut status = super::udp_exchange(
        &sock,
        &ping_request(nonce, guid),
        limits,
        &mut buf,
        |d| match parse(d) {
            Ok(p) if p.time == nonce => Some(Ok(p.status)),
            Ok(_) => None,
            // A pong that echoes our nonce but is otherwise broken is a broken server.
            Err(e) if d.get(1..9) == Some(&nonce.to_be_bytes()) => Some(Err(e)),
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

    fn pong(time: i64, s: &str) -> Vec<u8> {
        let mut b = vec![0x1c];
        b.extend_from_slice(&time.to_be_bytes());
        b.extend_from_slice(&0xbd7d455cd876f722u64.to_be_bytes());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
        b
    }

    #[test]
    fn ping_matches_the_reference_hex() {
        let p = ping_request(0x0000018c2f3a4b5c, 0x1122334455667788);
        assert_eq!(p[..9], [0x01, 0, 0, 0x01, 0x8c, 0x2f, 0x3a, 0x4b, 0x5c]);
        assert_eq!(p[9..25], MAGIC);
        assert_eq!(p[25..], [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    }

    #[test]
    fn parses_the_reference_pong() {
        let p = parse(&pong(
            0x0000018c2f3a4b5c,
            "MCPE;Dedicated Server;527;1.19.1;0;10;13253860892328930865;Bedrock level;Survival;1;19132;19133;",
        ))
        .unwrap();
        assert_eq!(p.time, 0x0000018c2f3a4b5c);
        assert_eq!(p.edition, "MCPE");
        assert_eq!((p.status.online, p.status.max), (Some(0), Some(10)));
        assert_eq!(p.status.version.as_deref(), Some("1.19.1"));
        assert_eq!(p.status.motd.as_deref(), Some("Dedicated Server"));
    }

    #[test]
    fn six_fields_and_escaped_semicolons() {
        let p = parse(&pong(1, r"MCPE;a\;b;527;1.21.50;3;40")).unwrap();
        assert_eq!(p.status.motd.as_deref(), Some("a;b"));
        assert_eq!((p.status.online, p.status.max), (Some(3), Some(40)));
    }

    #[test]
    fn rejects_bad_pongs() {
        let good = pong(1, "MCPE;m;1;v;1;2;");
        assert!(parse(&good).is_ok());
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut bad_magic = good.clone();
        bad_magic[20] ^= 1;
        assert!(parse(&bad_magic).is_err());
        let mut extra = good.clone();
        extra.push(b'x');
        assert!(parse(&extra).is_err());
        assert!(parse(&pong(1, "MCPE;m;1;v;x;2;")).is_err());
        assert!(parse(&pong(1, "MCPE;m;1;v;1")).is_err());
    }
}
