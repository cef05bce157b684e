"""What the answering stand-ins (otlp_answers.py, otlp_grpc_answers.py) record of each request."""


def summary(req):
    """The node sampler's pass numbers and the agent's node_agent.export.rejected values carried
    by a decoded ExportMetricsServiceRequest."""
    passes, rejected = [], []
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is None:
                    continue
                for dp in getattr(m, kind).data_points:
                    attrs = {a.key: a.value.string_value for a in dp.attributes}
                    value = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
                    if m.name == "node_agent.sampler.passes" and attrs.get("node_agent.sampler") == "node":
                        passes.append(int(value))
                    if m.name == "node_agent.export.rejected":
                        rejected.append(int(value))
    return passes, rejected
