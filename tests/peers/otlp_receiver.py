#!/usr/bin/env python3
"""Stand-in orchestrator / decoding OTLP receiver for the tests.

Decodes OTLP/HTTP metric requests (and log requests on /v1/logs) with the reference
`opentelemetry-proto` Python classes (not our Rust code), and appends one JSON line per request to
OUT_FILE: headers, the arrival time (`at`, Unix ns), resource attributes and every metric with its
kind, unit, monotonicity and data points (for logs: every record's body, times and attributes).

Usage: otlp_receiver.py PORT OUT_FILE [--token T] [--status CODE] [--max-bytes N] [--delay-ms N]
                        [--strict]
  --token T      answer 401 unless `Authorization: Bearer T`
  --status CODE  answer every request with CODE (e.g. 503) instead of decoding it
  --max-bytes N  answer 413 to a body (as sent) larger than N bytes, as collectors with a request
                 size limit do
  --delay-ms N   take N ms before processing and answering (a slow collector)
  --strict       answer 400 to a body that does not decode (as collectors do) instead of
                 recording the decode error
"""
import argparse, json, os, sys, threading, time
from http.server import ThreadingHTTPServer
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest, ExportMetricsServiceResponse)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest, ExportLogsServiceResponse)

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("out")
ap.add_argument("--token")
ap.add_argument("--status", type=int)
ap.add_argument("--max-bytes", type=int)
ap.add_argument("--delay-ms", type=int, default=0)
ap.add_argument("--strict", action="store_true")
ap.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
ap.add_argument("--tls-key")
ap.add_argument("--client-ca", help="require a client certificate signed by this CA")
args = ap.parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from otlp_http import OtlpHandler  # noqa: E402
lock = threading.Lock()


def anyvalue(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {a.key: anyvalue(a.value) for a in kvs}


def decode(body, ctype):
    req = ExportMetricsServiceRequest()
    if ctype.startswith("application/json"):
        # OTLP/JSON receivers must ignore unknown fields (spec, "JSON Protobuf Encoding").
        json_format.Parse(body, req, ignore_unknown_fields=True)
    else:
        req.ParseFromString(body)
    out = []
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                pts = []
                for dp in data.data_points:
                    vk = dp.WhichOneof("value")
                    pts.append({"attrs": attrs(dp.attributes), "value": getattr(dp, vk) if vk else None,
                                "value_type": vk, "time": dp.time_unix_nano, "start": dp.start_time_unix_nano})
                out.append({"resource": attrs(rm.resource.attributes), "scope": sm.scope.name,
                            "name": m.name, "unit": m.unit, "description": m.description, "kind": kind,
                            "monotonic": getattr(data, "is_monotonic", None),
                            "temporality": getattr(data, "aggregation_temporality", None), "points": pts})
    return out


def decode_logs(body, ctype):
    req = ExportLogsServiceRequest()
    if ctype.startswith("application/json"):
        json_format.Parse(body, req, ignore_unknown_fields=True)
    else:
        req.ParseFromString(body)
    out = []
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append({"resource": attrs(rl.resource.attributes), "scope": sl.scope.name,
                            "body": anyvalue(r.body), "time": r.time_unix_nano,
                            "observed": r.observed_time_unix_nano, "attrs": attrs(r.attributes)})
    return out


class Handler(OtlpHandler):
    def do_POST(self):
        raw, body = self.read_body()
        if args.token and self.headers.get("Authorization") != f"Bearer {args.token}":
            return self.reply(401, b"unauthorized", "text/plain")
        if args.status:
            return self.reply(args.status, b"", "text/plain")
        if args.max_bytes and len(raw) > args.max_bytes:
            return self.reply(413, b"request too large", "text/plain")
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000)
        ctype = self.headers.get("Content-Type", "")
        logs = self.path.endswith("/v1/logs")
        try:
            items = decode_logs(body, ctype) if logs else decode(body, ctype)
        except Exception as e:  # a decode failure is a test failure: record it
            if args.strict:
                return self.reply(400, f"cannot decode: {e!r}".encode(), "text/plain")
            items = [{"decode_error": repr(e)}]
        record = {"path": self.path, "auth": self.headers.get("Authorization"), "ctype": ctype,
                  "encoding": self.headers.get("Content-Encoding"), "bytes": len(raw),
                  "at": time.time_ns()}
        record["logs" if logs else "metrics"] = items
        with lock, open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        response = ExportLogsServiceResponse() if logs else ExportMetricsServiceResponse()
        self.reply(200, response.SerializeToString())


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that gave up waiting (a timed-out exporter) is not a receiver error.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


server = Server(("127.0.0.1", args.port), Handler)
if args.tls_cert:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
