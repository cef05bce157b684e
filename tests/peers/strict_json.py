"""Strict OTLP/JSON check against an *older* proto set.

The pinned opentelemetry-proto already knows the newest fields (Resource.entity_refs,
Metric.metadata, KeyValue.key_strindex, AnyValue.string_value_strindex), so a strict parse with it
cannot show what a receiver built on an older proto does with them. This module rebuilds the
metrics protos from the installed descriptors *without* those fields (what opentelemetry-proto 1.0
to 1.3 knew) in a separate descriptor pool, and parses with `ignore_unknown_fields=False`: any of
those keys in a request is an error here, as it is for such a receiver.

`check(body)` also compares the request's key paths with the canonical proto3 JSON of what was
parsed (`MessageToDict`, which omits default values): an extra key means a default value was
written (`"schemaUrl": ""`, `"flags": 0`, `[]`), a missing one means a set value was left out.
"""
import json

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

# (message, field) pairs that newer protos added.
NEW_FIELDS = {("Resource", "entity_refs"), ("Metric", "metadata"),
              ("KeyValue", "key_strindex"), ("AnyValue", "string_value_strindex")}
NEW_MESSAGES = {"EntityRef"}


def _old_pool():
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, metrics_pb2, metrics_service_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fdp)
        keep = [m for m in fdp.message_type if m.name not in NEW_MESSAGES]
        del fdp.message_type[:]
        fdp.message_type.extend(keep)
        for msg in fdp.message_type:
            fields = [f for f in msg.field if (msg.name, f.name) not in NEW_FIELDS]
            del msg.field[:]
            msg.field.extend(fields)
        pool.Add(fdp)
    return pool


_POOL = _old_pool()
OldRequest = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(
    "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest"))


def _paths(v, prefix=""):
    out = set()
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(prefix + "." + k)
            out |= _paths(x, prefix + "." + k)
    elif isinstance(v, list):
        for x in v:
            out |= _paths(x, prefix + "[]")
    return out


def check(body):
    """{"ok": bool, "error": ..., "extra": [...], "missing": [...]} for one JSON request body."""
    old = OldRequest()
    try:
        json_format.Parse(body, old, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        return {"ok": False, "error": str(e)[:300]}
    raw = _paths(json.loads(body))
    canon = _paths(json_format.MessageToDict(old, use_integers_for_enums=True))
    extra, missing = sorted(raw - canon), sorted(canon - raw)
    return {"ok": not extra and not missing, "extra": extra[:10], "missing": missing[:10]}


# The old set must really be old: a request with the newer fields fails to parse.
assert not check(b'{"resourceMetrics":[{"resource":{"entityRefs":[]}}]}')["ok"]
assert not check(b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"metadata":[]}]}]}]}')["ok"]
assert check(b'{"resourceMetrics":[{"resource":{}}]}')["ok"]
