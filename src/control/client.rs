//! The client task: connect, report, listen, apply, reconnect; and the handle the rest of the
//! agent keeps (status for `/readyz` and `check`, a nudge to report a change now).
//!
//! One loop serves both transports. After a (re)connect the first message carries the full
//! status; then a report goes out when something changed (the caller nudges, or a remote
//! configuration was applied) and a heartbeat (HTTP: a poll) at the heartbeat interval, counted
//! from the last message sent. On WebSocket every message must be answered within the timeout,
//! or the connection is taken as dead. Any failure, or an UNAVAILABLE answer, ends the
//! connection; the next attempt waits a jittered, growing backoff or what the server asked for.
//! At shutdown the client sends AgentDisconnect (both transports) and closes.

use super::agent::{AgentHandle, ApplyError, effective_config};
use super::proto::{self, RemoteConfigStatuses as Rcs};
use super::retry::{Backoff, TransportError};
use super::session::{self, ServerError, Session, Snapshot};
use super::status::{Shared, new_status, status_name};
use super::transport::{Conn, Transport};
use super::ws::Incoming;
use super::{OpampError, remote, store};
use crate::config::opamp::{OpampConfig, safe_url};
use crate::config::remote::accept;
use crate::state::{ControlStatus, RemoteConfigState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Starts the OpAMP client.
pub(crate) struct Client;

/// Kept by the caller: status, nudges, and the task to wait for at shutdown.
pub(crate) struct ClientHandle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ClientHandle {
    /// The status cell the client keeps current (shared with `/readyz`).
    pub(crate) fn status_cell(&self) -> Arc<parking_lot::Mutex<ControlStatus>> {
        self.shared.status.clone()
    }

    /// Asks for a status report now (call after the health, description or effective
    /// configuration changed); only what changed is sent.
    pub(crate) fn report_changed(&self) {
        self.shared.nudge.notify_one();
    }

    /// Waits until the client has said goodbye (after the shutdown signal).
    pub(crate) async fn join(self) {
        let _ = self.task.await;
    }
}

impl Client {
    /// Loads (or creates) the instance UID and spawns the client on the current tokio runtime.
    /// `in_force` is the saved remote configuration the agent started with (offline mode), if
    /// any: reported as APPLIED and never applied again. Errors are TLS-material or
    /// state-directory problems; network trouble is never an error here (the client keeps
    /// retrying and reports it in the status).
    pub(crate) fn start(
        cfg: OpampConfig,
        in_force: Option<store::AppliedRemote>,
        agent: Arc<dyn AgentHandle>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<ClientHandle, OpampError> {
        let kind = cfg.transport;
        let transport = Transport::new(&cfg)?;
        let uid = store::load_or_create_uid(&cfg.state_dir)?;
        for key in cfg.remote_config_allow.sensitive() {
            tracing::warn!(
                setting = key,
                "the OpAMP server may set `{key}` remotely (opamp_remote_config_allow)"
            );
        }
        let session = Session::new(
            uid,
            session::capabilities(cfg.accept_remote_config),
            in_force.as_ref(),
        );
        let shared = Arc::new(Shared::new(new_status(
            safe_url(&cfg.endpoint),
            kind,
            &uid,
            cfg.heartbeat,
            session.remote_status(),
        )));
        tracing::info!(
            endpoint = %safe_url(&cfg.endpoint),
            transport = ?kind,
            instance_uid = %store::uuid_string(&uid),
            remote_config = cfg.accept_remote_config,
            "OpAMP client starting"
        );
        let runner = Runner {
            backoff: Backoff::new(cfg.backoff_max),
            cfg,
            agent,
            session,
            shared: shared.clone(),
            shutdown,
            pending_remote: None,
            send_now: false,
            server_heartbeat: None,
            last_sent: Instant::now(),
            full_requested: false,
        };
        let task = tokio::spawn(runner.run(transport));
        Ok(ClientHandle { shared, task })
    }
}

enum Exit {
    Shutdown,
    Retry(TransportError),
}

struct Runner {
    cfg: OpampConfig,
    agent: Arc<dyn AgentHandle>,
    session: Session,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    backoff: Backoff,
    pending_remote: Option<proto::AgentRemoteConfig>,
    send_now: bool,
    /// Set by the server (zero: heartbeats off).
    server_heartbeat: Option<Duration>,
    /// When the last message (or WebSocket ping) went out.
    last_sent: Instant,
    /// The server asked for the full state (ReportFullState).
    full_requested: bool,
}

/// How long the goodbye may take at shutdown.
const GOODBYE_WITHIN: Duration = Duration::from_secs(5);

/// The shortest gap between two full reports sent because the server asked for them.
const FULL_REPORT_GAP: Duration = Duration::from_secs(5);

impl Runner {
    async fn run(mut self, transport: Transport) {
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let connected = tokio::select! {
                c = transport.connect() => c,
                _ = self.shutdown.changed() => break,
            };
            let exit = match connected {
                Ok(conn) => self.serve(conn).await,
                Err(e) => Exit::Retry(e),
            };
            let Exit::Retry(e) = exit else { break };
            let wait = self.backoff.next(e.retry_after);
            tracing::warn!(
                error = %e,
                retry_in_s = wait.as_secs_f64().round(),
                "OpAMP server unreachable or refused; retrying"
            );
            self.shared.failed(&e.to_string());
            self.session.resync();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.changed() => break,
            }
        }
        self.shared.status.lock().connected = false;
        tracing::info!("OpAMP client stopped");
    }

    fn interval(&self, http: bool) -> Option<Duration> {
        match self.server_heartbeat {
            // Heartbeats off: HTTP still has to poll to receive anything.
            Some(d) if d.is_zero() => http.then_some(self.cfg.heartbeat),
            Some(d) => Some(d),
            None => Some(self.cfg.heartbeat),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            description: self.agent.description().to_proto(),
            health: self.agent.health().to_proto(),
            effective: effective_config(self.agent.effective_config()),
        }
    }

    /// One connection's life.
    async fn serve(&mut self, mut conn: Conn<'_>) -> Exit {
        self.session.resync();
        self.send_now = true;
        let http = conn.is_http();
        let mut immediate = false;
        // WebSocket: when a reply (or pong) must have arrived by.
        let mut reply_by: Option<Instant> = None;
        loop {
            if let Some(rc) = self.pending_remote.take()
                && let Err(exit) = self.apply_remote(&mut conn, &mut reply_by, rc).await
            {
                return exit;
            }
            immediate |= std::mem::take(&mut self.send_now);
            // Counted from the last message sent (a report is a heartbeat too).
            let mut next_beat = if immediate {
                Instant::now()
            } else {
                self.last_sent + self.interval(http).unwrap_or(self.cfg.heartbeat)
            };
            if self.full_requested {
                // At once, unless the last message was already a full report: a server that
                // asks again on every reply then gets one every FULL_REPORT_GAP, not a loop.
                let at = if self.session.last_was_full {
                    self.last_sent + FULL_REPORT_GAP
                } else {
                    Instant::now()
                };
                next_beat = next_beat.min(at);
            }
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => {
                    let bye = self.session.disconnect();
                    match tokio::time::timeout(GOODBYE_WITHIN, conn.goodbye(&bye)).await {
                        Ok(Ok(())) => tracing::info!("OpAMP: sent AgentDisconnect"),
                        Ok(Err(e)) => tracing::debug!(error = %e, "OpAMP: goodbye not delivered"),
                        Err(_) => tracing::debug!("OpAMP: goodbye not answered in time"),
                    }
                    return Exit::Shutdown;
                }
                r = conn.recv() => match r {
                    Ok(Incoming::Message(m)) => {
                        reply_by = None;
                        if let Err(exit) = self.on_reply(*m) {
                            return exit;
                        }
                    }
                    Ok(Incoming::Pong) => reply_by = None,
                    Ok(Incoming::Malformed(why)) => {
                        tracing::warn!(reason = %why, "OpAMP: ignored a malformed server message");
                        self.shared.status.lock().malformed += 1;
                    }
                    Err(e) => return Exit::Retry(e),
                },
                _ = tokio::time::sleep_until(reply_by.unwrap_or(far)), if reply_by.is_some() => {
                    return Exit::Retry(TransportError::new(format!(
                        "no reply from the server within {:?}", self.cfg.timeout
                    )));
                }
                _ = tokio::time::sleep_until(next_beat) => {
                    let result = if immediate
                        || self.full_requested
                        || self.interval(http).is_some()
                    {
                        self.report(&mut conn, &mut reply_by, true).await
                    } else {
                        // Heartbeats off (WebSocket): a ping keeps the liveness check.
                        match conn.ping().await {
                            Ok(true) => {
                                reply_by.get_or_insert(Instant::now() + self.cfg.timeout);
                                self.last_sent = Instant::now();
                                Ok(())
                            }
                            Ok(false) => Ok(()),
                            Err(e) => Err(Exit::Retry(e)),
                        }
                    };
                    if let Err(exit) = result {
                        return exit;
                    }
                    immediate = false;
                }
                _ = self.shared.nudge.notified() => {
                    if let Err(exit) = self.report(&mut conn, &mut reply_by, false).await {
                        return exit;
                    }
                }
            }
        }
    }

    /// Sends a status report (or, when `heartbeat`, at least a heartbeat) and, for HTTP,
    /// processes the reply.
    async fn report(
        &mut self,
        conn: &mut Conn<'_>,
        reply_by: &mut Option<Instant>,
        heartbeat: bool,
    ) -> Result<(), Exit> {
        let snap = self.snapshot();
        if !heartbeat && !self.session.changed(&snap) {
            return Ok(());
        }
        let msg = self.session.next(&snap);
        self.last_sent = Instant::now();
        self.full_requested = false;
        let reply = conn.send(&msg).await.map_err(Exit::Retry)?;
        self.shared.status.lock().messages_sent += 1;
        match reply {
            Some(m) => self.on_reply(m),
            None => {
                reply_by.get_or_insert(Instant::now() + self.cfg.timeout);
                Ok(())
            }
        }
    }

    fn on_reply(&mut self, m: proto::ServerToAgent) -> Result<(), Exit> {
        let out = self.session.handle(&m);
        if let Some(why) = &out.ignored {
            tracing::debug!(reason = %why, "OpAMP: ignored part of a server message");
        }
        match out.error {
            Some(ServerError::Unavailable {
                message,
                retry_after,
            }) => {
                return Err(Exit::Retry(TransportError {
                    reason: format!("server unavailable: {message}"),
                    retry_after,
                }));
            }
            Some(ServerError::Unknown(message)) => {
                return Err(Exit::Retry(TransportError::new(format!(
                    "server error: {message}"
                ))));
            }
            Some(ServerError::BadRequest(message)) => {
                // Not retried (the specification); the next report is a full one.
                tracing::warn!(error = %message, "OpAMP server rejected a message as malformed");
                self.shared
                    .contact(Some(&format!("bad request: {message}")));
                self.session.resync();
                return Ok(());
            }
            None => {}
        }
        self.backoff.reset();
        if self.shared.contact(None) {
            tracing::info!(
                server_capabilities = self.session.server_capabilities,
                "OpAMP: connected to the server"
            );
        }
        {
            let mut st = self.shared.status.lock();
            st.messages_received += 1;
            st.server_capabilities = self.session.server_capabilities;
        }
        if let Some(uid) = out.new_uid {
            tracing::info!(instance_uid = %store::uuid_string(&uid), "OpAMP server assigned a new instance UID");
            if let Err(e) = store::store_uid(&self.cfg.state_dir, &uid) {
                tracing::warn!(error = %e, "cannot persist the new instance UID");
            }
            self.shared.status.lock().instance_uid = store::uuid_string(&uid);
            self.send_now = true;
        }
        if out.report_full {
            self.full_requested = true;
        }
        if let Some(hb) = out.heartbeat
            && self.server_heartbeat != Some(hb)
        {
            tracing::info!(
                heartbeat_s = hb.as_secs(),
                "OpAMP server set the heartbeat interval"
            );
            self.server_heartbeat = Some(hb);
            self.shared.status.lock().heartbeat_sec = hb.as_secs_f64();
        }
        if let Some(rc) = out.remote {
            self.pending_remote = Some(rc);
        }
        Ok(())
    }

    /// The remote-configuration contract: same hash → nothing; else APPLYING, allow-list,
    /// the agent's own validation and apply, then APPLIED (persisted for offline starts) or
    /// FAILED with the reason; each step reported and audited.
    async fn apply_remote(
        &mut self,
        conn: &mut Conn<'_>,
        reply_by: &mut Option<Instant>,
        rc: proto::AgentRemoteConfig,
    ) -> Result<(), Exit> {
        let hash = remote::config_hash(&rc);
        if self.session.last_remote_hash.as_deref() == Some(hash.as_slice()) {
            return Ok(());
        }
        if !self.cfg.accept_remote_config {
            tracing::debug!("OpAMP: ignored a remote configuration (not accepted on this node)");
            return Ok(());
        }
        let hash_hex = store::hex(&hash);
        self.session.last_remote_hash = Some(hash.clone());
        self.set_remote(&hash, Rcs::Applying, "");
        self.report(conn, reply_by, false).await?;

        let offered = remote::pick_toml(&rc).and_then(|t| {
            accept(&t, &self.cfg.remote_config_allow).map_err(|e| super::Refusal(e.to_string()))
        });
        let result = match offered {
            Err(e) => Err((e.0, Vec::new())),
            Ok(layer) => {
                let keys = layer.keys();
                let agent = self.agent.clone();
                let l = layer.clone();
                let job = tokio::task::spawn_blocking(move || agent.apply_remote_config(&l));
                let outcome = match tokio::time::timeout(self.cfg.timeout, job).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(ApplyError::Aborted("it panicked".into())),
                    Err(_) => Err(ApplyError::Aborted(format!(
                        "it took longer than {:?}",
                        self.cfg.timeout
                    ))),
                };
                match outcome {
                    Ok(()) => Ok(layer),
                    Err(e) => Err((e.to_string(), keys)),
                }
            }
        };
        let (status, keys, error) = match &result {
            Ok(layer) => {
                let saved = store::AppliedRemote {
                    hash: hash.clone(),
                    toml: layer.text.clone(),
                };
                if let Err(e) = store::save_applied(&self.cfg.state_dir, &saved) {
                    tracing::warn!(error = %e, "remote configuration applied but not saved for offline starts");
                }
                tracing::info!(hash = %hash_hex, keys = ?layer.keys(), "OpAMP: remote configuration applied");
                self.set_remote(&hash, Rcs::Applied, "");
                ("APPLIED", layer.keys(), None)
            }
            Err((e, keys)) => {
                tracing::warn!(hash = %hash_hex, error = %e, "OpAMP: remote configuration refused; the previous one stays in force");
                self.set_remote(&hash, Rcs::Failed, e);
                ("FAILED", keys.clone(), Some(e.as_str()))
            }
        };
        let entry = store::AuditEntry {
            event: "remote_config",
            hash: hash_hex,
            status,
            keys,
            error,
        };
        if let Err(e) = store::audit(&self.cfg.state_dir, &entry) {
            tracing::warn!(error = %e, "cannot write the OpAMP audit log");
        }
        self.report(conn, reply_by, false).await
    }

    fn set_remote(&mut self, hash: &[u8], status: Rcs, error: &str) {
        self.session.set_remote_status(hash, status, error);
        self.shared.status.lock().remote_config = Some(RemoteConfigState {
            hash: store::hex(hash),
            status: status_name(status as i32).to_string(),
            error: (!error.is_empty()).then(|| error.to_string()),
        });
    }
}
