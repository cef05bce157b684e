#!/usr/bin/env python3
"""Stand-in for the Collector's Prometheus hop in the tests: OTLP/HTTP in, Prometheus remote
write out, with the names and labels the contrib `prometheus`/`prometheusremotewrite` exporters
give (see promnames.py): metric names translated, attribute keys sanitized, job = service.name,
instance = service.instance.id, otel_scope_name/otel_scope_version on every series, and one
`target_info{job, instance, <other resource attributes>}` = 1 per resource.

No official otelcol runs on our machines and rotel has no Prometheus exporter
(docs/testing.md#stand-ins-and-why), so rotel relays to this bridge, which writes to a real Prometheus
(--web.enable-remote-write-receiver). Decoding uses the reference opentelemetry-proto classes.

The collector's processors of the Prometheus pipeline run here too: given the collector config
(COLLECTOR_YAML), the bridge applies the `transform` processors of its `metrics/prometheus`
pipeline, interpreting the few OTTL forms those use (`set(attributes[...], resource.attributes[...])`,
`Concat([...], "sep")`, `delete_matching_keys(attributes, "re")`, `where a != nil and b != nil`) and
failing on any other form, so the test runs the configuration as written. Then, as the contrib
`prometheus` exporter: job/instance come from the resource when it has them, and only a resource
with job or instance makes a `target_info`, one per job/instance.

Usage: otlp_prom_bridge.py PORT REMOTE_WRITE_URL NAMES_OUT [COLLECTOR_YAML]
  NAMES_OUT gets one line per Prometheus metric name written (the test's "emitted" set).
"""
import re
import os
import struct
import sys
import threading
import urllib.request
from http.server import ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest, ExportMetricsServiceResponse)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promnames  # noqa: E402
from otlp_http import OtlpHandler  # noqa: E402

PORT, RW_URL, NAMES_OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
COLLECTOR_YAML = sys.argv[4] if len(sys.argv) > 4 else None
lock = threading.Lock()
written = set()


# ------------------------------------------------------------ remote write v1 (hand-encoded)

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field, payload):
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _snappy_literal(data):
    """A valid snappy block made of a single literal run (no compression)."""
    n = len(data) - 1
    if n < 60:
        tag = bytes([n << 2])
    else:
        nb = (n.bit_length() + 7) // 8
        tag = bytes([(59 + nb) << 2]) + n.to_bytes(nb, "little")
    return _varint(len(data)) + tag + data


def encode(series):
    """WriteRequest{timeseries: [{labels (sorted), samples: [{value, timestamp_ms}]}]}."""
    body = b""
    for labels, value, ts_ms in series:
        msg = b"".join(_ld(1, _ld(1, k.encode()) + _ld(2, v.encode())) for k, v in sorted(labels.items()))
        msg += _ld(2, b"\x09" + struct.pack("<d", float(value)) + b"\x10" + _varint(int(ts_ms)))
        body += _ld(1, msg)
    return body


def push(series):
    req = urllib.request.Request(RW_URL, data=_snappy_literal(encode(series)), method="POST", headers={
        "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


# ------------------------------------------------------------ translation

def anyvalue(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return ""
    val = getattr(v, kind)
    if kind == "bool_value":
        return "true" if val else "false"
    return str(val)


# ------------------------------------------------------------ the transform processors (OTTL subset)

PATH = r'(resource\.)?attributes\["([^"]+)"\]'


def parse_path(text):
    m = re.fullmatch(PATH, text.strip())
    if not m:
        raise ValueError(f"unsupported OTTL path: {text!r}")
    return ("resource" if m.group(1) else "own", m.group(2))


def parse_statement(st):
    """(function, args, conditions) of one statement of the supported forms."""
    cond = []
    if " where " in st:
        st, where = st.split(" where ", 1)
        for clause in where.split(" and "):
            m = re.fullmatch(PATH + r"\s*!=\s*nil", clause.strip())
            if not m:
                raise ValueError(f"unsupported OTTL condition: {clause!r}")
            cond.append(("resource" if m.group(1) else "own", m.group(2)))
    st = st.strip()
    m = re.fullmatch(r"set\((" + PATH + r"),\s*(.+)\)", st)
    if m:
        target = parse_path(m.group(1))
        value = m.group(4).strip()
        c = re.fullmatch(r"Concat\(\[(.+)\],\s*\"([^\"]*)\"\)", value)
        if c:
            parts = [parse_path(x) for x in c.group(1).split(",")]
            return ("set", (target, ("concat", parts, c.group(2))), cond)
        return ("set", (target, ("path", parse_path(value))), cond)
    m = re.fullmatch(r'delete_matching_keys\((resource\.)?attributes,\s*"([^"]*)"\)', st)
    if m:
        return ("delete_matching_keys", ("resource" if m.group(1) else "own", m.group(2)), cond)
    raise ValueError(f"unsupported OTTL statement: {st!r}")


def load_transforms(path, pipeline="metrics/prometheus"):
    """[(context, [statement])] of the transform processors of `pipeline`, in order."""
    import yaml
    cfg = yaml.safe_load(open(path))
    out = []
    for name in cfg["service"]["pipelines"][pipeline].get("processors", []):
        if name.split("/")[0] != "transform":
            continue
        for group in cfg["processors"][name].get("metric_statements", []):
            ctx = group["context"]
            if ctx not in ("datapoint", "resource"):
                raise ValueError(f"{name}: unsupported context {ctx}")
            out.append((ctx, [parse_statement(s) for s in group["statements"]]))
    return out


TRANSFORMS = load_transforms(COLLECTOR_YAML) if COLLECTOR_YAML else []


def run_statements(statements, own, resource):
    """Applies statements to `own` (point or resource attributes), reading `resource`."""
    scope = {"own": own, "resource": resource}
    for fn, args, cond in statements:
        if not all(scope[s].get(k) is not None for s, k in cond):
            continue
        if fn == "set":
            (ts, tk), value = args
            if value[0] == "path":
                vs, vk = value[1]
                v = scope[vs].get(vk)
            else:
                vals = [scope[s].get(k) for s, k in value[1]]
                v = None if any(x is None for x in vals) else value[2].join(vals)
            if v is not None:
                scope[ts][tk] = v
        else:
            ts, pattern = args
            for k in [k for k in scope[ts] if re.fullmatch(pattern, k)]:
                del scope[ts][k]


def to_series(req):
    series = []
    seen_targets = set()
    for rm in req.resource_metrics:
        res = {a.key: anyvalue(a.value) for a in rm.resource.attributes}
        points = {}
        for ctx, statements in TRANSFORMS:
            if ctx == "datapoint":
                for si, sm in enumerate(rm.scope_metrics):
                    for mi, m in enumerate(sm.metrics):
                        kind = m.WhichOneof("data")
                        for i, dp in enumerate(getattr(m, kind).data_points if kind in ("gauge", "sum") else []):
                            attrs = points.setdefault((si, mi, i), {a.key: anyvalue(a.value) for a in dp.attributes})
                            run_statements(statements, attrs, dict(res))
            else:
                run_statements(statements, res, res)
        ident = {}
        if "service.name" in res:
            job = res["service.name"]
            if res.get("service.namespace"):
                job = res["service.namespace"] + "/" + job
            ident["job"] = job
        if "service.instance.id" in res:
            ident["instance"] = res["service.instance.id"]
        latest = 0
        for si, sm in enumerate(rm.scope_metrics):
            scope = {"otel_scope_name": sm.scope.name, "otel_scope_version": sm.scope.version}
            for mi, m in enumerate(sm.metrics):
                kind = m.WhichOneof("data")
                if kind not in ("gauge", "sum"):
                    print(f"bridge: {m.name}: {kind} not supported", file=sys.stderr)
                    continue
                data = getattr(m, kind)
                ikind = promnames.kind_of(kind, getattr(data, "is_monotonic", False))
                name = promnames.metric_name(m.name, m.unit, ikind)
                for i, dp in enumerate(data.data_points):
                    vk = dp.WhichOneof("value")
                    if vk is None:
                        continue
                    attrs = points.get((si, mi, i)) or {a.key: anyvalue(a.value) for a in dp.attributes}
                    labels = {promnames.label_name(k): v for k, v in attrs.items()}
                    labels.update(scope)
                    labels.update(ident)
                    labels["__name__"] = name
                    ts = dp.time_unix_nano // 1_000_000
                    latest = max(latest, ts)
                    series.append((labels, getattr(dp, vk), ts))
        info = {promnames.label_name(k): v for k, v in res.items()
                if k not in ("service.name", "service.namespace", "service.instance.id")}
        info.update(ident)
        info["__name__"] = "target_info"
        key = (ident.get("job"), ident.get("instance"))
        # As the exporter: a resource without job and instance has no target_info; of several
        # with the same job/instance only the first makes one.
        if latest and ident and key not in seen_targets:
            seen_targets.add(key)
            series.append((info, 1, latest))
    return series


class Handler(OtlpHandler):
    def do_POST(self):
        _, body = self.read_body()
        req = ExportMetricsServiceRequest()
        try:
            req.ParseFromString(body)
            series = to_series(req)
            if series:
                push(series)
        except Exception as e:  # tell the sender, so that the test sees a failure in rotel's log
            print(f"bridge: {e!r}", file=sys.stderr)
            return self.reply(500, repr(e).encode(), "text/plain")
        with lock:
            new = {s[0]["__name__"] for s in series} - written
            if new:
                written.update(new)
                with open(NAMES_OUT, "a") as f:
                    f.write("".join(n + "\n" for n in sorted(new)))
        self.reply(200, ExportMetricsServiceResponse().SerializeToString())


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
