#!/usr/bin/env python3
"""Inbox rules (Sieve) end to end: a user's script is stored with tenantd's
SetSieveScript, mail is delivered with smtplib to relayd's MX listener, and
the folders and flags are read back from mailstored. Real tenantd,
identityd, mailstored, relayd and Redis from the build under test, started
by the local launcher (tools/mailgrid up --demo) on free loopback ports.

Nothing is skipped: a daemon that is missing fails the test with a message.
"""
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

NEEDED = ["tenantd", "identityd", "mailstored", "relayd", "mailctl", "relay_testctl"]


class Cluster:
    def __init__(self):
        # RULES_IT_CLUSTER=DIR reuses a cluster already up in DIR (debugging).
        self.reused = os.environ.get("RULES_IT_CLUSTER")
        self.data = self.reused or mgtest.temp_dir("rules-it-")
        self.env = dict(os.environ, MAILGRID_BUILD_DIR=mgtest.BUILD_DIR)
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

    def run(self, tool, *args, check=True):
        r = subprocess.run([mgtest.binary(tool)] + list(args) + ["--key", self.key],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        if check and r.returncode != 0:
            raise AssertionError("%s %s failed: %s %s" % (tool, args[0], r.stdout, r.stderr))
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None

    def down(self):
        if not self.reused:
            subprocess.run([mgtest.LAUNCHER, "down", "--data", self.data], env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def log(self, proc):
        try:
            with open(os.path.join(self.data, "logs", proc + ".log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class InboxRulesIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [b for b in NEEDED if not os.path.exists(mgtest.binary(b))]
        if missing:
            raise AssertionError("inbox rules integration test needs %s in %s (not built)" %
                                 (", ".join(missing), mgtest.BIN))
        cls.c = Cluster()
        try:
            cls.alice = cls.make_user("alice")
            cls.bob = cls.make_user("bob")
            cls.carol = cls.make_user("carol")
            cls.dave = cls.make_user("dave")
            cls.erin = cls.make_user("erin")
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
        _, user = c.run("relay_testctl", "create-user", "--tenantd", c.doc["grpc"]["tenantd"][0],
                        "--tenant", c.tenant_id, "--address", address, "--name", name.title())
        return user

    def set_script(self, user, script, check=True):
        with tempfile.NamedTemporaryFile("w", suffix=".sieve", delete=False) as f:
            f.write(script)
            path = f.name
        try:
            return self.c.run("relay_testctl", "set-script", "--tenantd",
                              self.c.doc["grpc"]["tenantd"][0], "--tenant", self.c.tenant_id,
                              "--user", user["user_id"], "--script-file", path, check=check)
        finally:
            os.unlink(path)

    def messages(self, user, folder="INBOX"):
        _, out = self.c.run("relay_testctl", "messages", "--mailstored",
                            ",".join(self.c.doc["grpc"]["mailstored"]), "--tenant", self.c.tenant_id,
                            "--user", user["user_id"], "--mailbox", user["mailbox_id"],
                            "--shard", str(user["shard"]), "--folder", folder)
        return out

    def with_marker(self, user, marker, folder="INBOX"):
        return [m for m in self.messages(user, folder) if marker in m["raw"]]

    def send(self, sender, rcpts, subject, extra=""):
        host, port = self.c.hostport("smtp")
        msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n%s\r\nhello\r\n" % (
            sender, ", ".join(rcpts), subject, extra)
        with smtplib.SMTP(host, port, timeout=120) as s:
            s.ehlo("mta.sender.example")
            return s.sendmail(sender, rcpts, msg)

    def test_script_files_and_flags(self):
        self.assertEqual(self.set_script(self.bob, (
            'require ["fileinto", "imap4flags"];\n'
            'if address :domain :is "from" "news.example" {\n'
            '  fileinto :flags "$Newsletter" "Newsletters";\n'
            '  stop;\n'
            '}\n'
            'if header :contains "subject" "urgent" {\n'
            '  addflag "\\\\Flagged";\n'
            '}\n'
            'if header :contains "subject" "spam-bait" {\n'
            '  discard;\n'
            '}\n'))[0], 0)
        stamp = str(time.time_ns())
        self.assertEqual(self.send("letters@news.example", [self.bob["address"]], "weekly " + stamp), {})
        self.assertEqual(self.send("friend@sender.example", [self.bob["address"]], "urgent " + stamp), {})
        self.assertEqual(self.send("friend@sender.example", [self.bob["address"]], "plain " + stamp), {})
        self.assertEqual(self.send("friend@sender.example", [self.bob["address"]], "spam-bait " + stamp), {})

        filed = mgtest.eventually(lambda: self.with_marker(self.bob, "weekly " + stamp, "Newsletters"),
                                  "the newsletter in bob's Newsletters folder")
        self.assertEqual(len(filed), 1)
        self.assertIn("$Newsletter", filed[0]["flags"])
        self.assertEqual(self.with_marker(self.bob, "weekly " + stamp), [])  # not in INBOX
        urgent = self.with_marker(self.bob, "urgent " + stamp)
        self.assertEqual(len(urgent), 1)
        self.assertIn("\\Flagged", urgent[0]["flags"])
        plain = self.with_marker(self.bob, "plain " + stamp)
        self.assertEqual(len(plain), 1)
        self.assertNotIn("\\Flagged", plain[0]["flags"])
        self.assertEqual(self.with_marker(self.bob, "spam-bait " + stamp), [])  # discarded
        # Alice has no script: the same sender's mail stays in her INBOX.
        self.assertEqual(self.send("letters@news.example", [self.alice["address"]], "weekly " + stamp), {})
        self.assertEqual(len(self.with_marker(self.alice, "weekly " + stamp)), 1)

    def test_reject_only_when_alone(self):
        self.assertEqual(self.set_script(self.carol, (
            'require "reject";\n'
            'if header :contains "subject" "unwanted" { reject "Carol does not want this"; }\n'))[0], 0)
        stamp = str(time.time_ns())
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.send("pest@sender.example", [self.carol["address"]], "unwanted " + stamp)
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertIn(b"5.7.1 Carol does not want this", cm.exception.smtp_error)
        self.assertEqual(self.with_marker(self.carol, "unwanted " + stamp), [])
        # With another recipient the message is accepted and carol keeps it.
        self.assertEqual(self.send("pest@sender.example", [self.carol["address"], self.alice["address"]],
                                   "unwanted too " + stamp), {})
        kept = self.with_marker(self.carol, "unwanted too " + stamp)
        self.assertEqual(len(kept), 1)
        self.assertIn("X-Mailgrid-Sieve: reject not applied", kept[0]["raw"])
        self.assertEqual(len(self.with_marker(self.alice, "unwanted too " + stamp)), 1)

    def test_redirect_goes_through_the_outbound_path(self):
        self.assertEqual(self.set_script(self.dave, (
            'if header :contains "subject" "fwd-me" { redirect "%s"; }\n' % self.erin["address"]))[0], 0)
        stamp = str(time.time_ns())
        self.assertEqual(self.send("friend@sender.example", [self.dave["address"]], "fwd-me " + stamp), {})
        # Sent before the 250, through relayd's internal submission.
        moved = self.with_marker(self.erin, "fwd-me " + stamp)
        self.assertEqual(len(moved), 1)
        # One Return-Path (the redirected copy's own, with the original
        # envelope sender), and the trace of both hops.
        raw = moved[0]["raw"]
        self.assertEqual(raw.count("Return-Path:"), 1, raw[:400])
        self.assertTrue(raw.startswith("Return-Path: <friend@sender.example>"), raw[:400])
        self.assertIn("with LOCAL", raw)
        self.assertIn("Received: from mta.sender.example", raw)
        self.assertEqual(self.with_marker(self.dave, "fwd-me " + stamp), [])
        self.assertEqual(self.send("friend@sender.example", [self.dave["address"]], "stays " + stamp), {})
        self.assertEqual(len(self.with_marker(self.dave, "stays " + stamp)), 1)

    def test_vacation_replies_once_per_sender(self):
        self.assertEqual(self.set_script(self.erin, (
            'require "vacation";\n'
            'vacation :days 1 :subject "Erin is away" text:\n'
            'Back on Monday.\n'
            '.\n'
            ';\n'))[0], 0)
        stamp = str(time.time_ns())
        for n in range(2):
            self.assertEqual(self.send(self.alice["address"], [self.erin["address"]],
                                       "question %d %s" % (n, stamp),
                                       "Message-ID: <q%d.%s@sender.example>\r\n" % (n, stamp)), {})
            self.assertEqual(len(self.with_marker(self.erin, "question %d %s" % (n, stamp))), 1)
        # The reply was committed before the first 250; the second message
        # found the Redis memory and got none.
        replies = self.with_marker(self.alice, "In-Reply-To: <q0.%s@sender.example>" % stamp)
        self.assertEqual(len(replies), 1)
        self.assertIn("Subject: Erin is away", replies[0]["raw"])
        self.assertIn("Auto-Submitted: auto-replied", replies[0]["raw"])
        self.assertIn("Back on Monday.", replies[0]["raw"])
        self.assertEqual(self.with_marker(self.alice, "In-Reply-To: <q1.%s@sender.example>" % stamp), [])
        # Never to a list (another sender, so the memory is not what stops it).
        self.assertEqual(self.send(self.carol["address"], [self.erin["address"]], "list " + stamp,
                                   "List-Id: <dev.sender.example>\r\nMessage-ID: <l.%s@x>\r\n" % stamp), {})
        self.assertEqual(len(self.with_marker(self.erin, "list " + stamp)), 1)
        self.assertEqual(self.with_marker(self.carol, "In-Reply-To: <l.%s@x>" % stamp), [])

    def test_bad_script_is_refused_with_its_position(self):
        code, out = self.set_script(self.alice, 'require "fileinto";\nif true {\n  fileinto;\n}\n',
                                    check=False)
        self.assertEqual(code, 1)
        self.assertEqual(out["code"], 3)  # INVALID_ARGUMENT
        self.assertIn("3:3: fileinto takes 1 positional argument", out["message"])
        code, out = self.set_script(self.alice, 'require "x-unknown";\n', check=False)
        self.assertEqual(code, 1)
        self.assertIn("1:9: unsupported extension", out["message"])


if __name__ == "__main__":
    unittest.main()
