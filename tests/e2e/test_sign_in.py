"""Signing in without a password (issue 12, story 5), as a mail client meets it.

Against `tools/mailgrid up --replicas 3`:
- SSO: the tenant points identityd at the test's own OpenID provider (a
  loopback HTTP server with discovery and JWKS, an RSA key of the test's);
  an ID token signed by that key signs bob in, and the access token
  identityd returns opens bob's INBOX over IMAP with AUTHENTICATE XOAUTH2
  (imaplib) and submits over SMTP with AUTH XOAUTH2 (smtplib). An ID token
  signed by another key is refused. A login by "@signin.test" alone finds
  the tenant (its VERIFIED domain) and signs bob in the same way.
- QR login: a second client (a "desktop") creates a QR ticket; bob's signed-
  in session (the "phone") approves it; the desktop redeems it once for a
  session whose token reads mail over IMAP with AUTHENTICATE OAUTHBEARER;
  a second redemption gets nothing.
- Forgot password (story 4): carol asks for a reset; identityd mails the
  token through relayd to her recovery address (a mailbox of her own here,
  read over IMAP); the token sets a new password once; every old session
  ends (its refresh token is refused, and its access token, which opened
  IMAP and submission with XOAUTH2 before the reset, opens neither after
  it) and the old password no longer opens IMAP. The reset is announced
  ("Your password was reset", issue 6's factor-change notice) in carol's
  own INBOX and at her recovery address, without the token or password;
  an app password she then creates is announced in her INBOX.
- Forgot password without the recovery email (story 4, second half): the
  tenant's admin turns security questions on (before that a user may not set
  any); dave, who has TOTP and so ten recovery codes, sets two questions
  (`mailctl recovery questions set`, re-authenticated by his password) and
  resets his password with the answers plus a recovery code, no reset token.
  His old session ends, the old password is refused, the new one signs in,
  and the recovery code that was used is refused the second time. Wrong
  answers get exactly the answer a wrong recovery code and an unknown
  address get; after three wrong tries the next attempt is throttled, for
  dave and for an unknown address alike, and once the delay has passed dave
  (and only the right answers) get in.
- A changed recovery address is announced (issue 6's gap, closed): the
  admin gives erin a recovery address and then, with `mailctl user update
  --recovery-email`, another one; "Your recovery email address was changed"
  arrives in erin's own INBOX, at the new address and at the OLD one (which
  is told why it got it), once per change, counted as
  recovery_email_changed; an update that leaves the address as it is
  announces nothing.
"""
import re
import base64
import email
import imaplib
import json
import os
import smtplib
import sys
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgctl  # noqa: E402
import mgtest  # noqa: E402
from oidc_provider import JwksServer, RsaKey  # noqa: E402

DOMAIN = "signin.test"


class SignInTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-e2e-signin", "--replicas",
                                     os.environ.get("MAILGRID_E2E_REPLICAS", "3"))
        cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
        cls.idp = None
        try:
            cls.ctl = mgctl.Mailctl(cls.data)
            cls.ctl.onboard_with_override("Signin Co", DOMAIN, plan_args=("--features", "sso"))
            cls.bob = "bob@" + DOMAIN
            cls.bob_password = cls.ctl.create_user(cls.bob, "Bob Builder")
            cls.idp = JwksServer()
            cls.key = RsaKey("test-key-1")
            cls.idp.jwks = {"keys": [cls.key.jwk()]}
            # The tenant's admin, signed in, configures SSO.
            admin = "it@" + DOMAIN
            admin_password = cls.ctl.create_user(admin, "IT Admin", "--user-role", "tenant_admin")
            admin_token = cls.ctl.run("auth", "login", admin, "--password", admin_password)["session"]["access_token"]
            cls.admin_token = admin_token
            cls.ctl.run("sso", "set", "--issuer", cls.idp.issuer, "--client-id", "mailgrid-e2e",
                        "--jwks-json", json.dumps(cls.idp.jwks), "--redirect-uri", "https://mail.signin.test/sso",
                        token=admin_token)
        except BaseException:
            cls.tearDownClass()  # unittest does not call it when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.idp is not None:
            cls.idp.stop()
        cls.mg.stop()

    # ---- helpers --------------------------------------------------------------

    def id_token(self, begun, signer):
        now = int(time.time())
        return signer.sign({"iss": self.idp.issuer, "aud": "mailgrid-e2e", "sub": "idp-bob", "email": self.bob,
                            "nonce": begun["nonce"], "iat": now, "exp": now + 300})

    def deliver(self, subject):
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "partner@example.org", self.bob, subject
        msg["Message-ID"] = "<%s@example.org>" % uuid.uuid4()
        msg.set_content("For bob.\n")
        with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"])) as s:
            self.assertEqual(s.send_message(msg), {})

    def imap_with_token(self, mechanism, token, address=None):
        address = address or self.bob
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        if mechanism == "XOAUTH2":
            blob = "user=%s\x01auth=Bearer %s\x01\x01" % (address, token)
        else:  # RFC 7628 OAUTHBEARER
            blob = "n,a=%s,\x01auth=Bearer %s\x01\x01" % (address, token)
        try:
            c.authenticate(mechanism, lambda _challenge: blob.encode())
        except imaplib.IMAP4.error:
            c.shutdown()
            raise
        return c

    def token_opens_mail(self, address, token):
        """(IMAP AUTHENTICATE XOAUTH2 worked, SMTP submission AUTH XOAUTH2's reply code) for an access token:
        accessd and relayd both ask identityd (CheckSasl with the bearer token)."""
        try:
            self.imap_with_token("XOAUTH2", token, address).logout()
            imap_ok = True
        except imaplib.IMAP4.error:
            imap_ok = False
        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"])) as s:
            code, _ = self.submission_xoauth2(s, address, token)
        return imap_ok, code

    def submission_xoauth2(self, s, address, token):
        """STARTTLS and AUTH XOAUTH2 on a submission connection: (code, reply)."""
        s.starttls(context=self.tls)
        s.ehlo("laptop")
        return s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(
            ("user=%s\x01auth=Bearer %s\x01\x01" % (address, token)).encode()).decode())

    def inbox_has(self, c, subject):
        c.select("INBOX", readonly=True)
        typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
        self.assertEqual(typ, "OK")
        return bool(data[0].split())

    # ---- tests -------------------------------------------------------------------

    def test_sso_token_reads_and_sends_mail(self):
        subject = "sso %s" % uuid.uuid4().hex[:8]
        self.deliver(subject)
        begun = self.ctl.run("sso", "begin", "--address", self.bob)
        session = self.ctl.run("sso", "complete", "--state", begun["state"], "--id-token",
                               self.id_token(begun, self.key))["session"]
        self.assertEqual(session["address"], self.bob)
        token = session["access_token"]

        c = self.imap_with_token("XOAUTH2", token)
        try:
            self.assertTrue(mgtest.eventually(lambda: self.inbox_has(c, subject), "the message in bob's INBOX"))
        finally:
            c.logout()

        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"])) as s:
            code, reply = self.submission_xoauth2(s, self.bob, token)
            self.assertEqual(code, 235, reply)
            msg = email.message.EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = self.bob, self.bob, "note to self " + subject
            msg.set_content("Sent with an SSO token.\n")
            self.assertEqual(s.send_message(msg), {})

        imposter = RsaKey("test-key-1")  # same kid, another key
        begun = self.ctl.run("sso", "begin", "--address", self.bob)
        refused = self.ctl.run("sso", "complete", "--state", begun["state"], "--id-token",
                               self.id_token(begun, imposter), check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("UNAUTHENTICATED", refused.stderr)

    def test_sso_by_domain_alone(self):
        """A login page that asks only for "@signin.test": identityd finds the
        tenant owning that VERIFIED domain (tenantd, service token) and its
        provider; an address tenantd does not know gets the same kind of
        answer; a domain nobody owns has no SSO."""
        probe = self.ctl.run("domain", "show", DOMAIN, role="service", check=False)
        if "PERMISSION_DENIED" in probe.stderr:
            self.skipTest("this tenantd does not let services read a domain (DomainService.GetDomain)")
        begun = self.ctl.run("sso", "begin", "--address", "@" + DOMAIN)
        self.assertIn("state=" + begun["state"], begun["authorize_url"])
        self.assertNotIn("login_hint", begun["authorize_url"])
        session = self.ctl.run("sso", "complete", "--state", begun["state"], "--id-token",
                               self.id_token(begun, self.key))["session"]
        self.assertEqual(session["address"], self.bob)
        unknown = self.ctl.run("sso", "begin", "--address", "nobody-%s@%s" % (uuid.uuid4().hex[:6], DOMAIN))
        self.assertIn("login_hint=nobody", unknown["authorize_url"])
        for nowhere in ("@nowhere.example", "bob@nowhere.example"):
            r = self.ctl.run("sso", "begin", "--address", nowhere, check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("NOT_FOUND", r.stderr)

    def test_forgot_password_reset_through_the_recovery_email(self):
        carol, home = "carol@" + DOMAIN, "carol.home@" + DOMAIN
        old_password = self.ctl.create_user(carol, "Carol")
        home_password = self.ctl.create_user(home, "Carol at home")
        self.ctl.admin("user", "update", carol, "--recovery-email", home)
        old_session = self.ctl.run("auth", "login", carol, "--password", old_password)["session"]
        # The old session's access token opens her mail before the reset (IMAP and submission).
        self.assertEqual(self.token_opens_mail(carol, old_session["access_token"]), (True, 235))

        self.ctl.run("auth", "reset-password", "request", carol)

        def reset_token():
            mail = self.newest_mail(home, home_password, "Password reset for %s" % carol)
            found = mail and re.search(rb"Reset token: (\S+)", mail)
            return found.group(1).decode() if found else None
        token = mgtest.eventually(reset_token, "the reset mail in carol's recovery mailbox")

        new_password = "Reset-" + uuid.uuid4().hex[:12]
        self.ctl.run("auth", "reset-password", "complete", carol, "--reset-token", token,
                     "--new-password", new_password)
        again = self.ctl.run("auth", "reset-password", "complete", carol, "--reset-token", token,
                             "--new-password", "Other-" + uuid.uuid4().hex[:12], check=False)
        self.assertNotEqual(again.returncode, 0, "a reset token works once")
        refreshed = self.ctl.run("auth", "refresh", old_session["refresh_token"], check=False)
        self.assertNotEqual(refreshed.returncode, 0, "the reset ends every earlier session")
        # ... and its access token, not yet expired (15 minutes), no longer opens IMAP nor submission:
        # identityd refuses a bearer token of an ended session at once.
        self.assertEqual(self.token_opens_mail(carol, old_session["access_token"]), (False, 535),
                         "an access token of a session the reset ended still opens carol's mail")

        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        with self.assertRaises(imaplib.IMAP4.error):
            c.login(carol, old_password)
        c.logout()
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        self.assertEqual(c.login(carol, new_password)[0], "OK")
        c.logout()

        # The factor-change notice: in her own INBOX and at the recovery
        # address (a reset may mean someone else has the account), never the secret.
        for address, password in ((carol, new_password), (home, home_password)):
            notice = mgtest.eventually(lambda: self.newest_mail(address, password, "Your password was reset"),
                                       "the reset notice for %s at %s" % (carol, address))
            self.assertIn(b"Auto-Submitted: auto-generated", notice)
            self.assertIn(b"From: Security notice <no-reply@" + DOMAIN.encode() + b">", notice)
            self.assertIn(b"Account: " + carol.encode(), notice)
            self.assertIn(b'Your password was reset with "forgot password"', notice)
            self.assertRegex(notice, rb"When: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
            self.assertNotIn(token.encode(), notice)
            self.assertNotIn(new_password.encode(), notice)
        # ... and counted by the identityd that sent them (one per recipient).
        mgtest.eventually(lambda: self.notices_counted("password_reset", "sent") >= 2,
                          "mailgrid_identity_notices_total{kind=password_reset,result=sent} >= 2")
        # Adding an app password is told too (to her mailbox; the recipients rule is unit-tested).
        session = self.ctl.run("auth", "login", carol, "--password", new_password)["session"]
        self.ctl.run("auth", "app-password", "create", "Carol's phone", token=session["access_token"])
        notice = mgtest.eventually(lambda: self.newest_mail(carol, new_password, "An app password was created"),
                                   "the app-password notice in carol's INBOX")
        self.assertIn(b"An app password was created: \"Carol's phone\"", notice)

    def test_changed_recovery_address_is_announced_to_the_old_address(self):
        erin, old, new = "erin@" + DOMAIN, "erin.old@" + DOMAIN, "erin.new@" + DOMAIN
        passwords = {address: self.ctl.create_user(address, name)
                     for address, name in ((erin, "Erin"), (old, "Erin's old box"), (new, "Erin's new box"))}
        subject = "Your recovery email address was changed"
        self.ctl.admin("user", "update", erin, "--recovery-email", old)
        mgtest.eventually(lambda: self.mails_with(old, passwords[old], subject),
                          "the notice of erin's first recovery address at that address")
        mgtest.eventually(lambda: self.mails_with(erin, passwords[erin], subject),
                          "the notice of erin's first recovery address in her INBOX")

        self.ctl.admin("user", "update", erin, "--recovery-email", new)
        why = b"this address was the recovery address of " + erin.encode()
        told_old = mgtest.eventually(lambda: self.mails_with(old, passwords[old], subject, why),
                                     "the change's notice at erin's OLD recovery address")
        self.assertEqual(len(told_old), 1, "one notice per change at the old address")
        for notice in told_old:
            self.assertIn(b"Account: " + erin.encode(), notice)
            self.assertIn(b"By:      an administrator of your organisation", notice)
            self.assertIn(b"From: Security notice <no-reply@" + DOMAIN.encode() + b">", notice)
        mgtest.eventually(lambda: self.mails_with(new, passwords[new], subject),
                          "the change's notice at erin's new recovery address")
        mgtest.eventually(lambda: len(self.mails_with(erin, passwords[erin], subject)) == 2,
                          "both changes' notices (and no more) in erin's INBOX")
        # 2 recipients for the first address, 3 for the change (mailbox, new, old).
        mgtest.eventually(lambda: self.notices_counted("recovery_email_changed", "sent") >= 5,
                          "mailgrid_identity_notices_total{kind=recovery_email_changed,result=sent} >= 5")

        # The same address again is no change: nothing is mailed. The next
        # change's last message (to its old address, `new`) is sent after
        # anything the no-op could have queued (one worker, in order), so
        # once it is there the counts below are final.
        self.ctl.admin("user", "update", erin, "--recovery-email", new)
        self.ctl.admin("user", "update", erin, "--recovery-email", old)
        mgtest.eventually(lambda: self.mails_with(new, passwords[new], subject, why),
                          "the third change's notice at its old address")
        self.assertEqual(len(self.mails_with(new, passwords[new], subject)), 2,
                         "the new address: told when it came and when it went, not on the no-op")
        self.assertEqual(len(self.mails_with(erin, passwords[erin], subject)), 3,
                         "erin's INBOX: one notice per change, none for the no-op")

    def mails_with(self, address, password, subject, text=b""):
        """Every message in address's INBOX whose subject contains subject and body text (bytes)."""
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        try:
            c.starttls(ssl_context=self.tls)
            c.login(address, password)
            c.select("INBOX", readonly=True)
            typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
            found = []
            for num in (data[0].split() if typ == "OK" else []):
                typ, parts = c.fetch(num, "(BODY.PEEK[])")
                if text in parts[0][1]:
                    found.append(parts[0][1])
            return found
        finally:
            c.logout()

    def notices_counted(self, kind, result):
        """mailgrid_identity_notices_total{kind,result} summed over every daemon's /metrics."""
        total = 0.0
        for url in self.cluster["metrics"]:
            text = urllib.request.urlopen(url, timeout=30).read().decode()
            for labels, value in re.findall(r'^mailgrid_identity_notices_total\{([^}]*)\} (\S+)$', text, re.M):
                got = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                if got.get("kind") == kind and got.get("result") == result:
                    total += float(value)
        return total

    def newest_mail(self, address, password, subject):
        """The newest message in address's INBOX whose subject contains subject (bytes), or None."""
        found = self.mails_with(address, password, subject)
        return found[-1] if found else None

    def reset_with_answers(self, address, answers, code, new_password):
        """mailctl auth reset-password complete with security answers and a
        recovery code (no reset token): (exit code, the refusal's stderr)."""
        r = self.ctl.run("auth", "reset-password", "complete", address, "--answers", "|".join(answers),
                         "--recovery-code", code, "--new-password", new_password, check=False)
        return r.returncode, r.stderr.strip()

    def until_throttled(self, address, answers, code):
        """Wrong tries one after another until the throttle answers: the
        refusals before it, and the throttled answer."""
        refusals = []
        while len(refusals) < 9:  # the 10th failure would lock the address for 15 minutes
            rc, err = self.reset_with_answers(address, answers, code, "Never-" + uuid.uuid4().hex[:12])
            self.assertNotEqual(rc, 0, "a wrong answer must not reset the password")
            if "RESOURCE_EXHAUSTED" in err:
                return refusals, err
            refusals.append(err)
        self.fail("9 wrong answers in a row for %s and no throttling: %s" % (address, refusals))

    def test_forgot_password_with_security_questions_and_a_recovery_code(self):
        dave = "dave@" + DOMAIN
        old_password = self.ctl.create_user(dave, "Dave")
        session = self.ctl.run("auth", "login", dave, "--password", old_password)["session"]
        token = session["access_token"]
        questions = ["Name of your first school?", "City where your parents met?"]
        answers = ["Hillside Primary", "Port  Talbot"]
        set_args = ("recovery", "questions", "set", "--questions", "|".join(questions),
                    "--answers", "|".join(answers), "--password", old_password)

        # Off by default: a user may not set questions, and a reset asks none.
        off = self.ctl.run(*set_args, token=token, check=False)
        self.assertNotEqual(off.returncode, 0)
        self.assertIn("FAILED_PRECONDITION", off.stderr)
        self.ctl.run("auth", "policy", "set", "--security-questions", "true", token=self.admin_token)

        # TOTP gives dave his recovery codes; then he sets his questions.
        begin = self.ctl.run("auth", "2fa", "enable", "--password", old_password, token=token)
        codes = self.ctl.run("auth", "2fa", "enable", "--enrolment", begin["enrolment_id"], "--code",
                             mgtest.totp(begin["secret_base32"]), token=token)["recovery_codes"]
        self.assertEqual(len(codes), 10)
        self.ctl.run(*set_args, token=token)
        self.assertEqual(self.ctl.run("recovery", "questions", "show", token=token).get("questions"), questions)
        asked = self.ctl.run("recovery", "requirements", dave)
        self.assertEqual(asked.get("security_questions"), questions)
        self.assertTrue(asked.get("second_factor_required"))

        # Wrong answers, a wrong recovery code and an unknown address are
        # refused alike, and wrong tries are throttled alike.
        nobody = "nobody-%s@%s" % (uuid.uuid4().hex[:6], DOMAIN)
        wrong = ["Hillside Secondary", "Port Talbot"]
        dave_refusals, dave_throttled = self.until_throttled(dave, wrong, codes[0])
        nobody_refusals, nobody_throttled = self.until_throttled(nobody, answers, codes[0])
        print("\nsecurity answers: dave throttled after %d wrong tries, an unknown address after %d"
              % (len(dave_refusals), len(nobody_refusals)))
        self.assertGreaterEqual(len(dave_refusals), 3, "the first three failures are not delayed")
        self.assertGreaterEqual(len(nobody_refusals), 3)
        self.assertIn("UNAUTHENTICATED", dave_refusals[0])
        self.assertEqual(set(dave_refusals), {nobody_refusals[0]},
                         "wrong answers must look exactly like an unknown address")
        mask = lambda text: re.sub(r"\d+", "<N>", text)  # noqa: E731 (the retry time differs)
        self.assertEqual(mask(dave_throttled), mask(nobody_throttled),
                         "a throttled user must look exactly like a throttled unknown address")
        # Once the delay has passed: a wrong recovery code with the right
        # answers is refused like the wrong answers were.
        def settled(attempt):
            rc, err = attempt()
            return None if "RESOURCE_EXHAUSTED" in err else (rc, err)
        rc, err = mgtest.eventually(lambda: settled(lambda: self.reset_with_answers(
            dave, answers, "aaaaa-bbbbb", "Never-" + uuid.uuid4().hex[:12])), "the throttle's delay to pass")
        self.assertNotEqual(rc, 0, "a wrong recovery code must not reset the password")
        self.assertEqual(err, nobody_refusals[0], "a wrong recovery code must look like wrong answers")

        # The right answers (case and spacing do not matter) and an unused code.
        new_password = "Reset-" + uuid.uuid4().hex[:12]
        spoken = [a.upper().replace("  ", " ") for a in answers]
        rc, err = mgtest.eventually(lambda: settled(lambda: self.reset_with_answers(
            dave, spoken, codes[1], new_password)), "the throttle's delay to pass")
        self.assertEqual(rc, 0, "answers + recovery code reset the password: %s" % err)

        # Every old session ended: its refresh token and its access token are refused.
        self.assertNotEqual(self.ctl.run("auth", "refresh", session["refresh_token"], check=False).returncode, 0,
                            "the reset ends every earlier session")
        self.assertNotEqual(self.ctl.run("auth", "sessions", token=token, check=False).returncode, 0,
                            "identityd refuses the ended session's access token")
        # The used code is refused the second time, like any wrong factor.
        rc, err = mgtest.eventually(lambda: settled(lambda: self.reset_with_answers(
            dave, answers, codes[1], "Again-" + uuid.uuid4().hex[:12])), "an unthrottled answer")
        self.assertNotEqual(rc, 0, "a recovery code works once")
        self.assertEqual(err, nobody_refusals[0])
        # The old password is refused; the new one (with another unused code) signs in.
        old = self.ctl.run("auth", "login", dave, "--password", old_password, "--recovery-code", codes[2],
                           check=False)
        self.assertNotEqual(old.returncode, 0, "the old password must no longer sign in")
        fresh = self.ctl.run("auth", "login", dave, "--password", new_password, "--recovery-code", codes[3])
        self.assertEqual(fresh["session"]["address"], dave)
        events = self.ctl.run("auth", "events", "--user", fresh["session"]["user_id"], "--kind", "password_reset",
                              token=self.admin_token)
        methods = [e.get("method") for e in events.get("events", []) if e.get("outcome") == "AUTH_OUTCOME_SUCCESS"]
        self.assertIn("questions", methods, "the reset is logged as one by security questions: %s" % events)

    def test_qr_ticket_signs_in_a_second_client(self):
        subject = "qr %s" % uuid.uuid4().hex[:8]
        self.deliver(subject)
        phone = self.ctl.run("auth", "login", self.bob, "--password", self.bob_password)["session"]["access_token"]
        ticket = self.ctl.run("auth", "qr", "create", "--png", os.path.join(self.data, "ticket.png"))
        with open(os.path.join(self.data, "ticket.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", "the ticket is a PNG QR code")
        pending = self.ctl.run("auth", "qr", "redeem", ticket["ticket_id"], "--secret", ticket["redeem_secret"],
                               "--poll")
        self.assertEqual(pending["state"], "QR_TICKET_STATE_PENDING")
        self.ctl.run("auth", "qr", "approve", ticket["ticket_id"], token=phone)
        got = self.ctl.run("auth", "qr", "redeem", ticket["ticket_id"], "--secret", ticket["redeem_secret"])
        self.assertEqual(got["state"], "QR_TICKET_STATE_APPROVED")
        desktop = got["result"]["session"]["access_token"]
        c = self.imap_with_token("OAUTHBEARER", desktop)
        try:
            self.assertTrue(mgtest.eventually(lambda: self.inbox_has(c, subject), "the message in bob's INBOX"))
        finally:
            c.logout()
        again = self.ctl.run("auth", "qr", "redeem", ticket["ticket_id"], "--secret", ticket["redeem_secret"])
        self.assertEqual(again["state"], "QR_TICKET_STATE_REDEEMED")
        self.assertNotIn("result", again, "a redeemed ticket hands out no second session")


if __name__ == "__main__":
    unittest.main()
