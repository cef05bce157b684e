#!/usr/bin/env python3
"""Outage + restart + replay at a compressed interval, straight to the decoding receiver.

Usage: scripts/outage-replay.py INTERVAL_SEC OUTAGE_SEC   (e.g. 0.02 60; build first: cargo build)
The collector (receiver) is down for OUTAGE_SEC; the agent is restarted (SIGTERM) halfway; then the
receiver comes up. Prints samples taken/received, whether every sample arrived exactly once and in
order, peak RSS of both agent processes, and the largest memory/disk queue the agent reported.
"""
import subprocess, time, os, json, signal, socket, tempfile, sys, urllib.request
ROOT=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P=os.environ.get("NODE_AGENT_PEERS", ROOT+"/.cache/peers"); W=tempfile.mkdtemp()
def port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
rp,hp=port(),port()
IV=sys.argv[1]; OUT=float(sys.argv[2])
env={k:v for k,v in os.environ.items() if not k.startswith(("OTEL_","AGENT_","NODE_"))}
env.update({"OTEL_EXPORTER_OTLP_ENDPOINT":f"http://127.0.0.1:{rp}","OTEL_EXPORTER_OTLP_PROTOCOL":"http/protobuf","AGENT_SAMPLE_INTERVAL_MIN_SEC":IV,"AGENT_SAMPLE_INTERVAL_MAX_SEC":IV,"NODE_AGENT_SPOOL_DIR":W+"/spool","NODE_AGENT_LOG_FORMAT":"text","NODE_ID":"measure","NODE_AGENT_HTTP_LISTEN":f"127.0.0.1:{hp}","AGENT_SEND_BACKOFF_MAX_SEC":"2","OTEL_EXPORTER_OTLP_TIMEOUT":"30000"})
procs=[]
def agent(n):
    p=subprocess.Popen([ROOT+"/target/debug/node-agent"],env=env,stdout=subprocess.DEVNULL,stderr=open(W+f"/{n}.log","w")); procs.append(p); return p
def hwm(p):
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmHWM"): return int(l.split()[1])
def samples(n): return int(open(W+f"/{n}.log").read().split("samples=")[1].split()[0])
try:
    a=agent("a"); time.sleep(OUT/2); ha=hwm(a); a.send_signal(signal.SIGTERM); a.wait(); na=samples("a")
    b=agent("b"); time.sleep(OUT/2)
    recv=subprocess.Popen(["python3",ROOT+"/tests/peers/otlp_receiver.py",str(rp),W+"/out.jsonl"],env={**os.environ,"PYTHONPATH":P+"/py"}); procs.append(recv); t1=time.time()
    while True:
        time.sleep(1)
        q=json.load(urllib.request.urlopen(f"http://127.0.0.1:{hp}/readyz"))["exporter"]["queue"]
        if q["disk_batches"]==0 and q["memory_batches"]<=2: break
    tc=time.time()-t1; hb=hwm(b)
    b.send_signal(signal.SIGTERM); b.wait(); nb=samples("b")
    g=[];mem=[];disk=[];reqs=0
    for l in open(W+"/out.jsonl"):
        reqs+=1
        for m in json.loads(l)["metrics"]:
            if m["name"]=="node_agent.sampler.passes":
                p=[p for p in m["points"] if p["attrs"]["node_agent.sampler"]=="node"][0]; g.append((p["start"],p["value"]))
            if m["name"]=="node_agent.queue.bytes":
                for p in m["points"]: (mem if p["attrs"]["node_agent.queue.tier"]=="memory" else disk).append(p["value"])
    st=sorted(set(x[0] for x in g))
    exp=[(st[0],i) for i in range(1,na+1)]+[(st[1],i) for i in range(1,nb+1)]
    print(f"interval={IV}s outage={OUT}s: A took {na} (peak RSS {ha} kB); B took {nb} (peak RSS {hb} kB); backlog drained {tc:.1f}s after the receiver came up; {reqs} requests carried {len(g)} samples; exactly once and in arrival order: {g==exp}; max memory tier {max(mem)} B (budget 4194304); max disk tier {max(disk)} B")
finally:
    for p in procs:
        if p.poll() is None: p.kill(); p.wait()
