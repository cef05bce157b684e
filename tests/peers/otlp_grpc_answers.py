#!/usr/bin/env python3
"""OTLP/gRPC stand-in (Python grpcio, the reference gRPC implementation) that answers the way a
collector may but rotel cannot be made to: a partial success, or a failure status with or without
a `google.rpc.RetryInfo` detail, sent the standard way (grpcio-status: `grpc-status-details-bin`).

Usage: otlp_grpc_answers.py PORT OUT_FILE [options]
  --rejected N --message M   answer with partial_success (N rejected points, message M)
  --code NAME                fail with this status code (e.g. UNKNOWN, RESOURCE_EXHAUSTED)
  --retry-delay S            add RetryInfo{retry_delay: S seconds} to the failure
  --fail-first K             fail only the first K calls, then accept
Each call appends one JSON line to OUT_FILE: time, metadata, the node sampler's pass numbers.
"""
import argparse
import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest, ExportMetricsServiceResponse)
from otlp_answers_common import summary  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("out")
ap.add_argument("--rejected", type=int)
ap.add_argument("--message", default="")
ap.add_argument("--code")
ap.add_argument("--retry-delay", type=float)
ap.add_argument("--fail-first", type=int)
args = ap.parse_args()
lock = threading.Lock()
count = [0]


def export(request_bytes, context):
    with lock:
        count[0] += 1
        n = count[0]
    record = {"t": time.time(), "metadata": {k: v for k, v in context.invocation_metadata()
                                             if not k.endswith("-bin")}}
    try:
        record["passes"], record["rejected_metric"] = summary(
            ExportMetricsServiceRequest.FromString(request_bytes))
    except Exception as e:  # a decode failure is a test failure: record it
        record["decode_error"] = repr(e)
    with lock, open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    if args.code and (args.fail_first is None or n <= args.fail_first):
        code = grpc.StatusCode[args.code]
        status = status_pb2.Status(code=code.value[0], message=args.message or args.code)
        if args.retry_delay is not None:
            info = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=int(args.retry_delay),
                                                  nanos=int(args.retry_delay % 1 * 1e9)))
            detail = any_pb2.Any()
            detail.Pack(info)
            status.details.append(detail)
        context.abort_with_status(rpc_status.to_status(status))
    resp = ExportMetricsServiceResponse()
    if args.rejected is not None:
        resp.partial_success.rejected_data_points = args.rejected
        resp.partial_success.error_message = args.message
    return resp.SerializeToString()


handler = grpc.method_handlers_generic_handler(
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
    {"Export": grpc.unary_unary_rpc_method_handler(export)})  # raw bytes in and out
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port(f"127.0.0.1:{args.port}")
server.start()
server.wait_for_termination()
