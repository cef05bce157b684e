//! The Docker Engine API over its unix socket: just enough for discovery.
//!
//! HTTP/1.1 over `DOCKER_HOST` (`unix://…`), one connection per request (discovery runs every
//! 15 s; nothing here is on the sampling path). The API version is negotiated once with
//! `GET /_ping` (`Api-Version` header, `min(ours, theirs)`) and put in the path prefix, as the Go
//! client does. Every request is bounded in time (the configured HTTP timeout) and every body in
//! size, so a wedged or hostile daemon cannot stall or bloat the agent.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
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
/// Bodies above this are refused (a list of thousands of containers is well under it).
pub(crate) const MAX_BODY: usize = 16 << 20;

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
    #[serde(rename = "Names", deserialize_with = "nullable")]
    pub(crate) names: Vec<String>,
    #[serde(rename = "Image", deserialize_with = "nullable")]
    pub(crate) image: String,
    #[serde(rename = "Labels")]
    pub(crate) labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "State", deserialize_with = "nullable")]
    pub(crate) state: String,
    #[serde(rename = "Created", deserialize_with = "nullable")]
    pub(crate) created: i64,
}

impl Summary {
    /// The name without Docker's leading `/`.
    pub(crate) fn name(&self) -> String {
        self.names
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default()
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
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
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
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|source| DockerError::Connect {
                    socket: self.sock(),
                    source,
                })?;
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
            Ok(Response {
                status: resp.status().as_u16(),
                api,
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

    /// One GET; returns status, `Api-Version` header and the body.
    async fn raw_get(&self, path: &str) -> Result<(u16, Option<String>, Bytes), DockerError> {
        let fut = async {
            let mut resp = self.send(path, false).await?;
            let body = Limited::new(&mut resp.body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| DockerError::Http {
                    socket: self.sock(),
                    path: path.to_string(),
                    reason: format!("reading the body: {e}"),
                })?
                .to_bytes();
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
        let mut body = Vec::new();
        let _ = tokio::time::timeout(self.timeout, async {
            while let Some(Ok(f)) = resp.frame().await {
                if let Ok(d) = f.into_data() {
                    body.extend_from_slice(
                        &d[..d.len().min(64 * 1024 - body.len().min(64 * 1024))],
                    );
                }
                if body.len() >= 64 * 1024 {
                    break;
                }
            }
        })
        .await;
        Err(self.status_error(path, status, &body))
    }

    fn status_error(&self, path: String, status: u16, body: &[u8]) -> DockerError {
        #[derive(Deserialize)]
        struct Msg {
            message: String,
        }
        let message = serde_json::from_slice::<Msg>(body)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect());
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
        let (status, api, body) = self.raw_get("/_ping").await?;
        if status != 200 {
            return Err(DockerError::Status {
                socket: self.sock(),
                path: "/_ping".into(),
                status,
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        let v = negotiate(api.as_deref());
        *self.version.lock() = Some(v.clone());
        Ok(v)
    }

    /// `GET /v<version><rel>` decoded from JSON.
    pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        rel: &str,
    ) -> Result<T, DockerError> {
        let path = format!("/v{}{rel}", self.api_version().await?);
        let (status, _, body) = self.raw_get(&path).await?;
        if status != 200 {
            return Err(self.status_error(path, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| DockerError::Decode {
            socket: self.sock(),
            path,
            reason: e.to_string(),
        })
    }

    /// Every container, running or not, with its labels.
    pub(crate) async fn list(&self) -> Result<Vec<Summary>, DockerError> {
        self.get_json("/containers/json?all=true").await
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
        assert_eq!(l[1].name(), "");
        let i: Inspect = serde_json::from_str(
            r#"{"Id":"4c1e","Name":"/u","State":{"Status":"running","Running":true,"Paused":false,"Pid":17422,"StartedAt":"2024-06-10T12:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(i.state.pid, 17422);
    }
}
