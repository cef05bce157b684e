#!/usr/bin/env python3
"""Footprint benchmark: the agent vs the raw-read floor vs node_exporter, at N containers.

Run through scripts/bench.sh (as root). For each N it:
  * creates N real cgroups laid out like Docker's cgroupfs driver, /sys/fs/cgroup/<ctrl>/docker/<id>
    in every v1 hierarchy the agent and Docker use plus the v2 `unified` one, each with a
    sleeping process in it;
  * serves a stand-in Docker Engine API on a unix socket (list, inspect with the sleeper's PID,
    info), so the agent's real discovery finds them through /proc/<pid>/cgroup (dockerd itself
    cannot run 1000 containers here: no image pulls, 2 cores);
  * runs the release agent exporting OTLP/HTTP protobuf with gzip to a local sink, the raw-read
    floor (node-agent-bench floor) over exactly the agent's kept descriptors, and Debian's
    prometheus-node-exporter scraped at the same interval, side by side;
  * measures CPU from /proc/<pid>/stat (utime+stime) over the window, RSS (VmRSS at the end,
    VmHWM peak), and the gzip body bytes per export.
Then it measures replay speed through the real delivery queue (node-agent-bench replay).
Results: target/bench/results.json and target/bench/table.md.
"""
import argparse, gzip, hashlib, http.server, json, os, resource, signal, socket, socketserver
import subprocess, sys, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CG = "/sys/fs/cgroup"
V1 = ["cpu", "cpuacct", "memory", "blkio", "pids", "systemd"]
TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Containers:
    """Real cgroups with a sleeping process each, Docker cgroupfs layout."""

    def __init__(self):
        self.items = []  # (id, Popen)
        self.hier = [h for h in V1 if os.path.isdir(f"{CG}/{h}")]
        if os.path.isdir(f"{CG}/unified"):
            self.hier.append("unified")
        elif os.path.exists(f"{CG}/cgroup.controllers"):
            self.hier = [""]  # pure v2
        self.made_parents = []

    def grow(self, n):
        for h in self.hier:
            parent = f"{CG}/{h}/docker".replace("//", "/")
            if not os.path.isdir(parent):
                os.mkdir(parent)
                self.made_parents.append(parent)
        while len(self.items) < n:
            i = len(self.items)
            cid = hashlib.sha256(f"node-agent-bench-{os.getpid()}-{i}".encode()).hexdigest()
            p = subprocess.Popen(["sleep", "infinity"], stdin=subprocess.DEVNULL)
            for h in self.hier:
                d = f"{CG}/{h}/docker/{cid}".replace("//", "/")
                os.mkdir(d)
                with open(f"{d}/cgroup.procs", "w") as f:
                    f.write(str(p.pid))
            self.items.append((cid, p))

    def cleanup(self):
        for cid, p in self.items:
            p.kill()
            p.wait()
        for cid, _ in self.items:
            for h in self.hier:
                d = f"{CG}/{h}/docker/{cid}".replace("//", "/")
                for _ in range(50):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
        for parent in self.made_parents:
            try:
                os.rmdir(parent)
            except OSError:
                pass
        self.items = []


class DockerStandIn(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path, containers):
        self.containers = containers
        self.visible = 0
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        super().__init__(path, DockerHandler)


class DockerHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def reply(self, obj, status=200):
        body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        self.send_response(status)
        self.send_header("Api-Version", "1.43")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        items = srv.containers.items[: srv.visible]
        if path == "/_ping":
            return self.reply(b"OK")
        if parts[-1] == "info":
            return self.reply({"CgroupDriver": "cgroupfs", "CgroupVersion": "1",
                               "ServerVersion": "bench-standin"})
        if parts[-2:] == ["containers", "json"]:
            return self.reply([{"Id": cid, "Names": [f"/bench-{i}"], "Image": "bench:latest",
                                "Labels": {}, "State": "running", "Created": int(time.time()) - 60}
                               for i, (cid, _) in enumerate(items)])
        if len(parts) >= 3 and parts[-3] == "containers" and parts[-1] == "json":
            for i, (cid, p) in enumerate(items):
                if cid == parts[-2]:
                    return self.reply({"Id": cid, "Name": f"/bench-{i}",
                                       "State": {"Status": "running", "Running": True,
                                                 "Pid": p.pid, "StartedAt": srv.started}})
            return self.reply({"message": "No such container"}, 404)
        return self.reply({"message": "not found"}, 404)


class Sink(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port):
        self.lock = threading.Lock()
        self.reset()
        super().__init__(("127.0.0.1", port), SinkHandler)

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.requests = []  # (time, wire bytes, raw bytes)
            self.last_raw = b""


class SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
        with self.server.lock:
            self.server.requests.append((time.time(), len(body), len(raw)))
            self.server.last_raw = raw
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def agent_files(pid):
    """The files the agent keeps open: exactly what it re-reads every cycle."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        # mountinfo stays open but is read only when poll() reports a mount-table change.
        if (t.startswith("/proc/") or t.startswith("/sys/")) and not t.endswith("/mountinfo"):
            out.append(t.replace(f"/proc/{pid}/", "/proc/self/", 1))
    return sorted(out)


def scraper(port, interval, stop, counter):
    url = f"http://127.0.0.1:{port}/metrics"
    nxt = time.time()
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read()
            counter["scrapes"] += 1
            counter["series"] = sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#"))
        except Exception as e:  # noqa
            counter["errors"] += 1
        nxt += interval
        stop.wait(max(0.0, nxt - time.time()))


def run_n(a, n, cs, docker, sink, out_dir):
    cs.grow(n)
    docker.visible = n
    sink.reset()
    env = dict(os.environ)
    env.update({
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "AGENT_SAMPLE_INTERVAL_MIN_SEC": str(a.interval),
        "AGENT_SAMPLE_INTERVAL_MAX_SEC": str(a.interval),
        "DOCKER_HOST": f"unix://{docker.server_address}",
        "WINGS_CONFIG": "/nonexistent/node-agent-bench/config.yml",
        "OTEL_SERVICE_NAME": "node-agent-bench",
        "NODE_AGENT_LOG_FORMAT": "text",
    })
    for k in ["WINGS_BASE_URL", "WINGS_TOKEN"]:
        env.pop(k, None)
    # The local endpoint is on by default; the benchmark measures sampling and export only.
    env["NODE_AGENT_HTTP_LISTEN"] = "off"
    log = open(f"{out_dir}/agent-{n}.log", "w")
    agent = subprocess.Popen([a.agent, "run"], env=env, stdout=log, stderr=log,
                             preexec_fn=raise_nofile)
    procs = [agent]
    try:
        # Warm-up: discovery has found every container and two full cycles have been exported.
        deadline = time.time() + 120
        want = 6 + 7 * n
        while time.time() < deadline:
            time.sleep(0.5)
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited: see {out_dir}/agent-{n}.log")
            if len(agent_files(agent.pid)) >= want:
                break
        start_req = len(sink.requests)
        while len(sink.requests) < start_req + 2 and time.time() < deadline:
            time.sleep(0.2)
        files = agent_files(agent.pid)
        with open(f"{out_dir}/floor-files-{n}.txt", "w") as f:
            f.write("\n".join(files) + "\n")
        mounts = []
        chk = subprocess.run([a.agent, "check", "--json"], env=env, capture_output=True, text=True)
        try:
            mounts = [fs["mountpoint"] for fs in json.loads(chk.stdout)["node"]["filesystems"]]
        except Exception:  # noqa
            pass
        with open(f"{out_dir}/floor-mounts-{n}.txt", "w") as f:
            f.write("\n".join(mounts) + "\n")
        floor = subprocess.Popen([a.bench, "floor", f"{out_dir}/floor-files-{n}.txt",
                                  f"{out_dir}/floor-mounts-{n}.txt",
                                  str(int(a.interval * 1000)), "1000000000"],
                                 stdout=subprocess.DEVNULL, preexec_fn=raise_nofile)
        procs.append(floor)
        ne_port = free_port()
        ne = subprocess.Popen([a.node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}",
                               "--no-collector.systemd", "--log.level=error"],
                              stdout=subprocess.DEVNULL, stderr=open(f"{out_dir}/ne-{n}.log", "w"))
        procs.append(ne)
        time.sleep(1.0)
        stop = threading.Event()
        counter = {"scrapes": 0, "series": 0, "errors": 0}
        th = threading.Thread(target=scraper, args=(ne_port, a.interval, stop, counter), daemon=True)
        th.start()
        time.sleep(2 * a.interval + 1)  # let each settle
        pids = {"agent": agent.pid, "floor": floor.pid, "ne": ne.pid}
        c0 = {k: cpu_ticks(p) for k, p in pids.items()}
        t0 = time.time()
        r0 = len(sink.requests)
        s0 = counter["scrapes"]
        peak_rss = {k: 0 for k in pids}
        while time.time() - t0 < a.seconds:
            time.sleep(1.0)
            for k, p in pids.items():
                peak_rss[k] = max(peak_rss[k], status_kb(p, "VmRSS"))
        t1 = time.time()
        c1 = {k: cpu_ticks(p) for k, p in pids.items()}
        reqs = sink.requests[r0:]
        scrapes = counter["scrapes"] - s0
        stop.set()
        th.join()
        el = t1 - t0
        cycles_floor = el / a.interval
        res = {
            "n": n, "seconds": round(el, 1), "interval_s": a.interval,
            "agent_cycles": len(reqs), "floor_cycles": round(cycles_floor, 1), "ne_scrapes": scrapes,
            "ne_series": counter["series"], "ne_errors": counter["errors"],
            "files_per_cycle": len(files), "statfs_per_cycle": len(mounts),
        }
        for k in pids:
            ticks = c1[k] - c0[k]
            per = {"agent": len(reqs), "floor": cycles_floor, "ne": scrapes}[k]
            res[f"{k}_cpu_s"] = ticks / TCK
            res[f"{k}_cpu_ms_per_cycle"] = round(1000.0 * ticks / TCK / max(per, 1), 3)
            res[f"{k}_rss_kib"] = status_kb(pids[k], "VmRSS")
            res[f"{k}_rss_peak_kib"] = max(status_kb(pids[k], "VmHWM"), peak_rss[k])
        res["cpu_tick_ms"] = 1000.0 / TCK
        if reqs:
            res["wire_bytes_per_interval"] = round(sum(r[1] for r in reqs) / len(reqs))
            res["raw_bytes_per_interval"] = round(sum(r[2] for r in reqs) / len(reqs))
        with open(f"{out_dir}/payload-{n}.pb", "wb") as f:
            f.write(sink.last_raw)
        res["agent_errors_logged"] = sum(1 for l in open(f"{out_dir}/agent-{n}.log") if "WARN" in l or "ERROR" in l)
        return res
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


def file_costs(a, n, out_dir):
    """CPU per kept-descriptor pread of each kind of file the agent reads, at N containers: which
    files make a cycle expensive. The floor reads each group in a tight loop; CPU from rusage."""
    groups = {}
    for p in open(f"{out_dir}/floor-files-{n}.txt").read().split():
        if "/docker/" in p:
            key = os.path.basename(p)
        elif p.startswith("/proc/") and p.split("/")[2].isdigit() and p.endswith("/io"):
            key = "/proc/<pid>/io"
        else:
            key = p
        groups.setdefault(key, []).append(p)
    out = {}
    for key, files in sorted(groups.items()):
        lst = f"{out_dir}/files-{abs(hash(key))}.txt"
        with open(lst, "w") as f:
            f.write("\n".join(files) + "\n")
        cycles = max(20, 40000 // len(files))
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([a.bench, "floor", lst, "/dev/null", "0", str(cycles)], stdout=subprocess.DEVNULL,
                       preexec_fn=raise_nofile, check=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        out[key] = {"files": len(files), "us_per_read": round(1e6 * cpu / (cycles * len(files)), 2)}
        os.unlink(lst)
    return out


def ratio(a, b):
    return round(a / b, 2) if b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="0,100,1000")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--replay-batches", type=int, default=720)
    ap.add_argument("--agent", default=f"{ROOT}/target/release/node-agent")
    ap.add_argument("--bench", default=f"{ROOT}/target/release/node-agent-bench")
    ap.add_argument("--node-exporter", default="/usr/bin/prometheus-node-exporter")
    ap.add_argument("--out", default=f"{ROOT}/target/bench")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    raise_nofile()
    cs = Containers()
    sock = f"{a.out}/docker.sock"
    if os.path.exists(sock):
        os.unlink(sock)
    docker = DockerStandIn(sock, cs)
    threading.Thread(target=docker.serve_forever, daemon=True).start()
    sink = Sink(free_port())
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results = []
    try:
        for n in [int(x) for x in a.counts.split(",")]:
            print(f"== N={n}: setting up cgroups and measuring for {a.seconds:.0f} s", flush=True)
            r = run_n(a, n, cs, docker, sink, a.out)
            if n == 100:
                r["file_costs"] = file_costs(a, n, a.out)
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        cs.cleanup()
        docker.shutdown()
        sink.shutdown()
        os.unlink(sock)
    replay = None
    pay = f"{a.out}/payload-100.pb"
    if os.path.exists(pay) and os.path.getsize(pay) > 0:
        out = subprocess.run([a.bench, "replay", pay, str(a.replay_batches)], capture_output=True,
                             text=True, timeout=900)
        replay = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(replay), flush=True)
    base = next((r for r in results if r["n"] == 0), None)
    for r in results:
        r["agent_floor_ratio"] = ratio(r["agent_cpu_ms_per_cycle"], r["floor_cpu_ms_per_cycle"])
        r["agent_ne_cpu_ratio"] = ratio(r["agent_cpu_ms_per_cycle"], r["ne_cpu_ms_per_cycle"])
        r["agent_ne_rss_ratio"] = ratio(r["agent_rss_peak_kib"], r["ne_rss_peak_kib"])
        if base and r["n"] > 0 and "wire_bytes_per_interval" in r:
            r["wire_bytes_per_container"] = round(
                (r["wire_bytes_per_interval"] - base["wire_bytes_per_interval"]) / r["n"], 1)
            r["raw_bytes_per_container"] = round(
                (r["raw_bytes_per_interval"] - base["raw_bytes_per_interval"]) / r["n"], 1)
    doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "uname": os.uname().release,
           "cpus": os.cpu_count(), "args": vars(a), "results": results, "replay": replay}
    with open(f"{a.out}/results.json", "w") as f:
        json.dump(doc, f, indent=1)
    rows = [
        ("files read per cycle (agent's kept descriptors) + statfs", lambda r: f"{r['files_per_cycle']} + {r['statfs_per_cycle']}"),
        ("agent CPU per cycle, ms", lambda r: r["agent_cpu_ms_per_cycle"]),
        ("raw-read floor CPU per cycle, ms", lambda r: r["floor_cpu_ms_per_cycle"]),
        ("agent / floor", lambda r: r["agent_floor_ratio"]),
        ("node_exporter CPU per scrape, ms", lambda r: r["ne_cpu_ms_per_cycle"]),
        ("agent / node_exporter CPU", lambda r: r["agent_ne_cpu_ratio"]),
        ("agent RSS steady / peak, MiB", lambda r: f"{r['agent_rss_kib']/1024:.1f} / {r['agent_rss_peak_kib']/1024:.1f}"),
        ("floor RSS peak, MiB", lambda r: f"{r['floor_rss_peak_kib']/1024:.1f}"),
        ("node_exporter RSS steady / peak, MiB", lambda r: f"{r['ne_rss_kib']/1024:.1f} / {r['ne_rss_peak_kib']/1024:.1f}"),
        ("agent / node_exporter RSS (peak)", lambda r: r["agent_ne_rss_ratio"]),
        ("OTLP gzip bytes per interval (raw)", lambda r: f"{r.get('wire_bytes_per_interval')} ({r.get('raw_bytes_per_interval')})"),
        ("OTLP gzip bytes per container per interval (raw)", lambda r: f"{r.get('wire_bytes_per_container', '—')} ({r.get('raw_bytes_per_container', '—')})"),
        ("cycles / scrapes measured", lambda r: f"{r['agent_cycles']} / {r['ne_scrapes']}"),
    ]
    lines = ["| N containers | " + " | ".join(str(r["n"]) for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for name, f in rows:
        lines.append(f"| {name} | " + " | ".join(str(f(r)) for r in results) + " |")
    if replay:
        lines.append("")
        lines.append(f"Replay: {replay['batches']} queued samples (N=100 payload, {replay['payload_bytes']} B raw, "
                     f"{replay['wire_bytes_per_batch']} B gzip) delivered in {replay['seconds']} s = "
                     f"{replay['samples_per_s']} samples/s = {replay['samples_per_s']*5:.0f}x real time at the "
                     f"5 s minimum interval ({replay['samples_per_s']*a.interval:.0f}x at the {a.interval} s bench interval).")
    table = "\n".join(lines) + "\n"
    with open(f"{a.out}/table.md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
