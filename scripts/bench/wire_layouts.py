#!/usr/bin/env python3
"""What the per-container wire bytes would be in other OTLP layouts (evidence for docs/benchmarks.md).

Usage: PYTHONPATH=.cache/peers/py python3 scripts/bench/wire_layouts.py target/bench/payload-0.pb target/bench/payload-100.pb 100
Re-encodes the agent's own request (as the sink received it) and gzips each variant.
"""
import gzip, sys, copy
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

CKEYS = {"container.id", "container.name", "container.image.name", "pterodactyl.server.uuid", "pterodactyl.server.name"}


def load(p):
    r = ExportMetricsServiceRequest()
    r.ParseFromString(open(p, "rb").read())
    return r


def gz(b, lvl=6):
    return len(gzip.compress(b, lvl))


def per_container_resources(req):
    """container.* attributes moved to one Resource per container (the docker_stats receiver's shape)."""
    out = ExportMetricsServiceRequest()
    node_rm = out.resource_metrics.add()
    src = req.resource_metrics[0]
    node_rm.resource.CopyFrom(src.resource)
    node_sm = node_rm.scope_metrics.add()
    node_sm.scope.CopyFrom(src.scope_metrics[0].scope)
    per = {}
    for m in src.scope_metrics[0].metrics:
        kind = m.WhichOneof("data")
        pts = getattr(m, kind).data_points
        node_pts = []
        for p in pts:
            ck = tuple((a.key, a.value.string_value) for a in p.attributes if a.key in CKEYS)
            if not ck:
                node_pts.append(p)
                continue
            if ck not in per:
                rm = out.resource_metrics.add()
                rm.resource.CopyFrom(src.resource)
                for k, v in ck:
                    a = rm.resource.attributes.add(); a.key = k; a.value.string_value = v
                sm = rm.scope_metrics.add(); sm.scope.CopyFrom(src.scope_metrics[0].scope)
                per[ck] = (sm, {})
            sm, ms = per[ck]
            if m.name not in ms:
                nm = sm.metrics.add(); nm.name = m.name; nm.unit = m.unit
                if kind == "sum":
                    nm.sum.aggregation_temporality = m.sum.aggregation_temporality
                    nm.sum.is_monotonic = m.sum.is_monotonic
                else:
                    nm.gauge.SetInParent()
                ms[m.name] = nm
            np = getattr(ms[m.name], kind).data_points.add()
            np.CopyFrom(p)
            del np.attributes[:]
            for a in p.attributes:
                if a.key not in CKEYS:
                    np.attributes.add().CopyFrom(a)
        if node_pts:
            nm = node_sm.metrics.add(); nm.CopyFrom(m)
            d = getattr(nm, kind).data_points
            del d[:]
            for p in node_pts:
                d.add().CopyFrom(p)
    return out


def slim_resource(req):
    """Per-container resources carrying only container.id (+ server uuid); the rest once per node."""
    r = per_container_resources(req)
    for rm in r.resource_metrics[1:]:
        keep = [a for a in rm.resource.attributes if a.key in ("container.id", "pterodactyl.server.uuid", "container.name")]
        del rm.resource.attributes[:]
        for a in keep:
            rm.resource.attributes.add().CopyFrom(a)
    return r


def no_descriptions(req):
    r = copy.deepcopy(req)
    for rm in r.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                m.description = ""
    return r


def main():
    base, full, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
    variants = {
        "as sent (point attributes, gzip 6)": lambda r: r,
        "per-container Resource (container.* as resource attributes)": per_container_resources,
        "per-container Resource with container.id+name only": slim_resource,
    }
    print("| layout | gzip B/container/interval | raw B/container |")
    print("|---|---|---|")
    for name, f in variants.items():
        b0, b1 = f(base).SerializeToString(), f(full).SerializeToString()
        print(f"| {name} | {(gz(b1) - gz(b0)) / n:.0f} | {(len(b1) - len(b0)) / n:.0f} |")
    b0, b1 = base.SerializeToString(), full.SerializeToString()
    print(f"| as sent, gzip level 9 | {(gz(b1, 9) - gz(b0, 9)) / n:.0f} | {(len(b1) - len(b0)) / n:.0f} |")
    pts = sum(len(getattr(m, m.WhichOneof('data')).data_points) for m in full.resource_metrics[0].scope_metrics[0].metrics)
    pts0 = sum(len(getattr(m, m.WhichOneof('data')).data_points) for m in base.resource_metrics[0].scope_metrics[0].metrics)
    print(f"\npoints per container per interval: {(pts - pts0) / n:.1f}")


main()
