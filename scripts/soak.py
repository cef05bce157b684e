#!/usr/bin/env python3
"""Accelerated soak (docs/benchmarks.md#soak): the release agent runs CYCLES node cycles at a short
interval (0.1 s: a day of 1 s cycles in 2.4 hours), exporting OTLP/HTTP to the real rotel
collector, with /metrics and /readyz fetched every second. Every 10 s it records the agent's RSS
(VmRSS, RssAnon) and open descriptors from /proc, and the node cycles done (from /metrics).

Prints a summary and writes target/soak/<label>.csv and target/soak/<label>.json:
RSS and descriptors over the run, and the RSS slope over the second half, in KiB per 1,000 cycles
(a least-squares fit, so single readings do not decide it).

Usage: scripts/soak.py [--binary target/release/node-agent] [--cycles 86400] [--interval 0.1]
                       [--label soak]
Needs the test peers (rotel) from scripts/install-test-deps.sh; NODE_AGENT_PEERS points elsewhere.
"""
import argparse, json, os, pathlib, re, signal, socket, subprocess, sys, tempfile, time
import urllib.error, urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--binary", default=str(ROOT / "target/release/node-agent"))
ap.add_argument("--cycles", type=int, default=86400)
ap.add_argument("--interval", default="0.1")
ap.add_argument("--label", default="soak")
args = ap.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {port}")


def status(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def slope(points):
    """Least-squares slope of (x, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


peers = pathlib.Path(os.environ.get("NODE_AGENT_PEERS", ROOT / ".cache/peers"))
rotel_bin = peers / "py/rotel/rotel-agent"
if not rotel_bin.exists():
    sys.exit(f"{rotel_bin} missing: run scripts/install-test-deps.sh")
work = pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
grpc, http, listen = free_port(), free_port(), free_port()
rotel = subprocess.Popen([str(rotel_bin), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
                          "--otlp-http-endpoint", f"127.0.0.1:{http}", "--exporter", "blackhole",
                          "--pid-file", str(work / "rotel.pid"), "--log-file", str(work / "rotel.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(http)
env = {k: v for k, v in os.environ.items()
       if not k.startswith(("OTEL_", "AGENT_", "NODE_")) and k not in ("RUST_LOG", "LOG_LEVEL")}
env.update({
    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{http}",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "AGENT_SAMPLE_INTERVAL_MIN_SEC": args.interval,
    "AGENT_SAMPLE_INTERVAL_MAX_SEC": args.interval,
    "NODE_AGENT_SPOOL_DIR": str(work / "spool"),
    "NODE_AGENT_HTTP_LISTEN": f"127.0.0.1:{listen}",
    "NODE_AGENT_LOG_FORMAT": "text",
    "NODE_ID": "soak",
})
log = open(work / "agent.log", "w")
agent = subprocess.Popen([args.binary, "run"], env=env, stdout=subprocess.DEVNULL, stderr=log)
wait_port(listen)
out_dir = ROOT / "target/soak"
out_dir.mkdir(parents=True, exist_ok=True)
rows = []
started = time.time()
cycles = 0
passes_re = re.compile(r'^node_agent_sampler_passes_total\{[^}]*sampler="node"[^}]*\} (\d+)', re.M)
errors = 0
try:
    next_sample = 0.0
    while cycles < args.cycles:
        if agent.poll() is not None:
            sys.exit(f"the agent exited ({agent.returncode}); log in {work / 'agent.log'}")
        try:
            text = get(listen, "/metrics")
            m = passes_re.search(text)
            if m:
                cycles = int(m.group(1))
            try:
                get(listen, "/readyz")
            except urllib.error.HTTPError:
                pass  # 503 while a sampler is not ready is an answer too
        except Exception as e:  # noqa: BLE001 - count and go on; the agent's health is measured
            errors += 1
            print(f"endpoint error: {e}", file=sys.stderr)
        now = time.time() - started
        if now >= next_sample:
            s = status(agent.pid)
            rows.append({"t": round(now, 1), "cycles": cycles, **s})
            next_sample = now + 10
            if len(rows) % 30 == 1:
                print(f"{now:7.0f} s  {cycles:6d} cycles  RSS {s['VmRSS']} KiB (anon {s['RssAnon']})  "
                      f"fds {s['fds']}", flush=True)
        time.sleep(1)
finally:
    agent.send_signal(signal.SIGTERM)
    try:
        code = agent.wait(30)
    except subprocess.TimeoutExpired:
        agent.kill()
        code = "killed"
    rotel.terminate()
    rotel.wait(10)

half = [r for r in rows if r["cycles"] >= args.cycles / 2]
summary = {
    "label": args.label,
    "binary": args.binary,
    "interval_s": float(args.interval),
    "cycles": cycles,
    "wall_s": round(time.time() - started),
    "rss_kib": {"first": rows[0]["VmRSS"], "at_10pct": next(r["VmRSS"] for r in rows if r["cycles"] >= args.cycles / 10),
                "at_50pct": half[0]["VmRSS"] if half else None, "last": rows[-1]["VmRSS"],
                "peak_hwm": rows[-1]["VmHWM"]},
    "rss_anon_kib": {"first": rows[0]["RssAnon"], "last": rows[-1]["RssAnon"]},
    "rss_slope_kib_per_1000_cycles_second_half": round(1000 * slope([(r["cycles"], r["VmRSS"]) for r in half]), 2),
    "anon_slope_kib_per_1000_cycles_second_half": round(1000 * slope([(r["cycles"], r["RssAnon"]) for r in half]), 2),
    "fds": {"min": min(r["fds"] for r in rows), "max": max(r["fds"] for r in rows)},
    "threads": {"min": min(r["Threads"] for r in rows), "max": max(r["Threads"] for r in rows)},
    "endpoint_errors": errors,
    "exit": code,
}
with open(out_dir / f"{args.label}.csv", "w") as f:
    keys = list(rows[0])
    f.write(",".join(keys) + "\n")
    for r in rows:
        f.write(",".join(str(r[k]) for k in keys) + "\n")
(out_dir / f"{args.label}.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
