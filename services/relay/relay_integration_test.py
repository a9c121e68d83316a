#!/usr/bin/env python3
"""relayd end to end with real clients (Python smtplib, swaks) against real
relayd + tenantd + identityd + mailstored processes from the build under
test, started by the local launcher (tools/mailgrid up --demo) on free
loopback ports with a real Redis and the launcher's TLS CA.

Nothing is skipped: a daemon or tool that is missing fails the test with a
message saying which.
"""
import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

NEEDED = ["tenantd", "identityd", "mailstored", "relayd", "mailctl", "relay_testctl"]
PASSWORD = "Correct-Horse-Battery-9"


class Cluster:
    def __init__(self):
        # RELAY_IT_CLUSTER=DIR reuses a cluster already up in DIR (debugging).
        self.reused = os.environ.get("RELAY_IT_CLUSTER")
        self.data = self.reused or mgtest.temp_dir("relay-it-")
        self.env = dict(os.environ, MAILGRID_BUILD_DIR=mgtest.BUILD_DIR)
        # The launcher starts what is built; accessd is not needed here.
        if not self.reused:
            r = subprocess.run([mgtest.LAUNCHER, "up", "--no-build", "--demo", "--data", self.data],
                               env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise AssertionError("tools/mailgrid up failed:\n" + r.stdout)
        with open(os.path.join(self.data, "cluster.json")) as f:
            self.doc = json.load(f)
        self.domain = self.doc["demo"]["domain"]
        self.tenant_id = self.doc["demo"]["tenant_id"]
        self.key = os.path.join(self.data, "secrets", "token.pem")

    def hostport(self, listener):
        host, port = self.doc[listener].rsplit(":", 1)
        return host, int(port)

    def ctl(self, *args, role=None, check=True):
        cmd = [mgtest.binary("mailctl"), "--cluster=" + os.path.join(self.data, "cluster.json"), "--json"]
        cmd += list(args)
        if role:
            cmd += ["--token-key", self.key, "--role", role, "--tenant", self.tenant_id]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        if check and r.returncode != 0:
            raise AssertionError("mailctl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        try:
            return json.loads(r.stdout)
        except ValueError:
            return r.stdout

    def testctl(self, *args):
        r = subprocess.run([mgtest.binary("relay_testctl")] + list(args) + ["--key", self.key],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        if r.returncode != 0:
            raise AssertionError("relay_testctl %s failed: %s" % (args[0], r.stderr))
        return json.loads(r.stdout)

    def down(self):
        if self.reused:
            return
        subprocess.run([mgtest.LAUNCHER, "down", "--data", self.data], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def log(self, proc):
        try:
            with open(os.path.join(self.data, "logs", proc + ".log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class RelayIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [b for b in NEEDED if not os.path.exists(mgtest.binary(b))]
        if missing:
            raise AssertionError("relay integration test needs %s in %s (not built)" %
                                 (", ".join(missing), mgtest.BIN))
        if shutil.which("swaks") is None:
            raise AssertionError("swaks is not installed (apt-get install -y swaks)")
        cls.c = Cluster()
        try:
            cls.alice = cls.make_user("alice")
            cls.bob = cls.make_user("bob")
        except Exception:
            cls.c.down()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    @classmethod
    def make_user(cls, name):
        c = cls.c
        address = "%s-%d@%s" % (name, time.time_ns() % 1000000, c.domain)
        user = c.testctl("create-user", "--tenantd", c.doc["grpc"]["tenantd"][0], "--tenant",
                         c.tenant_id, "--address", address, "--name", name.title())
        # The password identityd checks (not flagged must-change).
        c.ctl("auth", "initial-password", c.tenant_id, user["user_id"], PASSWORD, role="service")
        return user

    def messages(self, user):
        """Raw messages in the user's INBOX, read back from mailstored."""
        out = self.c.testctl("messages", "--mailstored", ",".join(self.c.doc["grpc"]["mailstored"]),
                             "--tenant", self.c.tenant_id, "--user", user["user_id"],
                             "--mailbox", user["mailbox_id"], "--shard", str(user["shard"]))
        return [m["raw"] for m in out]

    def count_with(self, user, marker):
        return sum(1 for raw in self.messages(user) if marker in raw)

    # ---- MX (port 25 equivalent) -------------------------------------------

    def test_mx_delivery_with_smtplib(self):
        host, port = self.c.hostport("smtp")
        marker = "mx-%d" % time.time_ns()
        msg = "From: sender@sender.example\r\nTo: %s\r\nSubject: %s\r\n\r\nhello\r\n" % (
            self.alice["address"], marker)
        with smtplib.SMTP(host, port, timeout=60) as s:
            code, _ = s.ehlo("mta.sender.example")
            self.assertEqual(code, 250)
            refused = s.sendmail("sender@sender.example", [self.alice["address"]], msg)
            self.assertEqual(refused, {})
        mgtest.eventually(lambda: self.count_with(self.alice, marker) == 1, "message in alice's INBOX")
        raw = [m for m in self.messages(self.alice) if marker in m][0]
        self.assertTrue(raw.startswith("Return-Path: <sender@sender.example>\r\nReceived: from mta.sender.example"),
                        raw[:300])
        self.assertIn("Authentication-Results: ", raw)
        # libs/mailauth's verdicts. The sender is under .example (RFC 2606:
        # never resolves), so no real domain's DMARC policy can refuse the
        # test mail; the SPF word depends on the machine's DNS (none when it
        # answers NXDOMAIN, temperror when there is no resolver).
        self.assertIn("spf=", raw)
        self.assertIn("dkim=none", raw)
        self.assertIn("dmarc=", raw)


    def test_unknown_and_open_relay_probes_refused(self):
        host, port = self.c.hostport("smtp")
        with smtplib.SMTP(host, port, timeout=60) as s:
            s.ehlo("probe.example")
            self.assertEqual(s.mail("probe@sender.example")[0], 250)
            probes = {
                "nobody@" + self.c.domain: (550, b"5.1.1"),
                "victim@foreign.example": (550, b"5.7.1"),
                "victim%%foreign.example@%s" % self.c.domain: (550, b"5.7.1"),
                "@%s:victim@foreign.example" % self.c.domain: (550, b"5.7.1"),
                "\"victim@foreign.example\"@%s" % self.c.domain: (550, b"5.7.1"),
                "foreign.example!victim@%s" % self.c.domain: (550, b"5.7.1"),
            }
            for rcpt, (code, enh) in probes.items():
                # docmd: smtplib's rcpt() would rewrite a source route.
                got = s.docmd("RCPT TO:<%s>" % rcpt)
                self.assertEqual(got[0], code, "%s -> %r" % (rcpt, got))
                self.assertTrue(got[1].startswith(enh), "%s -> %r" % (rcpt, got))

    def test_smuggling_never_produces_a_second_message(self):
        host, port = self.c.hostport("smtp")
        for i, fake_end in enumerate([b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n"]):
            marker = ("smuggled-%d-%d" % (i, time.time_ns())).encode()
            with socket.create_connection((host, port), timeout=60) as sock:
                f = sock.makefile("rb")

                def reply():
                    lines = []
                    while True:
                        line = f.readline()
                        lines.append(line)
                        if len(line) < 4 or line[3:4] != b"-":
                            return b"".join(lines)

                self.assertTrue(reply().startswith(b"220"))
                sock.sendall(b"EHLO smuggler.example\r\n")
                reply()
                sock.sendall(b"MAIL FROM:<a@smuggler.example>\r\n")
                self.assertTrue(reply().startswith(b"250"))
                sock.sendall(b"RCPT TO:<%s>\r\n" % self.alice["address"].encode())
                self.assertTrue(reply().startswith(b"250"))
                sock.sendall(b"DATA\r\n")
                self.assertTrue(reply().startswith(b"354"))
                sock.sendall(b"Subject: first\r\n\r\nfirst" + fake_end +
                             b"MAIL FROM:<admin@" + self.c.domain.encode() + b">\r\n"
                             b"RCPT TO:<" + self.bob["address"].encode() + b">\r\nDATA\r\n"
                             b"Subject: " + marker + b"\r\n\r\nsecond\r\n.\r\n")
                r = reply()
                self.assertTrue(r.startswith(b"550 5.5.2"), r)
                sock.sendall(b"QUIT\r\n")
                reply()
            self.assertEqual(self.count_with(self.bob, marker.decode()), 0)

    def test_over_size_is_552_and_nothing_stored(self):
        host, port = self.c.hostport("smtp")
        marker = "big-%d" % time.time_ns()
        body = "Subject: %s\r\n\r\n" % marker + ("x" * 76 + "\r\n") * (30 * 1024 * 1024 // 78)
        with smtplib.SMTP(host, port, timeout=300) as s:
            s.ehlo("big.example")
            with self.assertRaises(smtplib.SMTPResponseException) as cm:
                s.sendmail("big@sender.example", [self.alice["address"]], body)
            self.assertEqual(cm.exception.smtp_code, 552)
            self.assertTrue(cm.exception.smtp_error.startswith(b"5.3.4"))
        self.assertEqual(self.count_with(self.alice, marker), 0)

    # ---- submission --------------------------------------------------------

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=self.c.doc["ca_cert"])
        ctx.check_hostname = False
        return ctx

    def test_submission_starttls_auth_with_smtplib(self):
        host, port = self.c.hostport("submission")
        marker = "sub-%d" % time.time_ns()
        with smtplib.SMTP(host, port, timeout=60) as s:
            s.ehlo("laptop")
            self.assertFalse(s.has_extn("auth"), "AUTH must not be offered before TLS")
            s.starttls(context=self.tls_context())
            s.ehlo("laptop")
            self.assertTrue(s.has_extn("auth"))
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login(self.alice["address"], "wrong password")
            try:
                s.login(self.alice["address"], PASSWORD)
            except smtplib.SMTPAuthenticationError as e:
                warn = [l for l in self.c.log("identityd-1").splitlines() if "level=warn" in l][-2:]
                self.fail("AUTH refused %r; identityd says: %s" % (e, "\n".join(warn)))
            # Someone else's sender address is refused.
            code, _ = s.mail(self.bob["address"])
            self.assertEqual(code, 553)
            s.rset()
            msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nhi bob\r\n" % (
                self.alice["address"], self.bob["address"], marker)
            self.assertEqual(s.sendmail(self.alice["address"], [self.bob["address"]], msg), {})
        mgtest.eventually(lambda: self.count_with(self.bob, marker) == 1, "submitted message for bob")

    def test_submission_implicit_tls_with_swaks(self):
        host, port = self.c.hostport("submission_tls")
        marker = "swaks-%d" % time.time_ns()
        r = subprocess.run(["swaks", "--server", host, "--port", str(port), "--tls-on-connect",
                            "--auth", "LOGIN", "--auth-user", self.alice["address"],
                            "--auth-password", PASSWORD, "--from", self.alice["address"],
                            "--to", self.bob["address"], "--header", "Subject: " + marker,
                            "--timeout", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("250 2.0.0 Ok: queued as", r.stdout)
        mgtest.eventually(lambda: self.count_with(self.bob, marker) == 1, "swaks message for bob")

    def test_swaks_mx_and_open_relay_refused(self):
        host, port = self.c.hostport("smtp")
        r = subprocess.run(["swaks", "--server", host, "--port", str(port), "--from", "x@sender.example",
                            "--to", "victim@foreign.example", "--timeout", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("550 5.7.1", r.stdout)


if __name__ == "__main__":
    unittest.main()
