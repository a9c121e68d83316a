"""The front door, end to end: `tools/mailgrid up --demo --replicas 3`, then
real clients no one here wrote send and read mail.

- an outside MTA's delivery on port 25 (Python smtplib) reaches alice's
  INBOX, read over IMAP with STARTTLS (imaplib), with the Received and
  Authentication-Results headers relayd adds;
- alice submits on 587 (STARTTLS + AUTH PLAIN) to bob, who reads it over
  POP3 with STLS (poplib) and over IMAPS with curl;
- an IMAP IDLE session of bob's sees a message delivered through relayd
  while it idles;
- a client that tries AUTH before TLS, or relays to a foreign domain without
  AUTH, is refused.

Every process is real: Redis, three replicas each of tenantd, identityd and
mailstored, relayd, accessd; the demo users come from the directory and
their passwords from identityd (the launcher does their first login).
"""
import email
import imaplib
import os
import poplib
import shutil
import smtplib
import subprocess
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgtest  # noqa: E402


class FirstMailTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-e2e-first-mail", "--demo", "--replicas", "3")
        cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
        users = cls.mg.demo_users()
        if set(users) != {"alice", "bob"}:
            cls.mg.stop()
            raise AssertionError("the demo must have alice and bob, got %r" % cls.cluster["demo"])
        cls.alice, cls.bob = users["alice"], users["bob"]

    @classmethod
    def tearDownClass(cls):
        cls.mg.stop()

    # ---- helpers ----------------------------------------------------------

    def message(self, sender, recipient, subject, body):
        msg = email.message.EmailMessage()
        msg["From"] = sender
        msg["To"] = recipient
        msg["Subject"] = subject
        msg["Message-ID"] = "<%s@e2e.test>" % uuid.uuid4()
        msg["Date"] = email.utils.formatdate()
        msg.set_content(body)
        return msg

    def imap(self, user):
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        c.login(user["address"], user["password"])
        return c

    def find_in_inbox(self, user, subject):
        """The raw message with this subject in the user's INBOX, or None."""
        c = self.imap(user)
        try:
            c.select("INBOX")
            typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
            self.assertEqual(typ, "OK")
            numbers = data[0].split()
            if not numbers:
                return None
            typ, parts = c.fetch(numbers[-1], "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            return parts[0][1]
        finally:
            c.logout()

    # ---- tests ------------------------------------------------------------

    def test_mx_delivery_reaches_the_inbox(self):
        subject = "from outside %s" % uuid.uuid4().hex[:8]
        with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"])) as s:
            s.ehlo("mx.example.org")
            refused = s.send_message(self.message("partner@example.org", self.alice["address"], subject,
                                                  "Hello Alice, this came over port 25.\n"))
            self.assertEqual(refused, {})
        raw = mgtest.eventually(lambda: self.find_in_inbox(self.alice, subject), "the message in alice's INBOX")
        parsed = email.message_from_bytes(raw)
        self.assertEqual(parsed["Subject"], subject)
        self.assertIsNotNone(parsed["Received"])
        self.assertIsNotNone(parsed["Authentication-Results"])
        self.assertIn("spf=", parsed["Authentication-Results"])
        self.assertIn("came over port 25", parsed.get_payload())

    def test_postmaster_without_a_domain_is_accepted(self):
        """RFC 5321 4.5.1: RCPT TO:<Postmaster> must work; the demo routes it to alice."""
        subject = "to the postmaster %s" % uuid.uuid4().hex[:8]
        with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"])) as s:
            s.ehlo("mx.example.org")
            s.mail("<partner@example.org>")
            code, reply = s.rcpt("<Postmaster>")
            self.assertEqual(code, 250, reply)
            code, reply = s.data(self.message("partner@example.org", "postmaster", subject,
                                              "Your MX is fine.\n").as_string())
            self.assertEqual(code, 250, reply)
        self.assertIsNotNone(mgtest.eventually(lambda: self.find_in_inbox(self.alice, subject),
                                               "the postmaster message in alice's INBOX"))

    def test_submission_then_pop3_and_curl(self):
        subject = "from alice %s" % uuid.uuid4().hex[:8]
        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"])) as s:
            s.ehlo("laptop.example")
            # AUTH is not offered in plain text.
            self.assertFalse(s.has_extn("auth"))
            s.starttls(context=self.tls)
            s.ehlo("laptop.example")
            self.assertTrue(s.has_extn("auth"))
            s.login(self.alice["address"], self.alice["password"])
            s.send_message(self.message(self.alice["address"], self.bob["address"], subject, "Lunch at noon?\n"))

        def in_pop3():
            p = poplib.POP3(*mgtest.host_port(self.cluster["pop3"]))
            try:
                p.stls(context=self.tls)
                p.user(self.bob["address"])
                p.pass_(self.bob["password"])
                count, _ = p.stat()
                for i in range(1, count + 1):
                    lines = p.retr(i)[1]
                    if any(subject.encode() in line for line in lines):
                        return b"\r\n".join(lines)
                return None
            finally:
                p.quit()

        raw = mgtest.eventually(in_pop3, "alice's message in bob's POP3 maildrop")
        self.assertIn(b"Lunch at noon?", raw)

        curl = shutil.which("curl")
        self.assertIsNotNone(curl, "curl is missing (tools/packages.txt)")
        r = subprocess.run([curl, "--silent", "--show-error", "--cacert", self.cluster["ca_cert"], "--insecure",
                            "--user", "%s:%s" % (self.bob["address"], self.bob["password"]),
                            "imaps://%s/INBOX?SUBJECT%%20%%22%s%%22" % (self.cluster["imaps"], subject.replace(" ", "%20"))],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"\* SEARCH \d+")

    def test_idle_sees_a_delivery(self):
        c = self.imap(self.bob)
        try:
            typ, data = c.select("INBOX")
            self.assertEqual(typ, "OK")
            before = int(data[0])
            # A bound on waiting for the pushed line so that a missing
            # EXISTS fails the test instead of hanging it (not a speed check).
            c.sock.settimeout(mgtest.PATIENCE_SECONDS)
            tag = c._new_tag().decode()
            c.send(("%s IDLE\r\n" % tag).encode())
            self.assertTrue(c.readline().startswith(b"+"))
            subject = "during idle %s" % uuid.uuid4().hex[:8]
            with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"])) as s:
                s.send_message(self.message("partner@example.org", self.bob["address"], subject, "ping\n"))
            line = c.readline()  # the untagged EXISTS, pushed while idling
            self.assertRegex(line, rb"^\* \d+ EXISTS")
            self.assertGreater(int(line.split()[1]), before)
            c.send(b"DONE\r\n")
            while not c.readline().startswith(tag.encode()):
                pass
        finally:
            c.logout()

    def test_open_relay_and_plain_text_auth_are_refused(self):
        with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"])) as s:
            s.ehlo("spammer.example")
            s.mail("spammer@example.org")
            code, reply = s.rcpt("victim@elsewhere.example")
            self.assertEqual(code, 550, reply)
            code, reply = s.rcpt("nobody@" + self.cluster["demo"]["domain"])
            self.assertEqual(code, 550, reply)
            self.assertIn(b"5.1.1", reply)
        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"])) as s:
            s.ehlo("laptop.example")
            code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlAHg=")
            self.assertGreaterEqual(code, 500)


if __name__ == "__main__":
    unittest.main()
