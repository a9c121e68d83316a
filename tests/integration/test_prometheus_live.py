"""A real Prometheus server scrapes a running local cluster.

Starts `tools/mailgrid up --replicas 3` in a temporary directory, writes the
file_sd targets with deploy/prometheus/local_targets.py, runs Debian's
prometheus with deploy/prometheus/prometheus-local.yml (and alerts.yml) on a
free loopback port, and asks its HTTP API: every daemon's target is up, the
key series are there with the labels the alerts and dashboard use, the
rules loaded, and no "no Raft leader" alert fires.

Needs: prometheus (Debian package prometheus).
"""
import json
import os
import shutil
import subprocess
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgtest  # noqa: E402

PROM_DIR = os.path.join(mgtest.SOURCE_DIR, "deploy", "prometheus")


class PrometheusLiveTest(unittest.TestCase):
    def setUp(self):
        self.prometheus = shutil.which("prometheus")
        if self.prometheus is None:
            raise AssertionError("prometheus is missing: apt-get install prometheus (tools/packages.txt)")
        self.data = mgtest.temp_dir("mailgrid-prom-cluster")
        self.prom_dir = mgtest.temp_dir("mailgrid-prom")
        self.proc = None
        self.log = None

    def tearDown(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
        if self.log is not None:
            self.log.close()
        mgtest.launcher("down", data_dir=self.data, check=False)
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.prom_dir, ignore_errors=True)

    def api(self, path, **params):
        url = "http://%s/api/v1/%s" % (self.address, path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = mgtest.http_get(url)
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["status"], "success", body)
        return doc["data"]

    def start_prometheus(self, cluster_json):
        for name in ("prometheus-local.yml", "alerts.yml"):
            shutil.copy(os.path.join(PROM_DIR, name), self.prom_dir)
        os.makedirs(os.path.join(self.prom_dir, "targets"))
        with open(os.path.join(self.prom_dir, "targets", "local.json"), "w") as out:
            subprocess.run([sys.executable, os.path.join(PROM_DIR, "local_targets.py"), cluster_json],
                           stdout=out, check=True)
        self.address = "127.0.0.1:%d" % mgtest.free_port()
        self.log = open(os.path.join(self.prom_dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [self.prometheus, "--config.file=prometheus-local.yml",
             "--storage.tsdb.path=" + os.path.join(self.prom_dir, "tsdb"),
             "--web.listen-address=" + self.address],
            cwd=self.prom_dir, stdout=self.log, stderr=subprocess.STDOUT)

    def test_every_daemon_is_scraped_with_its_labels(self):
        mgtest.launcher("up", "--no-build", "--replicas", "3", data_dir=self.data)
        cluster_json = os.path.join(self.data, "cluster.json")
        with open(cluster_json) as f:
            cluster = json.load(f)
        self.start_prometheus(cluster_json)

        def all_targets_up():
            try:
                active = self.api("targets")["activeTargets"]
            except (AssertionError, OSError, ValueError):
                return None
            if len(active) != len(cluster["metrics"]):
                return None
            return active if all(t["health"] == "up" for t in active) else None

        active = mgtest.eventually(all_targets_up, "every target up in Prometheus")
        components = {t["labels"]["component"] for t in active}
        for service, replicas in cluster["grpc"].items():
            self.assertIn(service, components)
            pods = {t["labels"]["pod"] for t in active if t["labels"]["component"] == service}
            self.assertEqual(len(pods), len(replicas), service)

        def series(query):
            result = self.api("query", query=query)["result"]
            return result or None

        # Process, build, RPC and Raft series, labelled as the alerts expect.
        build = mgtest.eventually(lambda: series("mailgrid_build_info"), "mailgrid_build_info")
        self.assertEqual(len(build), len(cluster["metrics"]))
        mgtest.eventually(lambda: series("process_resident_memory_bytes"), "process memory")
        mgtest.eventually(lambda: series('grpc_server_handled_total{component="tenantd"}'),
                          "tenantd RPC counters")
        commit = mgtest.eventually(lambda: series('mailgrid_raft_commit_index{component="tenantd"}'),
                                   "tenantd raft commit index")
        self.assertEqual(len(commit), 3)
        leaders = mgtest.eventually(lambda: series('mailgrid_raft_role{component="tenantd",role="leader"} == 1'),
                                    "one tenantd leader")
        self.assertEqual(len(leaders), 1)

        groups = self.api("rules")["groups"]
        names = {r["name"] for g in groups for r in g["rules"]}
        self.assertIn("MailgridRaftNoLeader", names)
        firing = [a for a in self.api("alerts")["alerts"]
                  if a["labels"].get("alertname") == "MailgridRaftNoLeader" and a["state"] == "firing"]
        self.assertEqual(firing, [])


if __name__ == "__main__":
    unittest.main()
