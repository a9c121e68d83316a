#!/usr/bin/env python3
"""identityd end to end (issue 6): a real identityd (embedded single-replica
store), a real redis-server and a real tenantd, driven through mailctl.

Redis is reached over TLS (`--redis rediss://...`, issue 12): redis-server
listens with --tls-port only and requires a client certificate, so every
session, counter and ticket below goes through libs/redis's TLS client,
verified against a CA made here with openssl.

Users come from tenantd's directory (GetPrincipal). The test onboards a
tenant the way tools/mailgrid --demo does (register, licence, review, plan,
domain, operator override) and creates users with `mailctl user create`;
when this build's mailctl has no `user` command yet (the directory's CLI),
the test is skipped and says so.

Checks: first login forces a password change; TOTP enrolment with a code
computed here (Python hmac, RFC 6238); the same code is refused the second
time; a recovery code works once; a reset token works once; throttling
engages and releases; an OIDC ID token signed here by a throwaway RSA key,
served as JWKS by a tiny HTTP server, is accepted and one with a wrong aud,
expired or signed by another key is refused; QR ticket approve/redeem/replay.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402
from oidc_provider import JwksServer, RsaKey  # noqa: E402

DOMAIN = "identity.mailgrid.test"
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def totp(secret_b32, at=None, step_offset=0):
    """RFC 6238 (SHA-1, 6 digits, 30 s), independent of identityd's code."""
    pad = "=" * (-len(secret_b32) % 8)
    key = base64.b32decode(secret_b32 + pad)
    counter = int((time.time() if at is None else at) // 30) + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000
    return "%06d" % code


def wait_for_step_margin(seconds=10):
    """Returns once at least `seconds` remain in the current 30-s TOTP step.

    A code made now for the step before is accepted only while the server
    is still in this step (its window is one step either side): computed
    in the last moments of a step, it was two steps old by the time
    mailctl's call reached identityd (a CI failure, stop 28).
    """
    left = 30 - time.time() % 30
    if left < seconds:
        time.sleep(left + 0.1)


class Proc:
    def __init__(self, name, cmd, env=None, log_dir=None):
        self.log = open(os.path.join(log_dir, name + ".log"), "wb")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


class IdentityIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for b in ("identityd", "tenantd", "mailctl"):
            if not os.path.exists(mgtest.binary(b)):
                raise unittest.SkipTest("%s is not built" % b)
        help_text = subprocess.run([mgtest.binary("mailctl"), "help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True).stdout
        if "\n  user" not in help_text and "mailctl user" not in help_text:
            raise unittest.SkipTest("this mailctl has no `user` command yet (directory CLI): "
                                    "cannot create users in tenantd")
        cls.dir = mgtest.temp_dir("identity-it-")
        cls.procs = []
        try:
            cls.start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        d = cls.dir
        cls.key = os.path.join(d, "signing.pem")
        cls.pub = os.path.join(d, "signing.pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", cls.key], check=True)
        subprocess.run(["openssl", "pkey", "-in", cls.key, "-pubout", "-out", cls.pub], check=True)
        redis_port = mgtest.free_port()
        pki = cls.make_pki(d)
        cls.procs.append(Proc("redis", [
            "redis-server", "--port", "0", "--tls-port", str(redis_port), "--bind", "127.0.0.1",
            "--tls-cert-file", pki["server.pem"], "--tls-key-file", pki["server.key"],
            "--tls-ca-cert-file", pki["ca.pem"], "--tls-auth-clients", "yes",
            "--save", "", "--appendonly", "no", "--dir", d], log_dir=d))
        cls.tenantd = "127.0.0.1:%d" % mgtest.free_port()
        cls.identityd = "127.0.0.1:%d" % mgtest.free_port()
        cls.hooks = os.path.join(d, "hooks")
        os.makedirs(cls.hooks)
        env = dict(os.environ, MAILGRID_TOKEN_SIGNING_KEY=cls.key, MAILGRID_TOKEN_PUBLIC_KEY=cls.pub,
                   MAILGRID_REDIS="rediss://127.0.0.1:%d" % redis_port, MAILGRID_TENANTD=cls.tenantd,
                   MAILGRID_IDENTITYD=cls.identityd, MAILGRID_DKIM_MASTER_KEY=os.urandom(32).hex())
        cls.procs.append(Proc("tenantd", [mgtest.binary("tenantd"), "--listen=" + cls.tenantd,
                                          "--metrics-listen=127.0.0.1:0", "--data-dir=" + os.path.join(d, "t"),
                                          "--store=local"], env=env, log_dir=d))
        cls.procs.append(Proc("identityd", [
            mgtest.binary("identityd"), "--listen=" + cls.identityd, "--metrics-listen=127.0.0.1:0",
            "--data-dir=" + os.path.join(d, "i"), "--test-hook-dir=" + cls.hooks,
            "--redis-tls-ca=" + pki["ca.pem"], "--redis-tls-cert=" + pki["client.pem"],
            "--redis-tls-key=" + pki["client.key"],
            # Small numbers so throttling engages and releases within the test.
            "--throttle-delay-after=100", "--throttle-lock-after=4", "--throttle-lock-for=3s",
        ], env=env, log_dir=d))
        for addr in (cls.tenantd, cls.identityd):
            mgtest.eventually(lambda a=addr: mgtest.grpc_health(a) == "SERVING", "%s SERVING" % addr)
        cls.onboard()

    @staticmethod
    def make_pki(d):
        """A CA, Redis's certificate (IP 127.0.0.1) and identityd's client
        certificate, P-256, valid two days."""
        def run(*args):
            subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run("req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=identity-it-redis-ca")
        for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                          ("client", "extendedKeyUsage=clientAuth")):
            with open(os.path.join(d, name + ".ext"), "w") as f:
                f.write(ext + "\n")
            run("req", *new_key, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
            run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", name + ".pem", "-extfile", name + ".ext")
        return {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                                "client.key")}

    @classmethod
    def tearDownClass(cls):
        for p in reversed(getattr(cls, "procs", [])):
            p.stop()
        if getattr(cls, "dir", None) and not os.environ.get("KEEP_TEST_DIR"):
            shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- helpers ---------------------------------------------------------

    @classmethod
    def ctl(cls, *args, token=None, role=None, tenant=None, subject=None, ok=True, raw=False):
        cmd = [mgtest.binary("mailctl"), "--json"] + list(args) + ["--tenantd", cls.tenantd,
                                                                   "--identityd", cls.identityd]
        if role:
            cmd += ["--token-key", cls.key, "--role", role]
            if tenant:
                cmd += ["--token-tenant", tenant]
            if subject:
                cmd += ["--subject", subject]
        if token:
            cmd += ["--token", token]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if ok and r.returncode != 0:
            raise AssertionError("mailctl %s failed: %s %s" % (" ".join(args), r.stderr, r.stdout))
        if not ok:
            if r.returncode == 0:
                raise AssertionError("mailctl %s should have failed: %s" % (" ".join(args), r.stdout))
            return r.stderr.strip()
        if raw:
            return r.stdout
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        return json.loads(lines[-1]) if lines else {}

    @classmethod
    def onboard(cls):
        cls.ctl("plan", "create", "--name", "Sso", "--mailboxes", "100", "--domains", "5", "--features", "sso",
                role="platform_operator")
        reg = cls.ctl("tenant", "register", "--name", "Identity Test Co", "--street", "1 Test Street",
                      "--city", "Beijing", "--country", "cn", "--contact-name", "Admin", "--phone",
                      "+8613800138000", "--email", "admin@" + DOMAIN)
        cls.tenant, onboarding = reg["tenant"]["tenant_id"], reg["onboarding_token"]
        pdf = os.path.join(cls.dir, "licence.pdf")
        with open(pdf, "wb") as f:
            f.write(PDF)
        cls.ctl("tenant", "upload-doc", pdf, "--kind", "business-licence", token=onboarding)
        cls.ctl("tenant", "approve", cls.tenant, "--reason", "test", role="platform_reviewer")
        cls.ctl("plan", "set", "Sso", token=onboarding)
        cls.ctl("domain", "add", DOMAIN, token=onboarding)
        cls.ctl("domain", "verify-override", DOMAIN, "--reason", "test", role="platform_operator")
        cls.onboarding = onboarding
        cls.users = {}
        for name, extra in (("admin", ["--user-role", "tenant_admin"]), ("ann", []), ("bob", []), ("cat", [])):
            created = cls.ctl("user", "create", "%s@%s" % (name, DOMAIN), "--name", name.title(),
                              "--password", "Initial-%s-Secret-1" % name, *extra, token=onboarding)
            user = created.get("user", created)
            cls.users[name] = user["user_id"]

    def login(self, name, password, *extra, ok=True):
        return self.ctl("auth", "login", "%s@%s" % (name, DOMAIN), "--password", password, *extra, ok=ok)

    def first_login(self, name, new_password):
        line = self.login(name, "Initial-%s-Secret-1" % name, ok=False)
        self.assertIn("must be changed", line)
        return self.login(name, "Initial-%s-Secret-1" % name, "--new-password", new_password)["session"]

    # ---- tests -----------------------------------------------------------

    def test_1_first_login_forces_password_change(self):
        line = self.login("bob", "Initial-bob-Secret-1", "--new-password", "password1234", ok=False)
        self.assertIn("too common", line)
        session = self.first_login("bob", "bob-brand-new-Secret-9")
        self.assertEqual(session["address"], "bob@" + DOMAIN)
        self.assertEqual(session["scope"], "TOKEN_SCOPE_FULL")
        self.assertIn("access_token", session)
        self.login("bob", "Initial-bob-Secret-1", ok=False)
        again = self.login("bob", "bob-brand-new-Secret-9")
        self.assertIn("session", again)
        unknown = self.login("nobody", "bob-brand-new-Secret-9", ok=False)
        wrong = self.login("bob", "not-the-password-123", ok=False)
        self.assertEqual(unknown, wrong)  # uniform failure

    def test_2_totp_replay_and_recovery_code(self):
        session = self.first_login("ann", "ann-brand-new-Secret-9")
        token = session["access_token"]
        begun = self.ctl("auth", "2fa", "enable", "--password", "ann-brand-new-Secret-9",
                         "--qr-png", os.path.join(self.dir, "qr.png"), token=token)
        with open(os.path.join(self.dir, "qr.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertTrue(begun["otpauth_uri"].startswith("otpauth://totp/"))
        secret = begun["secret_base32"]
        wait_for_step_margin()
        confirmed = self.ctl("auth", "2fa", "enable", "--enrolment", begun["enrolment_id"],
                             "--code", totp(secret, step_offset=-1), token=token)
        codes = confirmed["recovery_codes"]
        self.assertEqual(len(codes), 10)
        # The password alone now yields a challenge.
        line = self.login("ann", "ann-brand-new-Secret-9", ok=False)
        self.assertIn("second factor", line)
        code = totp(secret)
        self.assertIn("session", self.login("ann", "ann-brand-new-Secret-9", "--totp", code))
        line = self.login("ann", "ann-brand-new-Secret-9", "--totp", code, ok=False)  # replay
        self.assertIn("UNAUTHENTICATED", line)
        self.assertIn("session", self.login("ann", "ann-brand-new-Secret-9", "--recovery-code", codes[0]))
        self.login("ann", "ann-brand-new-Secret-9", "--recovery-code", codes[0], ok=False)
        events = self.ctl("auth", "events", "--user", self.users["ann"], "--kind", "totp_replay",
                          role="tenant_admin,user", tenant=self.tenant, subject=self.users["admin"])
        self.assertGreaterEqual(len(events.get("events", [])), 1)

    def test_3_reset_token_single_use(self):
        self.first_login("cat", "cat-brand-new-Secret-9")
        self.ctl("auth", "reset-password", "request", "cat@" + DOMAIN, raw=True)
        token_file = os.path.join(self.hooks, "cat@%s.token" % DOMAIN)
        def read_token():
            if not os.path.exists(token_file):
                return None
            with open(token_file) as f:
                return f.read().strip()
        token = mgtest.eventually(read_token, "the reset token")
        self.ctl("auth", "reset-password", "complete", "cat@" + DOMAIN, "--reset-token", token,
                 "--new-password", "cat-after-reset-Secret-1", raw=True)
        line = self.ctl("auth", "reset-password", "complete", "cat@" + DOMAIN, "--reset-token", token,
                        "--new-password", "cat-after-reset-Secret-2", ok=False)
        self.assertIn("UNAUTHENTICATED", line)
        self.assertIn("session", self.login("cat", "cat-after-reset-Secret-1"))

    def test_4_throttling_engages_and_releases(self):
        for _ in range(4):
            self.login("admin", "wrong-password-xyz", ok=False)
        line = self.login("admin", "Initial-admin-Secret-1", ok=False)
        self.assertIn("RESOURCE_EXHAUSTED", line)
        locked = self.ctl("auth", "lockouts", role="tenant_admin,user", tenant=self.tenant,
                          subject=self.users["admin"])
        self.assertEqual([l["user_id"] for l in locked.get("lockouts", [])], [self.users["admin"]])
        # The right password goes through again once the lock runs out.
        mgtest.eventually(lambda: "RESOURCE_EXHAUSTED" not in self.login("admin", "Initial-admin-Secret-1", ok=False),
                          "the lock to run out")

    def test_5_oidc_id_tokens(self):
        idp = JwksServer()
        try:
            good, other = RsaKey("k1"), RsaKey("k1")
            idp.jwks = {"keys": [good.jwk()]}
            idp.basic = "Basic " + base64.b64encode(b"mailgrid-test:s3cret").decode()
            self.ctl("sso", "set", "--issuer", idp.issuer, "--client-id", "mailgrid-test", "--client-secret", "s3cret",
                     "--discovery-url", idp.issuer + "/.well-known/openid-configuration",
                     "--redirect-uri", "https://mail.example/sso", role="tenant_admin,user",
                     tenant=self.tenant, subject=self.users["admin"])

            def attempt(mutate, signer=good):
                begun = self.ctl("sso", "begin", "--address", "bob@" + DOMAIN)
                now = int(time.time())
                claims = {"iss": idp.issuer, "aud": "mailgrid-test", "sub": "idp-bob", "email": "bob@" + DOMAIN,
                          "nonce": begun["nonce"], "iat": now, "exp": now + 300}
                mutate(claims)
                return self.ctl("sso", "complete", "--state", begun["state"], "--id-token", signer.sign(claims))

            def keep(c):
                pass

            ok = attempt(keep)
            self.assertEqual(ok["session"]["address"], "bob@" + DOMAIN)
            # The authorization-code flow: identityd exchanges the code at the
            # provider's token endpoint (client_secret_basic) for the ID token.
            begun = self.ctl("sso", "begin", "--address", "bob@" + DOMAIN)
            self.assertTrue(begun["authorize_url"].startswith(idp.issuer + "/auth?"))
            now = int(time.time())
            idp.codes["code-1"] = good.sign({"iss": idp.issuer, "aud": "mailgrid-test", "sub": "idp-bob",
                                             "email": "bob@" + DOMAIN, "nonce": begun["nonce"], "iat": now,
                                             "exp": now + 300})
            by_code = self.ctl("sso", "complete", "--state", begun["state"], "--code", "code-1")
            self.assertEqual(by_code["session"]["address"], "bob@" + DOMAIN)
            begun = self.ctl("sso", "begin", "--address", "bob@" + DOMAIN)
            line = self.ctl("sso", "complete", "--state", begun["state"], "--code", "code-1", ok=False)  # used
            self.assertIn("UNAUTHENTICATED", line)
            for mutate, signer in ((lambda c: c.update(aud="someone-else"), good),
                                   (lambda c: c.update(exp=int(time.time()) - 3600), good),
                                   (keep, other)):
                begun = self.ctl("sso", "begin", "--address", "bob@" + DOMAIN)
                now = int(time.time())
                claims = {"iss": idp.issuer, "aud": "mailgrid-test", "sub": "idp-bob",
                          "email": "bob@" + DOMAIN, "nonce": begun["nonce"], "iat": now, "exp": now + 300}
                mutate(claims)
                line = self.ctl("sso", "complete", "--state", begun["state"], "--id-token", signer.sign(claims),
                                ok=False)
                self.assertIn("UNAUTHENTICATED", line)
        finally:
            idp.stop()
            self.ctl("sso", "delete", role="tenant_admin,user", tenant=self.tenant, subject=self.users["admin"],
                     raw=True)

    def test_6_qr_ticket(self):
        phone = self.login("bob", "bob-brand-new-Secret-9")["session"]["access_token"]
        ticket = self.ctl("auth", "qr", "create", "--png", os.path.join(self.dir, "ticket.png"))
        pending = self.ctl("auth", "qr", "redeem", ticket["ticket_id"], "--secret", ticket["redeem_secret"],
                           "--poll")
        self.assertEqual(pending["state"], "QR_TICKET_STATE_PENDING")
        self.ctl("auth", "qr", "approve", ticket["ticket_id"], token=phone, raw=True)
        got = self.ctl("auth", "qr", "redeem", ticket["ticket_id"], "--secret", ticket["redeem_secret"])
        self.assertEqual(got["state"], "QR_TICKET_STATE_APPROVED")
        self.assertEqual(got["result"]["session"]["address"], "bob@" + DOMAIN)
        again = self.ctl("auth", "qr", "redeem", ticket["ticket_id"], "--secret", ticket["redeem_secret"])
        self.assertEqual(again["state"], "QR_TICKET_STATE_REDEEMED")


if __name__ == "__main__":
    unittest.main()
