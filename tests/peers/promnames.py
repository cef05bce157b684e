"""OpenTelemetry -> Prometheus name translation, as the Collector's `prometheus` and
`prometheusremotewrite` exporters do it (prometheus/otlptranslator, default strategy
`UnderscoreEscapingWithSuffixes`):

- invalid characters -> `_`, runs of `_` collapse, a leading digit gets a `_` prefix;
- the unit's suffix is appended unless the name already contains it as a word
  (s -> seconds, By -> bytes, By/s -> bytes_per_second, ...); `{curly}` units and `1` add nothing;
- gauges of unit `1` get `_ratio`; monotonic cumulative sums get `_total`; non-monotonic sums
  (updowncounters) become gauges without `_total` (and without `_ratio`);
- attribute keys: invalid characters -> `_`, a leading digit gets `key_`;
- resource: service.name -> job, service.instance.id -> instance, everything else -> target_info.

Kept independent of the agent's Rust code on purpose: the tests use it to check the dashboards
and to feed Prometheus the names the real collector would produce.
"""
import re

UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tibibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "%": "percent",
}
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def _clean(s):
    s = re.sub(r"[^a-zA-Z0-9_:]", "_", s)
    s = re.sub(r"_+", "_", s)
    return s


def unit_suffixes(unit):
    """(main, per) suffix words for an OTel unit."""
    if not unit or unit == "1" or unit.startswith("{"):
        return "", ""
    unit = re.sub(r"\{[^}]*\}", "", unit).strip()
    if not unit:
        return "", ""
    if "/" in unit:
        main, per = unit.split("/", 1)
        return UNITS.get(main, _clean(main).strip("_")) if main else "", PER_UNITS.get(per, _clean(per).strip("_"))
    return UNITS.get(unit, _clean(unit).strip("_")), ""


def metric_name(name, unit, kind):
    """kind: gauge | counter (monotonic cumulative sum) | updowncounter (non-monotonic sum)."""
    tokens = [t for t in _clean(name).split("_") if t]
    main, per = unit_suffixes(unit)
    if main and main not in tokens:
        tokens.append(main)
    if per and "per" not in tokens:
        tokens += ["per", per]
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    if out and out[0].isdigit():
        out = "_" + out
    return out


def label_name(key):
    out = _clean(key)
    if out and out[0].isdigit():
        out = "key_" + out
    return out


def kind_of(metric_json_kind, monotonic):
    """Instrument kind from an OTLP data kind (gauge/sum) and the sum's is_monotonic."""
    if metric_json_kind == "gauge":
        return "gauge"
    if metric_json_kind == "sum":
        return "counter" if monotonic else "updowncounter"
    return metric_json_kind


# The translator's documented examples (docs/metrics.md#prometheus-names).
EXAMPLES = [
    (("system.cpu.time", "s", "counter"), "system_cpu_time_seconds_total"),
    (("system.cpu.utilization", "1", "gauge"), "system_cpu_utilization_ratio"),
    (("system.network.io", "By", "counter"), "system_network_io_bytes_total"),
    (("container.memory.usage", "By", "updowncounter"), "container_memory_usage_bytes"),
    (("container.cpu.usage", "{cpu}", "gauge"), "container_cpu_usage"),
    (("system.memory.usage", "By", "updowncounter"), "system_memory_usage_bytes"),
    (("container.disk.io.rate", "By/s", "gauge"), "container_disk_io_rate_bytes_per_second"),
    (("node_agent.queue.bytes", "By", "updowncounter"), "node_agent_queue_bytes"),
    (("system.cpu.logical.count", "{cpu}", "updowncounter"), "system_cpu_logical_count"),
    (("node_agent.sampler.errors", "{error}", "counter"), "node_agent_sampler_errors_total"),
]


def self_test():
    for (args, want) in EXAMPLES:
        got = metric_name(*args)
        assert got == want, f"{args}: {got} != {want}"
    assert label_name("cpu.mode") == "cpu_mode"
    assert label_name("9lives") == "key_9lives"
