//! The agent against a real Docker engine (Debian `docker.io`, started here on its own socket and
//! data root, no bridge, no iptables, image built locally from the static busybox) and the Wings
//! stand-in (`tests/peers/wings_standin.py`, the shapes of docs/containers.md#calls).
//!
//! Containers are named and labelled the way Wings does it (name = server UUID,
//! `Service=Pterodactyl`, `ContainerType=server_process`) next to an unrelated one. The running
//! agent must find both, map them to their cgroups and export numbers that agree with ground truth
//! taken outside cgroups: CPU from the scheduler's per-task runtime (`/proc/<pid>/schedstat`),
//! disk writes from the bytes `dd` was told to write. Removing and re-creating the server's
//! container (what Wings does at every start) must move the series to the new ID without a
//! negative or huge rate, and Wings failing must not stop container metrics.

use crate::harness::docker::Dockerd;
use crate::harness::wings::{Wings, server};
use crate::harness::{Proc, Receiver, agent_command, schedstat_ns, wait_until};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const U1: &str = "8c3f1e2a-5b6d-4e7f-9a0b-1c2d3e4f5a6b";
const U2: &str = "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b";
const TOKEN: &str = "wings-s3cret-token";

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Every point of metric `name` whose attributes, with those of its resource (one resource per
/// container), include all of `want`, as (time, value, point with the merged attributes).
fn points(rx: &Receiver, name: &str, want: &[(&str, &str)]) -> Vec<(u64, f64, Value)> {
    let mut out = vec![];
    for m in rx.metrics() {
        if m["name"] != name {
            continue;
        }
        for mut p in m["points"].as_array().cloned().unwrap_or_default() {
            let mut attrs = m["resource"].as_object().cloned().unwrap_or_default();
            attrs.extend(p["attrs"].as_object().cloned().unwrap_or_default());
            p["attrs"] = Value::Object(attrs);
            if want.iter().all(|(k, v)| p["attrs"][*k] == *v) {
                let t = p["time"].as_u64().unwrap();
                let v = p["value"].as_f64().unwrap();
                out.push((t, v, p));
            }
        }
    }
    out.sort_by_key(|(t, _, _)| *t);
    out
}

/// The agent under test, with its own spool directory (`spool`): agents of tests running in
/// parallel must not share the default one (the second would refuse to start).
fn agent(docker: &Dockerd, rx: &Receiver, wings: &Wings, spool: &std::path::Path) -> Proc {
    let mut cmd = agent_command();
    cmd.arg("run")
        .env("NODE_AGENT_SPOOL_DIR", spool)
        .env("DOCKER_HOST", docker.host())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
        .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
        .env("AGENT_DISCOVERY_INTERVAL_SEC", "1")
        .env("AGENT_HTTP_TIMEOUT_SEC", "3")
        .env("WINGS_BASE_URL", wings.url())
        .env("WINGS_TOKEN", TOKEN)
        .env("WINGS_CONFIG", "/nonexistent/config.yml")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc::spawn("node-agent", &mut cmd)
}

#[test]
fn agent_finds_measures_and_follows_wings_containers() {
    let docker = Dockerd::start();
    let image = docker.build_image();
    let wings = Wings::start(
        TOKEN,
        &Value::Array(vec![
            server(U1, "Survival", "running"),
            server(U2, "Lobby", "offline"),
        ]),
    );
    let rx = Receiver::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let volume = format!("{}:/data", data.path().display());
    let run_server = || docker.run_server(U1, &image, "0.5", "while :; do :; done");
    let a1 = run_server();
    let b = docker.run(&[
        "run", "-d", "--network", "none", "--name", "plain-writer", "-v", &volume, &image,
        "sh", "-c",
        "while [ ! -e /data/go ]; do sleep 0.2; done; dd if=/dev/zero of=/data/f bs=1M count=48 conv=fsync 2>/dev/null; touch /data/written; sleep 100000",
    ]);
    let mut node_agent = agent(&docker, &rx, &wings, &data.path().join("spool"));

    // Both containers found and measured, the server joined by name.
    wait_until(
        Duration::from_secs(60),
        "CPU points for both containers",
        || {
            points(&rx, "container.cpu.usage", &[("container.id", &a1)]).len() >= 2
                && !points(&rx, "container.disk.io", &[("container.id", &b)]).is_empty()
        },
    );
    let p = &points(&rx, "container.cpu.usage", &[("container.id", &a1)])[0].2;
    assert_eq!(p["attrs"]["container.name"], U1);
    // One resource per container: the identity is on the resource (with the node's), the points
    // carry only their own attributes.
    let m = rx
        .metrics()
        .into_iter()
        .find(|m| {
            m["name"] == "container.cpu.usage" && m["resource"]["container.id"] == a1.as_str()
        })
        .unwrap();
    assert_eq!(m["resource"]["container.name"], U1);
    assert!(m["resource"]["service.instance.id"].is_string());
    assert!(
        m["resource"].get("host.name").is_none(),
        "{}",
        m["resource"]
    );
    assert_eq!(m["points"][0]["attrs"], serde_json::json!({}));
    assert_eq!(p["attrs"]["container.image.name"], image.as_str());
    assert_eq!(p["attrs"]["pterodactyl.server.uuid"], U1);
    assert_eq!(p["attrs"]["pterodactyl.server.name"], "Survival");
    let limit = points(&rx, "container.cpu.limit", &[("container.id", &a1)]);
    assert_eq!(
        limit.last().unwrap().1,
        0.5,
        "--cpus 0.5 read back from the cgroup"
    );
    let bp = &points(&rx, "container.disk.io", &[("container.id", &b)])[0].2;
    assert_eq!(bp["attrs"]["container.name"], "plain-writer");
    assert!(bp["attrs"].get("pterodactyl.server.uuid").is_none());

    // CPU against the scheduler's runtime of the container's only process, polled every 20 ms
    // so that the truth can be taken over exactly the agent's window (the burner's share moves
    // when the machine is busy).
    let pid: i64 = docker.inspect(U1, "{{.State.Pid}}").parse().unwrap();
    let mut sched = vec![];
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        sched.push((now_nanos(), schedstat_ns(pid)));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (t0, t1) = (sched[0].0, sched[sched.len() - 1].0);
    let at = |t: u64| -> f64 {
        let i = sched
            .partition_point(|(x, _)| *x <= t)
            .clamp(1, sched.len() - 1);
        let ((xa, ya), (xb, yb)) = (sched[i - 1], sched[i]);
        ya as f64 + (yb - ya) as f64 * (t as f64 - xa as f64) / (xb - xa).max(1) as f64
    };
    wait_until(Duration::from_secs(30), "points after the window", || {
        points(&rx, "container.cpu.time", &[("container.id", &a1)])
            .last()
            .is_some_and(|(t, _, _)| *t > t1)
    });
    let time = points(&rx, "container.cpu.time", &[("container.id", &a1)]);
    let inside: Vec<_> = time
        .iter()
        .filter(|(t, _, _)| *t >= t0 && *t <= t1)
        .collect();
    assert!(inside.len() >= 3, "{} points in the window", inside.len());
    let (ta, va) = (inside[0].0, inside[0].1);
    let (tb, vb) = (inside[inside.len() - 1].0, inside[inside.len() - 1].1);
    let secs = (tb - ta) as f64 / 1e9;
    let truth = (at(tb) - at(ta)) / 1e9 / secs;
    let agent_rate = (vb - va) / secs;
    let usage = points(&rx, "container.cpu.usage", &[("container.id", &a1)]);
    let (mut weighted, mut prev) = (0.0, ta);
    for (t, v, _) in usage.iter().filter(|(t, _, _)| *t > ta && *t <= tb) {
        weighted += v * (t - prev) as f64 / 1e9;
        prev = *t;
    }
    let mean = weighted / secs;
    eprintln!(
        "docker CPU: scheduler truth {truth:.4} cores; container.cpu.time slope {agent_rate:.4}; \
         time-weighted container.cpu.usage {mean:.4} over {secs:.1} s (Wings cpu_absolute ≈ {:.1})",
        mean * 100.0
    );
    assert!(
        (agent_rate - truth).abs() <= 0.03,
        "cpu.time slope {agent_rate} vs {truth}"
    );
    assert!((mean - truth).abs() <= 0.03, "cpu.usage {mean} vs {truth}");

    // Disk: 48 MiB written by a reaped dd child inside the plain container.
    let before = points(
        &rx,
        "container.disk.io",
        &[("container.id", &b), ("disk.io.direction", "write")],
    );
    let (w0_t, w0) = before.last().map(|(t, v, _)| (*t, *v)).unwrap();
    std::fs::write(data.path().join("go"), "").unwrap();
    wait_until(Duration::from_secs(60), "dd in the container", || {
        data.path().join("written").exists()
    });
    let done_at = now_nanos();
    wait_until(
        Duration::from_secs(30),
        "two samples after the write",
        || {
            points(
                &rx,
                "container.disk.io",
                &[("container.id", &b), ("disk.io.direction", "write")],
            )
            .iter()
            .filter(|(t, _, _)| *t > done_at)
            .count()
                >= 2
        },
    );
    let after = points(
        &rx,
        "container.disk.io",
        &[("container.id", &b), ("disk.io.direction", "write")],
    );
    let (w1_t, w1) = after.last().map(|(t, v, _)| (*t, *v)).unwrap();
    let grew = w1 - w0;
    let rates = points(
        &rx,
        "container.disk.io.rate",
        &[("container.id", &b), ("disk.io.direction", "write")],
    );
    let mut integral = 0.0;
    let mut prev_t = w0_t;
    for (t, v, _) in rates.iter().filter(|(t, _, _)| *t > w0_t && *t <= w1_t) {
        integral += v * (t - prev_t) as f64 / 1e9;
        prev_t = *t;
    }
    let n = 48.0 * 1024.0 * 1024.0;
    eprintln!(
        "docker disk: dd wrote {n} B; container.disk.io write grew {grew} B; ∫ container.disk.io.rate dt = {integral:.0} B"
    );
    assert!((grew - n).abs() <= 0.05 * n, "write counter grew {grew}");
    assert!((integral - n).abs() <= 0.05 * n, "rate integral {integral}");

    // Capabilities learnt from Docker end up in the node's resource.
    let res = rx
        .metrics()
        .into_iter()
        .rev()
        .find(|m| m["name"] == "system.uptime")
        .unwrap()["resource"]
        .clone();
    assert_eq!(res["container.runtime.name"], "docker", "{res}");
    assert!(
        res["container.runtime.version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(
        ["cgroupfs", "systemd"].contains(&res["node.cgroup.driver"].as_str().unwrap_or("")),
        "{res}"
    );
    assert_eq!(res["pterodactyl.wings.version"], "1.11.11");

    // Counts and server states.
    let last_count = |state: &str| {
        points(&rx, "container.count", &[("container.state", state)])
            .last()
            .map(|x| x.1)
    };
    assert_eq!(last_count("running"), Some(2.0));
    assert_eq!(last_count("exited"), Some(0.0));
    let status = |uuid: &str, state: &str| {
        points(
            &rx,
            "pterodactyl.server.status",
            &[
                ("pterodactyl.server.uuid", uuid),
                ("pterodactyl.server.state", state),
            ],
        )
        .last()
        .map(|x| x.1)
    };
    assert_eq!(status(U1, "running"), Some(1.0));
    assert_eq!(status(U1, "offline"), Some(0.0));
    assert_eq!(status(U2, "offline"), Some(1.0));

    // Wings re-creates the container at every start: a new ID, the old series end.
    docker.run(&["rm", "-f", U1]);
    let a2 = run_server();
    assert_ne!(a1, a2);
    let a2_started = now_nanos();
    wait_until(Duration::from_secs(60), "the re-created container", || {
        points(&rx, "container.cpu.usage", &[("container.id", &a2)]).len() >= 2
    });
    let last_request = rx.requests().last().cloned().unwrap();
    let text = last_request.to_string();
    assert!(!text.contains(&a1), "the removed container's series ended");
    let t2 = points(&rx, "container.cpu.time", &[("container.id", &a2)]);
    let start = t2[0].2["start"].as_u64().unwrap();
    assert!(
        start + 5_000_000_000 >= a2_started,
        "counters start at the new container's start"
    );
    assert_eq!(t2[0].2["attrs"]["pterodactyl.server.name"], "Survival");
    let ncpu = std::thread::available_parallelism().unwrap().get() as f64;
    for (_, v, _) in points(&rx, "container.cpu.usage", &[]) {
        assert!((0.0..=ncpu + 0.1).contains(&v), "cpu.usage {v}");
    }
    for (_, v, _) in points(&rx, "container.disk.io.rate", &[]) {
        assert!((0.0..1e10).contains(&v), "disk rate {v}");
    }

    // Wings answering garbage: containers still measured, the error counted.
    wings.mode("garbage");
    let errors_before = points(
        &rx,
        "node_agent.sampler.errors",
        &[("node_agent.sampler", "wings")],
    )
    .last()
    .map(|x| x.1)
    .unwrap_or(0.0);
    let t_garbage = now_nanos();
    wait_until(Duration::from_secs(30), "wings errors counted", || {
        points(
            &rx,
            "node_agent.sampler.errors",
            &[("node_agent.sampler", "wings")],
        )
        .last()
        .is_some_and(|x| x.1 >= errors_before + 2.0)
    });
    wait_until(
        Duration::from_secs(30),
        "container points while Wings is broken",
        || {
            points(&rx, "container.cpu.usage", &[("container.id", &a2)])
                .iter()
                .filter(|(t, _, _)| *t > t_garbage)
                .count()
                >= 2
        },
    );
    // Without Wings the labelled container keeps its UUID (its name).
    let p = points(&rx, "container.cpu.usage", &[("container.id", &a2)])
        .last()
        .unwrap()
        .2
        .clone();
    assert_eq!(p["attrs"]["pterodactyl.server.uuid"], U1);

    node_agent.signal(libc::SIGTERM);
    assert!(node_agent.wait_timeout(Duration::from_secs(30)).is_some());
}

/// `node-agent check --json` on a node without Docker, against every Wings failure mode.
fn check_json(wings: &Wings, token: &str, timeout_s: &str) -> (Value, String, Duration) {
    let started = Instant::now();
    let out = agent_command()
        .args(["check", "--json"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("WINGS_BASE_URL", wings.url())
        .env("WINGS_TOKEN", token)
        .env("WINGS_CONFIG", "/nonexistent/config.yml")
        .env("AGENT_HTTP_TIMEOUT_SEC", timeout_s)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (
        serde_json::from_str(&stdout).unwrap(),
        all,
        started.elapsed(),
    )
}

fn wings_source(report: &Value) -> Value {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "wings")
        .cloned()
        .unwrap()
}

#[test]
fn wings_failures_are_reported_without_leaking_the_token() {
    let wings = Wings::start(
        TOKEN,
        &Value::Array(vec![server(U1, "Survival", "starting")]),
    );
    // The stand-in answers like Wings, checked with an independent client (curl).
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-s", "-i"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let r = curl(&[&format!("{}/api/servers", wings.url())]);
    assert!(
        r.starts_with("HTTP/1.1 401") && r.contains("WWW-Authenticate: Bearer"),
        "{r}"
    );
    assert!(r.contains("The required authorization heads were not present in the request."));
    let r = curl(&[
        "-H",
        "Authorization: Bearer nope",
        &format!("{}/api/servers", wings.url()),
    ]);
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("You are not authorized"),
        "{r}"
    );

    let (ok, _, _) = check_json(&wings, TOKEN, "5");
    let s = wings_source(&ok);
    assert_eq!(s["ok"], true, "{s}");
    let servers = ok["containers"]["servers"].as_array().unwrap();
    assert_eq!(servers[0]["uuid"], U1);
    assert_eq!(servers[0]["state"], "starting");
    assert_eq!(ok["resource"]["pterodactyl.wings.version"], "1.11.11");
    let docker = ok["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "docker")
        .unwrap();
    assert_eq!(
        docker["ok"], true,
        "no Docker socket is not a failure: {docker}"
    );

    let (forbidden, all, _) = check_json(&wings, "wrong-token-value", "5");
    let s = wings_source(&forbidden);
    assert_eq!(s["ok"], false);
    assert!(s["detail"].as_str().unwrap().contains("403"), "{s}");
    assert!(
        !all.contains("wrong-token-value"),
        "the token leaked: {all}"
    );

    for (mode, expect) in [
        ("garbage", "unexpected answer"),
        ("truncated", "unexpected answer"),
        ("error", "500"),
    ] {
        wings.mode(mode);
        let (r, all, _) = check_json(&wings, TOKEN, "5");
        let s = wings_source(&r);
        assert_eq!(s["ok"], false, "{mode}");
        assert!(
            s["detail"].as_str().unwrap().contains(expect),
            "{mode}: {s}"
        );
        assert!(!all.contains(TOKEN), "the token leaked: {all}");
    }

    wings.mode("slow");
    let (r, _, took) = check_json(&wings, TOKEN, "2");
    let s = wings_source(&r);
    assert_eq!(s["ok"], false);
    assert!(
        took < Duration::from_secs(20),
        "bounded by the timeout, took {took:?}"
    );
}

/// A real container that writes a 32 MiB file and deletes it before writeback, then writes 4 MiB
/// it keeps: the disk got 4 MiB, and so does `container.disk.io` (the deleting `rm` and the
/// writing `dd` are children its shell reaps). Then `docker restart`: the new run has one start
/// time from its first point on, before that point and not before the old run's last point.
#[test]
fn deleted_writes_are_not_counted_and_a_restart_has_one_start() {
    let docker = Dockerd::start();
    let image = docker.build_image();
    let rx = Receiver::start(&[]);
    let data =
        tempfile::tempdir_in(std::env::var_os("CARGO_TARGET_TMPDIR").unwrap_or("/var/tmp".into()))
            .unwrap();
    let volume = format!("{}:/data", data.path().display());
    let id = docker.run(&[
        "run", "-d", "--network", "none", "--name", "deleter", "--cpus", "0.2", "-v", &volume,
        &image, "sh", "-c",
        "if [ ! -e /data/written ]; then \
           while [ ! -e /data/go ]; do sleep 0.2; done; \
           dd if=/dev/zero of=/data/tmp bs=1M count=32 2>/dev/null; /bin/busybox rm /data/tmp; \
           dd if=/dev/zero of=/data/kept bs=1M count=4 conv=fsync 2>/dev/null; touch /data/written; \
         fi; while :; do :; done",
    ]);
    let mut node_agent = Proc::spawn(
        "node-agent",
        agent_command()
            .arg("run")
            .env("DOCKER_HOST", docker.host())
            .env("NODE_AGENT_SPOOL_DIR", data.path().join("spool"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
            .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
            .env("AGENT_DISCOVERY_INTERVAL_SEC", "1")
            .env("WINGS_CONFIG", "/nonexistent/config.yml")
            .env_remove("WINGS_BASE_URL")
            .env_remove("WINGS_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("agent.log")).unwrap()),
    );
    let writes = || {
        points(
            &rx,
            "container.disk.io",
            &[("container.id", &id), ("disk.io.direction", "write")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while writes().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no disk points in 90 s; the agent's log:\n{}",
            std::fs::read_to_string(data.path().join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let w0 = writes().last().unwrap().1;
    std::fs::write(data.path().join("go"), "").unwrap();
    wait_until(
        Duration::from_secs(60),
        "the writes in the container",
        || data.path().join("written").exists(),
    );
    let done_at = now_nanos();
    wait_until(
        Duration::from_secs(30),
        "two samples after the writes",
        || writes().iter().filter(|(t, _, _)| *t > done_at).count() >= 2,
    );
    let grew = writes().last().unwrap().1 - w0;
    let kept = 4.0 * 1024.0 * 1024.0;
    eprintln!(
        "docker: 32 MiB written and deleted + 4 MiB kept: container.disk.io write grew {grew} B"
    );
    assert!(
        (grew - kept).abs() <= 0.05 * kept + 1024.0 * 1024.0,
        "{grew} B counted, the disk got {kept} B (+ metadata)"
    );

    // docker restart: same ID, a new run.
    let cpu = || points(&rx, "container.cpu.time", &[("container.id", &id)]);
    let start_of = |p: &Value| p["start"].as_u64().unwrap();
    let old = cpu();
    let old_start = start_of(&old[0].2);
    assert!(old.iter().all(|(_, _, p)| start_of(p) == old_start));
    let pid0 = docker.inspect(&id, "{{.State.Pid}}");
    let before_restart = now_nanos();
    docker.run(&["restart", "-t", "1", &id]);
    let restarted = now_nanos();
    assert_ne!(docker.inspect(&id, "{{.State.Pid}}"), pid0);
    wait_until(Duration::from_secs(60), "points of the new run", || {
        cpu().iter().filter(|(t, _, _)| *t > restarted).count() >= 4
    });
    let all = cpu();
    let last_old = all
        .iter()
        .filter(|(t, _, _)| *t < before_restart)
        .map(|(t, _, _)| *t)
        .max()
        .unwrap();
    let new: Vec<_> = all.iter().filter(|(t, _, _)| *t > restarted).collect();
    let new_start = start_of(&new[0].2);
    eprintln!(
        "docker restart: old run's start {old_start}, its last point {last_old}; new run's start {new_start}, first point {}",
        new[0].0
    );
    assert_ne!(new_start, old_start, "the restart is a new run");
    for (t, v, p) in &new {
        assert_eq!(start_of(p), new_start, "one start per run: {p}");
        assert!(new_start < *t, "a point at its own start: {p}");
        // The new run's counter over its own run: at most the --cpus 0.2 limit (plus slack).
        assert!(
            v / ((t - new_start) as f64 / 1e9) <= 0.5,
            "{v} s of CPU since {new_start}: {p}"
        );
    }
    assert!(
        new_start >= last_old,
        "the new run starts after the old one's last point"
    );
    for (_, v, _) in points(&rx, "container.cpu.usage", &[("container.id", &id)]) {
        assert!((0.0..=0.5).contains(&v), "cpu.usage {v} across the restart");
    }
    node_agent.signal(libc::SIGTERM);
    assert!(node_agent.wait_timeout(Duration::from_secs(30)).is_some());
}
