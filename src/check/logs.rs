//! `check`'s part about container logs: which containers the logs source would follow now, and
//! where each one's cursor stands (read from the cursor files, changing nothing).

use super::SourceStatus;
use crate::export::ExporterKind;
use crate::sources::containers::docker::Docker;
use crate::sources::logs::cursor::peek;
use crate::sources::logs::select::selected;
use crate::sources::logs::{Position, Selection, Servers};
use crate::state::Context;
use serde::Serialize;
use std::fmt::Write;

/// One container whose console is followed.
#[derive(Debug, Serialize)]
pub(crate) struct Followed {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) server_uuid: Option<String>,
    /// Docker's state (`running`, `exited`, …).
    pub(crate) state: String,
    /// Where its log was read up to (`None`: read from the start of what Docker holds, or
    /// `logs_backfill_sec` back).
    pub(crate) cursor: Option<Position>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LogsCheck {
    pub(crate) selection: Selection,
    pub(crate) cursor_dir: String,
    pub(crate) containers: Vec<Followed>,
}

/// Lists the selected containers and their cursors.
pub(crate) async fn check(ctx: &Context) -> (Option<LogsCheck>, SourceStatus) {
    let cfg = &ctx.cfg;
    let status = |ok, detail: String| SourceStatus {
        name: "logs".into(),
        ok,
        detail,
    };
    if cfg.logs_export.exporter == ExporterKind::None {
        return (None, status(true, "off (OTEL_LOGS_EXPORTER=none)".into()));
    }
    let selection = cfg.logs.selection;
    if selection == Selection::Off {
        return (None, status(true, "off (NODE_AGENT_LOGS=off)".into()));
    }
    let dir = cfg.logs.cursor_dir();
    let docker = Docker::new(&cfg.logs.docker_host, cfg.logs.request_timeout);
    let list = match docker.list().await {
        Ok(l) => l,
        Err(e) if e.is_absent() => {
            return (
                None,
                status(true, "no Docker on this node: no consoles to follow".into()),
            );
        }
        Err(e) => {
            return (
                None,
                status(false, format!("cannot list Docker containers: {e}")),
            );
        }
    };
    let cursors = match peek(&dir) {
        Ok(c) => c,
        Err(e) => {
            return (
                None,
                status(
                    false,
                    format!("cannot read the cursors in {}: {e}", dir.display()),
                ),
            );
        }
    };
    let (ok_dir, dir_detail) = crate::export::spool::inspect(&dir);
    let mut containers: Vec<Followed> = list
        .iter()
        .filter(|s| {
            let labels = s.labels.clone().unwrap_or_default();
            selected(selection, &ctx.containers, &s.id, &s.name(), &labels)
        })
        .map(|s| {
            let labels = s.labels.clone().unwrap_or_default();
            Followed {
                id: s.id.clone(),
                name: s.name(),
                server_uuid: ctx
                    .containers
                    .server(&s.id, &s.name(), &labels)
                    .map(|x| x.0),
                state: s.state.clone(),
                cursor: cursors.get(&s.id).cloned(),
            }
        })
        .collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let with_cursor = containers.iter().filter(|c| c.cursor.is_some()).count();
    let detail = format!(
        "{} ({}): {} container(s) followed, {with_cursor} with a cursor in {}{}",
        selection.name(),
        if selection == Selection::Servers {
            "Pterodactyl server containers"
        } else {
            "every container"
        },
        containers.len(),
        dir.display(),
        if ok_dir {
            String::new()
        } else {
            format!("; {dir_detail}")
        }
    );
    (
        Some(LogsCheck {
            selection,
            cursor_dir: dir.display().to_string(),
            containers,
        }),
        status(ok_dir, detail),
    )
}

/// A Docker time (Unix ns) as UTC, to the millisecond.
fn time(ns: u64) -> String {
    if ns == 0 {
        return "-".into();
    }
    let secs = (ns / 1_000_000_000) as i64;
    let ms = (ns / 1_000_000) % 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::sys::clock::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The text block of `check`.
pub(crate) fn render(o: &mut String, l: &LogsCheck) {
    let _ = writeln!(
        o,
        "\nContainer logs ({}; cursors in {})",
        l.selection.name(),
        l.cursor_dir
    );
    if l.containers.is_empty() {
        let _ = writeln!(o, "  no container selected");
    }
    for c in &l.containers {
        let cursor = match &c.cursor {
            None => "no cursor yet: read from the start of what Docker holds".to_string(),
            Some(p) => format!(
                "stdout at {} (+{}), stderr at {} (+{}){}",
                time(p.stdout.ts),
                p.stdout.n,
                time(p.stderr.ts),
                p.stderr.n,
                if p.drained.is_some() {
                    ", read to its stop"
                } else {
                    ""
                }
            ),
        };
        let _ = writeln!(
            o,
            "  {:<38} {:<12} {:<8} {cursor}",
            c.name,
            &c.id[..c.id.len().min(12)],
            c.state
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc() {
        assert_eq!(super::time(0), "-");
        assert_eq!(
            super::time(1_764_494_611_689_741_219),
            "2025-11-30T09:23:31.689Z"
        );
    }
}
