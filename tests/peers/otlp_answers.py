#!/usr/bin/env python3
"""OTLP/HTTP stand-in that answers the way a collector may but rotel cannot be made to: partial
success (protobuf or JSON, per the request's Content-Type), an error status with a huge or hostile
body and a Retry-After, a redirect. It also decodes JSON requests strictly against an *older*
proto set (see strict_json.py). Decoding uses the reference opentelemetry-proto classes.

Usage: otlp_answers.py PORT OUT_FILE [options]
  --rejected N --message M   answer 200 with partial_success (N rejected points, message M;
                             on /v1/logs: N rejected log records)
  --status CODE              answer CODE (after --fail-first requests, if given)
  --fail-first K             answer --status only to the first K requests, then 200
  --retry-after V            add `Retry-After: V` to error answers
  --body-bytes N             error body of N bytes (streamed; starts with --message)
  --location URL             answer 307 with this Location
Each request appends one JSON line to OUT_FILE: time, path, content type, headers, the node
sampler's pass numbers and the agent's node_agent.export.rejected value it carries, and for JSON the
strict decode result; for /v1/logs the bodies of the log records instead of the pass numbers. An
error body's bytes actually written go to OUT_FILE.written.
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from otlp_http import OtlpHandler  # noqa: E402
import strict_json  # noqa: E402
from otlp_answers_common import summary  # noqa: E402
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest, ExportMetricsServiceResponse)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: E402
    ExportLogsServiceRequest, ExportLogsServiceResponse)
from google.protobuf import json_format  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("out")
ap.add_argument("--rejected", type=int)
ap.add_argument("--message", default="")
ap.add_argument("--status", type=int)
ap.add_argument("--fail-first", type=int)
ap.add_argument("--retry-after")
ap.add_argument("--body-bytes", type=int, default=0)
ap.add_argument("--location")
args = ap.parse_args()
lock = threading.Lock()
count = [0]


class Handler(OtlpHandler):
    def do_POST(self):
        _, body = self.read_body()
        ctype = self.headers.get("Content-Type", "")
        with lock:
            count[0] += 1
            n = count[0]
        record = {"t": time.time(), "path": self.path, "ctype": ctype,
                  "encoding": self.headers.get("Content-Encoding"),
                  "headers": {k.lower(): v for k, v in self.headers.items()}}
        logs = self.path.endswith("/v1/logs")
        try:
            if logs:
                req = ExportLogsServiceRequest()
                if ctype.startswith("application/json"):
                    json_format.Parse(body, req, ignore_unknown_fields=False)
                else:
                    req.ParseFromString(body)
                record["logs"] = [r.body.string_value for rl in req.resource_logs
                                  for sl in rl.scope_logs for r in sl.log_records]
            elif ctype.startswith("application/json"):
                record["strict"] = strict_json.check(body)
                req = ExportMetricsServiceRequest()
                json_format.Parse(body, req, ignore_unknown_fields=True)
                record["passes"], record["rejected_metric"] = summary(req)
            else:
                req = ExportMetricsServiceRequest.FromString(body)
                record["passes"], record["rejected_metric"] = summary(req)
        except Exception as e:  # a decode failure is a test failure: record it
            record["decode_error"] = repr(e)
        with lock, open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        if args.location:
            self.send_response(307)
            self.send_header("Location", args.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        failing = args.status and (args.fail_first is None or n <= args.fail_first)
        if failing:
            return self.error_reply()
        json_reply = ctype.startswith("application/json")
        resp = ExportLogsServiceResponse() if logs else ExportMetricsServiceResponse()
        if args.rejected is not None:
            if logs:
                resp.partial_success.rejected_log_records = args.rejected
            else:
                resp.partial_success.rejected_data_points = args.rejected
            resp.partial_success.error_message = args.message
        if json_reply:
            self.reply(200, json_format.MessageToJson(resp).encode(), "application/json")
        else:
            self.reply(200, resp.SerializeToString())

    def error_reply(self):
        head = args.message.encode()
        total = max(args.body_bytes, len(head))
        self.send_response(args.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(total))
        if args.retry_after:
            self.send_header("Retry-After", args.retry_after)
        self.end_headers()
        written = 0
        chunk = b"x" * 65536
        try:
            self.wfile.write(head)
            written = len(head)
            while written < total:
                part = chunk[:min(len(chunk), total - written)]
                self.wfile.write(part)
                written += len(part)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        with lock, open(args.out + ".written", "a") as f:
            f.write(f"{written}\n")


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.serve_forever()
