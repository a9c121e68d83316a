#!/usr/bin/env python3
"""Kill the mailstored leader while relayd is delivering (issue 8): every
message that got 250 is in the mailbox exactly once.

A 3-replica cluster (tools/mailgrid up --replicas 3 --demo) with real
relayd, tenantd, identityd and mailstored; 4 SMTP clients send 100 messages
each to one user over port 25; after 80 have been accepted the mailstored
replica whose /metrics says it is the Raft leader is SIGKILLed (2 of 3 stay:
a majority). Then the INBOX is read back from mailstored.
"""
import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

NEEDED = ["tenantd", "identityd", "mailstored", "relayd", "relay_testctl"]
CLIENTS, PER_CLIENT, KILL_AFTER = 4, 100, 80


class RelayFailoverTest(unittest.TestCase):
    def setUp(self):
        missing = [b for b in NEEDED if not os.path.exists(mgtest.binary(b))]
        if missing:
            raise AssertionError("failover test needs %s in %s (not built)" % (", ".join(missing), mgtest.BIN))
        self.data = mgtest.temp_dir("relay-fo-")
        self.env = dict(os.environ, MAILGRID_BUILD_DIR=mgtest.BUILD_DIR)
        r = subprocess.run([mgtest.LAUNCHER, "up", "--no-build", "--demo", "--replicas", "3",
                            "--data", self.data], env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            self.tearDown()
            raise AssertionError("tools/mailgrid up --replicas 3 failed:\n" + r.stdout)
        with open(os.path.join(self.data, "cluster.json")) as f:
            self.doc = json.load(f)
        with open(os.path.join(self.data, "ports.json")) as f:
            self.ports = json.load(f)["ports"]
        self.key = os.path.join(self.data, "secrets", "token.pem")

    def tearDown(self):
        subprocess.run([mgtest.LAUNCHER, "down", "--data", self.data], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ctl(self, *args):
        r = subprocess.run([mgtest.binary("relay_testctl")] + list(args) + ["--key", self.key],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        if r.returncode != 0:
            raise AssertionError("relay_testctl %s failed: %s" % (args[0], r.stderr))
        return json.loads(r.stdout)

    def leader(self):
        for i in (1, 2, 3):
            url = "http://127.0.0.1:%d/metrics" % self.ports["mailstored-%d.metrics" % i]
            try:
                text = urllib.request.urlopen(url, timeout=10).read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith('mailgrid_raft_role{') and 'role="leader"' in line and line.endswith(" 1"):
                    return i
        return None

    def test_every_accepted_message_stored_exactly_once(self):
        domain, tenant = self.doc["demo"]["domain"], self.doc["demo"]["tenant_id"]
        user = self.ctl("create-user", "--tenantd", self.doc["grpc"]["tenantd"][0], "--tenant", tenant,
                            "--address", "failover@" + domain, "--name", "Failover")
        host, port = self.doc["smtp"].rsplit(":", 1)
        accepted, refused = [], []
        lock = threading.Lock()
        nonce = str(time.time_ns())

        def client(c):
            s = None
            for i in range(PER_CLIENT):
                subject = "fo-%s-%d-%d" % (nonce, c, i)
                msg = "From: load@sender.example\r\nSubject: %s\r\n\r\nbody %d\r\n" % (subject, i)
                try:
                    if s is None:
                        s = smtplib.SMTP(host, int(port), timeout=120)
                        s.ehlo("failover.example")
                    s.sendmail("load@sender.example", [user["address"]], msg)
                    with lock:
                        accepted.append(subject)
                except (smtplib.SMTPException, OSError) as e:
                    with lock:
                        refused.append((subject, str(e)))
                    try:
                        s.rset()
                    except Exception:
                        s.close()
                        s = None
            if s is not None:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    s.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        mgtest.eventually(lambda: len(accepted) >= KILL_AFTER, "%d accepted messages" % KILL_AFTER)
        victim = mgtest.eventually(self.leader, "a mailstored leader")
        with open(os.path.join(self.data, "run", "mailstored-%d.pid" % victim)) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
        killed_at = len(accepted)
        for t in threads:
            t.join()
        print("accepted %d, refused %d (leader mailstored-%d killed after %d)" %
              (len(accepted), len(refused), victim, killed_at), file=sys.stderr)
        self.assertGreater(len(accepted), killed_at, "deliveries must resume after the failover")

        def stored_subjects():
            out = self.ctl("messages", "--mailstored", ",".join(self.doc["grpc"]["mailstored"]),
                               "--tenant", tenant, "--user", user["user_id"], "--mailbox",
                               user["mailbox_id"], "--shard", str(user["shard"]))
            subjects = []
            for m in out:
                for line in m["raw"].split("\r\n"):
                    if line.startswith("Subject: fo-%s-" % nonce):
                        subjects.append(line[len("Subject: "):])
            return subjects

        subjects = mgtest.eventually(lambda: (lambda s: s if set(accepted) <= set(s) else None)(stored_subjects()),
                                     "every accepted message readable")
        counts = {}
        for s in subjects:
            counts[s] = counts.get(s, 0) + 1
        for s in accepted:
            self.assertEqual(counts.get(s, 0), 1, "accepted message %s stored %d times" % (s, counts.get(s, 0)))
        dupes = [s for s, n in counts.items() if n > 1]
        self.assertEqual(dupes, [], "messages stored twice")


if __name__ == "__main__":
    unittest.main()
