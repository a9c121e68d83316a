"""Mail audit and monitoring copies (issue 12, story 7; issue 9).

Against `tools/mailgrid up --replicas 3`: a tenant whose plan includes
mail_audit and monitoring sets, with `mailctl audit-policy set`, a rule
holding every outgoing message that says "confidential", and with
`mailctl monitor-policy set` a rule copying carol's mail (both directions)
to the supervisor boss.

- alice submits (587, STARTTLS + AUTH, smtplib) a confidential message to
  bob: relayd answers 250 "held for review" and bob gets nothing; an
  auditor (a user holding the auditor role, `mailctl audit ...` with a
  token for them) lists it, downloads it (`mailctl audit download --out`),
  approves it, and it arrives in bob's INBOX (read with imaplib).
- a second one is rejected with a reason: bob never gets it, alice gets a
  notice quoting the reason.
- mail from outside to carol and from carol to bob is copied into boss's
  INBOX, each copy marked X-Mailgrid-Monitor; carol and bob still get
  theirs.

relayd runs with MAILGRID_POLICY_CACHE_TTL=1s so a policy set by the test
applies at once (the default caches 30 s).
"""
import email
import email.message
import imaplib
import json
import os
import smtplib
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgctl  # noqa: E402
import mgtest  # noqa: E402

DOMAIN = "audit.test"


class AuditAndMonitoringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-e2e-audit", "--replicas",
                                     os.environ.get("MAILGRID_E2E_REPLICAS", "3"),
                                     env={"MAILGRID_POLICY_CACHE_TTL": "1s"})
        cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
        try:
            cls.ctl = mgctl.Mailctl(cls.data)
            cls.ctl.onboard_with_override("Audit Co", DOMAIN,
                                          plan_args=("--features", "mail_audit,monitoring"))
            cls.pw = {}
            for name in ("alice", "bob", "carol", "boss"):
                cls.pw[name] = cls.ctl.create_user("%s@%s" % (name, DOMAIN), name.title())
            cls.ctl.admin("user", "create", "ann@" + DOMAIN, "--name", "Ann Auditor",
                          "--user-role", "auditor", "--password", "Initial-" + os.urandom(6).hex())
            cls.auditor_id = cls.ctl.admin("user", "show", "ann@" + DOMAIN)["user_id"]
            carol_id = cls.ctl.admin("user", "show", "carol@" + DOMAIN)["user_id"]
            cls.set_policy("audit-policy", {
                "enabled": True,
                "rules": [{"name": "secrets", "enabled": True, "keywords": ["confidential"]}],
            })
            cls.set_policy("monitor-policy", {
                "rules": [{"name": "watch carol", "enabled": True,
                           "monitored_user_ids": [carol_id],
                           "direction": "MONITOR_DIRECTION_BOTH",
                           "supervisor_address": "boss@" + DOMAIN,
                           "justification": "e2e case 7"}],
            })
            time.sleep(1.5)  # relayd's policy cache (1 s here)
        except BaseException:
            cls.mg.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.mg.stop()

    @classmethod
    def set_policy(cls, group, policy):
        path = os.path.join(cls.data, "%s.json" % group)
        with open(path, "w") as f:
            json.dump(policy, f)
        cls.ctl.admin(group, "set", path)

    # ---- helpers ------------------------------------------------------------

    def auditor(self, *args, check=True):
        """mailctl audit ... as the tenant's auditor (ann)."""
        return self.ctl.run("audit", *args, "--subject", self.auditor_id, role="auditor",
                            tenant=self.ctl.tenant_id, check=check)

    def submit(self, sender, rcpts, subject, body):
        """Submits over 587 (STARTTLS + AUTH); the reply to DATA."""
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "%s@%s" % (sender, DOMAIN), ", ".join(rcpts), subject
        msg["Message-ID"] = "<%s@%s>" % (uuid.uuid4(), DOMAIN)
        msg.set_content(body)
        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"]), timeout=120) as s:
            s.starttls(context=self.tls)
            s.login("%s@%s" % (sender, DOMAIN), self.pw[sender])
            s.mail("<%s@%s>" % (sender, DOMAIN))
            for r in rcpts:
                code, reply = s.rcpt("<%s>" % r)
                self.assertEqual(code, 250, reply)
            return s.data(msg.as_string())

    def send_from_outside(self, rcpt, subject):
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "partner@example.org", rcpt, subject
        msg["Message-ID"] = "<%s@example.org>" % uuid.uuid4()
        msg.set_content("hello from outside")
        with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"]), timeout=120) as s:
            s.ehlo("mx.example.org")
            s.mail("<partner@example.org>")
            code, reply = s.rcpt("<%s>" % rcpt)
            self.assertEqual(code, 250, reply)
            return s.data(msg.as_string())

    def messages(self, user, subject):
        """The raw headers of every INBOX message of `user` whose Subject
        contains `subject`."""
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        try:
            c.starttls(ssl_context=self.tls)
            c.login("%s@%s" % (user, DOMAIN), self.pw[user])
            typ, data = c.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK", data)
            typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
            self.assertEqual(typ, "OK", data)
            out = []
            for num in data[0].split():
                typ, parts = c.fetch(num, "(BODY.PEEK[HEADER])")
                self.assertEqual(typ, "OK", parts)
                out.append(email.message_from_bytes(parts[0][1]))
            return out
        finally:
            c.logout()

    def arrives(self, user, subject):
        return mgtest.eventually(lambda: self.messages(user, subject) or None,
                                 "%r in %s's INBOX" % (subject, user))

    def find_held(self, subject):
        def look():
            for h in self.ctl.run("audit", "list", "--state", "held", "--subject", self.auditor_id,
                                  role="auditor", tenant=self.ctl.tenant_id, lines=True):
                if h.get("subject") == subject:
                    return h
            return None
        return mgtest.eventually(look, "held message %r listed" % subject)

    # ---- the story ------------------------------------------------------------

    def test_1_held_message_is_approved_and_arrives(self):
        subject = "Q3 plan %s" % uuid.uuid4().hex[:8]
        code, reply = self.submit("alice", ["bob@" + DOMAIN], subject,
                                  "This is confidential: the Q3 plan.")
        self.assertEqual(code, 250, reply)
        self.assertIn(b"held for review", reply)
        held = self.find_held(subject)
        self.assertEqual(held["kind"], "HOLD_KIND_AUDIT")
        self.assertEqual(held["sender"]["address"], "alice@" + DOMAIN)
        self.assertEqual([r["rule_name"] for r in held["matched_rules"]], ["secrets"])
        # Downloaded by the auditor: the message as submitted.
        path = os.path.join(self.data, "held.eml")
        self.auditor("download", held["held_id"], "--out", path)
        with open(path, "rb") as f:
            raw = f.read()
        self.assertIn(subject.encode(), raw)
        self.assertIn(b"the Q3 plan", raw)
        time.sleep(2)
        self.assertEqual(self.messages("bob", subject), [], "delivered while held")
        # A tenant admin may look but not decide.
        r = self.ctl.admin("audit", "approve", held["held_id"], check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("PERMISSION_DENIED", r.stderr)
        decided = self.auditor("approve", held["held_id"], "--note", "ok to send")
        self.assertEqual(decided["state"], "HELD_STATE_APPROVED")
        self.arrives("bob", subject)

    def test_2_rejected_message_never_arrives_and_the_sender_is_told(self):
        subject = "Customer list %s" % uuid.uuid4().hex[:8]
        code, reply = self.submit("alice", ["bob@" + DOMAIN], subject,
                                  "Confidential customer list attached in the text.")
        self.assertEqual(code, 250, reply)
        held = self.find_held(subject)
        r = self.auditor("reject", held["held_id"], check=False)
        self.assertNotEqual(r.returncode, 0, "a reason is required")
        decided = self.auditor("reject", held["held_id"], "--reason", "customer data stays inside")
        self.assertEqual(decided["state"], "HELD_STATE_REJECTED")
        notice = self.arrives("alice", subject)[0]
        self.assertIn("not sent", notice["Subject"])
        # The notice quotes the reason in its body.
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        try:
            c.starttls(ssl_context=self.tls)
            c.login("alice@" + DOMAIN, self.pw["alice"])
            c.select("INBOX", readonly=True)
            typ, data = c.search(None, "BODY", '"customer data stays inside"')
            self.assertEqual(typ, "OK")
            self.assertEqual(len(data[0].split()), 1)
        finally:
            c.logout()
        # An approved message sent after it arrives; the rejected one never did.
        later = "After the rejection %s" % uuid.uuid4().hex[:8]
        code, reply = self.submit("alice", ["bob@" + DOMAIN], later, "nothing secret")
        self.assertEqual(code, 250, reply)
        self.assertNotIn(b"held", reply)
        self.arrives("bob", later)
        self.assertEqual(self.messages("bob", subject), [])
        # Deciding twice is refused.
        r = self.auditor("approve", held["held_id"], check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("FAILED_PRECONDITION", r.stderr)

    def test_3_monitored_mail_is_copied_to_the_supervisor(self):
        inbound = "To carol %s" % uuid.uuid4().hex[:8]
        code, reply = self.send_from_outside("carol@" + DOMAIN, inbound)
        self.assertEqual(code, 250, reply)
        self.arrives("carol", inbound)
        copy = self.arrives("boss", inbound)[0]
        self.assertIn("direction=incoming", copy["X-Mailgrid-Monitor"])
        self.assertIn("user=carol@" + DOMAIN, copy["X-Mailgrid-Monitor"])

        outbound = "From carol %s" % uuid.uuid4().hex[:8]
        code, reply = self.submit("carol", ["bob@" + DOMAIN], outbound, "hello bob")
        self.assertEqual(code, 250, reply)
        self.arrives("bob", outbound)
        copy = self.arrives("boss", outbound)[0]
        self.assertIn("direction=outgoing", copy["X-Mailgrid-Monitor"])
        # bob is not monitored: mail between alice and bob is not copied.
        private = "Alice to bob %s" % uuid.uuid4().hex[:8]
        code, reply = self.submit("alice", ["bob@" + DOMAIN], private, "lunch?")
        self.assertEqual(code, 250, reply)
        self.arrives("bob", private)
        self.assertEqual(self.messages("boss", private), [])


if __name__ == "__main__":
    unittest.main()
