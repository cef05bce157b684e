//! The Docker Engine API calls the logs source makes: inspect (TTY or not, names, state), the
//! logs stream, and the `/events` stream, all through the agent's Docker client (one connection
//! per stream, version negotiated once).

use crate::sources::containers::docker::{Docker, DockerError, Response};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One `/events` line is refused past this (labels included, events are a few KiB).
pub(crate) const MAX_EVENT: usize = 256 * 1024;

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InspectConfig {
    #[serde(rename = "Tty", deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(rename = "Image", deserialize_with = "nullable")]
    pub image: String,
    #[serde(rename = "Labels", deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InspectState {
    #[serde(rename = "Running", deserialize_with = "nullable")]
    pub running: bool,
    #[serde(rename = "FinishedAt", deserialize_with = "nullable")]
    pub finished_at: String,
}

/// What the logs source needs from `GET /containers/{id}/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Inspect {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Config", deserialize_with = "nullable")]
    pub config: InspectConfig,
    #[serde(rename = "State", deserialize_with = "nullable")]
    pub state: InspectState,
}

impl Inspect {
    pub(crate) fn name(&self) -> &str {
        self.name.trim_start_matches('/')
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Actor {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Attributes", deserialize_with = "nullable")]
    pub attributes: BTreeMap<String, String>,
}

/// One `/events` message (only container start/die/destroy are asked for).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Event {
    #[serde(rename = "Type", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(rename = "Action", deserialize_with = "nullable")]
    pub action: String,
    #[serde(rename = "Actor", deserialize_with = "nullable")]
    pub actor: Actor,
}

/// `{"type":["container"],"event":["start","die","destroy"]}`, URL-encoded.
const EVENT_FILTERS: &str = "%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22die%22%2C%22destroy%22%5D%7D";

fn clean_id(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

pub(crate) async fn inspect(docker: &Docker, id: &str) -> Result<Inspect, DockerError> {
    docker
        .get_json(&format!("/containers/{}/json", clean_id(id)))
        .await
}

/// `GET /containers/{id}/logs`: both streams, Docker's timestamps, from `since` (Unix ns, 0 =
/// from the start), following while the container runs when `follow`.
pub(crate) async fn logs(
    docker: &Docker,
    id: &str,
    since: u64,
    follow: bool,
) -> Result<Response, DockerError> {
    let mut q = format!(
        "/containers/{}/logs?stdout=1&stderr=1&timestamps=1&follow={}",
        clean_id(id),
        u8::from(follow)
    );
    if since > 0 {
        q.push_str("&since=");
        q.push_str(&super::timestamp::since_param(since));
    }
    docker.stream(&q).await
}

pub(crate) async fn events(docker: &Docker) -> Result<Response, DockerError> {
    docker
        .stream(&format!("/events?filters={EVENT_FILTERS}"))
        .await
}

/// Why a stream stopped before its clean end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("{0}")]
    Read(#[from] hyper::Error),
    #[error("no data for {:.0} s in the middle of a message", .0.as_secs_f64())]
    Stalled(Duration),
}

/// The next piece of a streaming body: `Ok(None)` at its clean end. Trailers are skipped.
pub(crate) async fn next_data(resp: &mut Response) -> Result<Option<Bytes>, StreamError> {
    loop {
        match resp.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data()
                    && !d.is_empty()
                {
                    return Ok(Some(d));
                }
            }
        }
    }
}

/// The next piece if the body has one ready, without waiting: `None` when nothing is there yet.
pub(crate) async fn ready_data(resp: &mut Response) -> Option<Result<Option<Bytes>, StreamError>> {
    use std::task::Poll;
    std::future::poll_fn(|cx| {
        loop {
            return match resp.poll_frame(cx) {
                Poll::Pending => Poll::Ready(None),
                Poll::Ready(None) => Poll::Ready(Some(Ok(None))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) if !d.is_empty() => Poll::Ready(Some(Ok(Some(d)))),
                    _ => continue,
                },
            };
        }
    })
    .await
}

/// Splits the `/events` stream into bounded JSON lines.
#[derive(Default)]
pub(crate) struct EventLines {
    buf: Vec<u8>,
    skipping: bool,
}

impl EventLines {
    /// Feeds bytes; returns the events completed (an over-long or undecodable line is skipped
    /// and counted in the second value).
    pub(crate) fn feed(&mut self, mut d: &[u8]) -> (Vec<Event>, u64) {
        let mut out = Vec::new();
        let mut bad = 0;
        while !d.is_empty() {
            let nl = memchr::memchr(b'\n', d);
            let (part, rest) = match nl {
                Some(i) => (&d[..i], &d[i + 1..]),
                None => (d, &d[d.len()..]),
            };
            if !self.skipping {
                if self.buf.len() + part.len() > MAX_EVENT {
                    self.skipping = true;
                    self.buf.clear();
                    bad += 1;
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            if nl.is_some() {
                if !self.skipping && !self.buf.iter().all(u8::is_ascii_whitespace) {
                    match serde_json::from_slice::<Event>(&self.buf) {
                        Ok(e) => out.push(e),
                        Err(_) => bad += 1,
                    }
                }
                self.buf.clear();
                self.skipping = false;
            }
            d = rest;
        }
        (out, bad)
    }

    pub(crate) fn mid_line(&self) -> bool {
        !self.buf.is_empty() || self.skipping
    }
}

/// A bounded wait for the next piece: `Err` after `stall` with nothing, when `bounded`.
pub(crate) async fn next_within(
    resp: &mut Response,
    bounded: bool,
    stall: Duration,
) -> Result<Option<Bytes>, StreamError> {
    if bounded {
        match tokio::time::timeout(stall, next_data(resp)).await {
            Ok(r) => r,
            Err(_) => Err(StreamError::Stalled(stall)),
        }
    } else {
        next_data(resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_bounded_and_split_anywhere() {
        let ev = br#"{"status":"start","id":"4679","from":"bb:local","Type":"container","Action":"start","Actor":{"ID":"4679","Attributes":{"ContainerType":"server_process","Service":"Pterodactyl","image":"bb:local","name":"ev1"}},"scope":"local","time":1796030681,"timeNano":1796030681526171711}"#;
        let mut all = ev.to_vec();
        all.push(b'\n');
        all.extend_from_slice(b"not json\n\n");
        all.extend_from_slice(ev);
        all.push(b'\n');
        for step in [1, 5, 100, 10_000] {
            let mut l = EventLines::default();
            let mut evs = vec![];
            let mut bad = 0;
            for c in all.chunks(step) {
                let (e, b) = l.feed(c);
                evs.extend(e);
                bad += b;
            }
            assert_eq!(evs.len(), 2, "step {step}");
            assert_eq!(bad, 1);
            assert_eq!(evs[0].action, "start");
            assert_eq!(evs[0].actor.attributes["name"], "ev1");
        }
        let mut l = EventLines::default();
        let big = vec![b'x'; MAX_EVENT + 10];
        let (e, bad) = l.feed(&big);
        assert!(e.is_empty() && bad == 1 && l.mid_line());
        let (e, _) = l.feed(b"\n{\"Type\":\"container\",\"Action\":\"die\"}\n");
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn inspect_shape() {
        let i: Inspect = serde_json::from_str(
            r#"{"Id":"abc","Name":"/u1","Config":{"Tty":true,"Image":"ghcr.io/pterodactyl/yolks:java_21","Labels":null},"State":{"Running":false,"FinishedAt":"2026-11-30T09:24:10.849199217Z"}}"#,
        )
        .unwrap();
        assert!(i.config.tty && !i.state.running);
        assert_eq!(i.name(), "u1");
        assert!(i.config.labels.is_empty());
    }
}
