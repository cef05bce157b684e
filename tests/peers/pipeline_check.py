#!/usr/bin/env python3
"""Checks of the included pipeline that tests/it/pipeline.rs runs (stdlib + jsonschema).

  pipeline_check.py contract CONTRACT SRC_DIR [CONSOLE_OUT]
      The metric contract against the agent's source (every `.gauge("name", "unit", …)` and
      `.sum("name", "unit", "…", monotonic, …)` registration under SRC_DIR) and, when given,
      against what the real agent printed with OTEL_METRICS_EXPORTER=console. Prints JSON
      {"allowed": {prometheus name: otel name}, "emitted": [prometheus names seen in CONSOLE_OUT]}.
  pipeline_check.py dashboards SCHEMA ALLOWED_JSON DASHBOARD...
      Every dashboard against the Grafana JSON schema; a unit on every panel; the datasource
      variable on every panel and query; every metric name in every query in ALLOWED_JSON.
  pipeline_check.py queries DASHBOARD...
      Every PromQL query of the dashboards (panels and template variables), with the template
      variables replaced by match-all values, as JSON lines.
  pipeline_check.py e2e PROM_URL EMITTED_JSON DASHBOARD...
      Runs every query against a real Prometheus. A query whose metrics the agent emitted in this
      run must return data; one that needs metrics the agent did not emit here (no containers,
      no game servers on a test machine) is reported as skipped. Prints a summary.
"""
import json
import os
import re
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promnames  # noqa: E402

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values", "group"}


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- contract

def load_contract(path):
    out = {}
    for line in open(path):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        name, kind, unit, source = line.split("\t")
        if kind not in ("gauge", "counter", "updowncounter"):
            fail(f"{path}: bad kind {kind!r} for {name}")
        out[name] = (kind, unit, source)
    return out


def _split_args(text, start):
    """Top-level comma-separated arguments of a call whose '(' is just before `start`."""
    args, depth, cur, i = [], 0, [], start
    while i < len(text):
        c = text[i]
        if c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                args.append("".join(cur).strip())
                return args
            depth -= 1
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    return args


def scan_source(src_dir):
    """(name, kind, unit, file) of every metric registration in the agent's source."""
    found = []
    for root, _dirs, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            text = open(path).read()
            for m in re.finditer(r"\.(gauge|sum)\(\s*\"", text):
                args = _split_args(text, m.end() - 1)
                if len(args) < 3 or not (args[0].startswith('"') and args[1].startswith('"')):
                    continue
                name, unit = args[0].strip('"'), args[1].strip('"')
                if "." not in name:
                    continue
                if m.group(1) == "gauge":
                    kind = "gauge"
                else:
                    mono = args[3] if len(args) > 3 else ""
                    if mono not in ("true", "false"):
                        print(f"warning: {path}: monotonicity of {name} is not a literal ({mono!r}); not checked",
                              file=sys.stderr)
                        continue
                    kind = "counter" if mono == "true" else "updowncounter"
                found.append((name, kind, unit, os.path.relpath(path)))
    return found


def console_metrics(path):
    """(name, kind, unit) of every metric in the agent's console (OTLP JSON lines) output."""
    seen = {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        for rm in d.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    if "gauge" in m:
                        kind = "gauge"
                    elif "sum" in m:
                        kind = "counter" if m["sum"].get("isMonotonic") else "updowncounter"
                    else:
                        kind = next(k for k in ("histogram", "exponentialHistogram", "summary") if k in m)
                    seen[m["name"]] = (kind, m.get("unit", ""))
    return seen


def cmd_contract(contract_path, src_dir, console=None):
    promnames.self_test()
    contract = load_contract(contract_path)
    problems = []
    for name, kind, unit, path in scan_source(src_dir):
        if name not in contract:
            problems.append(f"{path}: {name} ({kind}, {unit}) is not in {contract_path}")
        elif contract[name][:2] != (kind, unit):
            problems.append(f"{path}: {name} is ({kind}, {unit}) in the source but {contract[name][:2]} in "
                            f"{contract_path}: its Prometheus name is {promnames.metric_name(name, unit, kind)}, "
                            f"not {promnames.metric_name(name, *contract[name][1::-1])} — fix the contract and the dashboards")
    emitted = []
    if console:
        seen = console_metrics(console)
        if not seen:
            problems.append(f"{console}: no metrics in the agent's console output")
        for name, (kind, unit) in seen.items():
            if name not in contract:
                problems.append(f"the agent emitted {name} ({kind}, {unit}), which is not in {contract_path}")
            elif contract[name][:2] != (kind, unit):
                problems.append(f"the agent emitted {name} as ({kind}, {unit}), the contract says {contract[name][:2]}")
            emitted.append(promnames.metric_name(name, unit, kind))
    if problems:
        fail("\n".join(problems))
    allowed = {promnames.metric_name(n, u, k): n for n, (k, u, _s) in contract.items()}
    allowed["target_info"] = "(resource attributes)"
    print(json.dumps({"allowed": allowed, "emitted": sorted(set(emitted))}))


# ---------------------------------------------------------------- dashboards

def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        for sub in p.get("panels", []) or []:
            yield sub


def metric_names(expr):
    """Metric names a PromQL expression selects (no full parser: enough for our dashboards)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                       # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                                      # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                                     # range selectors
    e = re.sub(r"\boffset\s+\S+", " ", e)                                  # offset durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![0-9a-zA-Z_:.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        tok = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or tok in KEYWORDS or tok.startswith("__"):
            continue
        if re.fullmatch(r"[0-9.e+-]+", tok):
            continue
        names.add(tok)
    return names


def expand_vars(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
    return re.sub(r"\$\{?(node|server)\}?", ".*", expr)


def dashboard_queries(path):
    """(where, expr) of every query in a dashboard, template variables included."""
    dash = json.load(open(path))
    out = []
    for p in panels_of(dash):
        for t in p.get("targets", []) or []:
            if "expr" in t:
                out.append((f"{os.path.basename(path)} / {p.get('title')} / {t.get('refId')}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            qtext = v["query"] if isinstance(v["query"], str) else v["query"].get("query", "")
            m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", qtext)
            if not m:
                fail(f"{path}: variable {v['name']}: unsupported query {qtext!r}")
            out.append((f"{os.path.basename(path)} / variable {v['name']}", m.group(1)))
    return out


def cmd_dashboards(schema_path, allowed_path, files):
    import jsonschema
    validator = jsonschema.Draft7Validator(json.load(open(schema_path)))
    allowed = json.load(open(allowed_path))["allowed"]
    problems, n_queries, n_panels = [], 0, 0
    for path in files:
        dash = json.load(open(path))
        for e in validator.iter_errors(dash):
            problems.append(f"{path}: schema: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
        var_names = {v["name"] for v in dash.get("templating", {}).get("list", [])}
        if "datasource" not in var_names:
            problems.append(f"{path}: no datasource variable")
        if path.endswith(("node.json", "gameservers.json", "agent-health.json")) and "node" not in var_names:
            problems.append(f"{path}: no node variable")
        if path.endswith("gameservers.json") and "server" not in var_names:
            problems.append(f"{path}: no server variable")
        for p in panels_of(dash):
            if p.get("type") == "row":
                continue
            n_panels += 1
            where = f"{path}: panel {p.get('title')!r}"
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
            if not unit:
                problems.append(f"{where}: no unit")
            if p.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{where}: datasource is not the ${{datasource}} variable")
            if not p.get("targets"):
                problems.append(f"{where}: no query")
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(f"{where} {t.get('refId')}: datasource is not the ${{datasource}} variable")
        for where, expr in dashboard_queries(path):
            n_queries += 1
            names = metric_names(expr)
            if not names:
                problems.append(f"{where}: no metric name found in {expr!r}")
            for n in sorted(names - set(allowed)):
                problems.append(f"{where}: {n} is not a metric the agent exports (query {expr!r})")
    if problems:
        fail("\n".join(problems))
    print(f"{len(files)} dashboards, {n_panels} panels, {n_queries} queries: schema, units, datasource and metric names ok")


def cmd_queries(files):
    for path in files:
        for where, expr in dashboard_queries(path):
            print(json.dumps({"where": where, "expr": expand_vars(expr), "metrics": sorted(metric_names(expr))}))


def prom_query(url, expr):
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "/api/v1/query", data=data), timeout=20) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def cmd_e2e(url, emitted_path, files):
    emitted = set(json.load(open(emitted_path))["emitted"]) | {"target_info"}
    checked, skipped, problems = 0, [], []
    for path in files:
        for where, raw in dashboard_queries(path):
            expr = expand_vars(raw)
            names = metric_names(raw)
            try:
                result = prom_query(url, expr)
            except Exception as e:  # a query Prometheus rejects is always a failure
                problems.append(f"{where}: Prometheus rejected {expr!r}: {e}")
                continue
            if names <= emitted:
                checked += 1
                if not result:
                    problems.append(f"{where}: no data for {expr!r}")
            else:
                skipped.append(f"{where}: needs {', '.join(sorted(names - emitted))}")
    print(f"{checked} queries returned data; {len(skipped)} need metrics this machine does not produce:")
    for s in skipped:
        print("  skipped: " + s)
    if problems:
        fail("\n".join(problems))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "contract":
        cmd_contract(*args)
    elif cmd == "dashboards":
        cmd_dashboards(args[0], args[1], args[2:])
    elif cmd == "queries":
        cmd_queries(args)
    elif cmd == "e2e":
        cmd_e2e(args[0], args[1], args[2:])
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
