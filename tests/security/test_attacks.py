"""Attacks (issue 12): what an attacker on the network tries, refused.

Against `tools/mailgrid up --demo --replicas 3` (tenant A: the demo, alice
its admin, bob a user) plus a second tenant B onboarded here:

- open relay: the 16 address forms of nmap's smtp-open-relay script (written
  here from its list of tricks), unauthenticated on port 25: every RCPT is
  refused with 5xx, nothing is accepted;
- header injection through envelope fields: CR, LF or NUL inside EHLO,
  MAIL FROM, RCPT TO or AUTH is refused as a syntax error (500/501),
  changes nothing, and no injected header reaches a mailbox;
- SMTP smuggling: a second envelope hidden behind `\\n.\\n`, `\\n.\\r\\n`,
  `\\r.\\r\\n` never becomes a second message;
- STARTTLS command injection (SMTP, IMAP, POP3): a command pipelined after
  STARTTLS/STLS in the same packet is discarded, never answered inside TLS;
- 1,000 RCPTs to unknown users: each refused at RCPT (550 5.1.1, or 452
  once the per-transaction limit is reached), no message accepted;
- TOTP replay: a code that signed in once is refused when used again in its
  window (login and reauth), answered exactly like a wrong code, logged;
- password spray: one password against 57 addresses from 127.0.0.2 gets
  the same answer for real and unknown ones, then that client is refused
  even with a right password, while the real user gets in from 127.0.0.1;
- brute force: wrong passwords for bob get the same answer as an unknown
  user, the address is locked, and bob gets in again once the lock ends
  (the cluster runs with a 5 s lock so the test can wait for it);
- tenant isolation: A's admin asking tenantd about B's user, or for B's
  admin audit log, gets what a missing one gets (NOT_FOUND), and A's user
  cannot send as B's address;
- internal APIs without a token, with one signed by a key the cluster does
  not know, or with an expired one signed by the cluster's own key, are
  refused (UNAUTHENTICATED).
"""
import base64
import imaplib
import json
import os
import smtplib
import socket
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgctl  # noqa: E402
import mgtest  # noqa: E402

B_DOMAIN = "tenant-b.test"
LOCK_SECONDS = 600
SPRAY_ATTEMPTS = 55  # identityd locks a client IP at 50 failures (--throttle-ip-lock-after)
MAX_DELAY_SECONDS = 1


class AttackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-security", "--demo", "--replicas", "3",
                                     env={"MAILGRID_THROTTLE_LOCK_FOR": "%ds" % LOCK_SECONDS,
                                          "MAILGRID_THROTTLE_MAX_DELAY": "%ds" % MAX_DELAY_SECONDS})
        cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
        users = cls.mg.demo_users()
        cls.alice, cls.bob = users["alice"], users["bob"]
        cls.domain = cls.cluster["demo"]["domain"]
        try:
            cls.a = mgctl.Mailctl(cls.data)
            cls.a.tenant_id = cls.cluster["demo"]["tenant_id"]
            cls.b = mgctl.Mailctl(cls.data)
            cls.b.onboard_with_override("Tenant B", B_DOMAIN)
            cls.b_user = "carol@" + B_DOMAIN
            cls.b_password = cls.b.create_user(cls.b_user, "Carol of B", "--user-role", "tenant_admin")
        except BaseException:
            cls.mg.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.mg.stop()

    def smtp(self):
        s = smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"]), timeout=60)
        s.ehlo("attacker.example")
        return s

    def inbox_subjects(self, user, needle):
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        c.login(user["address"], user["password"])
        try:
            c.select("INBOX", readonly=True)
            typ, data = c.search(None, "SUBJECT", '"%s"' % needle)
            return len(data[0].split())
        finally:
            c.logout()

    # ---- open relay --------------------------------------------------------------

    def test_open_relay_forms_are_all_refused(self):
        ip, ours, ext = "[127.0.0.1]", self.domain, "relay-target.example"
        forms = [
            ("relaytest@" + ext, "relaytest@" + ext),
            ("", "relaytest@" + ext),
            ("spamtest@" + ours, "relaytest@" + ext),
            ("spamtest@" + ip, "relaytest@" + ext),
            ("", "relaytest%%%s@%s" % (ext, ip)),
            ("", "relaytest%%%s@%s" % (ext, ours)),
            ("", '"relaytest@%s"' % ext),
            ("", '"relaytest%%%s"' % ext),
            ("", "relaytest@%s@%s" % (ext, ip)),
            ("", '"relaytest@%s"@%s' % (ext, ip)),
            ("", "relaytest@%s@%s" % (ext, ours)),
            ("", "@%s:relaytest@%s" % (ip, ext)),
            ("", "@%s:relaytest@%s" % (ours, ext)),
            ("", "%s!relaytest" % ext),
            ("", "%s!relaytest@%s" % (ext, ip)),
            ("", "%s!relaytest@%s" % (ext, ours)),
        ]
        self.assertEqual(len(forms), 16)
        for sender, rcpt in forms:
            with self.smtp() as s:
                code, reply = s.mail("<%s>" % sender)
                self.assertEqual(code, 250, reply)
                code, reply = s.rcpt("<%s>" % rcpt)
                self.assertGreaterEqual(code, 500, "RCPT TO:<%s> from <%s> was not refused: %d %s"
                                        % (rcpt, sender, code, reply))
                code, _ = s.docmd("DATA")
                self.assertNotEqual(code, 354, "DATA accepted with no valid recipient")

    # ---- smuggling -------------------------------------------------------------------

    def test_smuggled_second_envelope_is_never_a_message(self):
        for ending in (b"\n.\n", b"\n.\r\n", b"\r.\r\n"):
            tag = uuid.uuid4().hex[:8]
            inner = (b"MAIL FROM:<smuggler@example.org>\r\nRCPT TO:<" + self.bob["address"].encode() +
                     b">\r\nDATA\r\nSubject: smuggled " + tag.encode() + b"\r\n\r\nsmuggled\r\n.\r\n")
            with self.smtp() as s:
                s.mail("<partner@example.org>")
                code, reply = s.rcpt("<%s>" % self.alice["address"])
                self.assertEqual(code, 250, reply)
                code, _ = s.docmd("DATA")
                self.assertEqual(code, 354)
                # `inner` ends with the real end of data (CRLF.CRLF).
                s.send(b"Subject: carrier " + tag.encode() + b"\r\n\r\nhello" + ending + inner)
                code, reply = s.getreply()
                # Either the whole thing is refused (bare CR/LF: 550 5.5.2)
                # or it is one message; never a second transaction.
                self.assertIn(code, (250, 550), reply)
            self.assertEqual(self.inbox_subjects(self.bob, "smuggled " + tag), 0,
                             "a smuggled message reached bob (ending %r)" % ending)

    # ---- header injection through envelope fields -------------------------------------

    def raw_smtp(self, listener):
        """A raw SMTP connection: smtplib refuses to send CR/LF inside a command."""
        s = socket.create_connection(mgtest.host_port(self.cluster[listener]), timeout=60)
        f = s.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline()
                if not line:
                    return None, b"".join(lines)
                lines.append(line)
                if line[3:4] != b"-":
                    return int(line[:3]), b"".join(lines)

        def cmd(line):
            s.sendall(line + b"\r\n")
            return reply()
        self.assertEqual(reply()[0], 220)
        return s, cmd, reply

    def test_header_injection_through_envelope_fields_is_refused(self):
        """CR, LF or NUL inside EHLO, MAIL FROM, RCPT TO or AUTH: a syntax
        refusal (501, or 500 5.5.2 "bare <CR>" as Postfix also answers),
        the command has no effect, and no header is ever injected."""
        tag = uuid.uuid4().hex[:8]
        injected = b"X-Injected-" + tag.encode() + b": yes"
        bob = self.bob["address"].encode()
        for bad in (b"\r", b"\n", b"\0"):
            s, cmd, reply = self.raw_smtp("smtp")

            def refused(line):
                """Every reply to `line` until a NOOP resynchronises: the
                first a syntax refusal, the rest (if the server cut the
                line at the bad byte) refusals too, never a success."""
                s.sendall(line + b"\r\nNOOP\r\n")
                codes = []
                while True:
                    code, text = reply()
                    self.assertIsNotNone(code, (bad, line, codes))
                    codes.append((code, text))
                    if code == 250 and len(codes) > 1:
                        break
                self.assertIn(codes[0][0], (500, 501), (bad, line, codes))
                self.assertTrue(all(c >= 500 for c, _ in codes[:-1]), (bad, line, codes))
            try:
                refused(b"EHLO mx.example.org" + bad + injected)
                self.assertEqual(cmd(b"EHLO mx.example.org")[0], 250)
                refused(b"MAIL FROM:<partner@example.org>" + bad + injected)
                code, text = cmd(b"RCPT TO:<" + bob + b">")
                self.assertEqual(code, 503, ("RCPT after a refused MAIL", bad, text))
                self.assertEqual(cmd(b"MAIL FROM:<partner@example.org>")[0], 250)
                refused(b"RCPT TO:<" + bob + b">" + bad + injected)
                refused(b"RCPT TO:<" + bob[:-1] + bad + bob[-1:] + b">")
                code, text = cmd(b"DATA")
                self.assertNotEqual(code, 354, ("DATA without a valid RCPT", bad, text))
                # A clean transaction on the same connection: the refused
                # lines left nothing behind.
                cmd(b"RSET")
                self.assertEqual(cmd(b"MAIL FROM:<partner@example.org>")[0], 250)
                self.assertEqual(cmd(b"RCPT TO:<" + bob + b">")[0], 250)
                self.assertEqual(cmd(b"DATA")[0], 354)
                # Distinct messages: relayd stores a repeated identical
                # delivery once (its delivery id dedupes SMTP retries).
                code, text = cmd(b"Subject: clean " + tag.encode() + b" " + repr(bad).encode() +
                                 b"\r\n\r\nclean\r\n.")
                self.assertEqual(code, 250, text)
            finally:
                s.close()

        # AUTH on submission, inside TLS.
        for bad in (b"\r", b"\n", b"\0"):
            raw = socket.create_connection(mgtest.host_port(self.cluster["submission"]), timeout=60)
            f = raw.makefile("rb")
            f.readline()
            raw.sendall(b"EHLO laptop.example\r\n")
            while f.readline()[3:4] == b"-":
                pass
            raw.sendall(b"STARTTLS\r\n")
            self.assertTrue(f.readline().startswith(b"220"))
            tls = self.tls.wrap_socket(raw, server_hostname="localhost")
            tf = tls.makefile("rb")
            try:
                tls.sendall(b"EHLO laptop.example\r\n")
                while tf.readline()[3:4] == b"-":
                    pass
                def replies_until_noop(line):
                    tls.sendall(line + b"\r\nNOOP\r\n")
                    got = []
                    while True:
                        reply = tf.readline()
                        self.assertTrue(reply, (bad, line, got))
                        got.append(reply)
                        if reply.startswith(b"250") and len(got) > 1:
                            return got[:-1]
                plain = base64.b64encode(b"\0" + bob + b"\0" + self.bob["password"].encode())
                got = replies_until_noop(b"AUTH PLAIN " + plain + bad + injected)
                self.assertIn(got[0][:3], (b"500", b"501"), (bad, got))
                self.assertTrue(all(r[:1] == b"5" for r in got), ("never 235", bad, got))
                # The SASL identity itself with CR/LF/NUL: refused too.
                plain = base64.b64encode(b"\0" + bob + bad + injected + b"\0" + self.bob["password"].encode())
                got = replies_until_noop(b"AUTH PLAIN " + plain)
                self.assertTrue(got and all(r[:1] == b"5" for r in got), ("never 235", bad, got))
                tls.sendall(b"MAIL FROM:<" + bob + b">\r\n")
                line = tf.readline()
                self.assertTrue(line.startswith(b"530"), ("MAIL without AUTH", bad, line))
            finally:
                tls.close()

        # Each clean message got its 250, so all three are committed.
        self.assertEqual(self.inbox_subjects(self.bob, "clean " + tag), 3)
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        c.login(self.bob["address"], self.bob["password"])
        try:
            c.select("INBOX", readonly=True)
            typ, data = c.search(None, "HEADER", "X-Injected-" + tag, '""')
            self.assertEqual(data[0].split(), [], "an injected header reached a stored message")
            typ, data = c.search(None, "TEXT", '"X-Injected-%s"' % tag)
            self.assertEqual(data[0].split(), [], "injected text reached a stored message")
        finally:
            c.logout()

    # ---- STARTTLS injection ------------------------------------------------------------

    def injected_reply_inside_tls(self, address, greeting_lines, starttls, injected, first_read=b""):
        """Sends STARTTLS and an injected command in one packet, completes
        TLS, and returns whatever arrives inside TLS unasked."""
        raw = socket.create_connection(mgtest.host_port(address), timeout=30)
        f = raw.makefile("rb")
        for _ in range(greeting_lines):
            f.readline()
        if first_read:
            raw.sendall(first_read)
            while True:  # EHLO's multi-line reply
                line = f.readline()
                if line[3:4] != b"-":
                    break
        raw.sendall(starttls + injected)
        ready = f.readline()
        self.assertTrue(ready, "no answer to STARTTLS")
        tls = self.tls.wrap_socket(raw, server_hostname="localhost")
        tls.settimeout(3)
        try:
            return tls.recv(4096)
        except (socket.timeout, TimeoutError):
            return b""
        finally:
            tls.close()

    def test_starttls_injection_is_discarded(self):
        got = self.injected_reply_inside_tls(self.cluster["smtp"], 1, b"STARTTLS\r\n", b"NOOP\r\n",
                                             first_read=b"EHLO attacker.example\r\n")
        self.assertEqual(got, b"", "SMTP answered a command injected before TLS: %r" % got)
        got = self.injected_reply_inside_tls(self.cluster["imap"], 1, b"a STARTTLS\r\n", b"b CAPABILITY\r\n")
        self.assertEqual(got, b"", "IMAP answered a command injected before TLS: %r" % got)
        got = self.injected_reply_inside_tls(self.cluster["pop3"], 1, b"STLS\r\n", b"CAPA\r\n")
        self.assertEqual(got, b"", "POP3 answered a command injected before TLS: %r" % got)

    # ---- directory harvesting ------------------------------------------------------------

    def test_a_thousand_unknown_recipients_are_refused_at_rcpt(self):
        """Each RCPT is refused; after too many errors the server hangs up
        (421, as Postfix's hard error limit does) and the harvester must
        reconnect. No recipient is ever accepted."""
        refused, hangups, accepted = 0, 0, 0
        i = 0
        while i < 1000:
            with self.smtp() as s:
                s.mail("<harvester@example.org>")
                while i < 1000:
                    code, reply = s.rcpt("<nobody%04d@%s>" % (i, self.domain))
                    if code == 421:
                        hangups += 1
                        break  # this RCPT was not looked at; retried on a new connection
                    i += 1
                    if code == 250:
                        accepted += 1
                    else:
                        self.assertIn(code, (550, 452), reply)
                        refused += 1
                else:
                    code, _ = s.docmd("DATA")
                    self.assertNotEqual(code, 354)
                try:
                    s.quit()
                except smtplib.SMTPServerDisconnected:
                    pass
        print("\n1,000 unknown recipients: %d refused at RCPT, %d connections ended by 421" % (refused, hangups))
        self.assertEqual((accepted, refused), (0, 1000))
        # Refused at RCPT means no bounce: nothing in relayd's queue (shared
        # by all replicas) goes to or comes from the harvester.
        queued = self.a.run("queue", "list", "--limit", "1000", role="platform_operator", lines=True)
        self.assertEqual([e for e in queued if "harvester@example.org" in json.dumps(e)], [],
                         "a bounce (or anything else) was queued for the harvester")

    # ---- TOTP replay ---------------------------------------------------------------------------

    def login_with_totp(self, address, password, code):
        """mailctl auth login (identityd's Login then CompleteSecondFactor):
        (access token or None, the refusal's stderr)."""
        r = self.a.run("auth", "login", address, "--password", password, "--totp", code, check=False)
        if r.returncode == 0:
            return json.loads(r.stdout.splitlines()[0])["session"]["access_token"], ""
        return None, r.stderr.strip()

    def test_a_totp_code_is_refused_when_replayed(self):
        """A TOTP code that signed in once is refused when replayed within its
        window (login and reauth), with exactly the answer a wrong code gets,
        and logged as TOTP_REPLAY; the next step's code still signs in."""
        address = "totp-%s@%s" % (uuid.uuid4().hex[:6], self.domain)
        password = self.a.create_user(address, "TOTP User")
        token = self.a.run("auth", "login", address, "--password", password)["session"]["access_token"]
        begin = self.a.run("auth", "2fa", "enable", "--password", password, token=token)
        secret = begin["secret_base32"]
        # Codes by absolute step: s-1 enrols, s signs in and is replayed, s+1
        # signs in last. Start early in a step so s-1 is still accepted (±1).
        if time.time() % 30 > 15:
            time.sleep(30 - time.time() % 30 + 0.5)
        s = int(time.time() // 30)
        code = {k: mgtest.totp(secret, at=(s + k) * 30) for k in (-1, 0, 1)}
        self.a.run("auth", "2fa", "enable", "--enrolment", begin["enrolment_id"], "--code", code[-1], token=token)
        wrong = next(c for c in ("%06d" % n for n in range(0, 1000000, 111111))
                     if c not in {mgtest.totp(secret, at=(s + k) * 30) for k in range(-3, 4)})

        session, _ = self.login_with_totp(address, password, code[0])
        self.assertIsNotNone(session, "a fresh code signs in")
        pause = MAX_DELAY_SECONDS + 0.2  # a throttled attempt would answer differently
        time.sleep(pause)
        replayed_session, replayed = self.login_with_totp(address, password, code[0])
        self.assertIsNone(replayed_session, "a replayed code must not sign in")
        time.sleep(pause)
        _, wrong_answer = self.login_with_totp(address, password, wrong)
        self.assertIn("UNAUTHENTICATED", replayed)
        self.assertEqual(replayed, wrong_answer, "a replayed code must look exactly like a wrong one")
        # The same code as a reauth (turning TOTP off) is refused too.
        off = self.a.run("auth", "2fa", "disable", "--totp", code[0], token=session, check=False)
        self.assertNotEqual(off.returncode, 0, "a replayed code must not authorise turning TOTP off")
        self.assertTrue(self.a.admin("auth", "status", self.user_id_of(address)).get("totp_enabled"),
                        "TOTP stays on after the refused reauth")
        events = self.a.admin("auth", "events", "--user", self.user_id_of(address), "--kind", "totp_replay")
        replays = [e for e in events.get("events", []) if e.get("outcome") == "AUTH_OUTCOME_FAILURE"]
        self.assertGreaterEqual(len(replays), 2, "each replay is logged (login and reauth): %s" % events)
        time.sleep(pause)
        later, answer = self.login_with_totp(address, password, code[1])
        self.assertIsNotNone(later, "the next step's code still signs in: %s" % answer)

    def user_id_of(self, address):
        return self.a.admin("user", "show", address)["user_id"]

    # ---- brute force -------------------------------------------------------------------------

    def imap_login_reply(self, address, password):
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        try:
            c.login(address, password)
            return "OK"
        except imaplib.IMAP4.error as e:
            return str(e)
        finally:
            try:
                c.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def lockout_of(self, address):
        """identityd's lockout entry for `address` (tenant admin's view), or None."""
        for entry in self.a.admin("auth", "lockouts", self.a.tenant_id).get("lockouts", []):
            if entry.get("address") == address:
                return entry
        return None

    def test_brute_force_is_throttled_and_reveals_nothing(self):
        unknown = self.imap_login_reply("nobody-here@" + self.domain, "guess-1")
        wrong = self.imap_login_reply(self.bob["address"], "guess-1")
        self.assertNotEqual(wrong, "OK")
        self.assertEqual(unknown, wrong, "unknown user and wrong password must look the same")
        # Guess, paced by the throttle's longest delay (a delayed attempt is
        # refused unchecked and does not count), until identityd locks bob.
        # The lock is long (LOCK_SECONDS) so that no amount of load lets it
        # run out before the right password is tried.
        for i in range(40):
            entry = self.lockout_of(self.bob["address"])
            if entry and entry.get("locked_until"):
                break
            self.imap_login_reply(self.bob["address"], "guess-%d" % i)
            time.sleep(MAX_DELAY_SECONDS + 0.2)
        else:
            self.fail("40 wrong guesses, paced, never locked bob")
        locked = self.imap_login_reply(self.bob["address"], self.bob["password"])
        self.assertNotEqual(locked, "OK", "a locked address refuses even the right password")
        # The tenant admin lifts the lock; bob gets in at once.
        self.a.admin("auth", "unlock", entry["user_id"])
        self.assertEqual(self.imap_login_reply(self.bob["address"], self.bob["password"]), "OK")
        self.assertIsNone(self.lockout_of(self.bob["address"]))

    def imap_login_reply_from(self, source_ip, address, password):
        """imap_login_reply, connecting from another loopback address."""
        class FromIMAP(imaplib.IMAP4):
            def _create_socket(self, timeout):
                return socket.create_connection((self.host, self.port), timeout, source_address=(source_ip, 0))
        c = FromIMAP(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        try:
            c.login(address, password)
            return "OK"
        except imaplib.IMAP4.error as e:
            return str(e)
        finally:
            try:
                c.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def test_password_spray_is_throttled_by_ip_and_reveals_nothing(self):
        """One common password tried against many addresses from one client
        (127.0.0.2): real and unknown addresses get the same answer; after
        identityd's per-IP limit (50 failures) that client is refused even
        with a right password, while the real user, from elsewhere, gets in
        and no account is locked."""
        sprayer, guess = "127.0.0.2", "Winter2026!"
        unknown = ["spray%02d-%s@%s" % (i, uuid.uuid4().hex[:4], self.domain) for i in range(SPRAY_ATTEMPTS)]
        real = [self.alice["address"], self.bob["address"]]
        replies = {a: self.imap_login_reply_from(sprayer, a, guess) for a in real + unknown[:3]}
        self.assertNotIn("OK", replies.values())
        self.assertEqual(len(set(replies.values())), 1, "real and unknown addresses must look the same: %s" % replies)
        # Control: below the limit the right password still works from there,
        # so the refusal below is the per-IP limit's doing.
        self.assertEqual(self.imap_login_reply_from(sprayer, self.bob["address"], self.bob["password"]), "OK")
        for a in unknown[3:]:
            self.assertNotEqual(self.imap_login_reply_from(sprayer, a, guess), "OK")
        self.assertNotEqual(self.imap_login_reply_from(sprayer, self.bob["address"], self.bob["password"]), "OK",
                            "after %d failures the spraying client is throttled, even with a right password"
                            % (len(real) + len(unknown)))
        self.assertEqual(self.imap_login_reply(self.bob["address"], self.bob["password"]), "OK",
                         "the real user, from another address, still gets in")
        self.assertIsNone(self.lockout_of(self.alice["address"]), "one guess per account locks no account")

    # ---- tenant isolation -------------------------------------------------------------------

    def test_tenant_a_cannot_see_tenant_b(self):
        missing = self.a.admin("user", "show", "nobody@" + B_DOMAIN, check=False)
        theirs = self.a.admin("user", "show", self.b_user, check=False)
        self.assertNotEqual(theirs.returncode, 0)
        self.assertIn("NOT_FOUND", theirs.stderr)
        self.assertEqual(missing.stderr.split(":")[1].strip(), theirs.stderr.split(":")[1].strip(),
                         "B's user must look exactly like a missing one to A's admin")
        audit = self.a.run("tenant", "events", self.b.tenant_id, role="tenant_admin", tenant=self.a.tenant_id,
                           check=False)
        self.assertNotEqual(audit.returncode, 0)
        self.assertIn("NOT_FOUND", audit.stderr + audit.stdout)
        # A's user cannot send as B's address.
        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"]), timeout=60) as s:
            s.starttls(context=self.tls)
            s.login(self.bob["address"], self.bob["password"])
            code, reply = s.mail("<%s>" % self.b_user)
            self.assertGreaterEqual(code, 500, reply)

    # ---- internal APIs ----------------------------------------------------------------------

    def test_internal_apis_refuse_missing_and_forged_tokens(self):
        no_token = subprocess.run([mgtest.binary("mailctl"), "--cluster=" + os.path.join(self.data, "cluster.json"),
                                   "resolve", self.alice["address"]],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={k: v for k, v in os.environ.items() if k != "MAILGRID_TOKEN_KEY"})
        self.assertNotEqual(no_token.returncode, 0)
        self.assertIn("UNAUTHENTICATED", no_token.stderr)
        forged_key = os.path.join(self.data, "forged.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", forged_key], check=True,
                       stdout=subprocess.DEVNULL)
        for args in (["resolve", self.alice["address"]], ["tenant", "list"]):
            r = subprocess.run([mgtest.binary("mailctl"), "--cluster=" + os.path.join(self.data, "cluster.json")]
                               + args + ["--token-key", forged_key, "--role", "platform_operator,service"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn("UNAUTHENTICATED", r.stderr, args)

    def test_internal_apis_refuse_expired_tokens(self):
        """A token signed with the cluster's real key but expired an hour ago
        is refused by every service asked; the same token minted with a
        future expiry is accepted (so the refusal is the expiry's doing)."""
        key = os.path.join(self.data, "secrets", "token.pem")
        cluster = "--cluster=" + os.path.join(self.data, "cluster.json")

        def mint(role, ttl):
            r = subprocess.run([mgtest.binary("mailctl"), "token", "mint", "--key", key,
                                "--role", role, "--ttl", ttl],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
            return r.stdout.strip()

        for args, role in ((["resolve", self.alice["address"]], "service"),
                           (["tenant", "list"], "platform_operator")):
            valid, expired = mint(role, "1h"), mint(role, "-1h")
            r = subprocess.run([mgtest.binary("mailctl"), cluster] + args + ["--token", valid],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(r.returncode, 0, "a valid token: %s %s" % (args, r.stderr))
            r = subprocess.run([mgtest.binary("mailctl"), cluster] + args + ["--token", expired],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn("UNAUTHENTICATED", r.stderr, args)


if __name__ == "__main__":
    unittest.main()
