//! Game-server status probes: how many players are online on every hosted game server.
//!
//! One file per wire protocol ([`java`] Server List Ping, [`legacy`] pre-1.7 ping, [`query`]
//! GameSpy4, [`bedrock`] RakNet unconnected ping, [`a2s`] Source A2S_INFO). Each has a pure
//! `parse(&[u8])` that turns a reply into a struct (fuzzed, unit-tested on the byte layouts of
//! docs/game-protocols.md) and a thin tokio transport around it.
//!
//! We write these ourselves instead of using a crate because every hosted server is untrusted
//! input: the crates we checked allocate whatever length the server claims, panic on short
//! datagrams, block, or loop on challenges without bound. Here every length is checked against a
//! cap *before* anything is allocated, buffers grow only as bytes actually arrive, every read has
//! its own timeout and every probe one overall deadline, and challenge rounds are bounded.
//!
//! [`targets`] decides which protocol and port to ask for each server (Wings data, heuristics,
//! per-server overrides, static targets), [`prober`] runs one pass of probes under a
//! concurrency cap and remembers which protocol and port answered.

pub(crate) mod a2s;
pub mod bedrock;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod java;
pub(crate) mod legacy;
pub mod prober;
pub(crate) mod query;
pub mod targets;

use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A wire protocol the agent can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    /// Server List Ping 1.7+, falling back to the legacy `FE 01` ping.
    MinecraftJava,
    /// Only the legacy `FE 01` ping (pre-1.7 servers); reported as `minecraft-java`.
    MinecraftLegacy,
    MinecraftBedrock,
    MinecraftQuery,
    SourceA2s,
}

impl Protocol {
    pub(crate) const ALL: [Protocol; 5] = [
        Protocol::MinecraftJava,
        Protocol::MinecraftLegacy,
        Protocol::MinecraftBedrock,
        Protocol::MinecraftQuery,
        Protocol::SourceA2s,
    ];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::MinecraftJava => "minecraft-java",
            Protocol::MinecraftLegacy => "minecraft-legacy",
            Protocol::MinecraftBedrock => "minecraft-bedrock",
            Protocol::MinecraftQuery => "minecraft-query",
            Protocol::SourceA2s => "source-a2s",
        }
    }

    /// The `gameserver.protocol` attribute value (the metric contract knows four protocols; the
    /// legacy ping is a way of asking a Java server).
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Protocol::MinecraftLegacy => "minecraft-java",
            p => p.name(),
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Protocol> {
        let s = s.trim().to_ascii_lowercase();
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .or(match s.as_str() {
                "java" | "slp" => Some(Protocol::MinecraftJava),
                "legacy" => Some(Protocol::MinecraftLegacy),
                "bedrock" | "raknet" => Some(Protocol::MinecraftBedrock),
                "query" | "gamespy4" | "gs4" => Some(Protocol::MinecraftQuery),
                "a2s" | "source" | "valve" => Some(Protocol::SourceA2s),
                _ => None,
            })
    }

    /// TCP or UDP (for `check` output).
    pub(crate) fn transport(self) -> &'static str {
        match self {
            Protocol::MinecraftJava | Protocol::MinecraftLegacy => "tcp",
            _ => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a game server is doing, as far as the probe can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    Starting,
    Down,
}

impl State {
    pub(crate) const ALL: [State; 3] = [State::Up, State::Starting, State::Down];

    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Starting => "starting",
            State::Down => "down",
        }
    }
}

/// Counts are clamped to this; plugins fake absurd numbers.
pub(crate) const MAX_COUNT: i64 = 1_000_000;
/// Longest MOTD/version kept (characters).
pub(crate) const MAX_TEXT: usize = 256;

/// What one successful exchange told us.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// `None` when the server did not say (then the state is `Starting`).
    pub online: Option<u32>,
    pub max: Option<u32>,
    pub version: Option<String>,
    pub motd: Option<String>,
    /// Round trip of the latency exchange (pong, or the status exchange when there was none);
    /// seconds in JSON.
    #[serde(serialize_with = "seconds")]
    pub latency: Option<Duration>,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Status {
    /// Up when the server reported its counts and a non-zero maximum; a status without players,
    /// or with `max == 0`, is a server that is still starting (the mc-monitor rule).
    pub fn state(&self) -> State {
        match (self.online, self.max) {
            (Some(_), Some(max)) if max > 0 => State::Up,
            _ => State::Starting,
        }
    }
}

/// Clamps a count the server sent to `0..=MAX_COUNT`; out-of-range values are invalid (`None`).
pub(crate) fn count(v: i64) -> Option<u32> {
    (0..=MAX_COUNT).contains(&v).then_some(v as u32)
}

/// Parses a decimal count; anything else is invalid.
pub(crate) fn count_str(s: &str) -> Option<u32> {
    s.trim().parse::<i64>().ok().and_then(count)
}

/// Keeps at most [`MAX_TEXT`] characters of free text a server sent.
pub(crate) fn short_text(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Why a reply could not be used. Parsers return these; transports wrap them in [`ProbeError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("connection refused")]
    Refused,
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("connected, then closed with no bytes (starting, or status disabled)")]
    ClosedEmpty,
    #[error("connection closed in the middle of a reply")]
    Truncated,
    #[error("{what} of {len} bytes is over the cap of {cap}")]
    TooLarge {
        what: &'static str,
        len: u64,
        cap: u64,
    },
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("the server sent more than {0} challenges")]
    ChallengeLoop(u32),
    #[error("no matching reply among {0} datagrams")]
    NoMatchingReply(u32),
    #[error("cannot resolve the address")]
    Resolve,
    #[error("{0}")]
    Io(String),
}

impl ErrorKind {
    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        ErrorKind::Malformed(what.into())
    }

    fn from_io(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
            std::io::ErrorKind::UnexpectedEof => ErrorKind::Truncated,
            _ => ErrorKind::Io(e.kind().to_string()),
        }
    }

    /// The state a failed probe stands for when the orchestrator believes the server runs:
    /// "accepted, then closed with nothing" is what a starting server (or one behind
    /// docker-proxy that does not listen yet) looks like; everything else is down.
    pub fn state(&self) -> State {
        match self {
            ErrorKind::ClosedEmpty => State::Starting,
            _ => State::Down,
        }
    }
}

/// A failed probe, naming the target it failed on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{protocol} probe of {target}: {kind}")]
pub struct ProbeError {
    pub(crate) protocol: Protocol,
    pub(crate) target: String,
    pub kind: ErrorKind,
}

/// Limits of one probe. Defaults: docs/game-protocols.md#bounds-on-every-probe.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TCP connect.
    pub connect: Duration,
    /// Each read (TCP) or each datagram wait (UDP).
    pub read: Duration,
    /// The whole exchange, whatever happens inside it.
    pub total: Duration,
    /// Largest Java frame accepted (the length prefix is checked before any allocation).
    pub frame_cap: usize,
    /// Largest status JSON accepted, bytes.
    pub json_cap: usize,
    /// Protocol version sent in the Java handshake (-1 = "probing").
    pub java_protocol: i32,
    /// UDP attempts per exchange step.
    pub udp_attempts: u32,
    /// Datagrams looked at per step before giving up (unmatched ones are dropped).
    pub max_datagrams: u32,
    /// A2S challenge rounds honoured before the server counts as looping.
    pub challenge_rounds: u32,
}

/// Hard ceiling of the frame cap: vanilla's 21-bit frame length.
pub const FRAME_CAP_CEILING: usize = 2_097_151;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
            total: Duration::from_secs(5),
            frame_cap: 256 * 1024,
            json_cap: 256 * 1024,
            java_protocol: -1,
            udp_attempts: 2,
            max_datagrams: 8,
            challenge_rounds: 2,
        }
    }
}

impl Limits {
    /// Limits derived from the probe timeout setting (`minecraft_ping_timeout_sec`): it bounds
    /// the whole probe; connect, each read and each datagram get at most that much too.
    pub fn from_timeout(total: Duration) -> Self {
        let d = Limits::default();
        let step = total.min(d.read);
        Limits {
            connect: step,
            read: step,
            total,
            ..d
        }
    }

    /// Wait per UDP datagram: split the overall budget over the attempts, capped at 1.5 s.
    pub(crate) fn udp_wait(&self) -> Duration {
        let per = self.total / (self.udp_attempts.max(1) * 2);
        per.clamp(Duration::from_millis(100), Duration::from_millis(1500))
    }
}

/// Probes `addr` with `protocol`. `host` is what the Java handshake names (proxies route by it).
pub async fn probe(
    protocol: Protocol,
    host: &str,
    addr: SocketAddr,
    limits: &Limits,
) -> Result<Status, ProbeError> {
    let wrap = |kind| ProbeError {
        protocol,
        target: addr.to_string(),
        kind,
    };
    let fut = async {
        match protocol {
            Protocol::MinecraftJava => match java::probe(addr, host, limits).await {
                // Some servers (quarry, strict proxies) hang up on the "probing" version -1;
                // ask once more with 47, what mcstatus and node-gamedig send.
                Err(ErrorKind::ClosedEmpty) if limits.java_protocol == -1 => {
                    let retry = Limits {
                        java_protocol: java::FALLBACK_PROTOCOL,
                        ..limits.clone()
                    };
                    java::probe(addr, host, &retry).await
                }
                // A reply that is not SLP may be a pre-1.7 server: ask the legacy way.
                // If that fails too, the SLP error is the one worth reporting.
                Err(e @ (ErrorKind::Malformed(_) | ErrorKind::Truncated)) => {
                    legacy::probe(addr, limits).await.map_err(|_| e)
                }
                r => r,
            },
            Protocol::MinecraftLegacy => legacy::probe(addr, limits).await,
            Protocol::MinecraftBedrock => bedrock::probe(addr, limits).await,
            Protocol::MinecraftQuery => query::probe(addr, limits).await,
            Protocol::SourceA2s => a2s::probe(addr, limits).await,
        }
    };
    match tokio::time::timeout(limits.total, fut).await {
        Ok(r) => r.map_err(wrap),
        Err(_) => Err(wrap(ErrorKind::Timeout("(whole probe)"))),
    }
}

/// Resolves `host:port` (an IP literal costs nothing) to the first address.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ErrorKind> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::lookup_host((host, port)),
    )
    .await
    {
        Ok(Ok(mut it)) => it.next().ok_or(ErrorKind::Resolve),
        _ => Err(ErrorKind::Resolve),
    }
}

/// Reads a NUL-terminated string from `buf` at `*pos`, advancing past the NUL. Lossy UTF-8.
pub(crate) fn cstr<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    *pos += end + 1;
    Some(&rest[..end])
}

/// A connected UDP socket to `addr` (the kernel then drops datagrams from anyone else).
pub(crate) async fn udp_connect(addr: SocketAddr) -> Result<tokio::net::UdpSocket, ErrorKind> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| ErrorKind::from_io(&e))?;
    sock.connect(addr)
        .await
        .map_err(|e| ErrorKind::from_io(&e))?;
    Ok(sock)
}

/// Sends `request` and waits for a datagram that `accept` takes, retrying up to
/// `limits.udp_attempts` times and looking at no more than `limits.max_datagrams` datagrams.
/// `buf` is the one receive buffer of the probe (its length caps a datagram).
pub(crate) async fn udp_exchange<T>(
    sock: &tokio::net::UdpSocket,
    request: &[u8],
    limits: &Limits,
    buf: &mut [u8],
    mut accept: impl FnMut(&[u8]) -> Option<Result<T, ErrorKind>>,
) -> Result<T, ErrorKind> {
    let mut seen = 0u32;
    let mut last_err: Option<ErrorKind> = None;
    for _ in 0..limits.udp_attempts.max(1) {
        sock.send(request)
            .await
            .map_err(|e| ErrorKind::from_io(&e))?;
        let deadline = tokio::time::Instant::now() + limits.udp_wait();
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(ErrorKind::from_io(&e)),
                Ok(Ok(n)) => n,
            };
            seen += 1;
            match accept(&buf[..n]) {
                Some(r) => return r,
                None => last_err = Some(ErrorKind::NoMatchingReply(seen)),
            }
            if seen >= limits.max_datagrams {
                return Err(ErrorKind::NoMatchingReply(seen));
            }
        }
    }
    Err(last_err.unwrap_or(ErrorKind::Timeout("waiting for a datagram")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_clamped() {
        assert_eq!(count(5), Some(5));
        assert_eq!(count(-1), None);
        assert_eq!(count(MAX_COUNT + 1), None);
        assert_eq!(count_str(" 12 "), Some(12));
        assert_eq!(count_str("x"), None);
    }

    #[test]
    fn status_state_follows_the_readiness_rule() {
        let mut s = Status {
            online: Some(1),
            max: Some(20),
            ..Default::default()
        };
        assert_eq!(s.state(), State::Up);
        s.max = Some(0);
        assert_eq!(s.state(), State::Starting);
        s.max = None;
        assert_eq!(s.state(), State::Starting);
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.name()), Some(p));
        }
        assert_eq!(Protocol::MinecraftLegacy.attribute(), "minecraft-java");
        assert_eq!(Protocol::parse("nope"), None);
    }

    #[test]
    fn short_text_cuts_on_char_boundaries() {
        let long = "é".repeat(1000);
        assert_eq!(short_text(&long).chars().count(), MAX_TEXT);
    }
}
