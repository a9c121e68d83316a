#!/usr/bin/env python3
"""relayd's outbound delivery end to end (issue 9): real relayd + tenantd +
identityd + mailstored started by the local launcher, a real Postfix
smtp-sink as the remote MX on a free loopback port, a real dnsmasq serving
the remote domain's MX, and Python's dkimpy (Debian python3-dkim) as the
independent DKIM verifier.

  1. a message submitted (587, STARTTLS + AUTH) to a remote domain arrives
     at the sink, DKIM-signed; dkimpy verifies it against the key tenantd
     publishes (mailctl domain records);
  2. the peer answers 550 to RCPT: the sender gets a DSN in her INBOX;
  3. the peer is down: the entry is DEFERRED (mailctl queue list shows
     it); the peer comes back; mailctl queue retry delivers it.

Nothing is skipped: a missing binary or module fails the test saying which.
"""
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

NEEDED = ["tenantd", "identityd", "mailstored", "relayd", "mailctl", "relay_testctl"]
PASSWORD = "Correct-Horse-Battery-9"
SINK = "/usr/sbin/smtp-sink"
DNSMASQ = "/usr/sbin/dnsmasq"
REMOTE = "remote.example"


def start(cmd, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


def can_connect(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Peers:
    """dnsmasq answering MX remote.example -> 127.0.0.1, and smtp-sink."""

    def __init__(self, work):
        self.work = work
        self.dns_port = mgtest.free_port()
        self.sink_port = mgtest.free_port()
        self.dump = os.path.join(work, "dump")
        os.makedirs(self.dump)
        os.chmod(work, 0o777)
        os.chmod(self.dump, 0o777)  # smtp-sink runs as nobody when started as root
        self.dns = None
        self.sink = None

    def start_dns(self):
        cmd = [DNSMASQ, "--port=%d" % self.dns_port, "--listen-address=127.0.0.1", "--bind-interfaces",
               "--no-resolv", "--no-hosts", "--keep-in-foreground", "--conf-file=/dev/null",
               "--log-facility=-", "--pid-file=", "--local=/%s/" % REMOTE,
               "--mx-host=%s,mx.%s,10" % (REMOTE, REMOTE), "--host-record=mx.%s,127.0.0.1" % REMOTE]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        log = os.path.join(self.work, "dnsmasq.log")
        self.dns = start(cmd, log)
        mgtest.eventually(lambda: b"started" in read(log) or self.dns.poll() is not None,
                          "dnsmasq to start")
        if self.dns.poll() is not None:
            raise AssertionError("dnsmasq exited: " + read(log).decode("utf-8", "replace"))

    def start_sink(self, *extra):
        self.stop_sink()
        cmd = [SINK]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        cmd += ["-d", os.path.join(self.dump, "%M.")] + list(extra) + ["127.0.0.1:%d" % self.sink_port, "10"]
        self.sink = start(cmd, os.path.join(self.work, "sink.log"))
        mgtest.eventually(lambda: can_connect(self.sink_port), "smtp-sink to listen")

    def stop_sink(self):
        stop(self.sink)
        self.sink = None
        mgtest.eventually(lambda: not can_connect(self.sink_port), "smtp-sink to stop")

    def received(self, marker):
        out = []
        for name in os.listdir(self.dump):
            with open(os.path.join(self.dump, name), "rb") as f:
                data = f.read()
            if marker.encode() in data:
                out.append(data)
        return out

    def stop(self):
        stop(self.sink)
        stop(self.dns)


def strip_sink_fields(dump):
    """The message as our relay sent it: smtp-sink prepends X-* envelope
    fields and its own Received field."""
    lines = dump.replace(b"\r\n", b"\n").split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(b"X-"):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received: from") and b"smtp-sink" in b"\n".join(lines[i:i + 3]):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


class OutboundIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [b for b in NEEDED if not os.path.exists(mgtest.binary(b))]
        if missing:
            raise AssertionError("needs %s in %s (not built)" % (", ".join(missing), mgtest.BIN))
        for path in (SINK, DNSMASQ):
            if not os.path.exists(path):
                raise AssertionError("%s is missing (apt-get install -y postfix dnsmasq)" % path)
        try:
            import dkim  # noqa: F401
            import nacl  # noqa: F401
        except ImportError as e:
            raise AssertionError("python3-dkim and python3-nacl are needed: %s" % e)
        cls.work = mgtest.temp_dir("relay-out-")
        cls.peers = Peers(cls.work)
        cls.peers.start_dns()
        cls.peers.start_sink()
        cls.data = os.path.join(cls.work, "cluster")
        env = {
            "MAILGRID_DNS_SERVER": "127.0.0.1:%d" % cls.peers.dns_port,
            "MAILGRID_OUTBOUND_MX_PORT": str(cls.peers.sink_port),
            "MAILGRID_QUEUE_THREADS": "2",
        }
        cls.env = dict(os.environ, MAILGRID_BUILD_DIR=mgtest.BUILD_DIR, **env)
        try:
            r = subprocess.run([mgtest.LAUNCHER, "up", "--no-build", "--demo", "--data", cls.data],
                               env=cls.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise AssertionError("tools/mailgrid up failed:\n" + r.stdout)
            with open(os.path.join(cls.data, "cluster.json")) as f:
                cls.doc = json.load(f)
            cls.domain = cls.doc["demo"]["domain"]
            cls.tenant_id = cls.doc["demo"]["tenant_id"]
            cls.key = os.path.join(cls.data, "secrets", "token.pem")
            cls.alice = cls.make_user("alice")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "data", None) and os.path.exists(cls.data):
            subprocess.run([mgtest.LAUNCHER, "down", "--data", cls.data], env=cls.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.peers.stop()

    @classmethod
    def ctl(cls, *args, role="platform_operator", check=True):
        cmd = [mgtest.binary("mailctl"), "--cluster=" + os.path.join(cls.data, "cluster.json"), "--json"]
        cmd += list(args) + ["--token-key", cls.key, "--role", role]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cls.env)
        if check and r.returncode != 0:
            raise AssertionError("mailctl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        return r

    @classmethod
    def run_testctl(cls, *args):
        r = subprocess.run([mgtest.binary("relay_testctl")] + list(args) + ["--key", cls.key],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cls.env)
        if r.returncode != 0:
            raise AssertionError("relay_testctl %s failed: %s" % (args[0], r.stderr))
        return json.loads(r.stdout)

    @classmethod
    def make_user(cls, name):
        address = "%s-%d@%s" % (name, time.time_ns() % 1000000, cls.domain)
        user = cls.run_testctl("create-user", "--tenantd", cls.doc["grpc"]["tenantd"][0], "--tenant",
                           cls.tenant_id, "--address", address, "--name", name.title())
        cls.ctl("auth", "initial-password", cls.tenant_id, user["user_id"], PASSWORD, role="service")
        return user

    def inbox(self, user):
        out = self.run_testctl("messages", "--mailstored", ",".join(self.doc["grpc"]["mailstored"]),
                           "--tenant", self.tenant_id, "--user", user["user_id"],
                           "--mailbox", user["mailbox_id"], "--shard", str(user["shard"]))
        return [m["raw"] for m in out]

    def queue(self):
        r = self.ctl("queue", "list")
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip().startswith("{")]

    def submit(self, marker, to):
        host, port = self.doc["submission"].rsplit(":", 1)
        msg = ("From: Alice <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@%s>\r\n"
               "Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\nHello from the test, %s.\r\n") % (
                   self.alice["address"], to, marker, marker, self.domain, marker)
        ctx = ssl.create_default_context(cafile=self.doc["ca_cert"])
        ctx.check_hostname = False
        with smtplib.SMTP(host, int(port), timeout=120) as s:
            s.ehlo("laptop.test")
            s.starttls(context=ctx)
            s.ehlo("laptop.test")
            s.login(self.alice["address"], PASSWORD)
            refused = s.sendmail(self.alice["address"], [to], msg)
            self.assertEqual(refused, {})

    def dkim_txt(self):
        r = self.ctl("domain", "records", self.domain)
        doc = json.loads(r.stdout.strip().splitlines()[-1])
        out = {}
        for rec in doc.get("records", []):
            if rec.get("type") == "DNS_RECORD_TYPE_TXT" and "._domainkey." in rec.get("name", ""):
                out[rec["name"].rstrip(".").lower()] = rec["value"]
        return out

    # ---- 1. signed delivery to the remote MX ----------------------------

    def test_1_remote_delivery_is_dkim_signed(self):
        marker = "out-%d" % time.time_ns()
        self.submit(marker, "bob@" + REMOTE)
        got = mgtest.eventually(lambda: self.peers.received(marker), "the message at smtp-sink")
        self.assertEqual(len(got), 1)
        dump = got[0]
        self.assertIn(b"X-Rcpt-Args: <bob@remote.example>", dump)
        message = strip_sink_fields(dump)
        self.assertTrue(message.startswith(b"DKIM-Signature:"), message[:400])
        import dkim
        txt = self.dkim_txt()
        self.assertTrue(txt, "tenantd publishes no DKIM record for %s" % self.domain)

        def dnsfunc(name, timeout=5):
            n = name.decode() if isinstance(name, bytes) else name
            v = txt.get(n.rstrip(".").lower())
            return v.encode() if v else None

        # Every signature (one per ACTIVE key: Ed25519 and RSA) must verify.
        sigs = message.count(b"DKIM-Signature:")
        self.assertGreaterEqual(sigs, 1)
        d = dkim.DKIM(message)
        for i in range(sigs):
            self.assertTrue(d.verify(idx=i, dnsfunc=dnsfunc), "signature %d does not verify:\n%s" % (
                i, message[:1500].decode("utf-8", "replace")))
        # The queue entry is gone once delivered.
        mgtest.eventually(lambda: not [e for e in self.queue() if e.get("subject") == marker],
                          "the delivered entry to leave the queue")
        # Metrics: the delivery is counted and the queue store is up.
        def metric(prefix):
            for url in self.doc["metrics"]:
                _, body = mgtest.http_get(url)
                for line in body.splitlines():
                    if line.startswith(prefix):
                        return float(line.rsplit(" ", 1)[1])
            return None
        mgtest.eventually(lambda: (metric('mailgrid_relay_deliveries_total{path="remote",result="delivered"}')
                                   or 0) >= 1, "the remote delivery counted in /metrics")
        self.assertEqual(metric('mailgrid_relay_queue{what="store_up"}'), 1.0)
        self.assertIsNotNone(metric('mailgrid_relay_queue{what="depth"}'))

    # ---- 2. a permanent refusal becomes a DSN in the sender's INBOX ------

    def test_2_peer_550_produces_dsn_in_inbox(self):
        self.peers.start_sink("-f", "RCPT")
        try:
            marker = "bounce-%d" % time.time_ns()
            self.submit(marker, "nobody@" + REMOTE)

            def dsn():
                return [m for m in self.inbox(self.alice)
                        if "multipart/report" in m and marker in m]
            got = mgtest.eventually(dsn, "the DSN in alice's INBOX")
            self.assertEqual(len(got), 1)
            m = got[0]
            self.assertIn("report-type=delivery-status", m)
            self.assertIn("nobody@remote.example", m)
            self.assertIn("Action: failed", m)
            self.assertIn("Status: 5.", m)
            self.assertTrue(m.startswith("Return-Path: <>"), m[:200])
            self.assertEqual(self.peers.received(marker), [])
        finally:
            self.peers.start_sink()

    # ---- 3. peer down, then up: RetryNow delivers ------------------------

    def test_3_peer_down_then_retry_now_delivers(self):
        self.peers.stop_sink()
        marker = "later-%d" % time.time_ns()
        self.submit(marker, "carol@" + REMOTE)

        def deferred():
            for e in self.queue():
                if e.get("subject") == marker and e.get("state") == "QUEUE_STATE_DEFERRED":
                    return e
            return None
        entry = mgtest.eventually(deferred, "the entry DEFERRED in mailctl queue list")
        rcpt = entry["recipients"][0]
        self.assertEqual(rcpt["address"], "carol@" + REMOTE)
        self.assertEqual(rcpt["state"], "RECIPIENT_STATE_DEFERRED")
        self.assertIn("last_reply", rcpt)
        # The human view lists it too.
        r = subprocess.run([mgtest.binary("mailctl"), "--cluster=" + os.path.join(self.data, "cluster.json"),
                            "queue", "list", "--token-key", self.key], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(entry["queue_id"], r.stdout)
        self.assertIn("DEFERRED", r.stdout)
        self.assertEqual(self.peers.received(marker), [])

        self.peers.start_sink()
        self.ctl("queue", "retry", entry["queue_id"])
        got = mgtest.eventually(lambda: self.peers.received(marker), "the message after RetryNow")
        self.assertEqual(len(got), 1)
        mgtest.eventually(lambda: self.ctl("queue", "show", entry["queue_id"], check=False).returncode != 0,
                          "the entry to leave the queue")


if __name__ == "__main__":
    unittest.main()
