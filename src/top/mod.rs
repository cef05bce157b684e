//! `node-agent top`: a live view of this node in the terminal, refreshed every second from the
//! same samplers `run` exports: the node's CPU (with iowait), memory, disks and filesystems at
//! the top; below, one row per container or game server with its CPU (cores, and percent of its
//! limit), memory, disk write rate, players online/max and status. It is what a hosting operator
//! otherwise pieces together from `docker stats`, `htop` and a Minecraft status site, and it
//! needs no collector: nothing is exported.
//!
//! - [`model`]: the rows and node figures from the samples, and sorting;
//! - [`render`]: one screen as lines cut to the terminal (80 columns and up, ASCII only);
//! - [`term`]: raw mode, the alternate screen, keys (crossterm).
//!
//! Discovery runs on its own schedule as in `run`; game servers are probed every
//! [`PROBE_EVERY`] so that player counts stay current. `--once` prints one screen as plain text
//! and exits, for scripts and for terminals that cannot do more.

mod model;
mod render;
mod term;

use crate::config::Config;
use crate::runtime::discovery::publish;
use crate::sources::containers::{Discovery, SourceState};
use crate::sources::node::NodeSampler;
use crate::sources::probe::prober::{Prober, TargetResult};
use crate::sources::probe::targets;
use crate::state::Context;
use crate::sys::clock::now_nanos;
use model::{DiskRates, NodeView, Row, SortKey};
use parking_lot::Mutex;
use render::{Frame, Screen};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use term::{Input, Terminal};
use tokio::sync::watch;

/// How often the screen is sampled and redrawn.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);
/// How often game servers are asked for their players.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(5);

/// What the background tasks share with the screen.
#[derive(Default)]
struct Shared {
    probes: Mutex<Vec<TargetResult>>,
    discovered: AtomicBool,
}

/// The samplers and what the screen keeps between refreshes.
struct View {
    ctx: Arc<Context>,
    shared: Arc<Shared>,
    node: NodeSampler,
    disks: DiskRates,
    node_view: NodeView,
    rows: Vec<Row>,
    notes: Vec<String>,
    /// Local time of the last sample.
    clock: String,
    sort: SortKey,
    descending: bool,
    offset: usize,
}

impl View {
    /// One sample of the node and every container.
    fn sample(&mut self) {
        self.clock = local_clock();
        let (node, _errors) = self.node.sample();
        let disks = self.disks.rates(&node, Instant::now());
        self.node_view = NodeView::new(&node, disks);
        let inv = self.ctx.containers.inventory();
        let (containers, _) = self.ctx.containers.sampler.lock().sample(&inv, now_nanos());
        self.rows = model::rows(&containers, &self.shared.probes.lock());
        model::sort(&mut self.rows, self.sort, self.descending);
        self.notes.clear();
        if !self.shared.discovered.load(Ordering::Relaxed) {
            self.notes
                .push("looking for containers and game servers...".into());
        }
        for (name, state) in [("Docker", &inv.docker), ("Wings", &inv.wings)] {
            if let SourceState::Failed(e) = state {
                self.notes.push(format!("{name}: {e}"));
            }
        }
    }

    fn frame(&self, width: usize, height: usize) -> Frame {
        render::frame(
            &Screen {
                host: &self.ctx.host.host_name,
                clock: &self.clock,
                node: &self.node_view,
                rows: &self.rows,
                sort: self.sort,
                descending: self.descending,
                offset: self.offset,
                notes: &self.notes,
            },
            width,
            height,
        )
    }

    fn apply(&mut self, input: Input) {
        match input {
            Input::Sort(k) if k == self.sort => self.descending = !self.descending,
            Input::Sort(k) => {
                self.sort = k;
                self.descending = k.descending_by_default();
            }
            Input::Scroll(d) => self.offset = self.offset.saturating_add_signed(d),
            Input::Redraw | Input::Quit => {}
        }
        model::sort(&mut self.rows, self.sort, self.descending);
    }
}

/// `HH:MM:SS` in the local time zone (as `top` shows it).
fn local_clock() -> String {
    // SAFETY: time(2) and localtime_r(3) with valid pointers; `tm` is plain data.
    let tm = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// Discovery every `discovery_interval`, and a probe pass every [`PROBE_EVERY`] over what it
/// found, until `stop`.
fn start_background(ctx: &Arc<Context>, shared: &Arc<Shared>, stop: &watch::Receiver<bool>) {
    let (c, sh, mut st) = (ctx.clone(), shared.clone(), stop.clone());
    tokio::spawn(async move {
        let mut d = Discovery::new(&c.cfg.discovery, c.mounts.clone());
        loop {
            let started = Instant::now();
            let (inv, outcomes) = d.pass().await;
            publish(&c, inv, outcomes, started.elapsed());
            sh.discovered.store(true, Ordering::Relaxed);
            if crate::runtime::timing::sleep_or_shutdown(c.cfg.discovery.interval, &mut st).await {
                return;
            }
        }
    });
    let (c, sh, mut st) = (ctx.clone(), shared.clone(), stop.clone());
    tokio::spawn(async move {
        let mut prober = Prober::from_config(&c.cfg.players);
        loop {
            let list = targets::from_inventory(&c.containers.inventory());
            let results = tokio::select! {
                r = prober.pass(&list) => r,
                _ = st.changed() => return,
            };
            *sh.probes.lock() = results;
            let wait = if sh.discovered.load(Ordering::Relaxed) {
                PROBE_EVERY
            } else {
                // Until discovery has answered, look again soon for its servers.
                REFRESH
            };
            if crate::runtime::timing::sleep_or_shutdown(wait, &mut st).await {
                return;
            }
        }
    });
}

/// Runs the live view until `q`; returns the exit code.
pub async fn run(cfg: Config, once: bool) -> i32 {
    let tty = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if !once && !tty {
        eprintln!(
            "node-agent top: needs a terminal; use `node-agent top --once` for one screen as text, or `node-agent check`"
        );
        return 2;
    }
    let ctx = Arc::new(Context::new(cfg));
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    start_background(&ctx, &shared, &stop_rx);
    let mut view = View {
        node: NodeSampler::new(&ctx.cfg.node, ctx.mounts.clone()),
        ctx,
        shared,
        disks: DiskRates::default(),
        node_view: NodeView::default(),
        rows: Vec::new(),
        notes: Vec::new(),
        clock: String::new(),
        sort: SortKey::Cpu,
        descending: true,
        offset: 0,
    };
    let code = if once {
        print_once(&mut view).await
    } else {
        live(&mut view).await
    };
    let _ = stop_tx.send(true);
    code
}

/// One screen as plain text: two samples a second apart (rates need two), after discovery.
async fn print_once(view: &mut View) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    view.sample();
    while !view.shared.discovered.load(Ordering::Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    view.sample();
    tokio::time::sleep(REFRESH).await;
    view.sample();
    let width = if std::io::stdout().is_terminal() {
        Terminal::size().0
    } else {
        120
    };
    let f = view.frame(width, 16 + view.notes.len() + view.rows.len());
    let mut lines = f.lines;
    // No keys to explain, no padding.
    lines.pop();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{}", lines.join("\n"));
    0
}

async fn live(view: &mut View) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut terminal, mut input) = match Terminal::enter() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("node-agent top: cannot set up the terminal: {e}");
            return 1;
        }
    };
    // Raw mode turns Ctrl-C into a key; SIGTERM and SIGHUP (the SSH session went away) still end
    // the view through the same exit, which restores the terminal.
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        return 1;
    };
    // A signal ends the view like `q` does, within the same bound: if the view is stuck in a
    // sample, this task (on a runtime worker, not the view's thread) ends the process.
    let stopped = terminal.stopped();
    tokio::spawn(async move {
        let (Ok(mut a), Ok(mut b), Ok(mut c)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = a.recv() => {}
            _ = b.recv() => {}
            _ = c.recv() => {}
        }
        std::thread::spawn(move || term::quit_watchdog(&stopped));
    });
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => view.sample(),
            i = input.recv() => match i {
                Some(Input::Quit) | None => break,
                Some(i) => view.apply(i),
            },
            _ = term.recv() => break,
            _ = hup.recv() => break,
            _ = int.recv() => break,
        }
        let (w, h) = Terminal::size();
        let f = view.frame(w, h);
        view.offset = f.offset;
        if terminal.draw(&f, w).is_err() {
            break;
        }
    }
    drop(terminal);
    0
}
