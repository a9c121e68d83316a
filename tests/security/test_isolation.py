"""The tenant-isolation matrix (issue 12, attacks): a user and the admin of
tenant A try to reach tenant B's mail, folders, users and queue entries
through every door, and every door answers as if B's thing did not exist.

Tenant A is the demo of `tools/mailgrid up --demo --replicas 3` (alice its
admin, bob a user); tenant B is onboarded here (carol its admin, with mail
in her INBOX, a folder "Secret", and a message stuck in relayd's queue
because B's outside peer is down). For each door the test asks once for
B's real thing and once for a thing that does not exist, and requires the
same answer (ids and names in the text masked):

- IMAP (bob): SELECT, EXAMINE, STATUS of B's names in the shared namespace
  and elsewhere; LIST shows none of B's; AUTHENTICATE PLAIN with authzid
  carol (acting as carol with bob's password) is refused like a wrong
  password.
- POP3: USER carol + bob's password, and AUTH PLAIN with authzid carol,
  refused like a wrong password.
- Submission: bob cannot use carol's address as MAIL FROM, nor as From:.
- gRPC with A's tokens: tenantd (user show / sieve get / group list of B),
  mailstored (folders, status, export of carol's mailbox id) with bob's
  user token and with A's admin token, relayd's queue (show of B's entry,
  and list) with A's admin token.
- Audit logs and credentials with A's tokens: identityd's auth events of
  carol and of B, carol's credential status, app passwords and security
  questions; tenantd's B tenant, events and usage; relayd's held mail of B;
  and the admin's writes on carol (unlock, sign out everywhere, 2FA off,
  password reset) all answer like an id that names nothing, and carol's
  password still opens her mailbox afterwards.
- tenantd's admin audit log (`mailctl adminlog list`) of B, with A's admin,
  A's auditor and bob: like a tenant that does not exist; A's own log has
  nothing of B's.
"""
import base64
import imaplib
import json
import os
import poplib
import random
import re
import shutil
import smtplib
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dnsmasq  # noqa: E402
import mgctl  # noqa: E402
import mgtest  # noqa: E402

B_DOMAIN = "tenant-b.test"
B_PEER = "b-partner.example"  # B writes there; its MX (dnsmasq) refuses connections


def fake_like(real):
    """An id of the same shape as `real` (prefix, length, alphabet) that
    names nothing."""
    return re.sub(r"[0-9a-f]", lambda _: "%x" % random.randrange(16), real)


def masked(text, *secrets):
    """An error text with ids, addresses and names replaced, so that B's
    answer and a missing thing's answer compare equal when they say the
    same."""
    for s in secrets:
        text = text.replace(s, "<X>")
    return re.sub(r"[0-9a-f]{8,}|\b\d+\b", "<N>", text).strip()


class TenantIsolationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not dnsmasq.available():
            raise AssertionError("dnsmasq is required (tools/packages.txt)")
        cls.work = mgtest.temp_dir("mailgrid-isolation-dns")
        cls.dns = dnsmasq.Dnsmasq(cls.work, [B_PEER], hosts={"mx." + B_PEER: "127.0.0.1"})
        cls.mg = None
        try:
            cls.dns.start(["--mx-host=%s,mx.%s,10" % (B_PEER, B_PEER)])
            cls.mg = mgtest.LocalCluster("mailgrid-isolation", "--demo", "--replicas", "3", env={
                # Throttling is test_attacks' subject; here it would make
                # the baseline refusals differ from the probes by delay.
                "MAILGRID_THROTTLE_DELAY_AFTER": "1000",
                "MAILGRID_THROTTLE_LOCK_AFTER": "1000",
                "MAILGRID_THROTTLE_IP_LOCK_AFTER": "1000",
                "MAILGRID_DNS_SERVER": cls.dns.address,
                # Nothing listens there: B's outbound message stays queued.
                "MAILGRID_OUTBOUND_MX_PORT": str(mgtest.free_port()),
            })
            cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
            users = cls.mg.demo_users()
            cls.alice, cls.bob = users["alice"], users["bob"]
            cls.a = mgctl.Mailctl(cls.data)
            cls.a.tenant_id = cls.cluster["demo"]["tenant_id"]
            cls.b = mgctl.Mailctl(cls.data)
            cls.b.onboard_with_override("Tenant B", B_DOMAIN)
            cls.carol = "carol@" + B_DOMAIN
            cls.carol_password = cls.b.create_user(cls.carol, "Carol of B", "--user-role", "tenant_admin")
            cls.carol_user = cls.b.admin("user", "show", cls.carol)
            cls.setup_b_mail()
            cls.bob_token = cls.a.run("auth", "login", cls.bob["address"], "--password",
                                      cls.bob["password"])["session"]["access_token"]
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.mg is not None:
                cls.mg.stop()
        finally:
            cls.dns.stop()
            shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def setup_b_mail(cls):
        """Mail in carol's INBOX, a folder Secret, and a queued message."""
        cls.secret_subject = "B secret %s" % uuid.uuid4().hex[:8]
        with smtplib.SMTP(*mgtest.host_port(cls.cluster["smtp"]), timeout=120) as s:
            s.sendmail("partner@example.org", [cls.carol],
                       "From: partner@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\nfor B only\r\n"
                       % (cls.carol, cls.secret_subject))
        c = imaplib.IMAP4(*mgtest.host_port(cls.cluster["imap"]))
        c.starttls(ssl_context=cls.tls)
        c.login(cls.carol, cls.carol_password)
        typ, _ = c.create("Secret")
        assert typ == "OK", typ
        c.logout()
        with smtplib.SMTP(*mgtest.host_port(cls.cluster["submission"]), timeout=120) as s:
            s.starttls(context=cls.tls)
            s.login(cls.carol, cls.carol_password)
            s.sendmail(cls.carol, ["someone@" + B_PEER],
                       "From: %s\r\nTo: someone@%s\r\nSubject: queued for B\r\n\r\nstuck\r\n" % (cls.carol, B_PEER))
        entries = mgtest.eventually(lambda: cls.b.admin("queue", "list", lines=True), "B's queue entry")
        cls.b_queue_id = entries[0]["queue_id"]

    # ---- helpers -------------------------------------------------------------

    def imap_as(self, user, password):
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        c.login(user, password)
        return c

    def imap_reply(self, c, *command):
        """(status, text) of one IMAP command, NO/BAD included."""
        tag = c._command(*command)
        try:
            typ, data = c._command_complete(command[0], tag)
        except imaplib.IMAP4.error as e:
            return "NO/BAD", str(e)
        return typ, b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")

    def same_as_missing(self, theirs, missing, *secrets, what=""):
        self.assertEqual(masked(theirs, *secrets), masked(missing, *secrets),
                         "%s: B's thing must look exactly like a missing one" % what)

    # ---- IMAP -----------------------------------------------------------------

    def test_imap_names_of_b_are_not_found(self):
        c = self.imap_as(self.bob["address"], self.bob["password"])
        try:
            typ, data = c.list('""', "*")
            self.assertEqual(typ, "OK")
            listing = b"\n".join(d for d in data if isinstance(d, bytes)).decode()
            self.assertNotIn(B_DOMAIN, listing)
            self.assertNotIn("Secret", listing)
            typ, data = c.list('""', '"Shared/%s/*"' % self.carol)
            self.assertEqual([d for d in data if d], [], "LIST of B's shared names is empty")
            nobody = "nobody-%s@%s" % (uuid.uuid4().hex[:6], B_DOMAIN)
            for theirs, missing in (
                    ("Shared/%s/INBOX" % self.carol, "Shared/%s/INBOX" % nobody),
                    ("Shared/%s/Secret" % self.carol, "Shared/%s/Secret" % nobody),
                    ("Other Users/%s/INBOX" % self.carol, "Other Users/%s/INBOX" % nobody),
                    ("#shared/%s/INBOX" % self.carol, "#shared/%s/INBOX" % nobody),
                    ("%s/INBOX" % self.carol, "%s/INBOX" % nobody)):
                for verb in ("SELECT", "EXAMINE"):
                    got = self.imap_reply(c, verb, '"%s"' % theirs)
                    self.assertNotEqual(got[0], "OK", (verb, theirs, got))
                    self.same_as_missing(got[1], self.imap_reply(c, verb, '"%s"' % missing)[1],
                                         self.carol, nobody, what="%s %s" % (verb, theirs))
                got = self.imap_reply(c, "STATUS", '"%s"' % theirs, "(MESSAGES)")
                self.assertNotEqual(got[0], "OK", ("STATUS", theirs, got))
                self.same_as_missing(got[1], self.imap_reply(c, "STATUS", '"%s"' % missing, "(MESSAGES)")[1],
                                     self.carol, nobody, what="STATUS " + theirs)
            # bob's own mail never shows B's message.
            c.select("INBOX", readonly=True)
            typ, data = c.search(None, "SUBJECT", '"%s"' % self.secret_subject)
            self.assertEqual(data[0].split(), [])
        finally:
            c.logout()

    def sasl_plain(self, authzid, authcid, password):
        return base64.b64encode(("%s\0%s\0%s" % (authzid, authcid, password)).encode()).decode()

    def test_acting_as_b_with_a_password_is_refused(self):
        wrong = self.sasl_plain("", self.bob["address"], "wrong-" + uuid.uuid4().hex)
        as_carol = self.sasl_plain(self.carol, self.bob["address"], self.bob["password"])
        answers = {}
        for name, blob in (("wrong", wrong), ("as_carol", as_carol)):
            c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
            c.starttls(ssl_context=self.tls)
            try:
                c.authenticate("PLAIN", lambda _: base64.b64decode(blob))
                answers[name] = "OK"
            except imaplib.IMAP4.error as e:
                answers[name] = str(e)
            finally:
                try:
                    c.logout()
                except (imaplib.IMAP4.error, OSError):
                    pass
        self.assertNotEqual(answers["as_carol"], "OK", "bob signed in as carol over IMAP")
        self.same_as_missing(answers["as_carol"], answers["wrong"], what="IMAP AUTHENTICATE as carol")

        def pop3(*steps):
            p = poplib.POP3(*mgtest.host_port(self.cluster["pop3"]))
            p.stls(context=self.tls)
            try:
                for step in steps:
                    step(p)
                return "OK"
            except poplib.error_proto as e:
                return str(e)
            finally:
                try:
                    p.quit()
                except (poplib.error_proto, OSError):
                    pass
        theirs = pop3(lambda p: p.user(self.carol), lambda p: p.pass_(self.bob["password"]))
        missing = pop3(lambda p: p.user("nobody@" + B_DOMAIN), lambda p: p.pass_(self.bob["password"]))
        self.assertNotEqual(theirs, "OK", "bob's password opened carol's POP3 maildrop")
        self.same_as_missing(theirs, missing, what="POP3 USER carol")
        theirs = pop3(lambda p: p._shortcmd("AUTH PLAIN " + as_carol))
        missing = pop3(lambda p: p._shortcmd("AUTH PLAIN " + wrong))
        self.assertNotEqual(theirs, "OK", "bob signed in as carol over POP3 SASL")
        self.same_as_missing(theirs, missing, what="POP3 AUTH as carol")

    # ---- submission ------------------------------------------------------------

    def test_submission_as_b_is_refused(self):
        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"]), timeout=60) as s:
            s.starttls(context=self.tls)
            s.login(self.bob["address"], self.bob["password"])
            code, reply = s.mail("<%s>" % self.carol)
            self.assertGreaterEqual(code, 500, reply)
            s.rset()
            code, reply = s.mail("<%s>" % self.bob["address"])
            self.assertEqual(code, 250, reply)
            code, reply = s.rcpt("<%s>" % self.alice["address"])
            self.assertEqual(code, 250, reply)
            code, reply = s.data("From: %s\r\nTo: %s\r\nSubject: forged From\r\n\r\nhi\r\n"
                                 % (self.carol, self.alice["address"]))
            self.assertGreaterEqual(code, 500, "From: carol accepted from bob: %s" % reply)

    # ---- gRPC ------------------------------------------------------------------

    def refused_like_missing(self, args_theirs, args_missing, secrets, **who):
        """B's thing and a missing one get the same refusal: NOT_FOUND, or
        PERMISSION_DENIED when the caller may not ask about anyone."""
        def settled(args):
            # A gRPC peer slow to accept on a loaded machine (UNAVAILABLE)
            # says nothing about isolation: ask again.
            def once():
                r = self.a.run(*args, check=False, **who)
                return None if "UNAVAILABLE" in r.stderr else r
            return mgtest.eventually(once, "an answer to mailctl %s" % " ".join(args))
        theirs, missing = settled(args_theirs), settled(args_missing)
        self.assertNotEqual(theirs.returncode, 0, "%s succeeded: %s" % (args_theirs, theirs.stdout))
        self.assertRegex(theirs.stderr, r"NOT_FOUND|not found|PERMISSION_DENIED", args_theirs)
        self.same_as_missing(theirs.stderr, missing.stderr, *secrets, what=" ".join(args_theirs))

    def test_grpc_apis_with_a_tokens(self):
        admin = {"role": "tenant_admin", "tenant": self.a.tenant_id}
        bob = {"token": self.bob_token}
        nobody = "nobody@" + B_DOMAIN
        # tenantd: directory, by address and by id.
        carol_id = self.carol_user["user_id"]
        fake_id = fake_like(carol_id)
        for who in (admin, bob):
            self.refused_like_missing(("user", "show", self.carol), ("user", "show", nobody),
                                      (self.carol, nobody), **who)
            self.refused_like_missing(("user", "show", carol_id), ("user", "show", fake_id),
                                      (carol_id, fake_id), **who)
            self.refused_like_missing(("sieve", "get", carol_id), ("sieve", "get", fake_id),
                                      (carol_id, fake_id), **who)
        theirs = self.a.run("group", "list", "--tenant", self.b.tenant_id, check=False, **admin)
        self.assertTrue(theirs.returncode != 0 or B_DOMAIN not in theirs.stdout, theirs.stdout)
        # mailstored: carol's mailbox id with A's tokens.
        mailbox = self.carol_user.get("mailbox_id") or self.carol_user.get("user", {}).get("mailbox_id")
        self.assertTrue(mailbox, self.carol_user)
        fake = fake_like(mailbox)
        for who in (bob,):
            for verb in (("mbox", "folders"), ("mbox", "status"), ("mbox", "quota")):
                self.refused_like_missing(verb + (mailbox,), verb + (fake,), (mailbox, fake), **who)
            self.refused_like_missing(("mbox", "export", mailbox, "INBOX"), ("mbox", "export", fake, "INBOX"),
                                      (mailbox, fake), **who)
        admin_token = self.a.run("auth", "login", self.alice["address"], "--password",
                                 self.alice["password"])["session"]["access_token"]
        self.refused_like_missing(("mbox", "quota", mailbox), ("mbox", "quota", fake), (mailbox, fake),
                                  token=admin_token)
        # relayd's queue.
        fake_q = fake_like(self.b_queue_id)
        self.refused_like_missing(("queue", "show", self.b_queue_id), ("queue", "show", fake_q),
                                  (self.b_queue_id, fake_q), **admin)
        for verb in (("queue", "retry"), ("queue", "hold")):
            self.refused_like_missing(verb + (self.b_queue_id,), verb + (fake_q,), (self.b_queue_id, fake_q),
                                      **admin)
        listed = self.a.run("queue", "list", lines=True, **admin)
        self.assertNotIn(self.b_queue_id, json.dumps(listed))
        listed = self.a.run("queue", "list", "--tenant", self.b.tenant_id, check=False, **admin)
        self.assertNotIn(self.b_queue_id, listed.stdout)
        # B's entry is untouched and still B's.
        self.assertEqual(self.b.admin("queue", "show", self.b_queue_id)["queue_id"], self.b_queue_id)

    def answered_like_missing(self, args_theirs, args_missing, secrets, **who):
        """B's thing and a missing one get the same answer, whatever it is (a
        refusal, or an empty list), and nothing of B's is in it."""
        def settled(args):
            def once():
                r = self.a.run(*args, check=False, **who)
                return None if "UNAVAILABLE" in r.stderr else r
            return mgtest.eventually(once, "an answer to mailctl %s" % " ".join(args))
        theirs, missing = settled(args_theirs), settled(args_missing)
        what = " ".join(args_theirs)
        self.assertEqual(theirs.returncode, missing.returncode, "%s: %s / %s" % (what, theirs.stderr, missing.stderr))
        self.same_as_missing(theirs.stderr, missing.stderr, *secrets, what=what)
        self.same_as_missing(theirs.stdout, missing.stdout, *secrets, what=what)
        for secret in (self.carol, self.carol_user["user_id"], self.secret_subject):
            self.assertNotIn(secret, theirs.stdout, what)
        print("  %-40s -> %s" % (" ".join(a for a in args_theirs if a not in secrets)[:40],
                                 masked(theirs.stderr, *secrets)[-70:] if theirs.returncode else
                                 "ok: " + masked(theirs.stdout, *secrets)[:60].replace("\n", " ")))
        return theirs

    def test_audit_logs_and_credentials_of_b(self):
        """Tenant A's admin and user against B's sign-in records, credentials,
        tenant events and held mail (identityd, tenantd, relayd): B's look
        exactly like ones that do not exist, and nothing of B's changes."""
        admin = {"role": "tenant_admin", "tenant": self.a.tenant_id}
        bob = {"token": self.bob_token}
        print()
        carol_id, b_tid = self.carol_user["user_id"], self.b.tenant_id
        fake_id, fake_tid = fake_like(carol_id), fake_like(b_tid)
        ids, tids = (carol_id, fake_id), (b_tid, fake_tid)
        for who in (admin, bob):
            # identityd: the auth event log, credential status, app passwords, questions.
            self.answered_like_missing(("auth", "events", "--user", carol_id), ("auth", "events", "--user", fake_id),
                                       ids, **who)
            self.answered_like_missing(("auth", "events", "--tenant", b_tid), ("auth", "events", "--tenant", fake_tid),
                                       tids, **who)
            self.answered_like_missing(("auth", "status", carol_id), ("auth", "status", fake_id), ids, **who)
            self.answered_like_missing(("auth", "app-password", "list", carol_id),
                                       ("auth", "app-password", "list", fake_id), ids, **who)
            self.answered_like_missing(("recovery", "questions", "show", carol_id),
                                       ("recovery", "questions", "show", fake_id), ids, **who)
            # tenantd: B's tenant, its event log and usage.
            for verb in ("show", "events", "usage"):
                self.answered_like_missing(("tenant", verb, b_tid), ("tenant", verb, fake_tid), tids, **who)
        # relayd: mail held for audit, listed by B's tenant id.
        self.answered_like_missing(("audit", "list", "--tenant", b_tid), ("audit", "list", "--tenant", fake_tid),
                                   tids, **admin)
        # The admin's writes on B's user: unlock, sign out everywhere,
        # turn 2FA off, reset the password.
        for verb in (("auth", "unlock"), ("auth", "logout-everywhere"), ("auth", "2fa", "disable")):
            self.answered_like_missing(verb + (carol_id,), verb + (fake_id,), ids, **admin)
        reset = self.answered_like_missing(("auth", "reset-password", "admin", carol_id, "--new-password",
                                            "Taken-over-" + uuid.uuid4().hex[:8]),
                                           ("auth", "reset-password", "admin", fake_id, "--new-password",
                                            "Taken-over-" + uuid.uuid4().hex[:8]), ids, **admin)
        self.assertNotEqual(reset.returncode, 0, "A's admin reset B's user's password")
        # Carol's password still works: nothing of B's changed.
        c = self.imap_as(self.carol, self.carol_password)
        c.logout()

    def test_admin_audit_log_lists_directory_changes(self):
        """The baseline of the isolation test below: B's own admin reads B's
        log through the same door, and it holds carol's creation."""
        own = self.b.admin("adminlog", "list", "--limit", "1000")
        created = [e for e in own.get("entries", [])
                   if e.get("action") == "user.create" and e.get("target_id") == self.carol_user["user_id"]]
        self.assertTrue(created, "B's admin log lacks carol's creation: %s" % own)
        self.assertTrue(all(e.get("tenant_id") == self.b.tenant_id for e in own["entries"]), own)

    def test_admin_audit_log_of_b(self):
        """tenantd's admin audit log (ListAdminAuditLog, `mailctl adminlog`):
        A's admin, A's auditor and bob get for B's log exactly what they get
        for a tenant that does not exist, and A's own log, even filtered by
        carol's id, shows nothing of B's."""
        carol_id, b_tid = self.carol_user["user_id"], self.b.tenant_id
        fake_tid = fake_like(b_tid)
        # The door is open to B's own admin (whatever the log holds).
        own = self.b.admin("adminlog", "list", "--limit", "1000")
        self.assertTrue(all(e.get("tenant_id") == b_tid for e in own.get("entries", [])), own)
        print()
        admin = {"role": "tenant_admin", "tenant": self.a.tenant_id}
        auditor = {"role": "auditor", "tenant": self.a.tenant_id}
        bob = {"token": self.bob_token}
        for who in (admin, auditor, bob):
            theirs = self.answered_like_missing(("adminlog", "list", b_tid), ("adminlog", "list", fake_tid),
                                                (b_tid, fake_tid), **who)
            self.assertNotIn(b_tid, theirs.stdout)
            filtered = self.answered_like_missing(
                ("adminlog", "list", b_tid, "--target", carol_id, "--action", "user."),
                ("adminlog", "list", fake_tid, "--target", carol_id, "--action", "user."),
                (b_tid, fake_tid), **who)
            self.assertNotIn(carol_id, filtered.stdout)
        # A's own log, read by A's admin and auditor: A's entries only, and a
        # filter on B's user or B's action finds nothing.
        for who in (admin, auditor):
            mine = self.a.run("adminlog", "list", "--limit", "1000", **who)
            self.assertTrue(mine.get("entries"), "A's admin log is empty: %s" % mine)
            dump = json.dumps(mine)
            for secret in (b_tid, carol_id, B_DOMAIN, self.carol):
                self.assertNotIn(secret, dump)
            by_carol = self.a.run("adminlog", "list", "--target", carol_id, **who)
            self.assertEqual(by_carol.get("entries", []), [], by_carol)
        # A plain user of A (the demo's bob; `mailctl user create` gives a new
        # user only the roles of --user-role) is refused even A's own log.
        refused = self.a.run("adminlog", "list", token=self.bob_token, check=False)
        self.assertNotEqual(refused.returncode, 0, "a plain user read the admin log: %s" % refused.stdout)
        self.assertIn("PERMISSION_DENIED", refused.stderr + refused.stdout)


if __name__ == "__main__":
    unittest.main()
