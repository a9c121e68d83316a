#!/usr/bin/env python3
"""Writes mailgrid.json, the Grafana dashboard, from the panel list below.

Edit the panels here, then run `python3 make_dashboard.py > mailgrid.json`;
tests/integration/test_helm_chart.py checks that mailgrid.json is this
script's output and that every query parses (promtool).

Labels the queries rely on: component, shard, namespace, pod (set by
deploy/prometheus/prometheus.yml, the chart's ServiceMonitor or
local_targets.py). Panels over PLANNED metrics (deploy/README.md) stay empty
until the daemons export them; tests/integration/test_helm_chart.py checks
every other metric, label and label value against the code.
"""
import json
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
MAILGRID = "tenantd|identityd|mailstored|relayd|accessd"
# Health, reflection and Raft traffic are not the services' API.
API = 'grpc_service!~"grpc\\\\..*|mailgrid\\\\.raft\\\\.v1\\\\..*"'
SEL = 'namespace=~"$namespace",component=~"$component"'
RAFT = 'namespace=~"$namespace",component=~"$component",shard=~"$shard"'
SERVER_ERRORS = 'grpc_code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"'
# identityd's credential checks (every password or second factor an end user presents).
AUTH = ('component="identityd",grpc_service="mailgrid.identity.v1.AuthService",'
        'grpc_method=~"CheckSasl|Login|CompleteSecondFactor"')
PVC = 'persistentvolumeclaim=~"data-.+-(tenantd|identityd|mailstored-[0-9]+)-[0-9]+",namespace=~"$namespace"'


class Layout:
    """Places panels left to right in rows of 24 columns."""

    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "id": self._id(), "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(self, panel, w=8, h=8):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def target(expr, legend="", instant=False, ref="A"):
    t = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend}
    if instant:
        t.update({"instant": True, "range": False, "format": "table"})
    return t


def timeseries(title, targets, unit="short", description="", stack=False):
    refs = "ABCDEFGH"
    for i, t in enumerate(targets):
        t["refId"] = refs[i]
    custom = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {"type": "timeseries", "title": title, "description": description, "datasource": DS,
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "calcs": []},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def table(title, expr, description="", columns=None):
    hidden = {"Time": True, "Value": True, "__name__": True}
    if columns:
        hidden = {}
    return {"type": "table", "title": title, "description": description, "datasource": DS,
            "targets": [target(expr, instant=True)],
            "transformations": [{"id": "organize", "options": {"excludeByName": hidden}}],
            "fieldConfig": {"defaults": {}, "overrides": []}, "options": {"showHeader": True}}


def stat(title, expr, legend, description="", unit="short"):
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": [target(expr, legend)],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "value_and_name"}}


def rate(metric, sel, by, extra=""):
    inner = ",".join(s for s in (sel, extra) if s)
    return "sum by (%s) (rate(%s{%s}[$__rate_interval]))" % (by, metric, inner)


def quantile(q, metric, sel, by, extra=""):
    inner = ",".join(s for s in (sel, extra) if s)
    return "histogram_quantile(%s, sum by (%s, le) (rate(%s{%s}[$__rate_interval])))" % (q, by, metric, inner)


def build():
    L = Layout()

    L.row("Overview")
    L.add(stat("Replicas up", 'sum by (component) (up{%s})' % SEL, "{{component}}",
               "Targets answering /metrics, per service."), w=12, h=5)
    L.add(table("Versions running", 'count by (service, version) (mailgrid_build_info{namespace=~"$namespace"})',
                "mailgrid_build_info per service and version: more than one version per service means a rollout in progress."),
          w=12, h=5)

    L.row("RED per service (gRPC API)")
    L.add(timeseries("Requests", [target(rate("grpc_server_handled_total", SEL, "component", API), "{{component}}")],
                     "reqps", "Completed RPCs per second, health/reflection/Raft excluded."))
    L.add(timeseries("Server error ratio", [target(
        "%s / %s" % (rate("grpc_server_handled_total", SEL, "component", API + "," + SERVER_ERRORS),
                     rate("grpc_server_handled_total", SEL, "component", API)), "{{component}}")],
        "percentunit", "Share of RPCs ending UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS or DEADLINE_EXCEEDED."))
    L.add(timeseries("Latency", [
        target(quantile("0.5", "grpc_server_handling_seconds_bucket", SEL, "component", API), "p50 {{component}}"),
        target(quantile("0.99", "grpc_server_handling_seconds_bucket", SEL, "component", API), "p99 {{component}}")],
        "s", "Server-side handling time (streaming RPCs included: their p99 is long by design)."))
    L.add(timeseries("Errors by code", [target(rate("grpc_server_handled_total", SEL, "component, grpc_code",
                                                    API + ',grpc_code!="OK"'), "{{component}} {{grpc_code}}")],
                     "reqps", "Every non-OK status, client errors (NOT_FOUND, INVALID_ARGUMENT...) included."), w=24)

    L.row("RED per method")
    L.add(timeseries("Requests by method", [target(rate("grpc_server_handled_total", SEL, "component, grpc_method", API),
                                                   "{{component}} {{grpc_method}}")], "reqps"))
    L.add(timeseries("Errors by method", [target(rate("grpc_server_handled_total", SEL, "component, grpc_method, grpc_code",
                                                      API + ',grpc_code!="OK"'),
                                                 "{{component}} {{grpc_method}} {{grpc_code}}")], "reqps"))
    L.add(timeseries("p99 by method", [target(quantile("0.99", "grpc_server_handling_seconds_bucket", SEL,
                                                       "component, grpc_method", API),
                                              "{{component}} {{grpc_method}}")], "s"))

    L.row("Protocol commands: SMTP (relayd), IMAP and POP3 (accessd)")
    EDGE = 'namespace=~"$namespace"'
    L.add(timeseries("SMTP replies by class", [target(
        rate("mailgrid_relay_smtp_replies_total", EDGE, "listener, class"), "{{listener}} {{class}}")],
        "reqps", "Every SMTP reply relayd sends, by listener (smtp, submission, submission_tls) and class.",
        stack=True))
    L.add(timeseries("SMTP messages", [target(
        rate("mailgrid_relay_messages_total", EDGE, "listener, result"), "{{listener}} {{result}}")],
        "reqps", "Messages after DATA: accepted, or the reason they were refused.", stack=True))
    L.add(timeseries("RCPT decisions", [target(rate("mailgrid_relay_rcpt_total", EDGE, "result"), "{{result}}")],
                     "reqps", "Recipients accepted or refused (unknown user, relay denied, ...).", stack=True))
    L.add(timeseries("Local delivery p99", [target(
        quantile("0.99", "mailgrid_relay_delivery_seconds_bucket", EDGE, "namespace"), "p99")], "s",
        "From the end of DATA to every copy committed on a majority of the shard (the 250 waits for it)."))
    L.add(timeseries("Inbound SPF/DKIM/DMARC", [target(
        rate("mailgrid_relay_inbound_auth_total", EDGE, "method, result"), "{{method}} {{result}}")],
        "reqps", "Authentication results of mail received on port 25.", stack=True))
    L.add(timeseries("Connections by listener", [
        target('sum by (listener) (mailgrid_netserver_connections_active{%s})' % EDGE, "open {{listener}}"),
        target(rate("mailgrid_netserver_connections_refused_total", EDGE, "listener"), "refused/s {{listener}}"),
        target(rate("mailgrid_netserver_tls_failures_total", EDGE, "listener"), "TLS failures/s {{listener}}")],
        "short", "Open SMTP/IMAP/POP3 connections per listener; refusals (connection caps) and failed TLS handshakes."))
    for proto in ("imap", "pop3"):
        PROTO = 'protocol="%s"' % proto
        L.add(timeseries("%s commands" % proto.upper(), [target(
            rate("mailgrid_access_commands_total", EDGE, "command, result", PROTO), "{{command}} {{result}}")],
            "reqps", "Commands per second by command and result (IMAP: OK/NO/BAD; POP3: OK/ERR).", stack=True))
        L.add(timeseries("%s command p99" % proto.upper(), [target(
            quantile("0.99", "mailgrid_access_command_seconds_bucket", EDGE, "command", PROTO), "{{command}}")], "s"))
        L.add(timeseries("%s sessions" % proto.upper(), [target(
            'sum by (pod) (mailgrid_access_sessions{%s,%s})' % (EDGE, PROTO), "{{pod}}")], "short",
            "Open sessions per pod."))
    L.add(timeseries("IMAP IDLE sessions", [target('sum by (pod) (mailgrid_access_idle_sessions{%s})' % EDGE,
                                                   "{{pod}}")], "short", "IMAP sessions waiting in IDLE."))

    L.row("Mail flow: queue, authentication, certificates")
    L.add(timeseries("Queue depth", [target(
        'max by (namespace) (mailgrid_relay_queue{namespace=~"$namespace",what="depth"})', "queued")], "short",
        "Entries in the outbound queue (relayd counts up to 100000)."))
    L.add(timeseries("Oldest queued message", [target(
        'max by (namespace) (mailgrid_relay_queue{namespace=~"$namespace",what="oldest_age_seconds"})', "age")], "s",
        "Alerts at 1 h (warning) and 4 h (critical)."))
    L.add(timeseries("Delivery attempts", [target(
        rate("mailgrid_relay_deliveries_total", 'namespace=~"$namespace"', "path, result"), "{{path}} {{result}}")],
        "reqps", "Queued recipients attempted, by path (remote SMTP, local mailbox) and result.", stack=True))
    L.add(timeseries("Authentication results", [target(
        rate("grpc_server_handled_total", 'namespace=~"$namespace"', "grpc_method, grpc_code", AUTH),
        "{{grpc_method}} {{grpc_code}}")], "reqps",
        "identityd's password checks: CheckSasl (SMTP AUTH, IMAP, POP3), Login and the second factor. "
        "UNAUTHENTICATED is a wrong credential, RESOURCE_EXHAUSTED a throttled one; a spike is password guessing."))
    L.add(timeseries("Days to certificate expiry", [target(
        'min by (name) (certmanager_certificate_expiration_timestamp_seconds{namespace=~"$namespace"} - time()) / 86400',
        "{{name}}")], "d", "The chart's cert-manager Certificates (needs cert-manager's metrics)."))

    L.row("Raft")
    L.add(table("Current leaders", 'mailgrid_raft_role{role="leader",%s} == 1' % RAFT,
                "One row per Raft group: the replica leading it now. A group missing here has no leader."), w=8)
    L.add(timeseries("Term", [target('max by (component, shard, pod) (mailgrid_raft_term{%s})' % RAFT,
                                     "{{pod}}")], "short", "Rises with each election."))
    L.add(timeseries("Leader changes (1 h)", [target(
        'max by (component, shard) (increase(mailgrid_raft_leader_changes_total{%s}[1h]))' % RAFT,
        "{{component}} {{shard}}")], "short"))
    L.add(timeseries("Commit and applied index", [
        target('mailgrid_raft_commit_index{%s}' % RAFT, "commit {{pod}}"),
        target('mailgrid_raft_applied_index{%s}' % RAFT, "applied {{pod}}")], "short"))
    L.add(timeseries("Apply lag", [target('mailgrid_raft_apply_lag{%s}' % RAFT, "{{pod}}")], "short",
                     "Committed entries not yet applied; alert above 1000 for 5 minutes."))
    L.add(timeseries("Proposals", [
        target(rate("mailgrid_raft_proposals_total", RAFT, "component, shard"), "proposed {{component}} {{shard}}"),
        target(rate("mailgrid_raft_proposals_refused_total", RAFT, "component, shard"), "refused {{component}} {{shard}}")],
        "ops"))
    L.add(timeseries("Log fsync p99", [target(quantile("0.99", "mailgrid_raft_fsync_seconds_bucket", RAFT, "pod"), "{{pod}}")],
                     "s", "One fsync per Raft Ready; every write waits for a majority's."))
    L.add(timeseries("Entries per fsync (p50)", [target(
        quantile("0.5", "mailgrid_raft_entries_per_fsync_bucket", RAFT, "pod"), "{{pod}}")], "short",
        "Group commit at work: many entries per fsync under load."))
    L.add(timeseries("Disk full", [target('mailgrid_raft_disk_full{%s}' % RAFT, "{{pod}}")], "short",
                     "1 while the replica refuses writes for a full disk."))

    L.row("Resources and disk")
    L.add(timeseries("Resident memory", [target('process_resident_memory_bytes{%s}' % SEL, "{{pod}}")], "bytes"))
    L.add(timeseries("CPU", [target('rate(process_cpu_seconds_total{%s}[$__rate_interval])' % SEL, "{{pod}}")],
                     "percentunit", "CPU seconds per second (1 = one core)."))
    L.add(timeseries("Open file descriptors", [target('process_open_fds{%s}' % SEL, "{{pod}}")], "short"))
    L.add(timeseries("Mail volumes used", [target(
        '1 - kubelet_volume_stats_available_bytes{%s} / kubelet_volume_stats_capacity_bytes{%s}' % (PVC, PVC),
        "{{persistentvolumeclaim}}")], "percentunit", "Kubelet volume stats of the Raft replicas' PersistentVolumeClaims."),
        w=12)
    L.add(timeseries("Mail volumes free", [target('kubelet_volume_stats_available_bytes{%s}' % PVC,
                                                  "{{persistentvolumeclaim}}")], "bytes"), w=12)
    return L.panels


def variable(name, label, query, all_value, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "sort": 1,
            "multi": multi, "includeAll": True, "allValue": all_value,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def dashboard():
    return {
        "uid": "mailgrid",
        "title": "mailgrid",
        "description": "RED per service and method, protocol commands, mail queue, Raft health, resources and disk.",
        "tags": ["mailgrid"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            variable("namespace", "Namespace", 'label_values(up{component=~"%s"}, namespace)' % MAILGRID, ".*"),
            variable("component", "Service", 'label_values(up{component=~"%s"}, component)' % MAILGRID, MAILGRID),
            variable("shard", "Shard", 'label_values(mailgrid_raft_role{component="mailstored"}, shard)', ".*"),
        ]},
        "panels": build(),
    }


if __name__ == "__main__":
    json.dump(dashboard(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
