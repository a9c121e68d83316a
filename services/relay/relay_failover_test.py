#!/usr/bin/env python3
"""Kill the mailstored leader while relayd is delivering (issue 8): every
message that got 250 is in the mailbox exactly once. Stall it (SIGSTOP until
another replica leads, then SIGCONT): no message gets 451 at all.

A 3-replica cluster (tools/mailgrid up --replicas 3 --demo) with real
relayd, tenantd, identityd and mailstored; 4 SMTP clients send 100 messages
each to one user over port 25; after 80 have been accepted the mailstored
replica whose /metrics says it is the Raft leader is SIGKILLed (2 of 3 stay:
a majority). Then the INBOX is read back from mailstored.
"""
import json
import os
import shutil
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
# More clients for the stall: more deliveries in flight when it begins.
STALL_CLIENTS = 8


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
        shutil.rmtree(self.data, ignore_errors=True)  # ~27 MB of replicas per test

    def ctl(self, *args):
        r = subprocess.run([mgtest.binary("relay_testctl")] + list(args) + ["--key", self.key],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        if r.returncode != 0:
            raise AssertionError("relay_testctl %s failed: %s" % (args[0], r.stderr))
        return json.loads(r.stdout)

    def leader(self, exclude=None):
        """The replica whose /metrics says it leads; `exclude` is not asked
        (a stopped process would hold the request until the timeout)."""
        for i in (1, 2, 3):
            if i == exclude:
                continue
            url = "http://127.0.0.1:%d/metrics" % self.ports["mailstored-%d.metrics" % i]
            try:
                text = urllib.request.urlopen(url, timeout=10).read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith('mailgrid_raft_role{') and 'role="leader"' in line and line.endswith(" 1"):
                    return i
        return None

    def pid_of(self, replica):
        with open(os.path.join(self.data, "run", "mailstored-%d.pid" % replica)) as f:
            return int(f.read().strip())

    def send_while(self, clients, disrupt_after, disrupt):
        """`clients` SMTP clients send PER_CLIENT messages each to a new
        user; once `disrupt_after` are accepted, disrupt() runs (it gets the
        leader replica). Returns (user, nonce, accepted subjects, refused
        (subject, error) pairs, how many were accepted before disrupt())."""
        domain, tenant = self.doc["demo"]["domain"], self.doc["demo"]["tenant_id"]
        nonce = str(time.time_ns())
        user = self.ctl("create-user", "--tenantd", self.doc["grpc"]["tenantd"][0], "--tenant", tenant,
                        "--address", "fo-%s@%s" % (nonce, domain), "--name", "Failover")
        host, port = self.doc["smtp"].rsplit(":", 1)
        accepted, refused = [], []
        lock = threading.Lock()

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

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        mgtest.eventually(lambda: len(accepted) >= disrupt_after, "%d accepted messages" % disrupt_after)
        disrupt(mgtest.eventually(self.leader, "a mailstored leader"))
        disrupted_at = len(accepted)
        for t in threads:
            t.join()
        return user, nonce, accepted, refused, disrupted_at

    def assert_stored_exactly_once(self, user, nonce, accepted):
        tenant = self.doc["demo"]["tenant_id"]

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

    def test_every_accepted_message_stored_exactly_once(self):
        killed = []

        def kill_leader(victim):
            os.kill(self.pid_of(victim), signal.SIGKILL)
            killed.append(victim)

        user, nonce, accepted, refused, killed_at = self.send_while(CLIENTS, KILL_AFTER, kill_leader)
        print("accepted %d, refused %d (leader mailstored-%d killed after %d)" %
              (len(accepted), len(refused), killed[0], killed_at), file=sys.stderr)
        self.assertGreater(len(accepted), killed_at, "deliveries must resume after the failover")
        self.assert_stored_exactly_once(user, nonce, accepted)

    def test_a_stalled_leader_costs_no_451(self):
        """A healthy but stalled mailstored (a starved process on a busy
        machine, here SIGSTOP) loses its leadership with deliveries in
        flight; they come back TEMPORARY_FAILURE once it runs again. relayd
        sends them again to the new leader (delivery_retry.h): no client
        sees 451, no message is stored twice."""
        stalled = []

        def stall_leader(victim):
            pid = self.pid_of(victim)
            os.kill(pid, signal.SIGSTOP)
            stalled.append(victim)
            try:
                # Until another replica has taken over: the stalled one's
                # proposals in flight can no longer commit.
                mgtest.eventually(lambda: self.leader(exclude=victim), "a new mailstored leader")
            finally:
                os.kill(pid, signal.SIGCONT)

        user, nonce, accepted, refused, stalled_at = self.send_while(STALL_CLIENTS, KILL_AFTER, stall_leader)
        with open(os.path.join(self.data, "logs", "relayd-1.log")) as f:
            retried = sum(1 for line in f if "recipients failed temporarily, retrying" in line)
        print("accepted %d, refused %d (leader mailstored-%d stalled after %d; relayd retry lines %d)" %
              (len(accepted), len(refused), stalled[0], stalled_at, retried), file=sys.stderr)
        self.assertEqual(refused, [], "a stalled leader must not cost the clients a 451")
        self.assertEqual(len(accepted), STALL_CLIENTS * PER_CLIENT)
        self.assert_stored_exactly_once(user, nonce, accepted)

if __name__ == "__main__":
    unittest.main()
