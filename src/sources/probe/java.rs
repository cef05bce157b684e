//! Minecraft Java Edition Server List Ping (1.7+), docs/game-protocols.md#minecraft-java-server-list-ping-17.
//!
//! handshake(next state 1) + status request in one write → one status frame (JSON) → ping →
//! pong. We read exactly one frame each time and never wait for EOF (vanilla keeps the socket
//! open for 30 s). The frame length is a VarInt of at most 3 bytes (21 bits, as vanilla's
//! `Varint21FrameDecoder`); it is checked against the frame cap *before* any buffer grows, and
//! the buffer then grows only as bytes arrive, so a server that announces 2 GiB costs nothing.
//! Only `version`, `players` and `description` are parsed; favicon, forgeData and the player
//! sample are skipped by serde without being kept. The sample is never counted (it holds at
//! most 12 random names and often fake hover text).

use super::{ErrorKind, Limits, Status, count, short_text};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Handshake version of the second try when a server hangs up on -1 (1.8, what mcstatus and
/// node-gamedig send; every modern server answers status for any version).
pub(crate) const FALLBACK_PROTOCOL: i32 = 47;

/// Appends `v` as a VarInt (negative values take 5 bytes).
pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    let mut u = v as u32;
    loop {
        if u & !0x7f == 0 {
            out.push(u as u8);
            return;
        }
        out.push((u as u8 & 0x7f) | 0x80);
        u >>= 7;
    }
}

/// Reads a VarInt of at most `max_bytes` bytes. `Ok(None)`: more bytes are needed.
pub(crate) fn read_varint(buf: &[u8], max_bytes: usize) -> Result<Option<(i32, usize)>, ErrorKind> {
    let mut v: u32 = 0;
    for i in 0..max_bytes {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        v |= ((b & 0x7f) as u32) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((v as i32, i + 1)));
        }
    }
    Err(ErrorKind::malformed(format!(
        "VarInt longer than {max_bytes} bytes"
    )))
}

/// The frame header: `Ok(Some((body_len, header_len)))` once complete, checked against `cap`.
pub(crate) fn frame_header(buf: &[u8], cap: usize) -> Result<Option<(usize, usize)>, ErrorKind> {
    match read_varint(buf, 3)? {
        None => Ok(None),
        Some((len, _)) if len <= 0 => Err(ErrorKind::malformed("empty frame")),
        Some((len, _)) if len as usize > cap => Err(ErrorKind::TooLarge {
            what: "frame",
            len: len as u64,
            cap: cap as u64,
        }),
        Some((len, n)) => Ok(Some((len as usize, n))),
    }
}

/// Handshake (next state = status) followed by the status request, ready for one write.
pub(crate) fn status_request(host: &str, port: u16, protocol: i32) -> Vec<u8> {
    let host = &host.as_bytes()[..host.len().min(255)];
    let mut body = Vec::with_capacity(32 + host.len());
    write_varint(&mut body, 0x00);
    write_varint(&mut body, protocol);
    write_varint(&mut body, host.len() as i32);
    body.extend_from_slice(host);
    body.extend_from_slice(&port.to_be_bytes());
    write_varint(&mut body, 1);
    let mut out = Vec::with_capacity(body.len() + 8);
    write_varint(&mut out, body.len() as i32);
    out.extend_from_slice(&body);
    out.extend_from_slice(&[0x01, 0x00]);
    out
}

/// The ping packet carrying `payload`.
pub(crate) fn ping_request(payload: i64) -> [u8; 10] {
    let mut out = [0u8; 10];
    out[0] = 9;
    out[1] = 0x01;
    out[2..].copy_from_slice(&payload.to_be_bytes());
    out
}

#[derive(Deserialize, Default)]
struct Json {
    #[serde(default)]
    version: Option<Version>,
    #[serde(default)]
    players: Option<Players>,
    #[serde(default)]
    description: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Version {
    #[serde(default)]
    name: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Players {
    #[serde(default)]
    online: Option<serde_json::Value>,
    #[serde(default)]
    max: Option<serde_json::Value>,
}

fn json_count(v: &Option<serde_json::Value>) -> Option<u32> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .and_then(count),
        serde_json::Value::String(s) => super::count_str(s),
        _ => None,
    }
}

/// Flattens a chat component (string, `{text, extra}`, or array) into plain text, depth- and
/// length-bounded.
pub(crate) fn flatten_chat(v: &serde_json::Value, out: &mut String, depth: u32) {
    if depth > 16 || out.len() > 4 * super::MAX_TEXT {
        return;
    }
    match v {
        serde_json::Value::String(s) => out.push_str(s),
        serde_json::Value::Array(items) => {
            for i in items {
                flatten_chat(i, out, depth + 1);
            }
        }
        serde_json::Value::Object(map) => {
            if let Some(t) = map.get("text") {
                flatten_chat(t, out, depth + 1);
            } else if let Some(t) = map.get("translate").and_then(|t| t.as_str()) {
                out.push_str(t);
            }
            if let Some(extra) = map.get("extra") {
                flatten_chat(extra, out, depth + 1);
            }
        }
        serde_json::Value::Number(n) => out.push_str(&n.to_string()),
        _ => {}
    }
}

/// Parses the status JSON text.
pub(crate) fn parse_json(text: &str) -> Result<Status, ErrorKind> {
    let j: Json = serde_json::from_str(text)
        .map_err(|e| ErrorKind::malformed(format!("status JSON: {e}")))?;
    let mut motd = String::new();
    if let Some(d) = &j.description {
        flatten_chat(d, &mut motd, 0);
    }
    let players = j.players.unwrap_or_default();
    Ok(Status {
        online: json_count(&players.online),
        max: json_count(&players.max),
        version: j.version.and_then(|v| match v.name {
            Some(serde_json::Value::String(s)) => Some(short_text(&s)),
            _ => None,
        }),
        motd: (!motd.is_empty()).then(|| short_text(&motd)),
        latency: None,
    })
}

/// Parses the body of a status frame (packet id + JSON string; trailing bytes are ignored).
pub(crate) fn parse_status_body(body: &[u8], json_cap: usize) -> Result<Status, ErrorKind> {
    let (id, n) = read_varint(body, 5)?.ok_or_else(|| ErrorKind::malformed("no packet id"))?;
    if id != 0 {
        return Err(ErrorKind::malformed(format!(
            "packet id {id:#x}, expected 0x00"
        )));
    }
    let rest = &body[n..];
    let (len, m) = read_varint(rest, 5)?.ok_or_else(|| ErrorKind::malformed("no JSON length"))?;
    if len < 0 {
        return Err(ErrorKind::malformed("negative JSON length"));
    }
    let len = len as usize;
    if len > json_cap {
        return Err(ErrorKind::TooLarge {
            what: "status JSON",
            len: len as u64,
            cap: json_cap as u64,
        });
    }
    let json = rest
        .get(m..m + len)
        .ok_or_else(|| ErrorKind::malformed("JSON string longer than its frame"))?;
    let text =
        std::str::from_utf8(json).map_err(|_| ErrorKind::malformed("status JSON is not UTF-8"))?;
    parse_json(text)
}

/// Parses one complete status frame (length prefix included), with the default caps.
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn parse(frame: &[u8]) -> Result<Status, ErrorKind> {
    let l = Limits::default();
    let (len, n) =
        frame_header(frame, l.frame_cap)?.ok_or_else(|| ErrorKind::malformed("short frame"))?;
    let body = frame
        .get(n..n + len)
        .ok_or_else(|| ErrorKind::malformed("frame shorter than its length"))?;
    parse_status_body(body, l.json_cap)
}

/// Parses a pong frame body, returning its payload.
pub(crate) fn parse_pong_body(body: &[u8]) -> Result<i64, ErrorKind> {
    match body {
        [0x01, p @ ..] if p.len() == 8 => Ok(i64::from_be_bytes(p.try_into().expect("8 bytes"))),
        _ => Err(ErrorKind::malformed("not a pong")),
    }
}

/// Reads one frame; the buffer grows only as bytes arrive and never past the cap.
/// `got_any` tells whether any byte at all was received (for the "closed empty" rule).
pub(crate) async fn read_frame(
    stream: &mut TcpStream,
    cap: usize,
    read_timeout: Duration,
    got_any: &mut bool,
) -> Result<Vec<u8>, ErrorKind> {
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let mut chunk = [0u8; 8192];
    let mut need: Option<(usize, usize)> = None;
    loop {
        if need.is_none() {
            need = frame_header(&buf, cap)?;
        }
        if let Some((len, n)) = need
            && buf.len() >= n + len
        {
            buf.truncate(n + len);
            buf.drain(..n);
            return Ok(buf);
        }
        let want = match need {
            Some((len, n)) => (n + len - buf.len()).min(chunk.len()),
            None => 1,
        };
        let got = match tokio::time::timeout(read_timeout, stream.read(&mut chunk[..want])).await {
            Err(_) => return Err(ErrorKind::Timeout("reading a frame")),
            Ok(Err(e)) => {
                return Err(if *got_any {
                    ErrorKind::from_io(&e)
                } else if e.kind() == std::io::ErrorKind::ConnectionReset {
                    ErrorKind::ClosedEmpty
                } else {
                    ErrorKind::from_io(&e)
                });
            }
            Ok(Ok(0)) => {
                return Err(if *got_any {
                    ErrorKind::Truncated
                } else {
                    ErrorKind::ClosedEmpty
                });
            }
            Ok(Ok(n)) => n,
        };
        *got_any = true;
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// One SLP exchange: status, then ping/pong for the latency.
pub async fn probe(addr: SocketAddr, host: &str, limits: &Limits) -> Result<Status, ErrorKind> {
    let mut stream = match tokio::time::timeout(limits.connect, TcpStream::connect(addr)).await {
        Err(_) => return Err(ErrorKind::Timeout("connecting")),
        Ok(Err(e)) => return Err(ErrorKind::from_io(&e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let cap = limits.frame_cap.min(super::FRAME_CAP_CEILING);
    let started = Instant::now();
    stream
        .write_all(&status_request(host, addr.port(), limits.java_protocol))
        .await
        .map_err(|e| ErrorKind::from_io(&e))?;
    let mut got_any = false;
    let body = read_frame(&mut stream, cap, limits.read, &mut got_any).await?;
    let status_rtt = started.elapsed();
    let mut status = parse_status_body(&body, limits.json_cap)?;
    drop(body);
    // Latency: the pong round trip; servers that do not answer the ping within a short wait get
    // the status round trip instead (as mcstatus measures it).
    let payload = fastrand::i64(..);
    let sent = Instant::now();
    let pong_wait = limits.read.min(Duration::from_millis(1500));
    let latency = match stream.write_all(&ping_request(payload)).await {
        Ok(()) => match read_frame(&mut stream, 64, pong_wait, &mut got_any).await {
            Ok(b) if parse_pong_body(&b) == Ok(payload) => sent.elapsed(),
            _ => status_rtt,
        },
        Err(_) => status_rtt,
    };
    status.latency = Some(latency);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn varints_match_the_reference_table() {
        for (v, h) in [
            (0, "00"),
            (127, "7f"),
            (128, "80 01"),
            (255, "ff 01"),
            (25565, "dd c7 01"),
            (2097151, "ff ff 7f"),
            (2147483647, "ff ff ff ff 07"),
            (-1, "ff ff ff ff 0f"),
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out, hex(h), "{v}");
            assert_eq!(read_varint(&out, 5).unwrap(), Some((v, out.len())));
        }
        assert!(read_varint(&hex("ff ff ff ff ff 01"), 5).is_err());
        assert_eq!(read_varint(&hex("ff"), 5).unwrap(), None);
    }

    #[test]
    fn handshake_matches_the_reference_hex() {
        let req = status_request("localhost", 25565, -1);
        let want = hex("13 00 ff ff ff ff 0f 09 6c 6f 63 61 6c 68 6f 73 74 63 dd 01 01 00");
        assert_eq!(req, want);
        let req = status_request("localhost", 25565, 767);
        assert_eq!(
            &req[..17],
            &hex("10 00 ff 05 09 6c 6f 63 61 6c 68 6f 73 74 63 dd 01")[..]
        );
        assert_eq!(
            ping_request(0x0102030405060708).to_vec(),
            hex("09 01 01 02 03 04 05 06 07 08")
        );
        assert_eq!(
            parse_pong_body(&hex("01 01 02 03 04 05 06 07 08")),
            Ok(0x0102030405060708)
        );
    }

    fn frame(json: &str) -> Vec<u8> {
        let mut body = vec![0u8];
        write_varint(&mut body, json.len() as i32);
        body.extend_from_slice(json.as_bytes());
        let mut f = Vec::new();
        write_varint(&mut f, body.len() as i32);
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn parses_the_reference_status() {
        let json = r#"{"version":{"name":"1.21.1","protocol":767},"enforcesSecureChat":true,
 "description":{"text":"A Minecraft Server"},
 "players":{"max":20,"online":2,"sample":[{"name":"alice","id":"4566e69f-c907-48ee-8d71-d7ba5aa00d20"}]},
 "favicon":"data:image/png;base64,AAAA"}"#;
        let s = parse(&frame(json)).unwrap();
        assert_eq!((s.online, s.max), (Some(2), Some(20)));
        assert_eq!(s.version.as_deref(), Some("1.21.1"));
        assert_eq!(s.motd.as_deref(), Some("A Minecraft Server"));
        assert_eq!(s.state(), super::super::State::Up);
    }

    #[test]
    fn missing_players_or_max_zero_is_starting() {
        let s = parse(&frame(r#"{"version":{"name":"x"},"description":"hi"}"#)).unwrap();
        assert_eq!(s.state(), super::super::State::Starting);
        assert_eq!(s.motd.as_deref(), Some("hi"));
        let s = parse(&frame(r#"{"players":{"max":0,"online":0}}"#)).unwrap();
        assert_eq!(s.state(), super::super::State::Starting);
    }

    #[test]
    fn chat_components_are_flattened() {
        let s = parse(&frame(
            r#"{"players":{"max":5,"online":1},"description":{"text":"a","extra":[{"text":"b"},"c",[{"translate":"d"}]]}}"#,
        ))
        .unwrap();
        assert_eq!(s.motd.as_deref(), Some("abcd"));
    }

    #[test]
    fn absurd_counts_are_invalid_not_wrapped() {
        let s = parse(&frame(r#"{"players":{"max":-5,"online":99999999999}}"#)).unwrap();
        assert_eq!((s.online, s.max), (None, None));
        let s = parse(&frame(r#"{"players":{"max":"20","online":3.0}}"#)).unwrap();
        assert_eq!((s.online, s.max), (Some(3), Some(20)));
    }

    #[test]
    fn trailing_bytes_after_the_json_are_ignored() {
        let mut f = frame(r#"{"players":{"max":5,"online":1}}"#);
        // Grow the frame length by 3 and append 3 bytes inside the frame.
        f[0] += 3;
        f.extend_from_slice(b"xyz");
        assert_eq!(parse(&f).unwrap().online, Some(1));
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        // 2 GiB needs a 5-byte VarInt: rejected as wider than 21 bits.
        assert!(frame_header(&hex("80 80 80 80 08"), 1 << 20).is_err());
        // 2,097,151 (3 bytes) is over a 256 KiB cap.
        assert!(matches!(
            frame_header(&hex("ff ff 7f"), 256 * 1024),
            Err(ErrorKind::TooLarge { .. })
        ));
        // A JSON string claiming 10 MB inside a small frame.
        let mut body = vec![0u8];
        write_varint(&mut body, 10_000_000);
        assert!(matches!(
            parse_status_body(&body, 256 * 1024),
            Err(ErrorKind::TooLarge { .. })
        ));
        assert!(parse_status_body(&[0x00, 0x05, b'{'], 1024).is_err());
        assert!(parse_status_body(&[0x01, 0x00], 1024).is_err());
        assert!(parse(&[]).is_err());
        assert!(frame_header(&[0x00], 10).is_err());
    }
}
