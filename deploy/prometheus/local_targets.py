#!/usr/bin/env python3
"""Prometheus file_sd targets for a local mailgrid cluster.

Reads the cluster.json that `tools/mailgrid up` writes, asks each /metrics URL
in it which daemon it is (mailgrid_build_info{service=...}), and prints a
file_sd target list with the labels alerts.yml and the Grafana dashboard use:
component (the daemon) and pod (<daemon>-<n>, numbered in cluster.json's
order). A URL that does not answer is reported on stderr and left out; the
exit status is then 1, so a script notices.

    python3 local_targets.py .mailgrid/cluster.json > targets/local.json
"""
import json
import re
import sys
import urllib.parse
import urllib.request

BUILD_INFO = re.compile(r'^mailgrid_build_info\{[^}]*\bservice="([^"]+)"', re.MULTILINE)


def component_of(url, timeout=10):
    """The service label of mailgrid_build_info at url, or None if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read().decode("utf-8", "replace")
    except OSError:
        return None
    m = BUILD_INFO.search(body)
    return m.group(1) if m else None


def targets(metrics_urls, lookup=component_of):
    out, missing, counts = [], [], {}
    for url in metrics_urls:
        component = lookup(url)
        if component is None:
            missing.append(url)
            continue
        counts[component] = counts.get(component, 0) + 1
        parsed = urllib.parse.urlparse(url)
        labels = {"component": component, "pod": "%s-%d" % (component, counts[component])}
        if parsed.path and parsed.path != "/metrics":
            labels["__metrics_path__"] = parsed.path
        out.append({"targets": [parsed.netloc], "labels": labels})
    return out, missing


def main(argv):
    if len(argv) != 2:
        print("usage: local_targets.py CLUSTER_JSON", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        cluster = json.load(f)
    found, missing = targets(cluster.get("metrics", []))
    json.dump(found, sys.stdout, indent=2)
    sys.stdout.write("\n")
    for url in missing:
        print("local_targets: no mailgrid_build_info at %s (left out)" % url, file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
