"""A full mailbox, and one-click archive (issue 12, story 6; the welcome
notice of story 2).

Against `tools/mailgrid up --replicas 3`: dave's mailbox is created with a
1 MiB quota. Messages of 400 KB from outside (smtplib, port 25) fill it
until relayd answers 552 5.2.2 (RFC 3463: mailbox full) and nothing more is
stored (the welcome notice tenantd sent through relayd at creation is in
the INBOX too); the admin raises the quota with `mailctl user update --quota-mb`
(tenantd pushes it to mailstored) and the same message is accepted. Then
`mailctl mbox archive --older-than 10s` moves the INBOX's old mail into
Archive and leaves a message delivered 20 s later in the INBOX, read back
over IMAP.
"""
import email.message
import imaplib
import os
import smtplib
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgctl  # noqa: E402
import mgtest  # noqa: E402

DOMAIN = "quota.test"
BIG = 400 * 1024
AGE_GAP, ARCHIVE_AGE = 20, 10  # seconds; see the archive step


class QuotaAndArchiveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-e2e-quota", "--replicas",
                                     os.environ.get("MAILGRID_E2E_REPLICAS", "3"))
        cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
        try:
            cls.ctl = mgctl.Mailctl(cls.data)
            cls.ctl.onboard_with_override("Quota Co", DOMAIN, plan_args=("--features", "archive"))
            cls.dave = "dave@" + DOMAIN
            cls.password = cls.ctl.create_user(cls.dave, "Dave", "--quota-mb", "1")
            cls.mailbox = cls.ctl.admin("user", "show", cls.dave)["mailbox_id"]
        except BaseException:
            cls.mg.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.mg.stop()

    def send(self, subject, size):
        """(code, reply) of the transaction: RCPT's refusal, or DATA's answer."""
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "partner@example.org", self.dave, subject
        msg["Message-ID"] = "<%s@example.org>" % uuid.uuid4()
        msg.set_content(("x" * 76 + "\n") * (size // 77))
        with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"]), timeout=120) as s:
            s.ehlo("mx.example.org")
            s.mail("<partner@example.org>")
            code, reply = s.rcpt("<%s>" % self.dave)
            if code != 250:
                return code, reply
            return s.data(msg.as_string())

    def folder_count(self, folder, subject=None):
        """Messages in the folder (with `subject` in their Subject, if given)."""
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        try:
            c.starttls(ssl_context=self.tls)
            c.login(self.dave, self.password)
            typ, data = c.select(folder, readonly=True)
            self.assertEqual(typ, "OK", data)
            if subject is None:
                return int(data[0])
            typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
            return len(data[0].split())
        finally:
            c.logout()

    def test_full_mailbox_refused_then_raised_then_archived(self):
        accepted = 0
        for i in range(10):
            code, reply = self.send("filler %d" % i, BIG)
            if code != 250:
                break
            accepted += 1
        # The issue (and RFC 3463's "mailbox full") asks for a permanent 552 5.2.2.
        self.assertEqual(code, 552, reply)
        self.assertIn(b"5.2.2", reply)
        self.assertGreaterEqual(accepted, 1)
        self.assertLessEqual(accepted, 3, "a 1 MiB quota holds at most two 400 KB messages and a bit")
        self.assertEqual(self.folder_count("INBOX", "filler"), accepted, "nothing stored beyond the quota")
        # tenantd's welcome notice (through relayd) is there too.
        self.assertEqual(self.folder_count("INBOX", "Welcome"), 1)

        self.ctl.admin("user", "update", self.dave, "--quota-mb", "20")
        code, reply = mgtest.eventually(lambda: (lambda r: r if r[0] == 250 else None)(self.send("after raise", BIG)),
                                        "delivery after the quota was raised")
        self.assertEqual(code, 250, reply)
        self.assertEqual(self.folder_count("INBOX", "after raise"), 1)
        in_inbox = self.folder_count("INBOX")

        # Archive moves OLD mail only: everything above is at least
        # AGE_GAP seconds older than one fresh message, and the cutoff
        # (--older-than ARCHIVE_AGE) falls between them as long as the
        # archive starts within ARCHIVE_AGE seconds of the fresh delivery.
        time.sleep(AGE_GAP)
        code, reply = self.send("fresh", 1024)
        self.assertEqual(code, 250, reply)
        key = os.path.join(self.data, "secrets", "token.pem")
        r = self.ctl.run("mbox", "archive", self.mailbox, "--older-than", "%ds" % ARCHIVE_AGE, "--wait",
                         "--token-key", key, check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("JOB_STATE_SUCCEEDED", r.stdout)
        self.assertEqual(self.folder_count("INBOX"), 1, "only the fresh message stays in the INBOX")
        self.assertEqual(self.folder_count("INBOX", "fresh"), 1)
        self.assertEqual(self.folder_count("Archive"), in_inbox)
        self.assertEqual(self.folder_count("Archive", "fresh"), 0)


if __name__ == "__main__":
    unittest.main()
