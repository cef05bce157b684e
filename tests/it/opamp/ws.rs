//! The agent over WebSocket against a server in the suite: tokio-tungstenite on loopback (on its
//! own runtime thread), speaking the specification's framing by hand (a varint header, 0, then
//! the protobuf message), checking the bearer token on the upgrade, answering every
//! AgentToServer and pushing messages of its own at any time.

use super::*;
use futures_util::{SinkExt, StreamExt};
use node_agent::control::proto::{self, AgentToServer, ServerToAgent};
use parking_lot::Mutex;
use prost::Message as _;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;

#[derive(Default)]
struct Seen {
    connections: usize,
    auth: Vec<Option<String>>,
    messages: Vec<(Instant, AgentToServer)>,
    closes: usize,
}

type Responder = Arc<dyn Fn(&AgentToServer, usize) -> Option<ServerToAgent> + Send + Sync>;

struct WsServer {
    rt: tokio::runtime::Runtime,
    port: u16,
    seen: Arc<Mutex<Seen>>,
    push: broadcast::Sender<Message>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

fn ack(msg: &AgentToServer) -> ServerToAgent {
    ServerToAgent {
        instance_uid: msg.instance_uid.clone(),
        capabilities: 0x7,
        ..Default::default()
    }
}

/// A server message as a WebSocket binary message: header 0 (one byte), then the protobuf.
fn frame(m: &ServerToAgent) -> Message {
    let mut v = vec![0u8];
    m.encode(&mut v).unwrap();
    Message::Binary(v.into())
}

impl WsServer {
    /// On `port` (0: any), requiring `Bearer <token>` when given.
    fn start(port: u16, token: Option<&str>, responder: Responder) -> WsServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let l = rt.block_on(TcpListener::bind(("127.0.0.1", port))).unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (push, _) = broadcast::channel(16);
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (s, p, t) = (seen.clone(), push.clone(), tasks.clone());
        let want = token.map(|t| format!("Bearer {t}"));
        let accept = rt.spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                let c = tokio::spawn(connection(
                    stream,
                    s.clone(),
                    responder.clone(),
                    want.clone(),
                    p.subscribe(),
                ));
                t.lock().push(c.abort_handle());
            }
        });
        tasks.lock().push(accept.abort_handle());
        WsServer {
            rt,
            port,
            seen,
            push,
            tasks,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/opamp", self.port)
    }

    fn send(&self, m: Message) {
        self.push.send(m).unwrap();
    }

    fn messages(&self) -> Vec<AgentToServer> {
        self.seen
            .lock()
            .messages
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The server goes away: listener and every connection dropped.
    fn stop(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        // Let the aborts land (sockets closed) before the caller goes on.
        self.rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    seen: Arc<Mutex<Seen>>,
    responder: Responder,
    want: Option<String>,
    mut push: broadcast::Receiver<Message>,
) {
    let mut auth = None;
    // The callback's signature is tungstenite's (its error is an HTTP response).
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        if want.is_some() && auth != want {
            return Err(http::Response::builder()
                .status(401)
                .body(Some("unauthorized".into()))
                .unwrap());
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, cb).await;
    {
        let mut s = seen.lock();
        s.connections += 1;
        s.auth.push(auth.clone());
    }
    let Ok(mut ws) = ws else { return };
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    assert_eq!(b[0], 0, "header must be 0");
                    let msg = AgentToServer::decode(&b[1..]).expect("AgentToServer");
                    let n = {
                        let mut s = seen.lock();
                        s.messages.push((Instant::now(), msg.clone()));
                        s.messages.len() - 1
                    };
                    if msg.agent_disconnect.is_none()
                        && let Some(reply) = responder(&msg, n)
                        && ws.send(frame(&reply)).await.is_err()
                    {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    seen.lock().closes += 1;
                    let _ = ws.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            p = push.recv() => {
                if let Ok(m) = p && ws.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn acker() -> Responder {
    Arc::new(|m, _| Some(ack(m)))
}

fn is_heartbeat(m: &AgentToServer) -> bool {
    m.agent_description.is_none()
        && m.health.is_none()
        && m.effective_config.is_none()
        && m.remote_config_status.is_none()
        && m.agent_disconnect.is_none()
}

/// The server goes away for a few seconds and comes back on the same port: the agent keeps
/// sampling and exporting throughout (the receiver sees no gap), notices, backs off, reconnects
/// and registers in full with its sequence numbers continuing; it says goodbye at the end.
#[test]
fn websocket_server_gone_and_back_keeps_exporting() {
    let server = WsServer::start(0, Some(TOKEN), acker());
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fast = [
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.5"),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.5"),
    ];
    let agent = start_agent(
        dir.path(),
        "w1",
        &server.url(),
        Some(&receiver),
        port,
        &fast,
    );
    wait_until(Duration::from_secs(20), "registration and samples", || {
        server.messages().len() >= 2 && node_times(&receiver).len() >= 2
    });
    let first = &server.messages()[0];
    assert!(first.agent_description.is_some() && first.health.is_some());
    assert_eq!(
        server.seen.lock().auth[0].as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let last_seq = server.messages().last().unwrap().sequence_num;
    let ws_port = server.port;
    let gone = now_ns();
    drop(server);
    wait_until(Duration::from_secs(10), "disconnect noticed", || {
        opamp_status(port)["connected"] == false
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(opamp_status(port)["consecutive_failures"].as_u64().unwrap() >= 1);
    let server = WsServer::start(ws_port, Some(TOKEN), acker());
    let back = now_ns();
    wait_until(Duration::from_secs(20), "reconnect", || {
        !server.messages().is_empty() && opamp_status(port)["connected"] == true
    });
    let first = &server.messages()[0];
    assert!(
        first.agent_description.is_some() && first.health.is_some(),
        "full state after a reconnect"
    );
    assert!(first.sequence_num > last_seq, "sequence numbers continue");
    wait_until(Duration::from_secs(10), "samples after", || {
        node_times(&receiver).iter().filter(|t| **t > back).count() >= 2
    });
    let (_, log) = agent.stop(Duration::from_secs(20));
    let times = node_times(&receiver);
    assert!(
        times.iter().filter(|t| **t > gone && **t < back).count() >= 4,
        "{times:?}"
    );
    let worst = gaps(&times).into_iter().fold(0.0, f64::max);
    assert!(worst < 2.0, "a gap of {worst} s in the samples: {times:?}");
    assert!(
        server.messages().last().unwrap().agent_disconnect.is_some(),
        "goodbye"
    );
    assert_no_secret("the agent's log", &log);
}

/// The protocol over WebSocket with the real agent: a remote configuration pushed by the server
/// (APPLYING, then APPLIED, the effective configuration updated, not applied twice); the
/// heartbeat interval set by the server; ReportFullState; a new instance UID used and kept
/// across a restart; malformed messages ignored and counted; goodbye and the close handshake.
#[test]
fn websocket_session() {
    // The second reply sets a 1 s heartbeat (the agent's own is 30 s here).
    let responder: Responder = Arc::new(|m, n| {
        let mut r = ack(m);
        if n == 1 {
            r.connection_settings = Some(proto::ConnectionSettingsOffers {
                opamp: Some(proto::OpAmpConnectionSettings {
                    heartbeat_interval_seconds: 1,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        Some(r)
    });
    let server = WsServer::start(0, Some(TOKEN), responder);
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [
        ("NODE_AGENT_OPAMP_HEARTBEAT_SEC", "30"),
        ("NODE_AGENT_OPAMP_REMOTE_CONFIG", "true"),
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.5"),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.5"),
    ];
    let agent = start_agent(dir.path(), "s1", &server.url(), Some(&receiver), port, &env);
    wait_until(Duration::from_secs(20), "registration", || {
        !server.messages().is_empty()
    });
    let uid = server.messages()[0].instance_uid.clone();

    // Server-initiated remote configuration of live settings: the players interval, a resource
    // attribute and a game server to probe (nothing listens on its port: it is reported down).
    let game_port = free_port();
    let body = format!(
        "players_interval_min_sec = 1\nplayers_interval_max_sec = 1\n\
         resource_attributes = \"rack=r7\"\n\
         [[static_targets]]\nname = \"remote-mc\"\naddress = \"127.0.0.1\"\n\
         port = {game_port}\nprotocol = \"minecraft-java\"\n"
    );
    let offer = ServerToAgent {
        instance_uid: uid.clone(),
        remote_config: Some(proto::AgentRemoteConfig {
            config: Some(proto::AgentConfigMap {
                config_map: [(
                    "".to_string(),
                    proto::AgentConfigFile {
                        body: body.into_bytes(),
                        content_type: "application/toml".into(),
                    },
                )]
                .into(),
            }),
            config_hash: vec![0xc0; 8],
        }),
        ..Default::default()
    };
    server.send(frame(&offer));
    wait_until(Duration::from_secs(10), "APPLIED reported", || {
        server.messages().iter().any(|m| {
            m.remote_config_status
                .as_ref()
                .is_some_and(|r| r.status == proto::RemoteConfigStatuses::Applied as i32)
        })
    });
    let statuses: Vec<i32> = server
        .messages()
        .iter()
        .filter_map(|m| m.remote_config_status.as_ref())
        .filter(|r| r.last_remote_config_hash == vec![0xc0; 8])
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![2, 1], "APPLYING then APPLIED");
    let eff = server
        .messages()
        .iter()
        .rev()
        .find_map(|m| m.effective_config.clone())
        .unwrap();
    let body = String::from_utf8(
        eff.config_map.unwrap().config_map["node-agent.toml"]
            .body
            .clone(),
    )
    .unwrap();
    assert!(
        body.contains("players_interval_min_sec = \"1\" # remote key"),
        "{body}"
    );
    // Live: the new target is probed and the new attribute is on what is exported, and on the
    // description the control plane sees.
    wait_until(Duration::from_secs(15), "the remote target probed", || {
        receiver.metrics().iter().any(|m| {
            m["name"] == "gameserver.status"
                && m["points"][0]["attrs"]["server.port"] == game_port as u64
        })
    });
    wait_until(
        Duration::from_secs(10),
        "the remote attribute exported",
        || {
            receiver
                .metrics()
                .iter()
                .any(|m| m["resource"]["rack"] == "r7")
        },
    );
    wait_until(
        Duration::from_secs(10),
        "the remote attribute described",
        || {
            server.messages().iter().any(|m| {
                m.agent_description.as_ref().is_some_and(|d| {
                    d.non_identifying_attributes.iter().any(|kv| {
                        kv.key == "rack"
                            && kv.value.as_ref().and_then(|v| v.value.clone())
                                == Some(proto::any_value::Value::StringValue("r7".into()))
                    })
                })
            })
        },
    );
    // The same offer again is not applied again.
    server.send(frame(&offer));

    // Heartbeats at the server's 1 s.
    wait_until(Duration::from_secs(10), "three heartbeats", || {
        server.messages().iter().filter(|m| is_heartbeat(m)).count() >= 3
    });
    let beats: Vec<Instant> = server
        .seen
        .lock()
        .messages
        .iter()
        .filter(|(_, m)| is_heartbeat(m))
        .map(|(t, _)| *t)
        .collect();
    for w in beats.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap > Duration::from_millis(400) && gap < Duration::from_millis(2500),
            "{gap:?}"
        );
    }
    assert_eq!(
        server
            .messages()
            .iter()
            .filter(|m| m
                .remote_config_status
                .as_ref()
                .is_some_and(|r| r.status == 2))
            .count(),
        1,
        "applied once"
    );

    // ReportFullState: the next message carries everything.
    let n = server.messages().len();
    server.send(frame(&ServerToAgent {
        instance_uid: uid.clone(),
        flags: proto::ServerToAgentFlags::ReportFullState as u64,
        ..Default::default()
    }));
    wait_until(Duration::from_secs(5), "full report", || {
        server.messages()[n..]
            .iter()
            .any(|m| m.agent_description.is_some())
    });
    let full = server.messages()[n..]
        .iter()
        .find(|m| m.agent_description.is_some())
        .unwrap()
        .clone();
    assert!(full.health.is_some() && full.effective_config.is_some());
    let st = full.remote_config_status.as_ref().unwrap();
    assert_eq!(
        (st.status, st.last_remote_config_hash.clone()),
        (1, vec![0xc0; 8])
    );

    // A new instance UID from the server is used from now on and kept.
    server.send(frame(&ServerToAgent {
        instance_uid: uid.clone(),
        agent_identification: Some(proto::AgentIdentification {
            new_instance_uid: vec![0x42; 16],
        }),
        ..Default::default()
    }));
    wait_until(Duration::from_secs(5), "new UID in use", || {
        server
            .messages()
            .last()
            .is_some_and(|m| m.instance_uid == vec![0x42; 16])
    });

    // Malformed messages are ignored, the connection stays.
    server.send(Message::Binary(vec![1, 0x0a, 0].into()));
    server.send(Message::Text("hello".into()));
    server.send(Message::Binary(vec![0, 0xff, 0xff, 0xff].into()));
    wait_until(Duration::from_secs(5), "malformed counted", || {
        opamp_status(port)["malformed"] == 3
    });
    let n = server.messages().len();
    wait_until(Duration::from_secs(5), "a heartbeat after", || {
        server.messages().len() > n
    });
    assert_eq!(server.seen.lock().connections, 1);

    let (_, log) = agent.stop(Duration::from_secs(20));
    let last = server.messages().pop().unwrap();
    assert!(last.agent_disconnect.is_some());
    assert_eq!(last.instance_uid, vec![0x42; 16]);
    wait_until(Duration::from_secs(5), "close handshake", || {
        server.seen.lock().closes == 1
    });
    for m in server.messages() {
        assert_no_secret("an AgentToServer", &format!("{m:?}"));
        if let Some(e) = &m.effective_config {
            let body = &e.config_map.as_ref().unwrap().config_map["node-agent.toml"].body;
            assert_no_secret(
                "the effective configuration",
                &String::from_utf8_lossy(body),
            );
        }
    }
    assert_no_secret("the agent's log", &log);

    // A restart keeps the assigned UID and starts with the saved remote configuration.
    let agent = start_agent(dir.path(), "s2", &server.url(), None, port, &env);
    wait_until(Duration::from_secs(20), "re-registration", || {
        opamp_status(port)["connected"] == true
    });
    let st = opamp_status(port);
    assert_eq!(st["instance_uid"], uuid_text(&[0x42; 16]));
    assert_eq!(st["remote_config"]["status"], "APPLIED");
    agent.stop(Duration::from_secs(20));
}

/// A server that never answers, one that sends a message over the size limit, and one that
/// refuses the token: each shows as an error in /readyz (without secrets) and the agent keeps
/// trying with backoff.
#[test]
fn websocket_silent_oversized_and_unauthorized() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();

    let silent = WsServer::start(0, None, Arc::new(|_, _| None));
    let agent = start_agent(
        dir.path(),
        "silent",
        &silent.url(),
        None,
        port,
        &[("NODE_AGENT_OPAMP_TIMEOUT_SEC", "1")],
    );
    wait_until(Duration::from_secs(15), "a second connection", || {
        silent.seen.lock().connections >= 2
    });
    wait_until(Duration::from_secs(5), "the error", || {
        opamp_status(port)["last_error"].is_string()
    });
    let e = opamp_status(port)["last_error"].to_string();
    assert!(e.contains("no reply"), "{e}");
    agent.stop(Duration::from_secs(20));

    let big = WsServer::start(0, None, acker());
    let agent = start_agent(
        dir.path(),
        "big",
        &big.url(),
        None,
        port,
        &[("NODE_AGENT_OPAMP_MAX_MESSAGE_BYTES", "65536")],
    );
    wait_until(Duration::from_secs(10), "connected", || {
        opamp_status(port)["connected"] == true
    });
    let mut huge = vec![0u8; 200 * 1024];
    huge[1] = 0x0a;
    big.send(Message::Binary(huge.into()));
    wait_until(
        Duration::from_secs(15),
        "reconnect after the oversized message",
        || big.seen.lock().connections >= 2,
    );
    let e = opamp_status(port)["last_error"].to_string();
    assert!(e.contains("too long") || e.contains("limit"), "{e}");
    agent.stop(Duration::from_secs(20));

    let strict = WsServer::start(0, Some("another-token"), acker());
    let agent = start_agent(dir.path(), "strict", &strict.url(), None, port, &[]);
    wait_until(Duration::from_secs(10), "refusal", || {
        opamp_status(port)["last_error"].is_string()
    });
    let e = opamp_status(port)["last_error"].to_string();
    assert!(e.contains("401") && e.contains("token"), "{e}");
    assert_no_secret("the status", &e);
    assert!(strict.messages().is_empty());
    agent.stop(Duration::from_secs(20));
}

/// A server that turns heartbeats off (interval 0): no more heartbeat messages, and the agent's
/// WebSocket pings (answered by the server's stack) keep the dead-connection check from firing;
/// a request for the full state is still answered at once.
#[test]
fn websocket_heartbeats_off() {
    let responder: Responder = Arc::new(|m, _| {
        let mut r = ack(m);
        r.connection_settings = Some(proto::ConnectionSettingsOffers {
            opamp: Some(proto::OpAmpConnectionSettings::default()),
            ..Default::default()
        });
        Some(r)
    });
    let server = WsServer::start(0, None, responder);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent = start_agent(
        dir.path(),
        "hb",
        &server.url(),
        None,
        port,
        &[("NODE_AGENT_OPAMP_TIMEOUT_SEC", "1")],
    );
    wait_until(Duration::from_secs(20), "registration", || {
        opamp_status(port)["connected"] == true
    });
    let n = server.messages().len();
    std::thread::sleep(Duration::from_secs(3));
    let later: Vec<AgentToServer> = server.messages()[n..].to_vec();
    assert!(
        later.iter().all(|m| !is_heartbeat(m)),
        "heartbeats were turned off: {later:?}"
    );
    assert_eq!(
        server.seen.lock().connections,
        1,
        "pings kept the connection"
    );
    let st = opamp_status(port);
    assert!(
        st["connected"] == true && st["heartbeat_sec"] == 0.0,
        "{st}"
    );
    let uid = server.messages()[0].instance_uid.clone();
    let n = server.messages().len();
    server.send(frame(&ServerToAgent {
        instance_uid: uid,
        flags: proto::ServerToAgentFlags::ReportFullState as u64,
        ..Default::default()
    }));
    wait_until(Duration::from_secs(5), "full report", || {
        server.messages()[n..]
            .iter()
            .any(|m| m.agent_description.is_some())
    });
    agent.stop(Duration::from_secs(20));
}
