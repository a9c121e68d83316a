#!/usr/bin/env python3
"""A relayd is SIGKILLed while it holds the lease on a queued message and is
delivering it; another relayd takes the entry over once the lease expires,
and the remote MX (Postfix's smtp-sink) receives the message exactly once
(issue 9: "a relayd replica is killed with a message in its lease and the
message is still delivered exactly once").

  cluster    tools/mailgrid up --demo with MAILGRID_QUEUE_THREADS=0: its
             relayd accepts the submission and queues it, but runs no runner.
  relayd A   a second relayd with --queue-threads=1 --queue-lease=10s on the
             same queue store: it leases the entry and connects to the sink,
             which waits 6 s before answering DATA (smtp-sink -w 6). A is
             killed (SIGKILL) while that connection is open, i.e. while the
             lease is held and before the sink accepted anything.
  relayd B   started after the kill, same flags: the entry becomes due when
             A's lease expires; B leases it and delivers.

Exactly once holds here because A died before the sink's 250 for the
message. SMTP has no two-phase commit: a runner killed AFTER the peer's
250 at end of DATA but BEFORE its Complete is committed leaves the entry
leased and undelivered in the queue, and the next runner sends it again —
a duplicate at the peer. That window (one store write after the 250) is
inherent to SMTP (RFC 5321 §6.1 accepts duplicates over losses); the queue
makes it at-least-once, never lost, and exactly once outside that window.
"""
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgtest  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
DOMAIN = "lease.example"
LEASE = "10s"


def established_to(port):
    """Established TCP connections whose remote end is 127.0.0.1:port."""
    want = ":%04X" % port
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[2].endswith(want) and cols[3] == "01":
                        n += 1
        except OSError:
            pass
    return n


class RelayLeaseTakeoverTest(unittest.TestCase):
    def setUp(self):
        for b in ("relayd", "mailctl", "tenantd", "identityd", "mailstored"):
            if not os.path.exists(mgtest.binary(b)):
                self.fail("%s is not built in %s" % (b, mgtest.BIN))
        if not os.path.exists(SINK):
            self.fail("%s is missing (apt-get install -y postfix)" % SINK)
        self.procs = []
        self.cluster = None
        self.work = mgtest.temp_dir("relay-lease-")
        os.chmod(self.work, 0o777)
        self.dump = os.path.join(self.work, "dump")
        os.makedirs(self.dump)
        os.chmod(self.dump, 0o777)  # smtp-sink runs as nobody when started as root
        try:
            self.sink_port = mgtest.free_port()
            cmd = [SINK] + (["-u", "nobody"] if os.geteuid() == 0 else [])
            cmd += ["-w", "6", "-d", os.path.join(self.dump, "%M."), "127.0.0.1:%d" % self.sink_port, "10"]
            self.sink = self.spawn(cmd, "sink.log")
            mgtest.eventually(lambda: self.can_connect(self.sink_port), "smtp-sink to listen")
            self.cluster = mgtest.LocalCluster("relay-lease-cluster-", "--demo",
                                               env={"MAILGRID_QUEUE_THREADS": "0"})
            self.ctl("route", "set", "--domain", DOMAIN, "--smart-host", "127.0.0.1:%d" % self.sink_port,
                     "--tls", "none", "--description", "lease test: the sink")
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

    # ---- helpers --------------------------------------------------------------

    @staticmethod
    def can_connect(port):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            return False

    def spawn(self, cmd, log_name):
        log = open(os.path.join(self.work, log_name), "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def ctl(self, *args, check=True):
        data = self.cluster.data
        cmd = [mgtest.binary("mailctl"), "--cluster=" + os.path.join(data, "cluster.json"), "--json"]
        cmd += list(args) + ["--token-key", os.path.join(data, "secrets", "token.pem"),
                             "--role", "platform_operator"]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and r.returncode != 0:
            raise AssertionError("mailctl %s failed: %s" % (" ".join(args), r.stderr))
        return r

    def queue_entry(self, subject):
        r = self.ctl("queue", "list")
        for line in r.stdout.splitlines():
            if line.strip().startswith("{"):
                e = json.loads(line)
                if e.get("subject") == subject:
                    return e
        return None

    def start_runner(self, name):
        """A relayd with a queue runner and no SMTP listener, on the cluster's store."""
        doc, data = self.cluster.cluster, self.cluster.data
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGRID_")}
        cmd = [mgtest.binary("relayd"), "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
               "--tenantd=" + ",".join(doc["grpc"]["tenantd"]),
               "--mailstored=" + ",".join(doc["grpc"]["mailstored"]),
               "--token-signing-key=" + os.path.join(data, "secrets", "token.pem"),
               "--token-public-key=" + os.path.join(data, "secrets", "token.pub"),
               "--inbound-auth=false", "--queue-threads=1", "--queue-lease=" + LEASE,
               "--queue-poll-interval=200ms", "--queue-initial-backoff=2s"]
        log = open(os.path.join(self.work, name + ".log"), "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p

    def received(self, marker):
        out = []
        for name in os.listdir(self.dump):
            with open(os.path.join(self.dump, name), "rb") as f:
                if marker.encode() in f.read():
                    out.append(name)
        return out

    def submit(self, marker):
        alice = self.cluster.demo_users()["alice"]
        host, port = self.cluster.address("submission")
        msg = ("From: Alice <%s>\r\nTo: <bob@%s>\r\nSubject: %s\r\nMessage-ID: <%s@lease.test>\r\n"
               "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nDelivered once, %s.\r\n") % (
                   alice["address"], DOMAIN, marker, marker, marker)
        with smtplib.SMTP(host, port, timeout=120) as s:
            s.ehlo("laptop.test")
            s.starttls(context=self.cluster.tls)
            s.ehlo("laptop.test")
            s.login(alice["address"], alice["password"])
            self.assertEqual(s.sendmail(alice["address"], ["bob@" + DOMAIN], msg), {})

    # ---- the test --------------------------------------------------------------

    def test_killed_lease_holder_is_taken_over_and_delivered_once(self):
        marker = "lease-%d" % time.time_ns()
        a = self.start_runner("relayd-a")
        self.submit(marker)

        # A leases the entry and is in the SMTP dialogue (the sink sits on DATA).
        def a_delivering():
            e = self.queue_entry(marker)
            if e and e.get("state") == "QUEUE_STATE_ACTIVE" and e.get("lease_holder", "").endswith(
                    "/%d" % a.pid) and established_to(self.sink_port) > 0:
                return e
            return None
        entry = mgtest.eventually(a_delivering, "relayd A holding the lease, connected to the sink",
                                  interval=0.05)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        self.assertEqual(self.received(marker), [], "nothing may have reached the sink yet")

        # The entry stays leased by the dead A until the lease expires.
        e = self.queue_entry(marker)
        self.assertIsNotNone(e, "the entry must still be queued after the kill")
        self.assertTrue(e.get("lease_holder", "").endswith("/%d" % a.pid), e)

        b = self.start_runner("relayd-b")
        got = mgtest.eventually(lambda: self.received(marker), "the message at the sink, sent by B")
        self.assertEqual(len(got), 1, got)
        mgtest.eventually(lambda: self.ctl("queue", "show", entry["queue_id"], check=False).returncode != 0,
                          "the delivered entry to leave the queue")
        # B's delivery is the only one: still exactly one copy once the queue
        # is empty and B idles (nothing left to redeliver).
        time.sleep(2)
        self.assertEqual(len(self.received(marker)), 1)
        self.assertIsNone(b.poll(), "relayd B must still run")


if __name__ == "__main__":
    unittest.main()
