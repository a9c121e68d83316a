"""A company from nothing, and an employee's first day (issue 12, stories 1-2).

Against `tools/mailgrid up --replicas 3` whose tenantd asks a real dnsmasq
(the test's own, on a free loopback port) for the tenant's DNS records:

1. A platform operator publishes a plan; Acme registers, uploads its business
   licence and tax registration (PDFs), a reviewer approves it, it picks the
   plan and adds acme.test. Its first DNS check fails (nothing published);
   after the test publishes exactly the records tenantd generated, the check
   says VERIFIED. The admin builds departments three levels deep, imports 50
   employees from CSV, creates a group with a group alias whose members are a
   whole department subtree, and a shared mailbox with two seats.
2. A message from outside (smtplib on port 25) to the group alias reaches
   every member of the department subtree exactly once.
3. An employee's first day: the initial password works only to change it
   (IMAP LOGIN with it is refused); after the change IMAP works and the
   welcome mail tenantd sent at the import is in the Inbox; TOTP is
   enrolled with a code the test computes (RFC 6238); from then on a
   password alone does not sign in; an app password made with a TOTP-signed
   session works for IMAP and for submission (smtplib, STARTTLS + AUTH).

Everything is real: Redis, three replicas each of tenantd, identityd and
mailstored, relayd, accessd, dnsmasq, and mailctl as the admin's tool.
"""
import csv
import email
import imaplib
import io
import os
import shutil
import smtplib
import sys
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dnsmasq  # noqa: E402
import mgctl  # noqa: E402
import mgtest  # noqa: E402

DOMAIN = "acme.test"
# The launcher's cluster host name: MX and CNAME targets point at it.
CLUSTER_HOST = "demo.mailgrid.test"
DEPARTMENTS = ["Sales/East/Shanghai", "Sales/East/Hangzhou", "Sales/West", "Engineering/Platform/Storage"]
EMPLOYEES = 50


class CompanyFromNothingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not dnsmasq.available():
            raise AssertionError("dnsmasq is required (Debian package dnsmasq, in tools/packages.txt)")
        cls.dns_dir = mgtest.temp_dir("mailgrid-e2e-dns")
        cls.dns = dnsmasq.Dnsmasq(cls.dns_dir, [DOMAIN], hosts={CLUSTER_HOST: "127.0.0.1"})
        cls.mg = None
        try:
            cls.dns.start()
            cls.mg = mgtest.LocalCluster("mailgrid-e2e-company", "--replicas",
                                         os.environ.get("MAILGRID_E2E_REPLICAS", "3"),
                                         env={"MAILGRID_DNS_RESOLVER": cls.dns.address})
            cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
            cls.mailctl = mgctl.Mailctl(cls.data)
            cls.passwords = {}  # address -> current password, after first_login
            cls.onboard()
        except BaseException:
            cls.tearDownClass()  # unittest does not call it when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.mg is not None:
            cls.mg.stop()
        cls.dns.stop()
        shutil.rmtree(cls.dns_dir, ignore_errors=True)

    # ---- story 1: onboarding ---------------------------------------------------

    @classmethod
    def onboard(cls):
        onboarding = cls.mailctl.register(
            "Acme Trading Co", DOMAIN, documents=("business-licence", "tax-registration"),
            plan_args=("--mailboxes", "200", "--domains", "3", "--seats", "10", "--features", "shared_mailboxes"))
        cls.tenant_id = cls.mailctl.tenant_id
        cls.before_publishing = cls.ctl("domain", "check", DOMAIN, token=onboarding)
        cls.records = cls.ctl("domain", "records", DOMAIN, token=onboarding)["records"]
        cls.dns.start(dnsmasq.records_to_args(cls.records))
        cls.after_publishing = mgtest.eventually(
            lambda: cls.verified(cls.ctl("domain", "check", DOMAIN, token=onboarding)), "acme.test VERIFIED")

    @classmethod
    def ctl(cls, *args, **kw):
        return cls.mailctl.run(*args, **kw)

    @classmethod
    def admin(cls, *args, **kw):
        return cls.mailctl.admin(*args, **kw)

    @staticmethod
    def verified(check):
        return check if check.get("domain", {}).get("state") == "DOMAIN_STATE_VERIFIED" else None

    def test_1_domain_verified_only_after_records_are_published(self):
        self.assertNotEqual(self.before_publishing["domain"]["state"], "DOMAIN_STATE_VERIFIED")
        missing = [r for r in self.before_publishing["records"] if r["check"]["status"] != "RECORD_CHECK_STATUS_OK"]
        self.assertTrue(missing, "nothing is published yet, so some record must be missing")
        purposes = {r["purpose"] for r in self.records}
        for p in ("MX", "SPF", "DKIM", "DMARC", "VERIFICATION", "CNAME_AUTOCONFIG"):
            self.assertIn("DNS_RECORD_PURPOSE_" + p, purposes)
        for r in self.after_publishing["records"]:
            self.assertEqual(r["check"]["status"], "RECORD_CHECK_STATUS_OK", r)

    def test_2_departments_import_group_and_shared_mailbox(self):
        for path in DEPARTMENTS:
            parent = ""
            for part in path.split("/"):
                here = part if not parent else parent + "/" + part
                if self.admin("dept", "show", here, check=False).returncode != 0:
                    args = ["dept", "create", part] + (["--parent", parent] if parent else [])
                    self.admin(*args)
                parent = here
        shanghai = self.admin("dept", "show", "Sales/East/Shanghai")
        self.assertEqual(shanghai["depth"], 2)

        rows = io.StringIO()
        w = csv.writer(rows)
        w.writerow(["address", "name", "department", "phone"])
        for i in range(EMPLOYEES):
            dept = DEPARTMENTS[i % len(DEPARTMENTS)]
            w.writerow(["emp%02d@%s" % (i, DOMAIN), "Employee %02d" % i, dept, "+86138%08d" % i])
        path = os.path.join(self.data, "employees.csv")
        with open(path, "w") as f:
            f.write(rows.getvalue())
        result = self.admin("user", "import", path)
        created = result.get("created", [])
        self.assertEqual(len(created), EMPLOYEES, result)
        for c in created:  # generated initial passwords handed to the admin
            self.assertTrue(c.get("initial_password"), c)
        type(self).initial = {c["user"]["address"]: c["initial_password"] for c in created}

        listed = self.admin("user", "list", lines=True)
        self.assertEqual(len([u for u in listed if u["address"].startswith("emp")]), EMPLOYEES)
        sales = self.admin("dept", "members", "Sales", "--recursive", lines=True)
        sales_addresses = {u["address"] for u in sales}
        expected = {"emp%02d@%s" % (i, DOMAIN) for i in range(EMPLOYEES) if DEPARTMENTS[i % 4].startswith("Sales")}
        self.assertEqual(sales_addresses, expected)

        self.admin("group", "create", "sales@" + DOMAIN, "--name", "Sales", "--policy", "anyone", "dept:Sales")
        self.admin("group", "address", "sales@" + DOMAIN, "sales-team@" + DOMAIN)
        resolved = self.admin("resolve", "sales-team@" + DOMAIN)
        self.assertEqual({m["address"] for m in resolved["recipients"]}, expected)

        self.admin("shared", "create", "support@" + DOMAIN, "--name", "Support")
        self.admin("shared", "assign", "support@" + DOMAIN, "emp00@" + DOMAIN)
        self.admin("shared", "assign", "support@" + DOMAIN, "emp01@" + DOMAIN, "--send-as")
        seats = self.admin("shared", "seats", "support@" + DOMAIN, lines=True)
        self.assertEqual(len(seats), 2, seats)
        type(self).sales = expected

    # ---- story 2: mail to the group alias ------------------------------------

    def inbox_count(self, address, subject):
        """Messages with this subject in the user's INBOX, read over IMAP."""
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        try:
            c.starttls(ssl_context=self.tls)
            c.login(address, self.passwords[address])
            c.select("INBOX", readonly=True)
            typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
            self.assertEqual(typ, "OK")
            return len(data[0].split())
        finally:
            c.logout()

    def first_login(self, address):
        """The employee's forced first password change (mailctl auth login), once."""
        if address in self.passwords:
            return self.passwords[address]
        new = "New-%s-%s" % (address.split("@")[0], uuid.uuid4().hex[:10])
        self.ctl("auth", "login", address, "--password", self.initial[address], "--new-password", new)
        self.passwords[address] = new
        return new

    def test_3_group_alias_delivers_one_copy_to_each_member(self):
        self.assertTrue(getattr(self, "sales", None), "test_2 builds the directory")
        subject = "quarterly numbers %s" % uuid.uuid4().hex[:8]
        msg = email.message.EmailMessage()
        msg["From"] = "partner@example.org"
        msg["To"] = "sales-team@" + DOMAIN
        msg["Subject"] = subject
        msg["Message-ID"] = "<%s@example.org>" % uuid.uuid4()
        msg.set_content("Numbers attached in spirit.\n")
        with smtplib.SMTP(*mgtest.host_port(self.cluster["smtp"])) as s:
            s.ehlo("mx.example.org")
            self.assertEqual(s.send_message(msg), {})
        # Every member reads it over IMAP after the forced first change; the
        # group expands a whole department subtree, each member once.
        for address in sorted(self.sales)[:6]:
            self.first_login(address)
            self.assertEqual(mgtest.eventually(lambda: self.inbox_count(address, subject), address), 1, address)
        outsider = "emp03@" + DOMAIN  # Engineering: not in the group
        self.first_login(outsider)
        self.assertEqual(self.inbox_count(outsider, subject), 0)

    # ---- story 3: an employee's first day ------------------------------------

    def imap_login(self, address, password):
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        try:
            c.login(address, password)
            return c
        except imaplib.IMAP4.error:
            c.logout()
            return None

    def inbox_has(self, address, password, subject):
        c = self.imap_login(address, password)
        self.assertIsNotNone(c)
        try:
            typ, _ = c.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK")
            typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
            return typ == "OK" and bool(data[0].split())
        finally:
            c.logout()

    def test_4_first_day_password_change_totp_and_app_password(self):
        self.assertTrue(getattr(self, "initial", None), "test_2 imports the employees")
        address = "emp11@" + DOMAIN  # Engineering; no earlier test signed in as emp11
        self.assertIsNone(self.imap_login(address, self.initial[address]),
                          "the initial password must not open the mailbox before it is changed")
        password = self.first_login(address)
        c = self.imap_login(address, password)
        self.assertIsNotNone(c, "the changed password opens the mailbox")
        c.logout()
        # The welcome notice tenantd sent at the import (through relayd) waits in the Inbox.
        self.assertTrue(mgtest.eventually(lambda: self.inbox_has(address, password, "Welcome"),
                                          "the welcome mail in %s's Inbox" % address))

        session = self.ctl("auth", "login", address, "--password", password)
        token = session["session"]["access_token"]
        begin = self.ctl("auth", "2fa", "enable", "--password", password, token=token)
        secret = begin["secret_base32"]
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlparse(begin["otpauth_uri"]).query)["secret"][0],
                         secret, "the QR code's URI carries the same secret")
        enrolled_at = time.time()
        self.ctl("auth", "2fa", "enable", "--enrolment", begin["enrolment_id"], "--code", mgtest.totp(secret), token=token)

        self.assertIsNone(self.imap_login(address, password), "with TOTP on, a password alone must not sign in")
        refused = self.ctl("auth", "login", address, "--password", password, check=False)
        self.assertNotEqual(refused.returncode, 0)
        # A code is good once (replay refused): sign in with the next step's.
        time.sleep(max(0.0, 30 - (enrolled_at % 30)) + 1)
        session = self.ctl("auth", "login", address, "--password", password, "--totp", mgtest.totp(secret))
        app = self.ctl("auth", "app-password", "create", "laptop-mail", "--protocols", "imap,smtp",
                       token=session["session"]["access_token"])
        app_password = app["password"]

        c = self.imap_login(address, app_password)
        self.assertIsNotNone(c, "the app password opens IMAP")
        c.select("INBOX")
        c.logout()
        subject = "from my new laptop %s" % uuid.uuid4().hex[:8]
        colleague = "emp05@" + DOMAIN
        with smtplib.SMTP(*mgtest.host_port(self.cluster["submission"])) as s:
            s.starttls(context=self.tls)
            s.login(address, app_password)
            msg = email.message.EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = address, colleague, subject
            msg.set_content("Hello from a client configured with an app password.\n")
            self.assertEqual(s.send_message(msg), {})
        self.first_login(colleague)
        self.assertEqual(mgtest.eventually(lambda: self.inbox_count(colleague, subject), colleague), 1)


if __name__ == "__main__":
    unittest.main()
