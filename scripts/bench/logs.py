#!/usr/bin/env python3
"""Logs benchmark (docs/logs.md): the logs source against `docker logs -f` on the same container.

A private dockerd (own socket and data root, like the tests) and a busybox image. For a plain and
a TTY container printing N numbered lines (`seq`) as fast as it can with the `local` driver:

- writer: the container's run time alone, then with the logs source following it live; the ratio
  says whether following slows the container (it must not);
- live: the source's lines/s and CPU per million lines while following, and what serving the
  follow cost dockerd on top of the writer alone;
- history: the finished container's log read by `docker logs -f >/dev/null` and by the source
  (fresh cursors), CPU per million lines of each reader and of dockerd (the floor both share).

Every figure is the median of --runs runs, all in the same run of this script.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rfc3339(s):
    # 2026-11-30T09:23:31.689741219Z -> seconds (float, UTC)
    import datetime
    base, frac = s.rstrip("Z").split(".") if "." in s else (s.rstrip("Z"), "0")
    t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + float("0." + frac)


class Docker:
    def __init__(self, root):
        self.root = root
        self.sock = os.path.join(root, "docker.sock")
        self.host = "unix://" + self.sock
        log = open(os.path.join(root, "dockerd.log"), "w")
        self.proc = subprocess.Popen(
            ["/usr/sbin/dockerd", "--data-root", os.path.join(root, "data"), "--exec-root",
             os.path.join(root, "exec"), "--pidfile", os.path.join(root, "dockerd.pid"), "-H",
             self.host, "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=subprocess.DEVNULL, stderr=log)
        for _ in range(600):
            if subprocess.run(self.cmd("version"), capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            sys.exit("dockerd did not answer")

    def cmd(self, *args):
        return ["docker", "-H", self.host, *args]

    def run(self, *args):
        r = subprocess.run(self.cmd(*args), capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"docker {args}: {r.stderr}")
        return r.stdout.strip()

    def image(self):
        rootfs = os.path.join(self.root, "rootfs")
        os.makedirs(os.path.join(rootfs, "bin"))
        shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
        for a in ["sh", "seq", "sleep", "true"]:
            os.symlink("busybox", os.path.join(rootfs, "bin", a))
        tar = os.path.join(self.root, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        self.run("import", tar, "logs-bench:local")
        return "logs-bench:local"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def start_writer(d, image, n, tty):
    """A container that waits a second (for a follower to attach), then prints 1..n."""
    args = ["run", "-d", "--network", "none", "--log-driver", "local"]
    if tty:
        args.append("-t")
    return d.run(*args, image, "sh", "-c", f"sleep 1; seq 1 {n}")


def printing_time(d, cid):
    """From the first to the last line, by the daemon's own timestamps."""
    first = subprocess.run(d.cmd("logs", "-t", cid), capture_output=True, text=True).stdout
    first, last = first.split(" ", 1)[0], first.rstrip("\n").rsplit("\n", 1)[-1].split(" ", 1)[0]
    return rfc3339(last) - rfc3339(first)


def writer(d, image, n, tty):
    cpu0 = cpu_of(d.proc.pid)
    cid = start_writer(d, image, n, tty)
    d.run("wait", cid)
    cpu1 = cpu_of(d.proc.pid)
    return cid, printing_time(d, cid), cpu1 - cpu0


def follower(binary, d, want):
    state = tempfile.mkdtemp(prefix="logs-bench-state-")
    p = subprocess.Popen([binary, d.host, state, str(want)], stdout=subprocess.PIPE, text=True)
    assert json.loads(p.stdout.readline())["ready"]
    return p, state


def finish(p, state):
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    shutil.rmtree(state, ignore_errors=True)
    r = json.loads(out.strip().splitlines()[-1])
    r["cpu_s"] = ru.ru_utime + ru.ru_stime
    return r


def scenario(d, image, binary, n, tty, runs):
    rows = {k: [] for k in ["alone_s", "alone_dockerd", "followed_s", "followed_dockerd", "live_s",
                            "cli_live_writer_s", "cli_live_dockerd", "cli_live_cpu",
                            "live_cpu", "rss_kib", "mem_peak", "cli_s", "cli_cpu", "cli_dockerd",
                            "hist_s", "hist_cpu", "hist_dockerd", "dropped"]}
    for _ in range(runs):
        cid, secs, dcpu = writer(d, image, n, tty)
        rows["alone_s"].append(secs)
        rows["alone_dockerd"].append(dcpu)
        # history: docker logs -f on the finished container
        cpu0 = cpu_of(d.proc.pid)
        t0 = time.monotonic()
        p = subprocess.Popen(d.cmd("logs", "-f", cid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, ru = os.wait4(p.pid, 0)
        rows["cli_s"].append(time.monotonic() - t0)
        rows["cli_cpu"].append(ru.ru_utime + ru.ru_stime)
        rows["cli_dockerd"].append(cpu_of(d.proc.pid) - cpu0)
        # history: the source on the same finished container, fresh cursors
        cpu0 = cpu_of(d.proc.pid)
        t0 = time.monotonic()
        p, state = follower(binary, d, n)
        r = finish(p, state)
        rows["hist_s"].append(time.monotonic() - t0)
        rows["hist_cpu"].append(r["cpu_s"])
        rows["hist_dockerd"].append(cpu_of(d.proc.pid) - cpu0)
        d.run("rm", cid)
        # live: the source follows while the container prints
        p, state = follower(binary, d, n)
        time.sleep(0.5)
        cpu0 = cpu_of(d.proc.pid)
        cid = start_writer(d, image, n, tty)
        t0 = time.monotonic() + 1.0
        r = finish(p, state)
        rows["live_s"].append(time.monotonic() - t0)
        rows["followed_dockerd"].append(cpu_of(d.proc.pid) - cpu0)
        rows["followed_s"].append(printing_time(d, cid))
        rows["live_cpu"].append(r["cpu_s"])
        rows["rss_kib"].append(r["max_rss_kib"])
        rows["mem_peak"].append(r["memory_peak"])
        rows["dropped"].append(r["dropped"])
        d.run("rm", cid)
        # live: `docker logs -f` follows while the container prints (the floor for any reader)
        cpu0 = cpu_of(d.proc.pid)
        cid = start_writer(d, image, n, tty)
        p = subprocess.Popen(d.cmd("logs", "-f", cid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        d.run("wait", cid)
        _, _, ru = os.wait4(p.pid, 0)
        rows["cli_live_dockerd"].append(cpu_of(d.proc.pid) - cpu0)
        rows["cli_live_writer_s"].append(printing_time(d, cid))
        rows["cli_live_cpu"].append(ru.ru_utime + ru.ru_stime)
        d.run("rm", cid)
    return {k: statistics.median(v) for k, v in rows.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default="target/release/examples/logs_follow")
    ap.add_argument("--out", default="target/bench/logs.json")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nlb", dir="/tmp")
    d = Docker(root)
    try:
        image = d.image()
        res = {}
        for tty in (False, True):
            res["tty" if tty else "plain"] = scenario(d, image, a.binary, a.lines, tty, a.runs)
    finally:
        for cid in d.run("ps", "-aq").split():
            subprocess.run(d.cmd("rm", "-f", cid), capture_output=True)
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"lines": a.lines, "runs": a.runs, "results": res}, f, indent=2)
    m = a.lines / 1e6
    print(f"{a.lines} lines per container, median of {a.runs} runs, {os.cpu_count()} CPUs\n")
    print("| | plain | TTY |\n|---|---|---|")
    def row(name, f):
        print(f"| {name} | {f(res['plain'])} | {f(res['tty'])} |")
    row("writer alone: lines/s", lambda r: f"{a.lines / r['alone_s']:,.0f}")
    row("writer followed live: lines/s", lambda r: f"{a.lines / r['followed_s']:,.0f}")
    row("writer followed / alone (time)", lambda r: f"{r['followed_s'] / r['alone_s']:.2f}")
    row("writer with `docker logs -f` live / alone (time)", lambda r: f"{r['cli_live_writer_s'] / r['alone_s']:.2f}")
    row("source live: lines/s (container start to last record)", lambda r: f"{a.lines / r['live_s']:,.0f}")
    row("source live: CPU s per 1M lines", lambda r: f"{r['live_cpu'] / m:.2f}")
    row("live, `docker logs -f`: CLI CPU s per 1M", lambda r: f"{r['cli_live_cpu'] / m:.2f}")
    row("dockerd CPU s per 1M: writer alone / with the source / with `docker logs -f`", lambda r: f"{r['alone_dockerd'] / m:.2f} / {r['followed_dockerd'] / m:.2f} / {r['cli_live_dockerd'] / m:.2f}")
    row("history, `docker logs -f`: CLI CPU s per 1M (wall s)", lambda r: f"{r['cli_cpu'] / m:.2f} ({r['cli_s']:.2f})")
    row("history, source: CPU s per 1M (wall s)", lambda r: f"{r['hist_cpu'] / m:.2f} ({r['hist_s']:.2f})")
    row("history, dockerd CPU s per 1M: for the CLI / for the source", lambda r: f"{r['cli_dockerd'] / m:.2f} / {r['hist_dockerd'] / m:.2f}")
    row("history, reader / dockerd floor (CPU)", lambda r: f"{r['cli_cpu'] / r['cli_dockerd']:.2f} / {r['hist_cpu'] / r['hist_dockerd']:.2f}")
    row("source: max RSS MiB; lines memory peak KiB", lambda r: f"{r['rss_kib'] / 1024:.1f}; {r['mem_peak'] / 1024:.0f}")
    row("source: lines dropped", lambda r: f"{r['dropped']:.0f}")


if __name__ == "__main__":
    main()
