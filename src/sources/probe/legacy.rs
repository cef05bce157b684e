//! Minecraft legacy ping (`FE 01`, 1.4–1.6 servers; modern vanilla still answers it),
//! docs/game-protocols.md#minecraft-legacy-ping-fe-01.
//!
//! We send `FE 01` only: every 1.4+ and modern server answers it, while the 1.6 `MC|PingHost`
//! form fragments badly and a bare `FE 01 FA` is a truncated 1.6 ping that modern servers pass to
//! the modern pipeline instead of answering. The reply is a kick packet: `FF`, a u16 length in
//! UTF-16 units (so at most 128 KiB: the cap is the protocol's own), UTF-16BE text, then the
//! server closes.

use super::{ErrorKind, Limits, Status, count_str, short_text};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const REQUEST: [u8; 2] = [0xfe, 0x01];

/// Parses the kick packet: `FF`, length, UTF-16BE `§1\0proto\0version\0motd\0online\0max` (1.4+)
/// or `motd§online§max` (beta 1.8–1.3).
pub(crate) fn parse(buf: &[u8]) -> Result<Status, ErrorKind> {
    let (&kind, rest) = buf
        .split_first()
        .ok_or_else(|| ErrorKind::malformed("empty reply"))?;
    if kind != 0xff {
        return Err(ErrorKind::malformed(format!(
            "packet {kind:#04x}, expected a 0xff kick"
        )));
    }
    let units = match rest {
        [a, b, ..] => u16::from_be_bytes([*a, *b]) as usize,
        _ => return Err(ErrorKind::malformed("short kick packet")),
    };
    let text = rest
        .get(2..2 + 2 * units)
        .ok_or_else(|| ErrorKind::malformed("kick packet shorter than its length"))?;
    let utf16: Vec<u16> = text
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16_lossy(&utf16);
    if let Some(body) = s.strip_prefix("§1\0") {
        let f: Vec<&str> = body.split('\0').collect();
        if f.len() < 5 {
            return Err(ErrorKind::malformed("1.4+ reply with fewer than 6 fields"));
        }
        Ok(Status {
            version: Some(short_text(f[1])),
            motd: Some(short_text(f[2])),
            online: count_str(f[3]),
            max: count_str(f[4]),
            latency: None,
        })
    } else {
        let mut parts = s.rsplitn(3, '§');
        let (max, online, motd) = (parts.next(), parts.next(), parts.next());
        match (motd, online, max) {
            (Some(motd), Some(online), Some(max)) => Ok(Status {
                version: None,
                motd: Some(short_text(motd)),
                online: count_str(online),
                max: count_str(max),
                latency: None,
            }),
            _ => Err(ErrorKind::malformed("pre-1.4 reply without two `§`")),
        }
    }
}

/// One legacy exchange; latency is the request → reply time.
pub(crate) async fn probe(addr: SocketAddr, limits: &Limits) -> Result<Status, ErrorKind> {
    let mut stream = match tokio::time::timeout(limits.connect, TcpStream::connect(addr)).await {
        Err(_) => return Err(ErrorKind::Timeout("connecting")),
        Ok(Err(e)) => return Err(ErrorKind::from_io(&e)),
        Ok(Ok(s)) => s,
    };
    let started = Instant::now();
    stream
        .write_all(&REQUEST)
        .await
        .map_err(|e| ErrorKind::from_io(&e))?;
    // Header first (3 bytes), then exactly the announced length: at most 3 + 131070 bytes.
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        let need = match buf.get(..3) {
            Some(h) => {
                if h[0] != 0xff {
                    return Err(ErrorKind::malformed("not a kick packet"));
                }
                3 + 2 * u16::from_be_bytes([h[1], h[2]]) as usize
            }
            None => 3,
        };
        if buf.len() >= need {
            let mut status = parse(&buf[..need])?;
            status.latency = Some(started.elapsed());
            return Ok(status);
        }
        let want = (need - buf.len()).min(chunk.len());
        match tokio::time::timeout(limits.read, stream.read(&mut chunk[..want])).await {
            Err(_) => return Err(ErrorKind::Timeout("reading the kick packet")),
            Ok(Err(e)) if buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(ErrorKind::ClosedEmpty);
            }
            Ok(Err(e)) => return Err(ErrorKind::from_io(&e)),
            Ok(Ok(0)) if buf.is_empty() => return Err(ErrorKind::ClosedEmpty),
            Ok(Ok(0)) => return Err(ErrorKind::Truncated),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kick(s: &str) -> Vec<u8> {
        let units: Vec<u16> = s.encode_utf16().collect();
        let mut out = vec![0xff];
        out.extend_from_slice(&(units.len() as u16).to_be_bytes());
        for u in units {
            out.extend_from_slice(&u.to_be_bytes());
        }
        out
    }

    #[test]
    fn parses_the_1_4_format() {
        let b = kick("§1\x00127\x001.20.4\x00A Minecraft Server\x007\x0050");
        assert_eq!(
            &b[..9],
            &[0xff, 0x00, 0x25, 0x00, 0xa7, 0x00, 0x31, 0x00, 0x00]
        );
        let s = parse(&b).unwrap();
        assert_eq!((s.online, s.max), (Some(7), Some(50)));
        assert_eq!(s.version.as_deref(), Some("1.20.4"));
        assert_eq!(s.motd.as_deref(), Some("A Minecraft Server"));
    }

    #[test]
    fn parses_the_beta_format_with_section_signs_in_the_motd() {
        let s = parse(&kick("§cRed§r lobby§3§20")).unwrap();
        assert_eq!((s.online, s.max), (Some(3), Some(20)));
        assert_eq!(s.motd.as_deref(), Some("§cRed§r lobby"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0xff, 0x00]).is_err());
        assert!(parse(&[0xff, 0x00, 0x05, 0x00]).is_err());
        assert!(parse(&[0x00, 0x00, 0x00]).is_err());
        assert!(parse(&kick("no separators")).is_err());
        assert!(parse(&kick("§1\x00only")).is_err());
    }
}
