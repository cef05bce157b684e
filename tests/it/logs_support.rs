//! Helpers for tests/it/logs.rs: sinks that behave like a durable delivery queue (in memory, or in
//! a file that survives `kill -9`), records flattened for checking, and the container scripts.

use node_agent::export::logs::{LogBatch, LogSink};
use node_agent::sources::logs::Position;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One delivered record, flattened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rec {
    pub container: String,
    pub stream: String,
    pub ts: u64,
    pub observed: u64,
    pub body: String,
    pub truncated: bool,
    pub original_size: Option<i64>,
    pub resource: BTreeMap<String, String>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

pub fn records(req: &ExportLogsServiceRequest) -> Vec<Rec> {
    let mut out = vec![];
    for rl in &req.resource_logs {
        let resource: BTreeMap<String, String> = rl
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect();
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let attrs: HashMap<String, String> = r
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(&kv.value)))
                    .collect();
                out.push(Rec {
                    container: resource.get("container.id").cloned().unwrap_or_default(),
                    stream: attrs.get("log.iostream").cloned().unwrap_or_default(),
                    ts: r.time_unix_nano,
                    observed: r.observed_time_unix_nano,
                    body: text(&r.body),
                    truncated: attrs.contains_key("node_agent.log.truncated"),
                    original_size: attrs
                        .get("node_agent.log.original_size")
                        .and_then(|v| v.parse().ok()),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

#[derive(Default)]
struct MemState {
    /// Bumped by a crash: batches from a source of an older generation (a "dead" process whose
    /// tasks are still winding down) never reach the store.
    generation: u64,
    delivered: Vec<Rec>,
    positions: HashMap<String, Position>,
    pending: VecDeque<LogBatch>,
}

/// A sink that makes batches durable (records them) shortly after they come, always keeping the
/// newest `hold` in flight, like a queue whose collector is a little behind. [`MemSink::crash`]
/// loses what is in flight, as a `kill -9` would.
#[derive(Clone, Default)]
pub struct MemSink {
    state: Arc<Mutex<MemState>>,
}

/// What one source instance submits through.
pub struct SinkHandle {
    state: Arc<Mutex<MemState>>,
    generation: u64,
}

impl LogSink for SinkHandle {
    fn submit(&self, batch: LogBatch) {
        let mut s = self.state.lock();
        if s.generation == self.generation {
            s.pending.push_back(batch);
        }
    }
}

impl MemSink {
    /// The sink as the next source instance sees it.
    pub fn handle(&self) -> Arc<SinkHandle> {
        Arc::new(SinkHandle {
            state: self.state.clone(),
            generation: self.state.lock().generation,
        })
    }

    /// Acknowledges all but the newest `hold` batches.
    pub fn pump(&self, hold: usize) {
        let mut s = self.state.lock();
        while s.pending.len() > hold {
            let b = s.pending.pop_front().unwrap();
            s.delivered.extend(records(&b.request));
            for (id, p) in &b.positions {
                s.positions.insert(id.clone(), p.clone());
            }
            b.ack.durable();
        }
    }

    /// Drops every batch in flight without an answer.
    pub fn crash(&self) -> usize {
        let mut s = self.state.lock();
        s.generation += 1;
        let n = s.pending.len();
        s.pending.clear();
        n
    }

    pub fn recovered(&self) -> Vec<(String, Position)> {
        self.state.lock().positions.clone().into_iter().collect()
    }

    pub fn delivered(&self) -> Vec<Rec> {
        self.state.lock().delivered.clone()
    }
}

/// One line of the file sink: a durable batch.
#[derive(Serialize, Deserialize)]
struct FileBatch {
    positions: Vec<(String, Position)>,
    records: Vec<Rec>,
}

/// A sink that appends each batch (with its positions) to a file and fsyncs it before the
/// acknowledgement: what a spool does. A line cut by a kill is not durable and is ignored.
pub struct FileSink {
    tx: std::sync::mpsc::Sender<LogBatch>,
}

impl LogSink for FileSink {
    fn submit(&self, batch: LogBatch) {
        let _ = self.tx.send(batch);
    }
}

/// The complete batches of a file sink's file, and the length they end at.
fn read_batches(path: &Path) -> (Vec<FileBatch>, u64) {
    let Ok(f) = std::fs::File::open(path) else {
        return (vec![], 0);
    };
    let mut out = vec![];
    let mut good = 0u64;
    let mut r = std::io::BufReader::new(f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).unwrap();
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<FileBatch>(&line) {
            Ok(b) => {
                out.push(b);
                good += n as u64;
            }
            Err(_) => break,
        }
    }
    (out, good)
}

/// Every record the file holds.
pub fn file_records(path: &Path) -> Vec<Rec> {
    read_batches(path)
        .0
        .into_iter()
        .flat_map(|b| b.records)
        .collect()
}

impl FileSink {
    /// Opens (and repairs) the file; returns the sink and the positions it recovered.
    pub fn open(path: PathBuf) -> (FileSink, Vec<(String, Position)>) {
        let (batches, good) = read_batches(&path);
        let mut positions: HashMap<String, Position> = HashMap::new();
        for b in &batches {
            for (id, p) in &b.positions {
                positions.insert(id.clone(), p.clone());
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.set_len(good).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<LogBatch>();
        std::thread::spawn(move || {
            for b in rx {
                let fb = FileBatch {
                    positions: b.positions.clone(),
                    records: records(&b.request),
                };
                let mut line = serde_json::to_vec(&fb).unwrap();
                line.push(b'\n');
                f.write_all(&line).unwrap();
                f.sync_data().unwrap();
                b.ack.durable();
            }
        });
        (FileSink { tx }, positions.into_iter().collect())
    }
}

/// The container script: `$TAG`'s numbered lines in ten bursts of `$BURST`, a stderr line every
/// 1000, a 40,000-byte line (an `é` across the 16 KiB piece boundary unless `$LONG_AT0`), an
/// invalid UTF-8 line and a last line without newline. With `$PARTS=2` it stops after five
/// bursts (its text so far ending without newline) and goes on when started again.
pub const SCRIPT: &str = r#"
n=0; m=0; part=1
if [ -e /state ]; then read n m < /state; part=2; fi
burst() {
  i=0
  while [ $i -lt $BURST ]; do
    echo "$TAG out $n"; n=$((n+1)); i=$((i+1))
    if [ $((n % 1000)) -eq 0 ]; then echo "$TAG err $m" >&2; m=$((m+1)); fi
  done
}
long() {
  if [ -n "$LONG_AT0" ]; then printf '\303\251%39998s\n' ''
  else a=$(printf '%16383s' ''); b=$(printf '%23615s' ''); printf '%s\303\251%s\n' "$a" "$b"; fi
}
k=0
while [ $k -lt 10 ]; do
  if [ $part = 1 ] || [ $k -ge 5 ]; then
    burst
    if [ $k = 2 ] && [ $part = 1 ]; then long; fi
    if [ $k = 6 ]; then printf "$TAG bad\377\376utf8\n"; fi
    sleep $PAUSE
  fi
  k=$((k+1))
  if [ "$PARTS" = 2 ] && [ $part = 1 ] && [ $k = 5 ]; then
    echo "$n $m" > /state; printf "$TAG part-one-ends-without-newline"; exit 0
  fi
done
printf "$TAG last-no-newline"
"#;

/// What the script prints, per stream (`tty`: everything on stdout, in order).
pub fn expected(
    tag: &str,
    burst: usize,
    tty: bool,
    parts: u8,
    long_at0: bool,
) -> (Vec<String>, Vec<String>) {
    let (mut out, mut err) = (vec![], vec![]);
    let mut n = 0;
    let mut m = 0;
    let long = if long_at0 {
        format!("é{}", " ".repeat(39_998))
    } else {
        format!("{}é{}", " ".repeat(16_383), " ".repeat(23_615))
    };
    for k in 0..10 {
        for _ in 0..burst {
            out.push(format!("{tag} out {n}"));
            n += 1;
            if n % 1000 == 0 {
                let e = format!("{tag} err {m}");
                if tty {
                    out.push(e)
                } else {
                    err.push(e)
                }
                m += 1;
            }
        }
        if k == 2 {
            out.push(long.clone());
        }
        if k == 6 {
            out.push(format!("{tag} bad\u{fffd}\u{fffd}utf8"));
        }
        if parts == 2 && k == 4 {
            out.push(format!("{tag} part-one-ends-without-newline"));
        }
    }
    out.push(format!("{tag} last-no-newline"));
    (out, err)
}

/// `docker run -d` of the test script as a Wings server container.
pub fn server(
    docker: &crate::harness::docker::Dockerd,
    image: &str,
    name: &str,
    tty: bool,
    extra: &[&str],
    env: &[&str],
    script: &str,
) -> String {
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    if tty {
        args.push("-t");
    }
    args.extend([
        "--label",
        "Service=Pterodactyl",
        "--label",
        "ContainerType=server_process",
    ]);
    args.extend(extra);
    for e in env {
        args.extend(["-e", e]);
    }
    args.extend([image, "sh", "-c", script]);
    docker.run(&args)
}

/// `docker run -d` of a container that is not a server (no Wings labels), named `other`: never
/// followed under `logs = servers`.
pub fn not_a_server(docker: &crate::harness::docker::Dockerd, image: &str) -> String {
    docker.run_detached("other", image, &["sh", "-c", "echo not-a-server"])
}

/// A container's state as Docker reports it (`running`, `exited`, ...).
pub fn state_of(docker: &crate::harness::docker::Dockerd, name: &str) -> String {
    docker.inspect(name, "{{.State.Status}}")
}
