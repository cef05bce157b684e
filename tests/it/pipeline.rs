//! The included pipeline (collector configs, compose stacks, Prometheus config, dashboards),
//! checked with the real tools that run on our machines: Debian's docker-compose and promtool,
//! the Grafana dashboard JSON schema generated from npm @grafana/schema, the real agent, the rotel
//! collector, and a real Prometheus. No official otelcol and no Grafana server can run here
//! (docs/testing.md#stand-ins-and-why): the collector configs are checked structurally against the
//! contrib distribution's component list, and the collector's Prometheus hop is played by
//! tests/peers/otlp_prom_bridge.py, which translates names exactly as the contrib exporters do.

use crate::harness::*;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    repo_root()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn python(script: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("tests/peers").join(script));
    let pp = format!(
        "{}:{}",
        peers_dir().join("py-grafana").display(),
        peers_dir().join("py").display()
    );
    cmd.env("PYTHONPATH", pp);
    cmd
}

/// `NAME=` lines of .env.example that have a comment line (the explanation) above them, directly
/// or as part of a block of variables under one comment.
fn documented_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let mut out = BTreeMap::new();
    let mut comment = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix('#') {
            comment.push_str(c.trim());
            comment.push(' ');
        } else if let Some((name, _)) = line.split_once('=') {
            assert!(
                !comment.trim().is_empty(),
                ".env.example: {name} has no explaining comment above it"
            );
            out.insert(name.trim().to_string(), comment.clone());
        } else if line.is_empty() {
            comment.clear();
        }
    }
    out
}

fn env_refs(text: &str, re_start: &str) -> BTreeSet<String> {
    // `${env:NAME}` / `${env:NAME:-default}` (collector) or `${NAME}` / `${NAME:-x}` / `${NAME:?x}` (compose)
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(re_start) {
        rest = &rest[i + re_start.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

// ------------------------------------------------------------------------------- compose

fn compose(file: &str, env_file: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(root())
        .args(["-f", file, "--env-file"])
        .arg(env_file)
        .args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("NODE_")
            || k.starts_with("GRAFANA_")
            || k.starts_with("ORCHESTRATOR_")
            || k.starts_with("OTELCOL_")
        {
            cmd.env_remove(k);
        }
    }
    run(&mut cmd)
}

#[test]
fn compose_files_validate_with_docker_compose() {
    let env = root().join(".env.example");
    for (file, services) in [
        (
            "docker-compose.yml",
            vec![
                "grafana",
                "node-agent",
                "otel-collector",
                "otelcol-storage-init",
                "prometheus",
            ],
        ),
        ("docker-compose.central.yml", vec!["grafana", "prometheus"]),
    ] {
        let out = compose(file, &env, &["config", "-q"]);
        assert!(
            out.status.success(),
            "docker-compose -f {file} config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = compose(file, &env, &["config", "--services"]);
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        got.sort();
        assert_eq!(got, services, "{file}: services");
    }

    // The resolved all-in-one config: what the issue asks of the node-agent service.
    let out = compose("docker-compose.yml", &env, &["config"]);
    let cfg: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    let agent = &cfg["services"]["node-agent"];
    assert_eq!(agent["pid"].as_str(), Some("host"));
    assert_eq!(agent["network_mode"].as_str(), Some("host"));
    assert_eq!(agent["read_only"].as_bool(), Some(true));
    // docker-compose 1.29 prints volumes in the short form SOURCE:TARGET:MODE.
    let vols: Vec<(String, String, String)> = agent["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let f: Vec<&str> = v
                .as_str()
                .expect("short volume syntax")
                .split(':')
                .collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f.get(2).unwrap_or(&"rw").to_string(),
            )
        })
        .collect();
    for (source, target) in [
        ("/proc", "/host/proc"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("/var/run/docker.sock", "/var/run/docker.sock"),
        ("/etc/pterodactyl", "/etc/pterodactyl"),
        ("/", "/hostfs"),
    ] {
        let (_, _, mode) = vols
            .iter()
            .find(|(s, t, _)| s == source && t == target)
            .unwrap_or_else(|| panic!("node-agent: no volume {source}:{target}: {vols:?}"));
        assert!(
            mode.split(',').any(|m| m == "ro"),
            "node-agent: {target} is not read-only: {mode}"
        );
    }
    // The agent gets no orchestrator token: only the collector talks to the orchestrator.
    let agent_env = &agent["environment"];
    assert!(
        agent_env.get("NODE_TOKEN").is_none(),
        "node-agent must not get NODE_TOKEN"
    );
    assert_eq!(agent_env["NODE_ID"].as_str(), Some("node-01"));
    assert_eq!(agent_env["NODE_AGENT_LOGS"].as_str(), Some("servers"));
    assert_eq!(
        agent_env["NODE_AGENT_STATE_DIR"].as_str(),
        Some("/var/lib/node-agent"),
        "the cursors on the agent's volume"
    );
    assert_eq!(
        agent_env["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str(),
        Some("http://127.0.0.1:4318"),
        "the agent must send to the collector's loopback HTTP receiver"
    );
    let col = &cfg["services"]["otel-collector"];
    assert_eq!(col["environment"]["NODE_TOKEN"].as_str(), Some("change-me"));
    assert!(
        col["image"]
            .as_str()
            .unwrap()
            .starts_with("otel/opentelemetry-collector-contrib:"),
        "the collector must be the contrib distribution"
    );

    // Every ${VAR} of both compose files is explained in .env.example.
    let documented = documented_env();
    for file in ["docker-compose.yml", "docker-compose.central.yml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for name in env_refs(&text, "${") {
            assert!(
                documented.contains_key(&name),
                "{file}: ${{{name}}} is not in .env.example"
            );
        }
    }

    // Without the required values, compose refuses and names the missing variable.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = compose("docker-compose.yml", empty.path(), &["config", "-q"]);
    assert!(
        !out.status.success(),
        "compose accepted a config without NODE_ID"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set NODE_ID in .env"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_configs_pass_promtool() {
    for file in [
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/prometheus.central.yml",
    ] {
        let out = run_ok(
            Command::new("promtool")
                .current_dir(root())
                .args(["check", "config", file]),
        );
        assert!(out.contains("SUCCESS"), "{file}: {out}");
    }
    // The scrape job keeps the exporter's job/instance (instance = NODE_ID).
    let cfg: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let job = cfg["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("node-agent"))
        .expect("node-agent scrape job");
    assert_eq!(job["honor_labels"].as_bool(), Some(true));
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some("127.0.0.1:8889"),
        "must scrape the collector's prometheus exporter (agent.yaml default endpoint)"
    );
}

// ------------------------------------------------------------------------------- collector

/// kind -> component types, from collector-config/contrib-components.txt.
fn contrib_components() -> BTreeMap<String, BTreeSet<String>> {
    let text =
        std::fs::read_to_string(root().join("collector-config/contrib-components.txt")).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut f = line.split_whitespace();
        let (kind, ty) = (f.next().unwrap(), f.next().unwrap());
        out.entry(kind.to_string())
            .or_default()
            .insert(ty.to_string());
    }
    out
}

/// Problems of one collector config: unknown components, undefined references, unused
/// definitions, undocumented `${env:…}`, pipeline shape.
fn collector_config_problems(name: &str, text: &str) -> Vec<String> {
    let contrib = contrib_components();
    let documented = documented_env();
    let cfg: Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut problems = Vec::new();
    let mut defined: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (section, kind) in [
        ("receivers", "receiver"),
        ("processors", "processor"),
        ("exporters", "exporter"),
        ("extensions", "extension"),
        ("connectors", "connector"),
    ] {
        let Some(map) = cfg.get(section).and_then(Value::as_mapping) else {
            continue;
        };
        for key in map.keys() {
            let id = key.as_str().unwrap().to_string();
            let ty = id.split('/').next().unwrap();
            if !contrib.get(kind).is_some_and(|s| s.contains(ty)) {
                problems.push(format!(
                    "{name}: {kind} `{id}`: type `{ty}` is not in the contrib distribution"
                ));
            }
            defined.entry(section).or_default().insert(id);
        }
    }
    let service = &cfg["service"];
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for ext in service["extensions"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
    {
        let ext = ext.as_str().unwrap().to_string();
        if !defined.get("extensions").is_some_and(|d| d.contains(&ext)) {
            problems.push(format!(
                "{name}: service.extensions: `{ext}` is not defined"
            ));
        }
        used.entry("extensions").or_default().insert(ext);
    }
    let pipelines = service["pipelines"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    if pipelines.is_empty() {
        problems.push(format!("{name}: no pipelines"));
    }
    let mut exporter_pipelines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pname, p) in &pipelines {
        let pname = pname.as_str().unwrap();
        let signal = pname.split('/').next().unwrap();
        if !["metrics", "traces", "logs", "profiles"].contains(&signal) {
            problems.push(format!(
                "{name}: pipeline `{pname}`: unknown signal `{signal}`"
            ));
        }
        for section in ["receivers", "processors", "exporters"] {
            let list: Vec<String> = p[section]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            if section != "processors" && list.is_empty() {
                problems.push(format!("{name}: pipeline `{pname}` has no {section}"));
            }
            for id in &list {
                let is_connector = defined.get("connectors").is_some_and(|d| d.contains(id));
                if !defined.get(section).is_some_and(|d| d.contains(id)) && !is_connector {
                    problems.push(format!(
                        "{name}: pipeline `{pname}`: {section} `{id}` is not defined"
                    ));
                }
                used.entry(section).or_default().insert(id.clone());
                if section == "exporters" {
                    exporter_pipelines
                        .entry(id.clone())
                        .or_default()
                        .push(pname.to_string());
                }
            }
            if section == "processors" && !list.is_empty() {
                if !list[0].starts_with("memory_limiter") {
                    problems.push(format!(
                        "{name}: pipeline `{pname}`: memory_limiter must come first"
                    ));
                }
                if !list.last().unwrap().starts_with("batch") {
                    problems.push(format!("{name}: pipeline `{pname}`: batch must come last"));
                }
            }
        }
    }
    // One pipeline per destination: no exporter shares a pipeline with another, nor appears twice.
    for (pname, p) in &pipelines {
        let n = p["exporters"].as_sequence().map_or(0, Vec::len);
        if n != 1 {
            problems.push(format!(
                "{name}: pipeline `{}` has {n} exporters; one pipeline per destination",
                pname.as_str().unwrap()
            ));
        }
    }
    for (exp, ps) in &exporter_pipelines {
        if ps.len() > 1 {
            problems.push(format!(
                "{name}: exporter `{exp}` is in several pipelines: {ps:?}"
            ));
        }
    }
    for (section, ids) in &defined {
        for id in ids {
            if !used.get(section).is_some_and(|u| u.contains(id)) {
                problems.push(format!(
                    "{name}: {section} `{id}` is defined but never used"
                ));
            }
        }
    }
    // Components that refer to an extension (queue storage, authenticators) refer to a defined one.
    let exts = defined.get("extensions").cloned().unwrap_or_default();
    for (id, exp) in cfg["exporters"].as_mapping().cloned().unwrap_or_default() {
        if let Some(storage) = exp["sending_queue"]["storage"].as_str()
            && (!exts.contains(storage) || !storage.starts_with("file_storage"))
        {
            problems.push(format!(
                "{name}: exporter {id:?}: queue storage `{storage}` is not a defined file_storage"
            ));
        }
    }
    for (_id, rec) in cfg["receivers"].as_mapping().cloned().unwrap_or_default() {
        for (_p, proto) in rec["protocols"].as_mapping().cloned().unwrap_or_default() {
            if let Some(a) = proto["auth"]["authenticator"].as_str()
                && !exts.contains(a)
            {
                problems.push(format!(
                    "{name}: authenticator `{a}` is not a defined extension"
                ));
            }
        }
    }
    for var in env_refs(text, "${env:") {
        if !documented.contains_key(&var) {
            problems.push(format!(
                "{name}: ${{env:{var}}} is not explained in .env.example"
            ));
        }
    }
    problems
}

fn collector_config(name: &str) -> String {
    std::fs::read_to_string(root().join("collector-config").join(name)).unwrap()
}

#[test]
fn collector_configs_are_complete_and_use_only_contrib_components() {
    for name in ["agent.yaml", "gateway.yaml"] {
        let problems = collector_config_problems(name, &collector_config(name));
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    // The checker itself catches what it is meant to catch.
    let agent = collector_config("agent.yaml");
    let broken = agent.replace("  debug:\n    verbosity", "  bogus:\n    verbosity");
    let p = collector_config_problems("broken", &broken);
    assert!(
        p.iter()
            .any(|m| m.contains("type `bogus` is not in the contrib distribution")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("exporters `debug` is not defined")),
        "{p:?}"
    );
    let p = collector_config_problems(
        "broken",
        &agent.replace("${env:NODE_TOKEN}", "${env:NODE_SECRET_X}"),
    );
    assert!(p.iter().any(|m| m.contains("NODE_SECRET_X")), "{p:?}");
    let p = collector_config_problems(
        "broken",
        &agent.replace(
            "exporters: [prometheus]",
            "exporters: [prometheus, otlphttp/orchestrator]",
        ),
    );
    assert!(
        p.iter().any(|m| m.contains("one pipeline per destination")),
        "{p:?}"
    );

    // What the issue asks of agent.yaml, value by value.
    let cfg: Value = serde_yaml::from_str(&agent).unwrap();
    let otlp = &cfg["receivers"]["otlp"]["protocols"];
    assert_eq!(
        otlp["grpc"]["endpoint"].as_str(),
        Some("${env:OTELCOL_OTLP_GRPC_ENDPOINT:-127.0.0.1:4317}")
    );
    assert_eq!(
        otlp["http"]["endpoint"].as_str(),
        Some("${env:OTELCOL_OTLP_HTTP_ENDPOINT:-127.0.0.1:4318}")
    );
    let orch = &cfg["exporters"]["otlphttp/orchestrator"];
    assert_eq!(
        orch["metrics_endpoint"].as_str(),
        Some("${env:ORCHESTRATOR_BASE_URL}/internal/nodes/${env:NODE_ID}/telemetry")
    );
    assert_eq!(
        orch["headers"]["Authorization"].as_str(),
        Some("Bearer ${env:NODE_TOKEN}")
    );
    assert_eq!(orch["retry_on_failure"]["enabled"].as_bool(), Some(true));
    assert_eq!(orch["sending_queue"]["enabled"].as_bool(), Some(true));
    assert!(cfg["exporters"]["prometheus"]["endpoint"].is_string());
    assert!(
        cfg["exporters"]["prometheus"]
            .get("resource_to_telemetry_conversion")
            .is_none()
    );
    // The container consoles: their own exporter (own queue) to the OTLP logs path under the
    // per-node URL (where the agent's direct mode sends them), and a debug pipeline.
    let logs = &cfg["exporters"]["otlphttp/orchestrator-logs"];
    assert_eq!(
        logs["logs_endpoint"].as_str(),
        Some("${env:ORCHESTRATOR_BASE_URL}/internal/nodes/${env:NODE_ID}/telemetry/v1/logs")
    );
    assert_eq!(
        logs["headers"]["Authorization"],
        orch["headers"]["Authorization"]
    );
    assert_eq!(logs["sending_queue"]["enabled"].as_bool(), Some(true));
    let pipes = &cfg["service"]["pipelines"];
    assert_eq!(
        pipes["logs/orchestrator"]["exporters"][0].as_str(),
        Some("otlphttp/orchestrator-logs")
    );
    assert_eq!(
        pipes["logs/debug"]["exporters"][0].as_str(),
        Some("debug/logs")
    );
    let res = &cfg["processors"]["resource/node"]["attributes"][0];
    assert_eq!(res["key"].as_str(), Some("service.instance.id"));
    assert_eq!(res["value"].as_str(), Some("${env:NODE_ID}"));
    assert!(cfg["extensions"]["health_check"].is_mapping());
    let gw: Value = serde_yaml::from_str(&collector_config("gateway.yaml")).unwrap();
    assert!(gw["exporters"]["prometheusremotewrite"]["endpoint"].is_string());
    // One resource per container: both Prometheus pipelines turn the container's resource into
    // labels of its points, with the same statements (the bridge in the end-to-end test runs
    // agent.yaml's).
    for c in [&cfg, &gw] {
        let procs: Vec<&str> = c["service"]["pipelines"]["metrics/prometheus"]["processors"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(procs.contains(&"transform/container_labels"), "{procs:?}");
        for p in ["metrics/orchestrator", "metrics/debug"] {
            assert!(
                !format!("{:?}", c["service"]["pipelines"][p]).contains("transform"),
                "{p} gets the resources as sent"
            );
        }
    }
    assert_eq!(
        cfg["processors"]["transform/container_labels"],
        gw["processors"]["transform/container_labels"]
    );
    let statements = format!("{:?}", cfg["processors"]["transform/container_labels"]);
    for key in [
        "container.id",
        "container.name",
        "container.image.name",
        "pterodactyl.server.uuid",
        "pterodactyl.server.name",
    ] {
        assert!(
            statements.contains(&format!("set(attributes[\\\"{key}\\\"]")),
            "{key} is not copied to the points: {statements}"
        );
    }
}

// ------------------------------------------------------------------------------- dashboards

/// Runs the real agent once with the console exporter; returns its stdout (OTLP JSON lines).
fn agent_console_sample(dir: &Path) -> PathBuf {
    let out = dir.join("console.jsonl");
    let mut agent = Proc::spawn(
        "node-agent",
        agent_command()
            .arg("run")
            .env("OTEL_METRICS_EXPORTER", "console")
            .env("NODE_AGENT_CONSOLE_FORMAT", "otlp-json")
            .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
            .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
            .env("NODE_AGENT_SPOOL_DIR", dir.join("spool"))
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null()),
    );
    // Two passes at least: utilization gauges need a previous sample.
    wait_until(
        Duration::from_secs(60),
        "two sampling passes on the console",
        || {
            std::fs::read_to_string(&out)
                .unwrap_or_default()
                .matches("system.cpu.utilization")
                .count()
                >= 2
        },
    );
    agent.signal(libc::SIGTERM);
    agent
        .wait_timeout(Duration::from_secs(20))
        .expect("agent exits on SIGTERM");
    out
}

/// The Prometheus names the agent may be queried by (contract translated, checked against the
/// source and the real agent's output), as a JSON file for pipeline_check.py.
fn allowed_names(dir: &Path) -> PathBuf {
    let console = agent_console_sample(dir);
    let json = run_ok(
        python("pipeline_check.py")
            .arg("contract")
            .arg(root().join("tests/peers/metric-contract.tsv"))
            .arg(root().join("src"))
            .arg(&console),
    );
    let path = dir.join("allowed.json");
    std::fs::write(&path, json).unwrap();
    path
}

fn dashboard_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn dashboards_match_the_grafana_schema_and_name_only_exported_metrics() {
    let names: Vec<String> = dashboard_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "agent-health.json",
            "fleet.json",
            "gameservers.json",
            "node.json"
        ]
    );
    run_ok(
        Command::new("python3")
            .arg(root().join("scripts/gen-dashboards.py"))
            .arg("--check"),
    );

    let dir = tempfile::tempdir().unwrap();
    let allowed = allowed_names(dir.path());
    let schema = require(&peers_dir().join("npm-grafana/dashboard.schema.json"));
    let out = run_ok(
        python("pipeline_check.py")
            .arg("dashboards")
            .arg(&schema)
            .arg(&allowed)
            .args(dashboard_files()),
    );
    assert!(out.contains("4 dashboards"), "{out}");

    // The checks can fail: a panel without unit, an unknown metric, a schema violation.
    let mut d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("dashboards/node.json")).unwrap(),
    )
    .unwrap();
    let panel = d["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["type"] == "stat")
        .unwrap();
    panel["fieldConfig"]["defaults"]
        .as_object_mut()
        .unwrap()
        .remove("unit");
    panel["targets"][0]["expr"] = "node_cpu_seconds_total".into();
    d["graphTooltip"] = "shared".into();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, serde_json::to_string(&d).unwrap()).unwrap();
    let out = run(python("pipeline_check.py")
        .arg("dashboards")
        .arg(&schema)
        .arg(&allowed)
        .arg(&broken));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no unit"), "{err}");
    assert!(
        err.contains("node_cpu_seconds_total is not a metric the agent exports"),
        "{err}"
    );
    assert!(err.contains("schema: graphTooltip"), "{err}");
}

// ------------------------------------------------------------------------------- end to end

fn read_meminfo_total_bytes() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        * 1024.0
}

/// agent → rotel (the collector, adding `Authorization: Bearer <token>`) → the orchestrator's
/// per-node URL, decoded by the reference opentelemetry-proto classes. The same hop agent.yaml's
/// `otlphttp/orchestrator` exporter makes.
#[test]
fn agent_to_collector_to_orchestrator_with_bearer_token() {
    let token = "t0ken-for-node-7";
    let receiver = Receiver::start(&["--token", token]);
    let path = "/internal/nodes/node-7/telemetry";
    let auth = format!("Authorization=Bearer {token}");
    // Like agent.yaml's `metrics_endpoint`, rotel's metrics endpoint is used as is (its generic
    // endpoint, like the collector's `endpoint`, would get /v1/metrics appended).
    let orchestrator_url = format!("{}{path}", receiver.url());
    let rotel = Rotel::start(
        &receiver.url(),
        &[
            "--otlp-exporter-metrics-endpoint",
            &orchestrator_url,
            "--otlp-exporter-custom-headers",
            &auth,
            "--batch-timeout",
            "200ms",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let _agent = Proc::spawn(
        "node-agent",
        agent_command()
            .arg("run")
            .env("NODE_ID", "node-7")
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rotel.http_port),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
            .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
            .env("NODE_AGENT_SPOOL_DIR", dir.path().join("spool"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(
        Duration::from_secs(60),
        "the orchestrator stand-in to receive metrics",
        || {
            receiver
                .metrics()
                .iter()
                .any(|m| m["name"] == "system.memory.limit")
        },
    );
    let reqs = receiver.requests();
    for r in &reqs {
        assert_eq!(r["auth"].as_str(), Some(&*format!("Bearer {token}")));
        assert_eq!(
            r["path"].as_str(),
            Some(path),
            "the per-node URL, used as is"
        );
    }
    let metrics = receiver.metrics();
    let mem = metrics
        .iter()
        .find(|m| m["name"] == "system.memory.limit")
        .unwrap();
    assert_eq!(
        mem["resource"]["service.instance.id"].as_str(),
        Some("node-7")
    );
    assert_eq!(mem["resource"]["service.name"].as_str(), Some("node-agent"));
    let v = mem["points"][0]["value"].as_f64().unwrap();
    assert_eq!(
        v,
        read_meminfo_total_bytes(),
        "system.memory.limit = MemTotal of /proc/meminfo"
    );
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// agent → rotel → the collector's Prometheus hop (bridge, contrib translation, agent.yaml's
/// transform processors) → real Prometheus; then every query of every dashboard runs against it.
/// A real Docker container is measured, so the container resources go through the transform.
#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    const UUID: &str = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
    let docker = crate::harness::docker::Dockerd::start();
    let image = docker.build_image();
    let id = docker.run_server(UUID, &image, "0.5", "while :; do :; done");
    let prom = Prometheus::start("[]");
    let dir = tempfile::tempdir().unwrap();
    let names_out = dir.path().join("names.txt");
    let bridge_port = free_port();
    let _bridge = Proc::spawn(
        "otlp_prom_bridge.py",
        python("otlp_prom_bridge.py")
            .arg(bridge_port.to_string())
            .arg(format!("{}/api/v1/write", prom.url()))
            .arg(&names_out)
            .arg(root().join("collector-config/agent.yaml"))
            .stdout(Stdio::null()),
    );
    wait_for_port(bridge_port, Duration::from_secs(20));
    let rotel = Rotel::start(
        &format!("http://127.0.0.1:{bridge_port}"),
        &["--batch-timeout", "200ms"],
    );
    let _agent = Proc::spawn(
        "node-agent",
        agent_command()
            .arg("run")
            .env("NODE_ID", "pipeline-test")
            .env("DOCKER_HOST", docker.host())
            .env("AGENT_DISCOVERY_INTERVAL_SEC", "1")
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rotel.grpc_port),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
            .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
            .env("NODE_AGENT_SPOOL_DIR", dir.path().join("spool"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Enough passes in Prometheus for rate() over 1m windows and for the utilization gauges.
    wait_until(
        Duration::from_secs(90),
        "five passes of the agent in Prometheus",
        || {
            prom.query("count_over_time(system_uptime_seconds[1m])")
                .first()
                .and_then(|r| {
                    r["value"][1]
                        .as_str()
                        .map(|v| v.parse::<f64>().unwrap_or(0.0))
                })
                .is_some_and(|n| n >= 5.0)
        },
    );
    wait_until(
        Duration::from_secs(30),
        "the self-metrics in Prometheus",
        || !prom.query("node_agent_export_batches_total").is_empty(),
    );

    wait_until(
        Duration::from_secs(60),
        "the container's series in Prometheus",
        || !prom.query("container_cpu_usage").is_empty(),
    );
    // The container's resource became labels of its series, with the node's job and instance;
    // target_info stayed the node's alone.
    let cpu = prom.query("container_cpu_time_seconds_total");
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    let labels = &cpu[0]["metric"];
    assert_eq!(labels["container_id"].as_str(), Some(id.as_str()));
    assert_eq!(labels["container_name"].as_str(), Some(UUID));
    assert_eq!(
        labels["container_image_name"].as_str(),
        Some(image.as_str())
    );
    assert_eq!(labels["pterodactyl_server_uuid"].as_str(), Some(UUID));
    assert_eq!(labels["job"].as_str(), Some("node-agent"));
    assert_eq!(labels["instance"].as_str(), Some("pipeline-test"));
    let writes = prom.query(r#"container_disk_io_bytes_total{disk_io_direction="write"}"#);
    assert_eq!(writes[0]["metric"]["container_name"].as_str(), Some(UUID));
    let emitted: Vec<String> = std::fs::read_to_string(&names_out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // No Wings, game servers or GPUs on this path: those families may be skipped here.
    check_dashboards_against(
        &prom,
        "pipeline-test",
        emitted,
        dir.path(),
        &["gameserver_", "pterodactyl_", "hw_"],
    );
}

/// Identity labels, one value against /proc, then every query of every dashboard.
/// Checks identity and that every dashboard query returns data; queries needing only metric
/// families that start with one of `may_skip` may be skipped (the peers behind them absent).
fn check_dashboards_against(
    prom: &Prometheus,
    node_id: &str,
    emitted: Vec<String>,
    dir: &Path,
    may_skip: &[&str],
) {
    // Identity: job = service.name, instance = NODE_ID, resource attributes on target_info.
    let up = prom.query("system_uptime_seconds");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["metric"]["job"].as_str(), Some("node-agent"));
    assert_eq!(up[0]["metric"]["instance"].as_str(), Some(node_id));
    let info = prom.query(&format!(r#"target_info{{instance="{node_id}"}}"#));
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0]["metric"]["host_name"].as_str(), Some(&*host_name()));
    let limit = prom.query("system_memory_limit_bytes");
    let v: f64 = limit[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(v, read_meminfo_total_bytes());

    let emitted_json = dir.join("emitted.json");
    std::fs::write(
        &emitted_json,
        serde_json::json!({ "emitted": emitted }).to_string(),
    )
    .unwrap();
    let out = run_ok(
        python("pipeline_check.py")
            .arg("e2e")
            .arg(prom.url())
            .arg(&emitted_json)
            .args(dashboard_files()),
    );
    eprintln!("{out}");
    let checked: usize = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(checked >= 40, "{out}");
    for line in out.lines().filter(|l| l.contains("skipped:")) {
        let needs = line.split("needs ").nth(1).unwrap();
        assert!(
            needs
                .split(", ")
                .all(|n| may_skip.iter().any(|p| n.starts_with(p))),
            "{line}"
        );
    }
}

/// Flip to `true` once the agent serves `/metrics` on `--http-listen` (the delivery branch).
/// While it is `false` the test below only checks that the agent indeed does not serve it yet, so
/// it fails (and asks for the flip) as soon as it does.
const AGENT_SERVES_METRICS: bool = true;

/// The issue's second path: a real Prometheus scrapes the agent's own `/metrics` (same names as
/// the collector's `prometheus` exporter), and every dashboard query returns data from it.
#[test]
fn every_dashboard_query_returns_data_when_prometheus_scrapes_the_agent() {
    // A node as operators run it: a Docker engine with a Pterodactyl server container (named and
    // labelled as Wings does) burning CPU and writing to disk, Wings reporting that server, and a
    // real Minecraft Java server on its allocation. Then no panel but the GPU ones (no GPU here)
    // may be empty.
    const UUID: &str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
    let docker = crate::harness::docker::Dockerd::start();
    let image = docker.build_image();
    docker.run_server(
        UUID,
        &image,
        "0.5",
        "while :; do dd if=/dev/zero of=/w bs=64k count=16 conv=fsync 2>/dev/null; done",
    );
    let game_port = free_port();
    let nm = require(&peers_dir().join("npm-java/node_modules"));
    let _java = Proc::spawn(
        "java_slp_server.js",
        Command::new("node")
            .arg(repo_root().join("tests/peers/java_slp_server.js"))
            .args([
                game_port.to_string(),
                "9".into(),
                "40".into(),
                "dashboards".into(),
            ])
            .env("NODE_PATH", nm)
            .stdout(Stdio::null()),
    );
    wait_for_port(game_port, Duration::from_secs(30));
    let mut srv = crate::harness::wings::server(UUID, "Survival", "running");
    srv["configuration"]["allocations"] = serde_json::json!({"force_outgoing_ip": false,
        "default": {"ip": "127.0.0.1", "port": game_port}, "mappings": {"127.0.0.1": [game_port]}});
    let wings = crate::harness::wings::Wings::start("dash-token", &serde_json::json!([srv]));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _agent = Proc::spawn(
        "node-agent",
        agent_command()
            .arg("run")
            .args(["--http-listen", &format!("127.0.0.1:{port}")])
            .env("DOCKER_HOST", docker.host())
            .env("WINGS_BASE_URL", wings.url())
            .env("WINGS_TOKEN", "dash-token")
            .env("AGENT_DISCOVERY_INTERVAL_SEC", "1")
            .env("AGENT_PLAYERS_INTERVAL_MIN_SEC", "1")
            .env("AGENT_PLAYERS_INTERVAL_MAX_SEC", "1")
            .env("NODE_ID", "scrape-test")
            .env("OTEL_METRICS_EXPORTER", "console")
            .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
            .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
            .env("NODE_AGENT_SPOOL_DIR", dir.path().join("spool"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    if !AGENT_SERVES_METRICS {
        // Give it the time it would need to bind, then make sure nothing answers.
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the agent now listens on --http-listen: set AGENT_SERVES_METRICS = true in tests/it/pipeline.rs"
        );
        return;
    }
    wait_for_port(port, Duration::from_secs(30));
    let prom = Prometheus::start(&format!(
        "[{{job_name: node-agent, honor_labels: true, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]"
    ));
    wait_until(Duration::from_secs(90), "five scrapes of the agent", || {
        prom.query("count_over_time(system_uptime_seconds[1m])")
            .first()
            .and_then(|r| {
                r["value"][1]
                    .as_str()
                    .map(|v| v.parse::<f64>().unwrap_or(0.0))
            })
            .is_some_and(|n| n >= 5.0)
    });
    let wanted = [
        "container_disk_io_rate_bytes_per_second",
        "gameserver_players_online",
        "container_cpu_usage",
    ];
    let scrapes_of = |m: &str| {
        prom.query(&format!("count_over_time({m}[1m])"))
            .first()
            .and_then(|r| {
                r["value"][1]
                    .as_str()
                    .map(|v| v.parse::<f64>().unwrap_or(0.0))
            })
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while wanted.iter().any(|m| scrapes_of(m) < 3.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "container and game-server series missing: {:?}",
            wanted.map(|m| (m, scrapes_of(m)))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let emitted: Vec<String> = prom
        .query(r#"group by (__name__) ({__name__=~".+", job="node-agent"})"#)
        .iter()
        .filter_map(|r| r["metric"]["__name__"].as_str().map(str::to_string))
        .collect();
    let players = prom.query(&format!(
        r#"gameserver_players_online{{pterodactyl_server_uuid="{UUID}"}}"#
    ));
    assert_eq!(
        players.first().map(|r| r["value"][1].as_str().unwrap()),
        Some("9"),
        "{players:?}"
    );
    check_dashboards_against(&prom, "scrape-test", emitted, dir.path(), &["hw_"]);
}

// ------------------------------------------------------------------------------- deployment

/// The unit as systemd itself reads it (`systemd-analyze verify`, with ExecStart pointed at the
/// binary this test run built), and its exposure as systemd scores it.
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(root().join("deploy/node-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/node-agent run\n"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("node-agent.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/node-agent", agent_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );

    // A typo is reported (so the empty output above means something).
    std::fs::write(
        &copy,
        unit.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Failed to parse boolean value, ignoring: maybe")
    );

    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--no-pager", "--offline=true"])
            .arg(root().join("deploy/node-agent.service")),
    );
    let score: f64 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for node-agent.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{out}"));
    // systemd's scale: 0 (locked down) to 10 (unprotected); a plain root service scores 9.6.
    assert!(score <= 3.0, "exposure {score}:\n{out}");
}

/// The Dockerfile cannot be built here (no image can be pulled), so its shape is checked: multi-stage,
/// every COPY source exists and is not excluded by .dockerignore, an unprivileged default user, the
/// entrypoint is the binary the build stage installs.
#[test]
fn dockerfile_is_multistage_and_unprivileged_by_default() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "builder + runtime: {froms:?}");
    assert!(froms[0].contains(" AS builder"));
    assert!(
        froms[1].contains("-slim"),
        "small runtime image: {}",
        froms[1]
    );
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = l.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(root().join(src).exists(), "COPY {src}: missing");
            assert!(
                !ignored.contains(src),
                "COPY {src}: excluded by .dockerignore"
            );
        }
    }
    for needed in ["target", ".cache", ".git", ".env"] {
        assert!(
            ignored.contains(&needed),
            ".dockerignore must exclude {needed}"
        );
    }
    let runtime = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(
        runtime.contains("\nUSER 10001:10001\n"),
        "the image runs unprivileged by default"
    );
    assert!(runtime.contains("COPY --from=builder /out/node-agent /usr/local/bin/node-agent"));
    assert!(text.contains("install -D -m 0755 target/release/node-agent /out/node-agent"));
    assert!(runtime.contains(r#"ENTRYPOINT ["/usr/local/bin/node-agent"]"#));
    assert!(text.contains("cargo build --release --locked --bin node-agent"));
}
