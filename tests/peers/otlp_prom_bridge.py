#!/usr/bin/env python3
"""Stand-in for the Collector's Prometheus hop in the tests: OTLP/HTTP in, Prometheus remote
write out, with the names and labels the contrib `prometheus`/`prometheusremotewrite` exporters
give (see promnames.py): metric names translated, attribute keys sanitized, job = service.name,
instance = service.instance.id, otel_scope_name/otel_scope_version on every series, and one
`target_info{job, instance, <other resource attributes>}` = 1 per resource.

No official otelcol runs on our machines and rotel has no Prometheus exporter
(docs/testing.md#stand-ins-and-why), so rotel relays to this bridge, which writes to a real Prometheus
(--web.enable-remote-write-receiver). Decoding uses the reference opentelemetry-proto classes.

Usage: otlp_prom_bridge.py PORT REMOTE_WRITE_URL NAMES_OUT
  NAMES_OUT gets one line per Prometheus metric name written (the test's "emitted" set).
"""
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


def to_series(req):
    series = []
    for rm in req.resource_metrics:
        res = {a.key: anyvalue(a.value) for a in rm.resource.attributes}
        job = res.get("service.name", "")
        if res.get("service.namespace"):
            job = res["service.namespace"] + "/" + job
        ident = {"job": job, "instance": res.get("service.instance.id", "")}
        latest = 0
        for sm in rm.scope_metrics:
            scope = {"otel_scope_name": sm.scope.name, "otel_scope_version": sm.scope.version}
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind not in ("gauge", "sum"):
                    print(f"bridge: {m.name}: {kind} not supported", file=sys.stderr)
                    continue
                data = getattr(m, kind)
                ikind = promnames.kind_of(kind, getattr(data, "is_monotonic", False))
                name = promnames.metric_name(m.name, m.unit, ikind)
                for dp in data.data_points:
                    vk = dp.WhichOneof("value")
                    if vk is None:
                        continue
                    labels = {promnames.label_name(a.key): anyvalue(a.value) for a in dp.attributes}
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
        if latest:
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
