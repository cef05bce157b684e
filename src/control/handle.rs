//! The running agent as the OpAMP client sees it: [`StateHandle`] answers the client's questions
//! from the shared state, so the control plane sees exactly what the agent exports and serves.
//!
//! - The description is built from the OTLP Resource (`Context::resource`): the same identity
//!   and the same capabilities, refreshed as the samplers learn them.
//! - The health has one component per sampler (as recorded after each pass), the exporter
//!   (from the delivery counters) and the game-server probes; a component is unhealthy when its
//!   last pass failed or when it has not succeeded for three of its intervals. Each component's
//!   `status_time` is when its reported state began, so an unchanged health is an identical
//!   message and is not sent again.
//! - The effective configuration is `node-agent config`'s view of the layers as TOML, secrets
//!   redacted by the settings table.
//! - A remote configuration becomes the remote layer: the layers are checked as at start
//!   (`Config::from_layers`), a change to a setting read only at start is refused by name, and
//!   the rest goes live by swapping the live-settings cell the loops read.

use super::agent::{AgentHandle, ApplyError, Description, Health};
use crate::config::remote::{LIVE, RemoteLayer};
use crate::config::{Config, Layers, SETTINGS, Source, display};
use crate::export::ExporterKind;
use crate::state::{Context, Live};
use crate::sys::clock::now_nanos;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The agent's [`AgentHandle`]: the shared state and the layers the configuration came from.
pub(crate) struct StateHandle {
    ctx: Arc<Context>,
    layers: Mutex<Layers>,
    /// Each component's last reported state and since when (Unix nanoseconds).
    since: Mutex<BTreeMap<String, (bool, String, String, u64)>>,
}

impl StateHandle {
    pub(crate) fn new(ctx: Arc<Context>, layers: Layers) -> Self {
        StateHandle {
            ctx,
            layers: Mutex::new(layers),
            since: Mutex::new(BTreeMap::new()),
        }
    }

    /// One component, stamped with when its current state began.
    fn component(&self, name: &str, healthy: bool, status: &str, error: &str) -> Health {
        let error = &scrub_urls(error);
        let now = now_nanos();
        let mut since = self.since.lock();
        let entry = since
            .entry(name.to_string())
            .or_insert_with(|| (healthy, status.to_string(), error.to_string(), now));
        if (entry.0, entry.1.as_str(), entry.2.as_str()) != (healthy, status, error) {
            *entry = (healthy, status.to_string(), error.to_string(), now);
        }
        Health {
            healthy,
            status: status.to_string(),
            last_error: error.to_string(),
            start_time_unix_nano: self.ctx.started_nanos,
            status_time_unix_nano: entry.3,
            components: BTreeMap::new(),
        }
    }

    fn exporter(&self, now_s: u64) -> Health {
        let cfg = &self.ctx.cfg;
        let e = &self.ctx.export;
        match cfg.export.exporter {
            ExporterKind::None => return self.component("exporter", true, "off", ""),
            ExporterKind::Console => return self.component("exporter", true, "console", ""),
            ExporterKind::Otlp => {}
        }
        // The same rule as /readyz: stuck when every attempt failed for longer than two full
        // backoffs plus a request timeout.
        let stuck_after = (cfg.queue.backoff_max * 2 + cfg.export.timeout).as_secs() + 10;
        let failing_since = e.snapshot().failing_since;
        let error = e.last_error().unwrap_or_default();
        if let Some((d, op)) = e.disk_stalled() {
            let what = format!("{op}: no answer for {:.0} s", d.as_secs_f64());
            self.component("exporter", false, "spool disk stalled", &what)
        } else if failing_since == 0 {
            self.component("exporter", true, "delivering", "")
        } else if now_s.saturating_sub(failing_since) > stuck_after {
            self.component("exporter", false, "stuck", &error)
        } else {
            self.component("exporter", true, "retrying", &error)
        }
    }
}

/// Error texts come from libraries that print the URL they failed on; a URL's user-info and
/// query may hold credentials, so they are cut before the text leaves the node.
fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(rest.len());
        let url = &rest[..end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let host_start = url[..authority_end].rfind('@').map_or(0, |a| a + 1);
        let path_end = url.find(['?', '#']).unwrap_or(url.len());
        out.push_str(&url[host_start..path_end]);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl AgentHandle for StateHandle {
    fn description(&self) -> Description {
        Description::from_resource(&self.ctx.resource())
    }

    fn health(&self) -> Health {
        let now_s = now_nanos() / 1_000_000_000;
        let live = self.ctx.live();
        let mut components = BTreeMap::new();
        let samplers = self.ctx.health.snapshot();
        for (name, h) in &samplers {
            let interval = match *name {
                "players" => live.players.interval.1,
                "docker" | "wings" => live.discovery_interval,
                _ => live.sample_interval.1,
            };
            let stale_after = (interval * 3 + Duration::from_secs(10)).as_secs();
            let c = if let Some(e) = &h.last_error {
                self.component(name, false, "failing", e)
            } else if h.last_success == 0 || now_s.saturating_sub(h.last_success) > stale_after {
                let e = format!("no successful pass within {stale_after} s");
                self.component(name, false, "stale", &e)
            } else {
                self.component(name, true, "ok", "")
            };
            components.insert(name.to_string(), c);
        }
        if !samplers.contains_key("players") {
            let c = self.component("players", true, "idle", "");
            components.insert("players".into(), c);
        }
        components.insert("exporter".into(), self.exporter(now_s));
        let failing: Vec<&str> = components
            .iter()
            .filter(|(_, c)| !c.healthy)
            .map(|(n, _)| n.as_str())
            .collect();
        let mut agent = if failing.is_empty() {
            self.component("agent", true, "running", "")
        } else {
            let e = format!("unhealthy: {}", failing.join(", "));
            self.component("agent", false, "degraded", &e)
        };
        agent.components = components;
        agent
    }

    fn effective_config(&self) -> String {
        display::toml(&self.layers.lock())
    }

    fn apply_remote_config(&self, layer: &RemoteLayer) -> Result<(), ApplyError> {
        let current = self.layers.lock().clone();
        let candidate = current.with_remote(layer.clone());
        let cfg = Config::from_layers(&candidate)?;
        let value = |l: &Layers, key| l.get(key).map(|(v, _)| v);
        for s in SETTINGS.iter().filter(|s| !LIVE.contains(&s.key)) {
            if value(&current, s.key) != value(&candidate, s.key) {
                return Err(ApplyError::NeedsRestart(s.key));
            }
        }
        for key in layer.settings.keys() {
            if let Some((_, src @ (Source::Flag(_) | Source::Env(_)))) = candidate.get(key) {
                tracing::warn!(
                    setting = %key,
                    from = %src,
                    "the remote configuration sets a value that the node's {src} overrides"
                );
            }
        }
        self.ctx.set_live(Live::from_config(&cfg));
        *self.layers.lock() = candidate;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::scrub_urls;

    #[test]
    fn urls_in_error_texts_lose_credentials() {
        assert_eq!(
            scrub_urls(
                "error sending request for url (https://u:p4ss@h:1/v1/metrics?key=k3y): refused"
            ),
            "error sending request for url (https://h:1/v1/metrics): refused"
        );
        assert_eq!(scrub_urls("no url here"), "no url here");
        assert_eq!(
            scrub_urls("a http://x/y b ws://t@z"),
            "a http://x/y b ws://z"
        );
    }
}
