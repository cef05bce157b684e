//! The Docker Engine API over its unix socket: just enough for discovery.
//!
//! HTTP/1.1 over `DOCKER_HOST` (`unix://…`), one connection per request (discovery runs every
//! 15 s; nothing here is on the sampling path). The API version is negotiated once with
//! `GET /_ping` (`Api-Version` header, `min(ours, theirs)`) and put in the path prefix, as the Go
//! client does. Every request is bounded in time (the configured HTTP timeout), every body in
//! bytes while it streams in ([`Budget`]) and in what decoding it may build (`super::json`), and
//! the text of an error answer is capped and escaped before it reaches a log line or `/readyz`,
//! so a wedged or hostile daemon can neither stall nor bloat the agent nor forge its log.

use super::json;
use crate::sys::text::{PEER_TEXT_MAX, peer_bytes, peer_text};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// The newest API version this client speaks (Docker 25, `State` etc. unchanged since 1.24).
pub(crate) const CLIENT_API: &str = "1.44";
/// Byte and element budgets of one answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) bytes: usize,
    pub(crate) items: usize,
}

/// The container list: 5,000 containers with their labels are about 8 MB; what is kept of each
/// (ID, name, image, state, two labels) is a few hundred bytes.
pub(crate) const LIST: Budget = Budget {
    bytes: 16 << 20,
    items: 100_000,
};
/// One inspect, `/info`, `/_ping`.
pub(crate) const ONE: Budget = Budget {
    bytes: 2 << 20,
    items: 1_000,
};
/// The `update` events since the previous pass.
pub(crate) const EVENTS: Budget = Budget {
    bytes: 4 << 20,
    items: 20_000,
};
/// How much of an error answer is read.
const ERROR_BODY: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    #[error("docker {socket}: cannot connect: {source}")]
    Connect {
        socket: String,
        source: std::io::Error,
    },
    #[error("docker {socket} {path}: timed out after {secs:.0} s")]
    Timeout {
        socket: String,
        path: String,
        secs: f64,
    },
    #[error("docker {socket} {path}: {reason}")]
    Http {
        socket: String,
        path: String,
        reason: String,
    },
    #[error("docker {socket} {path}: HTTP {status}: {message}")]
    Status {
        socket: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("docker {socket} {path}: unexpected answer: {reason}")]
    Decode {
        socket: String,
        path: String,
        reason: String,
    },
}

impl DockerError {
    /// No socket at all: Docker is not installed or not running on this node.
    pub(crate) fn is_absent(&self) -> bool {
        matches!(self, DockerError::Connect { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused))
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Status { status: 404, .. })
    }
}

/// `null` decodes as the default (Docker writes `null` for empty lists and maps).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One element of `GET /containers/json`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Summary {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub(crate) id: String,
    /// The first of `Names` (Docker lists one).
    #[serde(rename = "Names", deserialize_with = "json::first_string")]
    pub(crate) first_name: String,
    #[serde(rename = "Image", deserialize_with = "nullable")]
    pub(crate) image: String,
    /// The labels discovery uses ([`json::KEPT_LABELS`]); the others are skipped.
    #[serde(rename = "Labels", deserialize_with = "json::kept_labels")]
    pub(crate) labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "State", deserialize_with = "nullable")]
    pub(crate) state: String,
    #[serde(rename = "Created", deserialize_with = "nullable")]
    pub(crate) created: i64,
}

impl Summary {
    /// The name without Docker's leading `/`.
    pub(crate) fn name(&self) -> String {
        self.first_name.trim_start_matches('/').to_string()
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct ContainerState {
    #[serde(rename = "Status", deserialize_with = "nullable")]
    pub(crate) status: String,
    #[serde(rename = "Running", deserialize_with = "nullable")]
    pub(crate) running: bool,
    #[serde(rename = "Pid", deserialize_with = "nullable")]
    pub(crate) pid: i64,
    #[serde(rename = "StartedAt", deserialize_with = "nullable")]
    pub(crate) started_at: String,
}

/// The CPU limit as the container was created or last updated with.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct HostConfig {
    /// `--cpus` in billionths of a core.
    #[serde(rename = "NanoCpus", deserialize_with = "nullable")]
    pub(crate) nano_cpus: i64,
    /// `--cpu-quota` / `--cpu-period` in µs (what Wings sets).
    #[serde(rename = "CpuQuota", deserialize_with = "nullable")]
    pub(crate) cpu_quota: i64,
    #[serde(rename = "CpuPeriod", deserialize_with = "nullable")]
    pub(crate) cpu_period: i64,
}

impl HostConfig {
    /// Cores, `None` when unlimited: `NanoCpus` when set, else quota / period (the kernel's
    /// default period is 100 ms), as runc writes them to the cgroup.
    pub(crate) fn cpu_limit(&self) -> Option<f64> {
        if self.nano_cpus > 0 {
            return Some(self.nano_cpus as f64 / 1e9);
        }
        let period = if self.cpu_period > 0 {
            self.cpu_period
        } else {
            100_000
        };
        (self.cpu_quota > 0).then(|| self.cpu_quota as f64 / period as f64)
    }
}

/// The fields of `GET /containers/{id}/json` discovery needs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Inspect {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub(crate) id: String,
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub(crate) name: String,
    #[serde(rename = "State", deserialize_with = "nullable")]
    pub(crate) state: ContainerState,
    #[serde(rename = "HostConfig", deserialize_with = "nullable")]
    pub(crate) host_config: HostConfig,
}

/// One element of the `GET /events` stream.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Event {
    #[serde(rename = "Actor")]
    actor: Actor,
    /// Older engines put the container ID here.
    #[serde(deserialize_with = "json::lenient_string")]
    id: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Actor {
    #[serde(rename = "ID", deserialize_with = "json::lenient_string")]
    id: String,
}

/// The container IDs in an events answer (one JSON object after the other).
pub(crate) fn parse_event_ids(body: &[u8], max: usize) -> Result<Vec<String>, serde_json::Error> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in serde_json::Deserializer::from_slice(body).into_iter::<Event>() {
        let e = e?;
        let id = if e.actor.id.is_empty() {
            e.id
        } else {
            e.actor.id
        };
        if !id.is_empty() && !seen.contains(&id) {
            if out.len() == max {
                break;
            }
            seen.insert(id.clone());
            out.push(id);
        }
    }
    Ok(out)
}

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body: {0}")]
    Read(#[from] hyper::Error),
}

/// Reads a body, refusing it as soon as it passes `limit` bytes (a `Content-Length` above it is
/// refused before reading).
async fn read_bounded(
    resp: &mut Response,
    limit: usize,
    declared: Option<u64>,
) -> Result<Vec<u8>, BodyError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize).min(limit));
    while let Some(frame) = resp.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct EngineInfo {
    #[serde(rename = "CgroupDriver", deserialize_with = "nullable")]
    pub(crate) cgroup_driver: String,
    #[serde(rename = "CgroupVersion", deserialize_with = "nullable")]
    pub(crate) cgroup_version: String,
    #[serde(rename = "ServerVersion", deserialize_with = "nullable")]
    pub(crate) server_version: String,
}

/// `"1.41"` → (1, 41).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `min(ours, theirs)`; ours when theirs is unreadable.
pub(crate) fn negotiate(server: Option<&str>) -> String {
    let ours = parse_version(CLIENT_API).expect("valid constant");
    match server.and_then(parse_version) {
        Some(theirs) if theirs < ours => format!("{}.{}", theirs.0, theirs.1),
        _ => CLIENT_API.to_string(),
    }
}

/// RFC 3339 (`2024-06-10T12:34:56.123456789Z`, Docker's `StartedAt`) to Unix nanoseconds.
pub(crate) fn parse_rfc3339_nanos(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let tz_at = rest.find(['Z', '+', '-'])?;
    let (time, tz) = rest.split_at(tz_at);
    let mut t = time.split(':');
    let (h, mi): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec_s = t.next()?;
    let (sec, frac) = sec_s.split_once('.').unwrap_or((sec_s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    let offset = if tz == "Z" {
        0
    } else {
        let sign = if tz.starts_with('-') { -1 } else { 1 };
        let (oh, om) = tz[1..].split_once(':')?;
        sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
    };
    let days = crate::sys::clock::days_from_civil(y, mo, da);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    if secs <= 0 {
        return None; // "0001-01-01T00:00:00Z" = never started
    }
    Some(secs as u64 * 1_000_000_000 + nanos as u64)
}

type Conn = hyper::client::conn::http1::Connection<TokioIo<tokio::net::UnixStream>, Empty<Bytes>>;

/// Who moves a connection's bytes.
enum Driver {
    /// Its own task (short requests read whole).
    Task(tokio::task::JoinHandle<()>),
    /// Whoever reads the body, in the same poll ([`Response::poll_frame`]): a stream that brings
    /// one small chunk per message (Docker's logs) costs no task hand-off per chunk.
    Inline(Option<Pin<Box<Conn>>>),
}

/// A response whose body is still to be read; dropping it closes the connection.
pub(crate) struct Response {
    pub status: u16,
    pub api: Option<String>,
    /// `Content-Length`, when the answer has one.
    pub length: Option<u64>,
    body: hyper::body::Incoming,
    conn: Driver,
}

impl Response {
    /// The next frame of the body, moving the connection along when it is driven inline.
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        use hyper::body::Body;
        if let Driver::Inline(slot) = &mut self.conn
            && let Some(c) = slot
            && c.as_mut().poll(cx).is_ready()
        {
            *slot = None;
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    pub(crate) async fn frame(
        &mut self,
    ) -> Option<Result<hyper::body::Frame<Bytes>, hyper::Error>> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        if let Driver::Task(t) = &self.conn {
            t.abort();
        }
    }
}

/// A Docker Engine API client on a unix socket.
pub(crate) struct Docker {
    socket: PathBuf,
    timeout: Duration,
    version: Mutex<Option<String>>,
}

impl Docker {
    /// `docker_host` is `unix:///path` or a bare path.
    pub(crate) fn new(docker_host: &str, timeout: Duration) -> Docker {
        Docker {
            socket: PathBuf::from(docker_host.strip_prefix("unix://").unwrap_or(docker_host)),
            timeout,
            version: Mutex::new(None),
        }
    }

    fn sock(&self) -> String {
        self.socket.display().to_string()
    }

    /// Sends one GET and returns once the response headers are in (bounded by the timeout); the
    /// body is read by the caller, and the connection lives as long as the returned [`Response`]
    /// (`inline`: driven by the body's reader, see [`Driver`]).
    async fn send(&self, path: &str, inline: bool) -> Result<Response, DockerError> {
        let fut = async {
            // A full listen backlog answers EAGAIN: a busy daemon, tried again shortly (within
            // the request's timeout).
            let mut backoff = Duration::from_millis(10);
            let stream = loop {
                match tokio::net::UnixStream::connect(&self.socket).await {
                    Ok(s) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                    Err(source) => {
                        return Err(DockerError::Connect {
                            socket: self.sock(),
                            source,
                        });
                    }
                }
            };
            let http = |reason: String| DockerError::Http {
                socket: self.sock(),
                path: path.to_string(),
                reason,
            };
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| http(e.to_string()))?;
            let mut conn = if inline {
                Driver::Inline(Some(Box::pin(conn)))
            } else {
                Driver::Task(tokio::spawn(async move {
                    let _ = conn.await;
                }))
            };
            let req = Request::get(path)
                .header("Host", "docker")
                .header(
                    "User-Agent",
                    concat!("node-agent/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::<Bytes>::new())
                .map_err(|e| http(e.to_string()))?;
            let sent = sender.send_request(req);
            tokio::pin!(sent);
            let resp = loop {
                match &mut conn {
                    Driver::Inline(slot @ Some(_)) => {
                        let c = slot.as_mut().map(|c| c.as_mut());
                        tokio::select! {
                            biased;
                            r = &mut sent => break r,
                            _ = async { if let Some(c) = c { let _ = c.await; } } => *slot = None,
                        }
                    }
                    _ => break (&mut sent).await,
                }
            }
            .map_err(|e| http(e.to_string()))?;
            let api = resp
                .headers()
                .get("Api-Version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let length = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            Ok(Response {
                status: resp.status().as_u16(),
                api,
                length,
                body: resp.into_body(),
                conn,
            })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.timed_out(path))?
    }

    fn timed_out(&self, path: &str) -> DockerError {
        DockerError::Timeout {
            socket: self.sock(),
            path: path.to_string(),
            secs: self.timeout.as_secs_f64(),
        }
    }

    /// One GET; returns status, `Api-Version` header and the body (at most `limit` bytes, refused
    /// as soon as it passes them; of an error answer only its first bytes).
    async fn raw_get(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<(u16, Option<String>, Vec<u8>), DockerError> {
        let fut = async {
            let mut resp = self.send(path, false).await?;
            let body = if resp.status == 200 {
                let declared = resp.length;
                read_bounded(&mut resp, limit, declared)
                    .await
                    .map_err(|e| DockerError::Http {
                        socket: self.sock(),
                        path: path.to_string(),
                        reason: e.to_string(),
                    })?
            } else {
                error_prefix(&mut resp).await
            };
            Ok((resp.status, resp.api.take(), body))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.timed_out(path))?
    }

    /// A long-lived GET (`/events`, `/containers/{id}/logs?follow=1`) on the negotiated version:
    /// the headers within the timeout, an error status read (bounded) into a [`DockerError`],
    /// the body left to the caller, who bounds each read.
    pub(crate) async fn stream(&self, rel: &str) -> Result<Response, DockerError> {
        let path = format!("/v{}{rel}", self.api_version().await?);
        let mut resp = self.send(&path, true).await?;
        if resp.status == 200 {
            return Ok(resp);
        }
        let status = resp.status;
        let body = tokio::time::timeout(self.timeout, error_prefix(&mut resp))
            .await
            .unwrap_or_default();
        Err(self.status_error(path, status, &body))
    }

    fn status_error(&self, path: String, status: u16, body: &[u8]) -> DockerError {
        #[derive(Deserialize)]
        struct Msg {
            message: String,
        }
        // The message is the peer's text: capped and escaped (it reaches the log and /readyz).
        let message = serde_json::from_slice::<Msg>(body)
            .map(|m| peer_text(&m.message, PEER_TEXT_MAX))
            .unwrap_or_else(|_| peer_bytes(body, PEER_TEXT_MAX));
        if status == 400 {
            // Version out of range (daemon upgraded or downgraded): negotiate again next time.
            *self.version.lock() = None;
        }
        DockerError::Status {
            socket: self.sock(),
            path,
            status,
            message,
        }
    }

    /// The negotiated API version (`GET /_ping` the first time).
    pub(crate) async fn api_version(&self) -> Result<String, DockerError> {
        let version = self.version.lock().clone();
        match version {
            Some(v) => Ok(v),
            None => self.ping().await,
        }
    }

    /// `GET /_ping`; negotiates and remembers the API version.
    pub(crate) async fn ping(&self) -> Result<String, DockerError> {
        let (status, api, body) = self.raw_get("/_ping", ONE.bytes).await?;
        if status != 200 {
            return Err(DockerError::Status {
                socket: self.sock(),
                path: "/_ping".into(),
                status,
                message: peer_bytes(&body, PEER_TEXT_MAX),
            });
        }
        let v = negotiate(api.as_deref());
        *self.version.lock() = Some(v.clone());
        Ok(v)
    }

    /// A GET under the negotiated version: the body of a 200, or the error.
    async fn get_body(&self, rel: &str, budget: Budget) -> Result<(String, Vec<u8>), DockerError> {
        let path = format!("/v{}{rel}", self.api_version().await?);
        let (status, _, body) = self.raw_get(&path, budget.bytes).await?;
        if status != 200 {
            return Err(self.status_error(path, status, &body));
        }
        Ok((path, body))
    }

    fn decode_error(&self, path: String, e: serde_json::Error) -> DockerError {
        DockerError::Decode {
            socket: self.sock(),
            path,
            // serde quotes offending values: the peer's text again.
            reason: peer_text(&e.to_string(), PEER_TEXT_MAX),
        }
    }

    /// `GET /v<version><rel>` decoded from JSON, within the budget of one object ([`ONE`]).
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        rel: &str,
    ) -> Result<T, DockerError> {
        self.get_json_within(rel, ONE).await
    }

    async fn get_json_within<T: serde::de::DeserializeOwned>(
        &self,
        rel: &str,
        budget: Budget,
    ) -> Result<T, DockerError> {
        let (path, body) = self.get_body(rel, budget).await?;
        json::with_budget(&body, budget.items).map_err(|e| self.decode_error(path, e))
    }

    /// Every container, running or not, with its labels.
    pub(crate) async fn list(&self) -> Result<Vec<Summary>, DockerError> {
        #[derive(Deserialize)]
        struct List(#[serde(deserialize_with = "json::bounded_vec")] Vec<Summary>);
        Ok(self
            .get_json_within::<List>("/containers/json?all=true", LIST)
            .await?
            .0)
    }

    pub(crate) async fn inspect(&self, id: &str) -> Result<Inspect, DockerError> {
        let id: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        self.get_json(&format!("/containers/{id}/json")).await
    }

    pub(crate) async fn info(&self) -> Result<EngineInfo, DockerError> {
        self.get_json("/info").await
    }

    /// IDs of the containers updated (`docker update`, a Wings resource change) between `since`
    /// and `until` (Unix seconds): the engine answers from its event buffer and closes the stream
    /// at `until`.
    pub(crate) async fn updated_since(
        &self,
        since: f64,
        until: f64,
    ) -> Result<Vec<String>, DockerError> {
        let rel = format!(
            "/events?since={since:.9}&until={until:.9}&filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22update%22%5D%7D"
        );
        let (path, body) = self.get_body(&rel, EVENTS).await?;
        parse_event_ids(&body, EVENTS.items).map_err(|e| self.decode_error(path, e))
    }
}

/// The first bytes of an error answer (enough for its message); the rest is not read.
async fn error_prefix(resp: &mut Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < ERROR_BODY {
        match resp.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d[..d.len().min(ERROR_BODY - out.len())]);
                }
            }
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation() {
        assert_eq!(negotiate(Some("1.41")), "1.41");
        assert_eq!(negotiate(Some("1.56")), CLIENT_API);
        assert_eq!(negotiate(Some("garbage")), CLIENT_API);
        assert_eq!(negotiate(None), CLIENT_API);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_rfc3339_nanos("2024-06-10T12:00:00.5Z"),
            Some(1_718_020_800_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-06-10T14:00:00.123456789+02:00"),
            Some(1_718_020_800_123_456_789)
        );
        assert_eq!(parse_rfc3339_nanos("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_nanos("yesterday"), None);
    }

    #[test]
    fn decodes_list_and_inspect_shapes() {
        let list = r#"[{"Id":"4c1e","Names":["/d3b07384-d113-4ec6-a2f4-6c3b1f0e8a9f"],"Image":"ghcr.io/pterodactyl/yolks:java_21","ImageID":"sha256:x","Created":1718000000,"Ports":[],"Labels":{"ContainerType":"server_process","Service":"Pterodactyl"},"State":"running","Status":"Up 2 hours","HostConfig":{"NetworkMode":"pterodactyl_nw"}},{"Id":"x","Names":null,"Labels":null,"State":"exited"}]"#;
        let l: Vec<Summary> = serde_json::from_str(list).unwrap();
        assert_eq!(l[0].name(), "d3b07384-d113-4ec6-a2f4-6c3b1f0e8a9f");
        assert_eq!(l[0].labels.as_ref().unwrap()["Service"], "Pterodactyl");
        assert_eq!(l[0].labels.as_ref().unwrap().len(), 2);
        assert_eq!(l[1].name(), "");
        let i: Inspect = serde_json::from_str(
            r#"{"Id":"4c1e","Name":"/u","State":{"Status":"running","Running":true,"Paused":false,"Pid":17422,"StartedAt":"2024-06-10T12:00:00Z"},"HostConfig":{"NanoCpus":0,"CpuQuota":150000,"CpuPeriod":100000}}"#,
        )
        .unwrap();
        assert_eq!(i.state.pid, 17422);
        assert_eq!(i.host_config.cpu_limit(), Some(1.5));
        let hc = |n, q, p| HostConfig {
            nano_cpus: n,
            cpu_quota: q,
            cpu_period: p,
        };
        assert_eq!(hc(500_000_000, 0, 0).cpu_limit(), Some(0.5));
        assert_eq!(hc(0, 25_000, 0).cpu_limit(), Some(0.25));
        assert_eq!(hc(0, -1, 100_000).cpu_limit(), None);
    }

    #[test]
    fn events_give_the_updated_ids_once() {
        let body = br#"{"status":"update","id":"aaa","Type":"container","Action":"update","Actor":{"ID":"aaa","Attributes":{"cpuquota":"50000"}},"time":1,"timeNano":1}
{"Type":"container","Action":"update","Actor":{"ID":"bbb"}}
{"Type":"container","Action":"update","Actor":{"ID":"aaa"}}
"#;
        assert_eq!(parse_event_ids(body, 10).unwrap(), ["aaa", "bbb"]);
        assert_eq!(parse_event_ids(body, 1).unwrap(), ["aaa"]);
        assert!(parse_event_ids(b"{garbage", 10).is_err());
        assert!(parse_event_ids(b"", 10).unwrap().is_empty());
    }

    #[test]
    fn a_huge_list_of_empty_objects_is_refused_by_the_budget() {
        let mut body = b"[".to_vec();
        body.extend(std::iter::repeat_n(b"{},".as_slice(), 200_000).flatten());
        body.extend_from_slice(b"{}]");
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct List(#[serde(deserialize_with = "json::bounded_vec")] Vec<Summary>);
        let e = json::with_budget::<List>(&body, LIST.items).err().unwrap();
        assert!(e.to_string().contains("more elements"), "{e}");
    }
}
