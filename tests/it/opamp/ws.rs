//! The WebSocket transport against a server in the suite: tokio-tungstenite on loopback,
//! speaking the specification's framing by hand (a varint header, 0, then the protobuf
//! message), checking the bearer token on the upgrade, answering every AgentToServer and pushing
//! messages of its own at any time.

use super::*;
use futures_util::{SinkExt, StreamExt};
use node_agent::control::proto::{self, AgentToServer, ServerToAgent};
use prost::Message as _;
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
    async fn start(port: u16, token: Option<&str>, responder: Responder) -> WsServer {
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (push, _) = broadcast::channel(16);
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (s, p, t) = (seen.clone(), push.clone(), tasks.clone());
        let want = token.map(|t| format!("Bearer {t}"));
        let accept = tokio::spawn(async move {
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

/// Registration; a remote configuration pushed by the server; the heartbeat interval set by the
/// server; ReportFullState; a new instance UID (persisted); malformed messages ignored; goodbye.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_session() {
    // The second reply sets a 1 s heartbeat (the client's own is 30 s).
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
    let server = WsServer::start(0, Some(TOKEN), responder).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::new();
    let mut cfg = client_config(&server.url(), dir.path());
    cfg.heartbeat = Duration::from_secs(30);
    let (h, tx) = start(cfg, &agent);
    wait_for(Duration::from_secs(10), "registration", || {
        !server.messages().is_empty()
    })
    .await;
    let first = &server.messages()[0];
    assert!(first.agent_description.is_some() && first.health.is_some());
    assert_eq!(first.sequence_num, 1);
    assert_eq!(
        server.seen.lock().auth[0].as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let uid = first.instance_uid.clone();

    // Server-initiated remote configuration.
    let offer = ServerToAgent {
        instance_uid: uid.clone(),
        remote_config: Some(proto::AgentRemoteConfig {
            config: Some(proto::AgentConfigMap {
                config_map: [(
                    "".to_string(),
                    proto::AgentConfigFile {
                        body: b"sample_interval_min_sec = 3\nsample_interval_max_sec = 3\n"
                            .to_vec(),
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
    wait_for(Duration::from_secs(10), "APPLIED reported", || {
        server.messages().iter().any(|m| {
            m.remote_config_status
                .as_ref()
                .is_some_and(|r| r.status == proto::RemoteConfigStatuses::Applied as i32)
        })
    })
    .await;
    assert_eq!(h.status().remote_config.unwrap().status, "APPLIED");
    assert_eq!(agent.sample_interval(), Duration::from_secs(3));
    let statuses: Vec<i32> = server
        .messages()
        .iter()
        .filter_map(|m| m.remote_config_status.as_ref())
        .filter(|r| r.last_remote_config_hash == vec![0xc0; 8])
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![2, 1], "APPLYING then APPLIED");
    // The same offer again is not applied again.
    server.send(frame(&offer));

    // Heartbeats at the server's 1 s.
    wait_for(Duration::from_secs(10), "three heartbeats", || {
        server.messages().iter().filter(|m| is_heartbeat(m)).count() >= 3
    })
    .await;
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
            gap > Duration::from_millis(500) && gap < Duration::from_millis(2500),
            "{gap:?}"
        );
    }
    assert_eq!(agent.apply_calls.load(Ordering::SeqCst), 1);

    // ReportFullState: the next message carries everything.
    let n = server.messages().len();
    server.send(frame(&ServerToAgent {
        instance_uid: uid.clone(),
        flags: proto::ServerToAgentFlags::ReportFullState as u64,
        ..Default::default()
    }));
    wait_for(Duration::from_secs(5), "full report", || {
        server.messages().len() > n
    })
    .await;
    let full = &server.messages()[n];
    assert!(full.agent_description.is_some() && full.effective_config.is_some());
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
    wait_for(Duration::from_secs(5), "new UID in use", || {
        server
            .messages()
            .last()
            .is_some_and(|m| m.instance_uid == vec![0x42; 16])
    })
    .await;

    // Malformed messages are ignored, the connection stays.
    server.send(Message::Binary(vec![1, 0x0a, 0].into()));
    server.send(Message::Text("hello".into()));
    server.send(Message::Binary(vec![0, 0xff, 0xff, 0xff].into()));
    wait_for(Duration::from_secs(5), "malformed counted", || {
        h.status().malformed == 3
    })
    .await;
    let n = server.messages().len();
    wait_for(Duration::from_secs(5), "a heartbeat after", || {
        server.messages().len() > n
    })
    .await;
    assert_eq!(server.seen.lock().connections, 1);
    assert!(h.status().connected);

    stop(h, tx).await;
    let last = server.messages().pop().unwrap();
    assert!(last.agent_disconnect.is_some());
    assert_eq!(last.instance_uid, vec![0x42; 16]);
    wait_for(Duration::from_secs(5), "close handshake", || {
        server.seen.lock().closes == 1
    })
    .await;
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
    let (h2, tx2) = start(client_config(&server.url(), dir.path()), &TestAgent::new());
    assert_eq!(h2.status().instance_uid, uuid_text(&[0x42; 16]));
    stop(h2, tx2).await;
    assert_no_secret("the logs", &String::from_utf8_lossy(&logs().lock()));
}

/// The server goes away and comes back on the same port: the client notices, backs off,
/// reconnects and registers in full (sequence numbers continue); the runtime is never blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_server_gone_and_back() {
    let server = WsServer::start(0, Some(TOKEN), acker()).await;
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (h, tx) = start(client_config(&server.url(), dir.path()), &TestAgent::new());
    wait_for(Duration::from_secs(10), "two messages", || {
        server.messages().len() >= 2
    })
    .await;
    let last_seq = server.messages().last().unwrap().sequence_num;
    server.stop();
    drop(server);
    wait_for(Duration::from_secs(10), "disconnect noticed", || {
        !h.status().connected
    })
    .await;
    let during = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ticks.load(Ordering::SeqCst) >= during + 20,
        "runtime blocked while offline"
    );
    assert!(h.status().consecutive_failures >= 1);

    let server = WsServer::start(port, Some(TOKEN), acker()).await;
    wait_for(Duration::from_secs(20), "reconnect", || {
        !server.messages().is_empty()
    })
    .await;
    let first = &server.messages()[0];
    assert!(
        first.agent_description.is_some() && first.health.is_some(),
        "full state"
    );
    assert!(first.sequence_num > last_seq);
    wait_for(Duration::from_secs(5), "connected", || h.status().connected).await;
    stop(h, tx).await;
    ticker.abort();
}

/// A server that never answers, one that sends a message over the size limit, and one that
/// refuses the token: each is an error in the status (without secrets) and the client keeps
/// trying with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_silent_oversized_and_unauthorized() {
    let dir = tempfile::tempdir().unwrap();

    let silent = WsServer::start(0, None, Arc::new(|_, _| None)).await;
    let mut cfg = client_config(&silent.url(), dir.path());
    cfg.timeout = Duration::from_secs(1);
    let (h, tx) = start(cfg, &TestAgent::new());
    wait_for(Duration::from_secs(15), "a second connection", || {
        silent.seen.lock().connections >= 2
    })
    .await;
    assert!(
        h.status().last_error.unwrap().contains("no reply"),
        "{:?}",
        h.status()
    );
    stop(h, tx).await;

    let big = WsServer::start(0, None, acker()).await;
    let mut cfg = client_config(&big.url(), dir.path());
    cfg.max_message_bytes = 64 * 1024;
    let (h, tx) = start(cfg, &TestAgent::new());
    wait_for(Duration::from_secs(10), "connected", || {
        h.status().connected
    })
    .await;
    let mut huge = vec![0u8; 200 * 1024];
    huge[1] = 0x0a;
    big.send(Message::Binary(huge.into()));
    wait_for(
        Duration::from_secs(15),
        "reconnect after the oversized message",
        || big.seen.lock().connections >= 2,
    )
    .await;
    let e = h.status().last_error.unwrap();
    assert!(e.contains("too long") || e.contains("limit"), "{e}");
    stop(h, tx).await;

    let strict = WsServer::start(0, Some("another-token"), acker()).await;
    let (h, tx) = start(client_config(&strict.url(), dir.path()), &TestAgent::new());
    wait_for(Duration::from_secs(10), "refusal", || {
        h.status().last_error.is_some()
    })
    .await;
    let e = h.status().last_error.unwrap();
    assert!(e.contains("401") && e.contains("token"), "{e}");
    assert_no_secret("the status", &e);
    assert!(strict.messages().is_empty());
    stop(h, tx).await;
}

/// A server that turns heartbeats off (interval 0): no more heartbeat messages, and the
/// client's WebSocket pings (answered by the server's stack) keep the dead-connection check
/// from firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_heartbeats_off() {
    let responder: Responder = Arc::new(|m, _| {
        let mut r = ack(m);
        r.connection_settings = Some(proto::ConnectionSettingsOffers {
            opamp: Some(proto::OpAmpConnectionSettings::default()),
            ..Default::default()
        });
        Some(r)
    });
    let server = WsServer::start(0, None, responder).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = client_config(&server.url(), dir.path());
    cfg.timeout = Duration::from_secs(1);
    let (h, tx) = start(cfg, &TestAgent::new());
    wait_for(Duration::from_secs(10), "registration", || {
        h.status().connected
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(server.messages().len(), 1, "heartbeats were turned off");
    assert_eq!(
        server.seen.lock().connections,
        1,
        "pings kept the connection"
    );
    let st = h.status();
    assert!(st.connected && st.heartbeat_sec == 0.0, "{st:?}");
    // A request for the full state is still answered at once.
    let uid = server.messages()[0].instance_uid.clone();
    server.send(frame(&ServerToAgent {
        instance_uid: uid,
        flags: proto::ServerToAgentFlags::ReportFullState as u64,
        ..Default::default()
    }));
    wait_for(Duration::from_secs(5), "full report", || {
        server.messages().len() == 2
    })
    .await;
    assert!(server.messages()[1].agent_description.is_some());
    stop(h, tx).await;
}
