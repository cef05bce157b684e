#!/usr/bin/env python3
"""Footprint benchmark: the agent vs the raw-read floor vs node_exporter, at N containers.

Run through scripts/bench.sh (as root). For each N it:
  * gets N containers with real cgroups: up to --real-docker-max (default 100) they are real
    containers of a real Docker engine started for the run (dockerd on its own socket and data
    root, an image imported from the static busybox: nothing can be pulled); above that, cgroups
    laid out like Docker's cgroupfs driver (/sys/fs/cgroup/<ctrl>/docker/<id> in every v1
    hierarchy plus the v2 `unified` one), each with a sleeping process, behind a stand-in Docker
    Engine API on a unix socket (list, inspect with the sleeper's PID, info, events), so the
    agent's real discovery finds them through /proc/<pid>/cgroup (dockerd itself cannot run 1000
    containers on 2 cores);
  * runs the release agent exporting OTLP/HTTP protobuf with gzip to a local sink, the raw-read
    floor (node-agent-bench floor) over exactly the files the agent keeps open, read as often as
    the agent reads them, and Debian's prometheus-node-exporter scraped at the same interval, side
    by side;
  * measures CPU exactly: each of the three runs in a cgroup of its own and its CPU time is that
    cgroup's `cpuacct.usage` (ns, every thread, also the ones that exited) over the window
    (fallback: utime+stime ticks of /proc/<pid>/stat); RSS (VmRSS at the end, the maximum of
    VmHWM and VmRSS sampled every second); read syscalls per cycle (`syscr`); the gzip body bytes
    per export; the machine's load average.
Then it measures replay speed through the real delivery queue (node-agent-bench replay), in
samples (one node sample = one request's worth of resources of one cycle) per second.
Results: target/bench/results.json and target/bench/table.md.
"""
import argparse, gzip, hashlib, http.server, json, math, os, resource, shutil, signal, socket
import re, socketserver, subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CG = "/sys/fs/cgroup"
V1 = ["cpu", "cpuacct", "memory", "blkio", "pids", "systemd"]
TCK = os.sysconf("SC_CLK_TCK")
# Files the agent reads only every few cycles (docs/containers.md#what-is-read-every-cycle).
SLOW = {"memory.stat", "cpu.pressure", "io.pressure", "memory.pressure", "cpu.cfs_quota_us",
        "cpu.cfs_period_us", "cpu.max"}


def slow_every(interval):
    return max(1, min(10, math.ceil(10.0 / interval)))


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


def syscr(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("syscr:"):
                return int(line.split()[1])
    return 0


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class CpuMeter:
    """CPU time of a process and all its threads, through a cgroup of its own."""

    def __init__(self, name):
        self.path = None
        self.v2 = False
        for base, v2 in ((f"{CG}/cpuacct", False), (f"{CG}/cpu,cpuacct", False), (f"{CG}/unified", True)):
            if os.path.isdir(base):
                self.path, self.v2 = f"{base}/node-agent-bench/{name}", v2
                break
        if self.path:
            os.makedirs(self.path, exist_ok=True)
        self.pid = None

    def add(self, pid):
        self.pid = pid
        if self.path:
            with open(f"{self.path}/cgroup.procs", "w") as f:
                f.write(str(pid))

    def ns(self):
        if self.path and not self.v2:
            return int(open(f"{self.path}/cpuacct.usage").read())
        if self.path:
            for line in open(f"{self.path}/cpu.stat"):
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) * 1000
        return cpu_ticks(self.pid) * 1_000_000_000 // TCK

    def close(self):
        if self.path:
            for _ in range(50):
                try:
                    os.rmdir(self.path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            try:
                os.rmdir(os.path.dirname(self.path))
            except OSError:
                pass


class Containers:
    """Real cgroups with a sleeping process each, Docker cgroupfs layout."""

    def __init__(self):
        self.items = []  # (id, Popen)
        self.index = {}
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
            self.index[cid] = i
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
    request_queue_size = 512  # dockerd's listen backlog is the kernel's maximum

    def __init__(self, path, containers):
        self.containers = containers
        self.visible = 0
        self.base = int(time.time()) - 86400
        super().__init__(path, DockerHandler)

    def started(self, i):
        """Container i's StartedAt: each its own, to the nanosecond, as Docker's are (a shared one
        made every container's counters start at the same instant, which gzip repeats for almost
        nothing, and the wire bytes per container looked lower than real containers cost)."""
        s = self.base + i * 37 % 86000
        ns = (i * 2654435761 + 12345) % 1_000_000_000
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ns:09d}Z"


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
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent of the previous N went away with its events stream open

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
        if parts[-1] == "events":
            # No `docker update` during the run. With `until` the engine answers from its buffer
            # and closes at that time; without, it keeps the stream open until the client goes
            # (an early close made the agent's logs source reconnect and resync with backoff).
            if "until=" in self.path:
                return self.reply(b"")
            self.send_response(200)
            self.send_header("Api-Version", "1.43")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                self.wfile.flush()
                while self.rfile.read(1):
                    pass
            except OSError:
                pass
            return None
        if parts[-2:] == ["containers", "json"]:
            return self.reply([{"Id": cid, "Names": [f"/bench-{i}"], "Image": "bench:latest",
                                "Labels": {}, "State": "running", "Created": int(time.time()) - 60}
                               for i, (cid, _) in enumerate(items)])
        if len(parts) >= 3 and parts[-3] == "containers" and parts[-1] == "json":
            i = srv.containers.index.get(parts[-2])
            if i is not None and i < srv.visible:
                cid, p = items[i]
                return self.reply({"Id": cid, "Name": f"/bench-{i}",
                                   "State": {"Status": "running", "Running": True,
                                             "Pid": p.pid, "StartedAt": srv.started(i)},
                                   "HostConfig": {"NanoCpus": 0, "CpuQuota": 0, "CpuPeriod": 0}})
            return self.reply({"message": "No such container"}, 404)
        return self.reply({"message": "not found"}, 404)


class RealDocker:
    """dockerd on its own socket, data root and exec root, with N busybox containers."""

    def __init__(self, out_dir):
        self.dir = tempfile.mkdtemp(prefix="nab", dir="/tmp")
        self.sock = f"{self.dir}/docker.sock"
        self.log = open(f"{out_dir}/dockerd.log", "w")
        self.proc = subprocess.Popen(
            ["/usr/sbin/dockerd", "--data-root", f"{self.dir}/data", "--exec-root", f"{self.dir}/exec",
             "--pidfile", f"{self.dir}/dockerd.pid", "-H", f"unix://{self.sock}", "--bridge=none",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 90
        while subprocess.run(self.cli("version"), capture_output=True).returncode != 0:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"dockerd did not start: see {out_dir}/dockerd.log")
            time.sleep(0.5)
        root = f"{self.dir}/rootfs"
        os.makedirs(f"{root}/bin")
        shutil.copy("/bin/busybox", f"{root}/bin/busybox")
        for applet in ["sh", "sleep"]:
            os.symlink("busybox", f"{root}/bin/{applet}")
        subprocess.run(["tar", "-C", root, "-cf", f"{self.dir}/rootfs.tar", "."], check=True)
        subprocess.run(self.cli("import", f"{self.dir}/rootfs.tar", "node-agent-bench:local"),
                       check=True, capture_output=True)
        self.n = 0

    def cli(self, *args):
        return ["docker", "-H", f"unix://{self.sock}", *args]

    def grow(self, n):
        def start(i):
            subprocess.run(self.cli("run", "-d", "--network", "none", "--name", f"bench-{i}",
                                    "node-agent-bench:local", "sleep", "100000000"),
                           check=True, capture_output=True)
        threads = []
        for i in range(self.n, n):
            t = threading.Thread(target=start, args=(i,))
            t.start()
            threads.append(t)
            while sum(t.is_alive() for t in threads) >= 4:
                time.sleep(0.05)
        for t in threads:
            t.join()
        self.n = max(self.n, n)

    def cleanup(self):
        ids = subprocess.run(self.cli("ps", "-aq"), capture_output=True, text=True).stdout.split()
        for i in range(0, len(ids), 50):
            subprocess.run(self.cli("rm", "-f", *ids[i:i + 50]), capture_output=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# A `container.id` KeyValue in protobuf: key, then AnyValue{string_value: 64 hex}.
CONTAINER_ID = re.compile(rb"container\.id\x12B\x0a@([0-9a-f]{64})")


class Sink(http.server.ThreadingHTTPServer):
    def measured(self, within):
        """Containers whose points arrived in the last `within` seconds."""
        with self.lock:
            t = time.time() - within
            return sum(1 for v in self.ids.values() if v >= t)

    daemon_threads = True

    def __init__(self, port):
        self.lock = threading.Lock()
        self.reset()
        super().__init__(("127.0.0.1", port), SinkHandler)

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.requests = []  # (time, wire bytes, raw bytes)
            self.last_raw = b""
            self.ids = {}  # container.id -> when a request last carried it


class SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
        with self.server.lock:
            now = time.time()
            self.server.requests.append((now, len(body), len(raw)))
            self.server.last_raw = raw
            for m in CONTAINER_ID.finditer(raw):
                self.server.ids[m.group(1)] = now
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def agent_files(pid):
    """The files the agent keeps open."""
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


def is_slow(path):
    """Whether the agent reads this file only every few cycles."""
    base = os.path.basename(path)
    if base in SLOW:
        return True
    # v1 `cpu.stat` (throttling) is slow; v2's is the CPU usage file, read every cycle.
    return base == "cpu.stat" and "/unified/" not in path and not os.path.exists(f"{CG}/cgroup.controllers")


def scraper(port, interval, stop, counter):
    url = f"http://127.0.0.1:{port}/metrics"
    nxt = time.time()
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read()
            counter["scrapes"] += 1
            counter["series"] = sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#"))
        except Exception:  # noqa
            counter["errors"] += 1
        nxt += interval
        stop.wait(max(0.0, nxt - time.time()))


def run_n(a, n, engine, docker_host, sink, out_dir):
    sink.reset()
    env = dict(os.environ)
    env.update({
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "AGENT_SAMPLE_INTERVAL_MIN_SEC": str(a.interval),
        "AGENT_SAMPLE_INTERVAL_MAX_SEC": str(a.interval),
        "DOCKER_HOST": docker_host,
        "WINGS_CONFIG": "/nonexistent/node-agent-bench/config.yml",
        "OTEL_SERVICE_NAME": "node-agent-bench",
        "NODE_AGENT_LOG_FORMAT": "text",
        "NODE_AGENT_SPOOL_DIR": f"{out_dir}/spool-{n}",
        # Its own state (log cursors): never the host's /var/lib/node-agent.
        "NODE_AGENT_STATE_DIR": f"{out_dir}/state-{n}",
    })
    for k in ["WINGS_BASE_URL", "WINGS_TOKEN"]:
        env.pop(k, None)
    shutil.rmtree(f"{out_dir}/spool-{n}", ignore_errors=True)
    shutil.rmtree(f"{out_dir}/state-{n}", ignore_errors=True)
    # The local endpoint is on by default; the benchmark measures sampling and export only.
    env["NODE_AGENT_HTTP_LISTEN"] = "off"
    log = open(f"{out_dir}/agent-{n}.log", "w")
    meters = {k: CpuMeter(f"{k}-{n}") for k in ("agent", "floor", "ne")}
    agent = subprocess.Popen([a.agent, "run"], env=env, stdout=log, stderr=log,
                             preexec_fn=raise_nofile)
    meters["agent"].add(agent.pid)
    procs = [agent]
    try:
        # Warm-up: discovery has found every container (each has its resource in the request)
        # and two more cycles have been exported.
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.5)
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited: see {out_dir}/agent-{n}.log")
            if sink.measured(1.5 * a.interval) >= n:
                break
        start_req = len(sink.requests)
        while len(sink.requests) < start_req + 2 and time.time() < deadline:
            time.sleep(0.2)
        files = agent_files(agent.pid)
        every = slow_every(a.interval)
        fast = [f for f in files if not is_slow(f)]
        slow = [f for f in files if is_slow(f)]
        with open(f"{out_dir}/floor-files-{n}.txt", "w") as f:
            f.write("\n".join(fast) + "\n")
        with open(f"{out_dir}/floor-slow-{n}.txt", "w") as f:
            f.write("\n".join(slow) + "\n")
        mounts = []
        chk = subprocess.run([a.agent, "check", "--json"], env=dict(env, DOCKER_HOST="unix:///nonexistent"),
                             capture_output=True, text=True)
        try:
            mounts = [fs["mountpoint"] for fs in json.loads(chk.stdout)["node"]["filesystems"]]
        except Exception:  # noqa
            pass
        with open(f"{out_dir}/floor-mounts-{n}.txt", "w") as f:
            f.write("\n".join(mounts) + "\n")
        floor = subprocess.Popen([a.bench, "floor", f"{out_dir}/floor-files-{n}.txt",
                                  f"{out_dir}/floor-mounts-{n}.txt",
                                  str(int(a.interval * 1000)), "1000000000",
                                  f"{out_dir}/floor-slow-{n}.txt", str(every)],
                                 stdout=subprocess.DEVNULL, preexec_fn=raise_nofile)
        meters["floor"].add(floor.pid)
        procs.append(floor)
        ne_port = free_port()
        ne = subprocess.Popen([a.node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}",
                               "--no-collector.systemd", "--log.level=error"],
                              stdout=subprocess.DEVNULL, stderr=open(f"{out_dir}/ne-{n}.log", "w"))
        meters["ne"].add(ne.pid)
        procs.append(ne)
        time.sleep(1.0)
        stop = threading.Event()
        counter = {"scrapes": 0, "series": 0, "errors": 0}
        th = threading.Thread(target=scraper, args=(ne_port, a.interval, stop, counter), daemon=True)
        th.start()
        time.sleep(2 * a.interval + 1)  # let each settle
        pids = {"agent": agent.pid, "floor": floor.pid, "ne": ne.pid}
        load0 = loadavg()
        c0 = {k: meters[k].ns() for k in pids}
        r0_sys = syscr(agent.pid)
        t0 = time.time()
        r0 = len(sink.requests)
        s0 = counter["scrapes"]
        peak_rss = {k: 0 for k in pids}
        while time.time() - t0 < a.seconds:
            time.sleep(1.0)
            for k, p in pids.items():
                peak_rss[k] = max(peak_rss[k], status_kb(p, "VmRSS"))
        t1 = time.time()
        c1 = {k: meters[k].ns() for k in pids}
        r1_sys = syscr(agent.pid)
        reqs = sink.requests[r0:]
        scrapes = counter["scrapes"] - s0
        stop.set()
        th.join()
        el = t1 - t0
        cycles_floor = el / a.interval
        # A sample larger than the exporter's request cap (1 MiB) goes out in parts: the requests
        # of one cycle arrive together, cycles an interval apart.
        cycles = sum(1 for i, r in enumerate(reqs) if i == 0 or r[0] - reqs[i - 1][0] > a.interval / 2)
        res = {
            "n": n, "engine": engine, "seconds": round(el, 1), "interval_s": a.interval,
            "load_before": load0, "load_after": loadavg(),
            "agent_cycles": cycles, "agent_requests": len(reqs), "floor_cycles": round(cycles_floor, 1), "ne_scrapes": scrapes,
            "ne_series": counter["series"], "ne_errors": counter["errors"],
            "files_kept": len(files), "files_slow": len(slow), "slow_every": every,
            "agent_reads_per_cycle": round((r1_sys - r0_sys) / max(cycles, 1), 1),
            "statfs_per_cycle": len(mounts),
            "cpu_measured_by": "cgroup" if meters["agent"].path else "ticks",
        }
        for k in pids:
            ns = c1[k] - c0[k]
            per = {"agent": cycles, "floor": cycles_floor, "ne": scrapes}[k]
            res[f"{k}_cpu_s"] = round(ns / 1e9, 4)
            res[f"{k}_cpu_ms_per_cycle"] = round(ns / 1e6 / max(per, 1), 3)
            res[f"{k}_rss_kib"] = status_kb(pids[k], "VmRSS")
            res[f"{k}_rss_peak_kib"] = max(status_kb(pids[k], "VmHWM"), peak_rss[k])
        if reqs:
            res["wire_bytes_per_interval"] = round(sum(r[1] for r in reqs) / max(cycles, 1))
            res["raw_bytes_per_interval"] = round(sum(r[2] for r in reqs) / max(cycles, 1))
        with open(f"{out_dir}/payload-{n}.pb", "wb") as f:
            f.write(sink.last_raw)
        res["containers_measured"] = sink.measured(1.5 * a.interval)
        res["agent_errors_logged"] = sum(1 for l in open(f"{out_dir}/agent-{n}.log") if "WARN" in l or "ERROR" in l)
        res["agent_log_notes"] = [l.strip()[:300] for l in open(f"{out_dir}/agent-{n}.log")
                                  if "descriptor budget" in l][:3]
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
        for m in meters.values():
            m.close()
        log.close()


def file_costs(a, n, out_dir):
    """CPU per kept-descriptor pread of each kind of file the agent reads, at N containers: which
    files make a cycle expensive. The floor reads each group in a tight loop; CPU from rusage."""
    groups = {}
    paths = open(f"{out_dir}/floor-files-{n}.txt").read().split()
    paths += open(f"{out_dir}/floor-slow-{n}.txt").read().split()
    for p in paths:
        if "/docker/" in p or "/docker-" in p:
            key = os.path.basename(p)
            if key == "cgroup.procs":
                key += " (unified)" if "/unified/" in p else " (v1)"
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
        out[key] = {"files": len(files), "us_per_read": round(1e6 * cpu / (cycles * len(files)), 2),
                    "read": f"every {slow_every(a.interval)}th cycle" if is_slow(files[0]) else "every cycle"}
        os.unlink(lst)
    return out


def ratio(a, b):
    return round(a / b, 2) if b else None


def derive(results):
    """Ratios, and bytes per container: against N = 0 in the same run when it was measured, else
    the marginal bytes between consecutive counts (the node's own points cancel out)."""
    base = next((r for r in results if r["n"] == 0), None)
    prev = None
    for r in results:
        r["agent_floor_ratio"] = ratio(r["agent_cpu_ms_per_cycle"], r["floor_cpu_ms_per_cycle"])
        r["agent_ne_cpu_ratio"] = ratio(r["agent_cpu_ms_per_cycle"], r["ne_cpu_ms_per_cycle"])
        r["agent_ne_rss_ratio"] = ratio(r["agent_rss_peak_kib"], r["ne_rss_peak_kib"])
        if r["n"] > 0 and "wire_bytes_per_interval" in r:
            ref = base or prev
            if ref is not None:
                dn = r["n"] - ref["n"]
                r["wire_bytes_per_container"] = round((r["wire_bytes_per_interval"] - ref["wire_bytes_per_interval"]) / dn, 1)
                r["raw_bytes_per_container"] = round((r["raw_bytes_per_interval"] - ref["raw_bytes_per_interval"]) / dn, 1)
                r["bytes_per_container_from"] = ref["n"]
            else:
                # No N = 0: the node's own points are included.
                r["wire_bytes_per_container_with_node"] = round(r["wire_bytes_per_interval"] / r["n"], 1)
        prev = r if r["n"] > 0 else prev


def per_container(r, key):
    if key in r:
        return f"{r[key]} (N {r['bytes_per_container_from']} → {r['n']})" if r.get("bytes_per_container_from") else r[key]
    return r.get(key + "_with_node", "—")


def render(doc, out):
    """target/bench/table.md from results.json (also: bench.py --render results.json)."""
    results, replay, interval = doc["results"], doc["replay"], doc["args"]["interval"]
    cpu_model = doc["cpu_model"]
    rows = [
        ("containers from", lambda r: r["engine"] if r["n"] else "—"),
        ("files kept open (read every few cycles)", lambda r: f"{r['files_kept']} ({r['files_slow']})"),
        ("agent read syscalls per cycle", lambda r: r["agent_reads_per_cycle"]),
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
        ("OTLP gzip bytes per container per interval (raw)", lambda r: f"{per_container(r, 'wire_bytes_per_container')} ({r.get('raw_bytes_per_container', '—')})"),
        ("containers measured in the last cycle", lambda r: r.get("containers_measured", r.get("containers_in_request"))),
        ("cycles (requests) / scrapes measured", lambda r: f"{r['agent_cycles']} ({r.get('agent_requests', r['agent_cycles'])}) / {r['ne_scrapes']}"),
        ("load average before → after", lambda r: f"{r['load_before'][0]} → {r['load_after'][0]}"),
    ]
    lines = ["| N containers | " + " | ".join(str(r["n"]) for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for name, f in rows:
        lines.append(f"| {name} | " + " | ".join(str(f(r)) for r in results) + " |")
    costs = next((r["file_costs"] for r in results if "file_costs" in r), None)
    if costs:
        lines += ["", "| file (N = 100) | files | µs per read | read |", "|---|---|---|---|"]
        for k, v in sorted(costs.items(), key=lambda kv: -kv[1]["us_per_read"]):
            lines.append(f"| `{k}` | {v['files']} | {v['us_per_read']} | {v['read']} |")
    if replay:
        lines.append("")
        lines.append(f"Replay: {replay['samples']} queued samples (N=100 payload, {replay['payload_bytes']} B raw) "
                     f"delivered in {replay['requests']} requests in {replay['seconds']} s = "
                     f"{replay['samples_per_s']} samples/s = {replay['samples_per_s']*interval:.0f}x real time "
                     f"at the {interval} s bench interval.")
    if doc.get("parsers"):
        lines += ["", "Parsing the node files read every cycle, the agent's parsers against procfs-core's "
                  "(`node-agent-bench parsers`, the same bytes, 20,000 parses each):", ""] + doc["parsers"]
    lines.append("")
    lines.append(f"Machine: {cpu_model}, {doc['cpus']} CPUs, {doc['mem_gib']} GiB, kernel {doc['uname']}; "
                 f"open-file limit {doc['fd_limit'][1]}; {doc['date']}; CPU measured by {results[0]['cpu_measured_by'] if results else '?'}.")
    table = "\n".join(lines) + "\n"
    with open(f"{out}/table.md", "w") as f:
        f.write(table)
    print(table)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="0,100,1000")
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--real-docker-max", type=int, default=100,
                    help="counts up to this run real containers of a real dockerd (0: never)")
    ap.add_argument("--replay-batches", type=int, default=720)
    ap.add_argument("--agent", default=f"{ROOT}/target/release/node-agent")
    ap.add_argument("--bench", default=f"{ROOT}/target/release/node-agent-bench")
    ap.add_argument("--node-exporter", default="/usr/bin/prometheus-node-exporter")
    ap.add_argument("--out", default=f"{ROOT}/target/bench")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only write the tables (target/bench/table.md beside it) from an earlier run's results.json")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            doc = json.load(f)
        derive(doc["results"])
        render(doc, os.path.dirname(os.path.abspath(a.render)))
        return
    os.makedirs(a.out, exist_ok=True)
    raise_nofile()
    counts = [int(x) for x in a.counts.split(",")]
    cs = Containers()
    sock = f"{a.out}/docker.sock"
    if os.path.exists(sock):
        os.unlink(sock)
    standin = DockerStandIn(sock, cs)
    threading.Thread(target=standin.serve_forever, daemon=True).start()
    sink = Sink(free_port())
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    real = None
    results = []
    try:
        for n in counts:
            use_real = 0 < n <= a.real_docker_max and os.path.exists("/usr/sbin/dockerd")
            print(f"== N={n} ({'real dockerd' if use_real else 'Docker stand-in'}): setting up and "
                  f"measuring for {a.seconds:.0f} s; load {' '.join(loadavg())}", flush=True)
            if use_real:
                if real is None:
                    real = RealDocker(a.out)
                real.grow(n)
                host, engine = f"unix://{real.sock}", "dockerd"
            else:
                cs.grow(n)
                standin.visible = n
                host, engine = f"unix://{sock}", "stand-in"
            r = run_n(a, n, engine, host, sink, a.out)
            if n == 100:
                r["file_costs"] = file_costs(a, n, a.out)
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        if real is not None:
            real.cleanup()
        cs.cleanup()
        standin.shutdown()
        sink.shutdown()
        os.unlink(sock)
    replay = None
    pay = f"{a.out}/payload-100.pb"
    if a.replay_batches > 0 and os.path.exists(pay) and os.path.getsize(pay) > 0:
        out = subprocess.run([a.bench, "replay", pay, str(a.replay_batches)], capture_output=True,
                             text=True, timeout=900)
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"node-agent-bench replay failed ({out.returncode}): {out.stderr[-2000:]}")
        replay = json.loads(lines[-1])
        print(json.dumps(replay), flush=True)
    # The agent's parsers of the node files against procfs-core's, on this host's files.
    out = subprocess.run([a.bench, "parsers"], capture_output=True, text=True, timeout=300)
    parsers = [l for l in out.stdout.splitlines() if l.startswith("|")]
    if out.returncode != 0 or not parsers:
        print(f"node-agent-bench parsers failed ({out.returncode}): {out.stderr[-2000:]}", flush=True)
        parsers = None
    derive(results)
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "uname": os.uname().release,
           "cpus": os.cpu_count(), "cpu_model": cpu_model,
           "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
           "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE), "args": vars(a),
           "results": results, "replay": replay, "parsers": parsers}
    with open(f"{a.out}/results.json", "w") as f:
        json.dump(doc, f, indent=1)
    render(doc, a.out)


if __name__ == "__main__":
    main()
