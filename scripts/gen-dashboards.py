#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/*.json (stdlib only).

The dashboards are generated so that every panel gets the same datasource variable, a unit, and
queries that use only the Prometheus names of the agent's metrics (OpenTelemetry names translated
as the Collector's `prometheus` exporter does: see collector-config/README.md). Edit this file,
run it, commit both; `tests/it/pipeline.rs` fails when the JSON and this script disagree
(`gen-dashboards.py --check`).

Usage: scripts/gen-dashboards.py [--check]
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 42  # @grafana/schema 13.2.3 (defaultDashboard.schemaVersion)


class Board:
    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def _place(self, w, h):
        if self.x + w > 24:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "id": self.next_id,
                            "panels": [], "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.next_id += 1
        self.y += 1

    def panel(self, kind, title, targets, unit, w=12, h=8, description="", options=None, custom=None,
              overrides=None, transformations=None, minv=None, maxv=None, mappings=None, thresholds=None):
        defaults = {"unit": unit}
        if custom is not None:
            defaults["custom"] = custom
        if minv is not None:
            defaults["min"] = minv
        if maxv is not None:
            defaults["max"] = maxv
        if mappings:
            defaults["mappings"] = mappings
        if thresholds:
            defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        p = {
            "type": kind,
            "title": title,
            "id": self.next_id,
            "datasource": DS,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
            "targets": [],
        }
        if description:
            p["description"] = description
        if transformations:
            p["transformations"] = transformations
        for i, t in enumerate(targets):
            t = dict(t)
            t.setdefault("legendFormat", "__auto")
            t.setdefault("range", not t.get("instant", False))
            t.setdefault("instant", False)
            t["refId"] = chr(ord("A") + i)
            t["datasource"] = DS
            t.setdefault("editorMode", "code")
            p["targets"].append(t)
        self.next_id += 1
        self.panels.append(p)
        return p


def q(expr, legend="__auto", **kw):
    return {"expr": expr, "legendFormat": legend, **kw}


def qi(expr, legend="__auto", **kw):
    """Instant query in table format."""
    return {"expr": expr, "legendFormat": legend, "instant": True, "range": False, "format": "table", **kw}


TS_LINE = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
TS_STACK = dict(TS_LINE, fillOpacity=60, stacking={"mode": "normal", "group": "A"})
LEGEND = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"], "showLegend": True},
          "tooltip": {"mode": "multi", "sort": "desc"}}
STAT = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value",
        "graphMode": "area", "justifyMode": "auto", "textMode": "auto", "orientation": "auto"}
PCT_STEPS = [{"color": "green", "value": None}, {"color": "orange", "value": 0.75}, {"color": "red", "value": 0.9}]


def datasource_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False}


def query_var(name, label, query, multi=True, include_all=True, all_value=".*"):
    v = {"name": name, "label": label, "type": "query", "datasource": DS, "query": query,
         "definition": query, "refresh": 2, "sort": 7, "multi": multi, "includeAll": include_all,
         "hide": 0, "regex": "", "options": []}
    if include_all:
        v["allValue"] = all_value
        v["current"] = {"text": ["All"], "value": ["$__all"]} if multi else {"text": "All", "value": "$__all"}
    return v


NODE_VAR = query_var("node", "Node", "label_values(system_uptime_seconds, instance)")


def dashboard(uid, title, description, board, variables, tags):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["node-agent"] + tags,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "version": 1,
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "node-agent", "type": "dashboards", "tags": ["node-agent"], "asDropdown": True,
                   "icon": "external link", "includeVars": False, "keepTime": True, "targetBlank": False,
                   "tooltip": ""}],
        "templating": {"list": [datasource_var()] + variables},
        "panels": board.panels,
    }


N = 'instance=~"$node"'


def node_dashboard():
    b = Board()
    b.row("Overview")
    b.panel("stat", "CPU busy", [q(f'1 - sum by (instance) (system_cpu_utilization_ratio{{{N}, cpu_mode=~"idle|iowait"}})', "{{instance}}")],
            "percentunit", w=4, h=5, options=STAT, minv=0, maxv=1, thresholds=PCT_STEPS,
            description="100 % minus idle minus iowait, over all CPUs (original field node_cpu_pct).")
    b.panel("stat", "I/O wait", [q(f'sum by (instance) (system_cpu_utilization_ratio{{{N}, cpu_mode="iowait"}})', "{{instance}}")],
            "percentunit", w=4, h=5, options=STAT, minv=0, maxv=1,
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.1}, {"color": "red", "value": 0.3}],
            description="Share of CPU time waiting for I/O (original field node_iowait_pct).")
    b.panel("stat", "Memory used", [q(f'sum by (instance) (system_memory_utilization_ratio{{{N}, system_memory_state="used"}})', "{{instance}}")],
            "percentunit", w=4, h=5, options=STAT, minv=0, maxv=1, thresholds=PCT_STEPS)
    b.panel("stat", "Memory available", [q(f'sum by (instance) (system_memory_linux_available_bytes{{{N}}})', "{{instance}}")],
            "bytes", w=4, h=5, options=STAT, description="MemAvailable: what new work can get without swapping.")
    b.panel("stat", "Logical CPUs", [q(f'max by (instance) (system_cpu_logical_count{{{N}}})', "{{instance}}")],
            "none", w=4, h=5, options=dict(STAT, graphMode="none"))
    b.panel("stat", "Uptime", [q(f'max by (instance) (system_uptime_seconds{{{N}}})', "{{instance}}")],
            "s", w=4, h=5, options=dict(STAT, graphMode="none"))

    b.row("CPU")
    b.panel("timeseries", "CPU by mode (idle left out)",
            [q(f'sum by (instance, cpu_mode) (system_cpu_utilization_ratio{{{N}, cpu_mode!="idle"}})', "{{instance}} {{cpu_mode}}")],
            "percentunit", w=16, h=9, custom=TS_STACK, options=LEGEND, minv=0,
            description="Share of all CPUs' time per mode since the previous sample: user, nice, system, iowait, interrupt, steal.")
    b.panel("timeseries", "I/O wait", [q(f'sum by (instance) (system_cpu_utilization_ratio{{{N}, cpu_mode="iowait"}})', "{{instance}}")],
            "percentunit", w=8, h=9, custom=TS_LINE, options=LEGEND, minv=0)

    b.row("Memory")
    b.panel("timeseries", "Memory by state",
            [q(f'sum by (instance, system_memory_state) (system_memory_usage_bytes{{{N}, system_memory_state=~"used|buffers|cached|free"}})', "{{instance}} {{system_memory_state}}"),
             q(f'sum by (instance) (system_memory_limit_bytes{{{N}}})', "{{instance}} total")],
            "bytes", w=16, h=9, custom=TS_STACK, options=LEGEND, minv=0,
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* total"},
                        "properties": [{"id": "custom.stacking", "value": {"mode": "none", "group": "A"}},
                                       {"id": "custom.fillOpacity", "value": 0},
                                       {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]}])
    b.panel("timeseries", "Memory available", [q(f'sum by (instance) (system_memory_linux_available_bytes{{{N}}})', "{{instance}}")],
            "bytes", w=8, h=9, custom=TS_LINE, options=LEGEND, minv=0)

    b.row("Filesystems")
    b.panel("bargauge", "Filesystem used",
            [q(f'max by (instance, system_filesystem_mountpoint) (system_filesystem_utilization_ratio{{{N}}})',
               "{{instance}} {{system_filesystem_mountpoint}}")],
            "percentunit", w=12, h=8, minv=0, maxv=1, thresholds=PCT_STEPS,
            description="Used / (used + available to unprivileged users), like df's Use%: 100 % means full for everyone but root.",
            options={"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    b.panel("timeseries", "Filesystem free",
            [q(f'sum by (instance, system_filesystem_mountpoint) (system_filesystem_usage_bytes{{{N}, system_filesystem_state="free"}})',
               "{{instance}} {{system_filesystem_mountpoint}}")],
            "bytes", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="Space available to unprivileged users (the root-reserved blocks are state=reserved).")

    b.row("Disks")
    b.panel("timeseries", "Disk throughput",
            [q(f'sum by (instance, system_device, disk_io_direction) (rate(system_disk_io_bytes_total{{{N}}}[$__rate_interval]))',
               "{{instance}} {{system_device}} {{disk_io_direction}}")],
            "Bps", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("timeseries", "Disk operations",
            [q(f'sum by (instance, system_device, disk_io_direction) (rate(system_disk_operations_total{{{N}}}[$__rate_interval]))',
               "{{instance}} {{system_device}} {{disk_io_direction}}")],
            "iops", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)

    b.row("Network")
    b.panel("timeseries", "Network throughput",
            [q(f'sum by (instance, network_interface_name, network_io_direction) (rate(system_network_io_bytes_total{{{N}, network_interface_name!="lo"}}[$__rate_interval]))',
               "{{instance}} {{network_interface_name}} {{network_io_direction}}")],
            "Bps", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("timeseries", "Network errors and drops",
            [q(f'sum by (instance, network_interface_name, network_io_direction) (rate(system_network_errors_total{{{N}}}[$__rate_interval]))',
               "{{instance}} {{network_interface_name}} {{network_io_direction}} errors"),
             q(f'sum by (instance, network_interface_name, network_io_direction) (rate(system_network_packet_dropped_total{{{N}}}[$__rate_interval]))',
               "{{instance}} {{network_interface_name}} {{network_io_direction}} dropped")],
            "pps", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)

    b.row("GPUs")
    b.panel("timeseries", "GPU utilization",
            [q(f'max by (instance, hw_id, hw_model) (hw_gpu_utilization_ratio{{{N}}})', "{{instance}} {{hw_model}} {{hw_id}}")],
            "percentunit", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0, maxv=1,
            description="Share of time a kernel ran on the GPU (NVML, or amdgpu gpu_busy_percent).")
    b.panel("timeseries", "GPU memory used",
            [q(f'max by (instance, hw_id, hw_model) (hw_gpu_memory_usage_bytes{{{N}}})', "{{instance}} {{hw_model}} used"),
             q(f'max by (instance, hw_id, hw_model) (hw_gpu_memory_limit_bytes{{{N}}})', "{{instance}} {{hw_model}} total")],
            "bytes", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("timeseries", "GPU temperature",
            [q(f'max by (instance, hw_id, hw_model) (hw_temperature_celsius{{{N}, hw_type="gpu"}})', "{{instance}} {{hw_model}} {{hw_id}}")],
            "celsius", w=12, h=8, custom=TS_LINE, options=LEGEND)
    b.panel("timeseries", "GPU power",
            [q(f'max by (instance, hw_id, hw_model) (hw_power_watts{{{N}, hw_type="gpu"}})', "{{instance}} {{hw_model}} {{hw_id}}")],
            "watt", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)

    b.row("Capabilities")
    b.panel("stat", "Memory total", [q(f'max by (instance) (system_memory_limit_bytes{{{N}}})', "{{instance}}")],
            "bytes", w=4, h=5, options=dict(STAT, graphMode="none"))
    b.panel("stat", "Disk total", [q(f'sum by (instance) (system_filesystem_limit_bytes{{{N}}})', "{{instance}}")],
            "bytes", w=4, h=5, options=dict(STAT, graphMode="none"),
            description="Sum of the sizes of the real filesystems (one mount per device).")
    b.panel("table", "Node identity and capabilities",
            [qi(f'max by (instance, host_name, host_arch, os_description, host_cpu_model_name, node_cpu_count, node_memory_total, node_disk_total, node_gpu_count, node_gpu_models, node_cgroup_version, container_runtime_name, container_runtime_version, pterodactyl_wings_version, service_version) (target_info{{{N}}})')],
            "string", w=16, h=5, options={"showHeader": True, "cellHeight": "sm"},
            description="Resource attributes of the node (Prometheus target_info): CPU, memory and disk totals, GPUs, cgroup setup, container runtime, Wings version, agent version.",
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}, "renameByName": {
                "instance": "node", "host_name": "host", "host_arch": "arch", "os_description": "OS",
                "host_cpu_model_name": "CPU model", "node_cpu_count": "CPUs", "node_memory_total": "memory (bytes)",
                "node_disk_total": "disk (bytes)", "node_gpu_count": "GPUs", "node_gpu_models": "GPU models",
                "node_cgroup_version": "cgroup", "container_runtime_name": "runtime",
                "container_runtime_version": "runtime version", "pterodactyl_wings_version": "Wings",
                "service_version": "agent"}}}])
    return dashboard("node-agent-node", "Node", "One node: CPU by mode with iowait, memory, filesystems, disks, network, capabilities.",
                     b, [NODE_VAR], ["node"])


S = 'instance=~"$node", container_name=~"$server"'
G = 'instance=~"$node", pterodactyl_server_uuid=~"$server"'
SERVER_LEGEND = "{{pterodactyl_server_name}} {{container_name}}"
GAME_LEGEND = "{{server_address}}:{{server_port}} {{gameserver_protocol}}"


def gameservers_dashboard():
    b = Board()
    b.row("Overview")
    b.panel("stat", "Players online", [q(f'sum(gameserver_players_online{{{G}}})', "players")],
            "none", w=6, h=5, options=STAT)
    b.panel("stat", "Running containers", [q(f'sum(container_count{{instance=~"$node", container_state="running"}})', "running")],
            "none", w=6, h=5, options=STAT, description="Original field running_containers.")
    b.panel("table", "Server state (Pterodactyl)",
            [qi(f'max by (instance, pterodactyl_server_name, container_name, pterodactyl_server_state) (pterodactyl_server_status_ratio{{{S}}} == 1)')],
            "none", w=12, h=5, options={"showHeader": True, "cellHeight": "sm"},
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}, "renameByName": {
                "instance": "node", "pterodactyl_server_name": "server", "container_name": "container",
                "pterodactyl_server_state": "state"}}}])

    b.row("Resources per server")
    b.panel("timeseries", "CPU against its limit",
            [q(f'100 * container_cpu_usage{{{S}}}', SERVER_LEGEND),
             q(f'100 * container_cpu_limit{{{S}}}', "limit " + SERVER_LEGEND)],
            "percent", w=12, h=9, custom=TS_LINE, options=LEGEND, minv=0,
            description="100 % = one full core, as Wings' cpu_absolute and the panel's CPU limit (original field cpu_pct). Dashed: the container's CPU limit (absent when unlimited).",
            overrides=[{"matcher": {"id": "byRegexp", "options": "limit .*"},
                        "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                                       {"id": "custom.fillOpacity", "value": 0}]}])
    b.panel("timeseries", "Memory", [q(f'container_memory_usage_bytes{{{S}}}', SERVER_LEGEND)],
            "bytes", w=12, h=9, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("timeseries", "Disk write rate",
            [q(f'container_disk_io_rate_bytes_per_second{{{S}, disk_io_direction="write"}}', SERVER_LEGEND)],
            "Bps", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="Original field io_write_bytes_per_s.")
    b.panel("timeseries", "Disk read rate",
            [q(f'container_disk_io_rate_bytes_per_second{{{S}, disk_io_direction="read"}}', SERVER_LEGEND)],
            "Bps", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("timeseries", "CPU throttled",
            [q(f'rate(container_cpu_throttled_time_seconds_total{{{S}}}[$__rate_interval])', SERVER_LEGEND)],
            "percentunit", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="Seconds per second the container's tasks were held back by its CPU limit (CFS throttling), summed over its cores.")
    b.panel("timeseries", "CPU time", [q(f'rate(container_cpu_time_seconds_total{{{S}}}[$__rate_interval])', SERVER_LEGEND)],
            "percentunit", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="CPU seconds per second from the cumulative counter (1 = 100 % = one core).")

    b.row("Game")
    b.panel("timeseries", "Players online / max",
            [q(f'gameserver_players_online{{{G}}}', "online " + GAME_LEGEND),
             q(f'gameserver_players_max{{{G}}}', "max " + GAME_LEGEND)],
            "none", w=12, h=9, custom=TS_LINE, options=LEGEND, minv=0,
            overrides=[{"matcher": {"id": "byRegexp", "options": "max .*"},
                        "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                                       {"id": "custom.fillOpacity", "value": 0}]}])
    b.panel("timeseries", "Ping", [q(f'gameserver_ping_duration_seconds{{{G}}}', GAME_LEGEND)],
            "s", w=12, h=9, custom=TS_LINE, options=LEGEND, minv=0,
            description="Round trip of the game protocol's status request.")
    b.panel("table", "Game server state",
            [qi(f'max by (instance, pterodactyl_server_uuid, gameserver_protocol, server_address, server_port, gameserver_state) (gameserver_status_ratio{{{G}}} == 1)')],
            "none", w=24, h=6, options={"showHeader": True, "cellHeight": "sm"},
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}, "renameByName": {
                "instance": "node", "pterodactyl_server_uuid": "server", "gameserver_protocol": "protocol",
                "server_address": "address", "server_port": "port", "gameserver_state": "state"}}}])
    server_var = query_var("server", "Server", 'label_values(container_cpu_usage{instance=~"$node"}, container_name)')
    return dashboard("node-agent-gameservers", "Game servers",
                     "Per game server (container): CPU against its limit, memory, disk write rate, players online/max, state, ping. "
                     "The server variable is the container name, which Wings sets to the server UUID.",
                     b, [NODE_VAR, server_var], ["gameservers"])


def fleet_dashboard():
    b = Board()
    b.row("Which node has room")
    table_q = [
        qi('1 - sum by (instance) (system_cpu_utilization_ratio{cpu_mode=~"idle|iowait"})'),
        qi('sum by (instance) (system_cpu_utilization_ratio{cpu_mode="iowait"})'),
        qi('max by (instance) (system_cpu_logical_count) * sum by (instance) (system_cpu_utilization_ratio{cpu_mode="idle"})'),
        qi('sum by (instance) (system_memory_utilization_ratio{system_memory_state="used"})'),
        qi('sum by (instance) (system_memory_linux_available_bytes)'),
        qi('sum by (instance) (system_filesystem_usage_bytes{system_filesystem_state="free"})'),
        qi('sum by (instance) (container_count{container_state="running"})'),
        qi('sum by (instance) (gameserver_players_online)'),
        qi('max by (instance) (system_uptime_seconds)'),
    ]
    names = ["CPU busy", "iowait", "idle cores", "memory used", "memory available", "disk free",
             "running containers", "players", "uptime"]
    units = ["percentunit", "percentunit", "none", "percentunit", "bytes", "bytes", "none", "none", "s"]
    overrides = []
    for i, (n, u) in enumerate(zip(names, units)):
        ref = chr(ord("A") + i)
        overrides.append({"matcher": {"id": "byName", "options": f"Value #{ref}"},
                          "properties": [{"id": "displayName", "value": n}, {"id": "unit", "value": u}]})
    for n in ("CPU busy", "memory used"):
        overrides.append({"matcher": {"id": "byName", "options": n},
                          "properties": [{"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "gradient"}},
                                         {"id": "thresholds", "value": {"mode": "absolute", "steps": PCT_STEPS}}]})
    b.panel("table", "Nodes side by side", table_q, "none", w=24, h=10,
            description="Now, per node. Room for a new server = idle cores, memory available, disk free.",
            options={"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "idle cores", "desc": True}]},
            overrides=overrides,
            transformations=[{"id": "merge", "options": {}},
                             {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {"instance": "node"}}}])
    b.row("Over time")
    b.panel("timeseries", "CPU busy by node", [q('1 - sum by (instance) (system_cpu_utilization_ratio{cpu_mode=~"idle|iowait"})', "{{instance}}")],
            "percentunit", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0, maxv=1)
    b.panel("timeseries", "Memory used by node", [q('sum by (instance) (system_memory_utilization_ratio{system_memory_state="used"})', "{{instance}}")],
            "percentunit", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0, maxv=1)
    b.panel("timeseries", "Players by node", [q('sum by (instance) (gameserver_players_online)', "{{instance}}")],
            "none", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("timeseries", "Network throughput by node",
            [q('sum by (instance, network_io_direction) (rate(system_network_io_bytes_total{network_interface_name!="lo"}[$__rate_interval]))',
               "{{instance}} {{network_io_direction}}")],
            "Bps", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    return dashboard("node-agent-fleet", "Fleet", "All nodes side by side, and which node has room for another server.",
                     b, [], ["fleet"])


def health_dashboard():
    b = Board()
    b.row("Heartbeat")
    b.panel("stat", "Seconds since last report",
            [q(f'time() - max by (instance) (node_agent_sampler_last_success_seconds{{{N}}})', "{{instance}}")],
            "s", w=8, h=5, options=dict(STAT, graphMode="none"),
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 60}, {"color": "red", "value": 180}],
            description="Age of the newest successful sampling pass the node reported (by the agent's clock). It grows when nothing arrives from the node, or when no sampler succeeds.")
    b.panel("stat", "Batches dropped (24 h)",
            [q(f'sum by (instance) (increase(node_agent_export_batches_total{{{N}, outcome="dropped"}}[24h]))', "{{instance}}")],
            "none", w=8, h=5, options=dict(STAT, graphMode="none"),
            thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
            description="Batches the agent had to give up (queue and spool full, or refused by the receiver).")
    b.panel("stat", "Agent memory", [q(f'max by (instance) (process_memory_usage_bytes{{{N}}})', "{{instance}}")],
            "bytes", w=8, h=5, options=STAT)

    b.row("Samplers")
    b.panel("timeseries", "Time since each sampler's last success",
            [q(f'time() - max by (instance, node_agent_sampler) (node_agent_sampler_last_success_seconds{{{N}}})',
               "{{instance}} {{node_agent_sampler}}")],
            "s", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="Tells a dead sampler (growing) from an empty host (steady, small).")
    b.panel("timeseries", "Sampler duration",
            [q(f'max by (instance, node_agent_sampler) (node_agent_sampler_duration_seconds{{{N}}})', "{{instance}} {{node_agent_sampler}}")],
            "s", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("timeseries", "Sampler errors",
            [q(f'sum by (instance, node_agent_sampler) (increase(node_agent_sampler_errors_total{{{N}}}[$__rate_interval]))',
               "{{instance}} {{node_agent_sampler}}")],
            "none", w=12, h=8, custom=dict(TS_LINE, drawStyle="bars", fillOpacity=80), options=LEGEND, minv=0,
            description="Failed passes per interval.")

    b.panel("timeseries", "Export outcomes",
            [q(f'sum by (instance, outcome) (rate(node_agent_export_batches_total{{{N}}}[$__rate_interval]))', "{{instance}} {{outcome}}")],
            "ops", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="Batches per second: sent, retried (a failed attempt that will be repeated), dropped.")

    b.row("Delivery queue")
    b.panel("timeseries", "Queued batches",
            [q(f'sum by (instance, node_agent_queue_tier) (node_agent_queue_batches{{{N}}})', "{{instance}} {{node_agent_queue_tier}}")],
            "none", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="Batches waiting for delivery, in memory and spilled to disk.")
    b.panel("timeseries", "Queued bytes",
            [q(f'sum by (instance, node_agent_queue_tier) (node_agent_queue_bytes{{{N}}})', "{{instance}} {{node_agent_queue_tier}}")],
            "bytes", w=12, h=8, custom=TS_LINE, options=LEGEND, minv=0)

    b.row("Agent process")
    b.panel("timeseries", "Agent CPU",
            [q(f'sum by (instance) (rate(process_cpu_time_seconds_total{{{N}}}[$__rate_interval]))', "{{instance}}")],
            "percentunit", w=8, h=8, custom=TS_LINE, options=LEGEND, minv=0,
            description="CPU seconds per second (1 = 100 % of one core), user + system.")
    b.panel("timeseries", "Agent memory", [q(f'max by (instance) (process_memory_usage_bytes{{{N}}})', "{{instance}}")],
            "bytes", w=8, h=8, custom=TS_LINE, options=LEGEND, minv=0)
    b.panel("table", "Agent versions",
            [qi(f'max by (instance, service_name, service_version, host_name) (target_info{{{N}}})')],
            "string", w=8, h=8, options={"showHeader": True, "cellHeight": "sm"},
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}, "renameByName": {
                "instance": "node", "service_name": "service", "service_version": "version", "host_name": "host"}}}])
    return dashboard("node-agent-health", "Agent health", "The agent itself: heartbeat, samplers, delivery queue, drops, its CPU and memory.",
                     b, [NODE_VAR], ["agent"])


BOARDS = {
    "node.json": node_dashboard,
    "gameservers.json": gameservers_dashboard,
    "fleet.json": fleet_dashboard,
    "agent-health.json": health_dashboard,
}


def render(fn):
    return json.dumps(fn(), indent=2, ensure_ascii=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, fn in BOARDS.items():
        text = render(fn)
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("dashboards out of date (run scripts/gen-dashboards.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
