"""tools/mailgrid up / status / down from the outside, as a newcomer runs them."""
import json
import os
import shutil
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgtest  # noqa: E402

REQUIRED_KEYS = ["smtp", "submission", "submission_tls", "imap", "imaps", "pop3", "pop3s",
                 "grpc", "metrics", "ca_cert"]


def redis_ping(address):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class LauncherTest(unittest.TestCase):
    def setUp(self):
        self.data = mgtest.temp_dir("mailgrid-launcher")

    def tearDown(self):
        mgtest.launcher("down", data_dir=self.data, check=False)
        shutil.rmtree(self.data, ignore_errors=True)

    def load_cluster(self):
        with open(os.path.join(self.data, "cluster.json")) as f:
            return json.load(f)

    def test_up_status_down_up(self):
        mgtest.launcher("up", "--no-build", data_dir=self.data)
        doc = self.load_cluster()
        for key in REQUIRED_KEYS:
            self.assertIn(key, doc)
        self.assertTrue(os.path.exists(doc["ca_cert"]))
        self.assertTrue(redis_ping(doc["redis"]))
        # Every service that is built is running and healthy, on every replica.
        for service, addresses in doc["grpc"].items():
            for address in addresses:
                self.assertEqual(mgtest.grpc_health(address), "SERVING", service)
        for url in doc["metrics"]:
            status, body = mgtest.http_get(url)
            self.assertEqual(status, 200)
            self.assertIn("mailgrid_build_info", body)
        status = mgtest.launcher("status", data_dir=self.data)
        self.assertIn("redis", status.stdout)
        self.assertIn("running", status.stdout)

        down = mgtest.launcher("down", data_dir=self.data)
        self.assertIn("redis", down.stdout)
        self.assertFalse(redis_ping(doc["redis"]))
        stopped = mgtest.launcher("status", data_dir=self.data, check=False)
        self.assertNotEqual(stopped.returncode, 0)
        self.assertIn("stopped", stopped.stdout)

        # A second `up` reuses the same addresses (Raft peers depend on it).
        mgtest.launcher("up", "--no-build", data_dir=self.data)
        again = self.load_cluster()
        self.assertEqual(again["redis"], doc["redis"])
        self.assertEqual(again["grpc"], doc["grpc"])
        self.assertTrue(redis_ping(again["redis"]))

    def test_replica_count_cannot_change_under_existing_data(self):
        mgtest.launcher("up", "--no-build", "--replicas", "1", data_dir=self.data)
        r = mgtest.launcher("up", "--no-build", "--replicas", "3", data_dir=self.data, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("was created with --replicas 1", r.stdout)

    def test_leadership_handover_for_rolling_restarts(self):
        """`mailctl raft transfer-leadership` (the chart's preStop hook): a
        no-op on a follower, a handover on the leader, the group healthy."""
        mgtest.launcher("up", "--no-build", "--replicas", "3", data_dir=self.data)
        replicas = self.load_cluster()["grpc"]["tenantd"]
        self.assertEqual(len(replicas), 3)

        def raft(*args):
            return subprocess.run([mgtest.binary("mailctl"), "--json", "raft"] + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def leader_address():
            for address in replicas:
                r = raft("status", address)
                if r.returncode == 0 and json.loads(r.stdout).get("role") == "ROLE_LEADER":
                    return address
            return None

        leader = mgtest.eventually(leader_address, "a tenantd leader")
        follower = next(a for a in replicas if a != leader)
        r = raft("transfer-leadership", "--address=" + follower, "--timeout=30s")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("not the leader", r.stdout)
        self.assertEqual(leader_address(), leader)

        r = raft("transfer-leadership", "--address=" + leader, "--timeout=30s")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("moved from", r.stdout)
        new_leader = mgtest.eventually(lambda: leader_address() not in (None, leader) and leader_address(),
                                       "a different tenantd leader")
        self.assertNotEqual(new_leader, leader)
        for address in replicas:
            mgtest.eventually(lambda: mgtest.grpc_health(address) == "SERVING", address + " SERVING")

        r = raft("status", "--address=127.0.0.1:1", "--timeout=2s")
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    unittest.main()
