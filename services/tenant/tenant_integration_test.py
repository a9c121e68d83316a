#!/usr/bin/env python3
"""tenantd onboarding, end to end through mailctl (issue 4).

Starts a real tenantd (LocalStore in a temp dir) and a real dnsmasq on a
free loopback port serving the test's records, then walks a company from
registration to a VERIFIED domain with `mailctl`, changes a DNS record and
waits for the background recheck to flag the drift. Bad input along the way
must be refused with the precise status, and leave nothing behind.

Replicated (3-replica) runs wait for libs/replica; see README.md.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import dnsmasq  # noqa: E402
import mgtest  # noqa: E402

DOMAIN = "example-corp.test"
CLUSTER_HOST = "mail.mailgrid.test"
MX_HOST = "mx1.mailgrid.test"

# A small but real PDF (one empty page) the test writes itself.
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def records_to_dnsmasq(records, mx_override=None):
    """tenantd's generated records as dnsmasq arguments (tests/lib/dnsmasq.py);
    `mx_override` points every MX elsewhere (a drifted record)."""
    if mx_override:
        records = [dict(r, value=mx_override) if r["type"] == "DNS_RECORD_TYPE_MX" else r
                   for r in records]
    return dnsmasq.records_to_args(records)


class TenantOnboardingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()  # not called by unittest when setUpClass fails
            raise

    @classmethod
    def start(cls):
        if not dnsmasq.available():
            raise unittest.SkipTest("dnsmasq is not installed (Debian package dnsmasq)")
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
        cls.dir = mgtest.temp_dir("tenantd-it-")
        cls.op_key = cls.keypair("operator")
        cls.pub = cls.op_key + ".pub"
        master = os.path.join(cls.dir, "dkim-master.key")
        with open(master, "w") as f:
            f.write(os.urandom(32).hex())
        # CNAME targets must be names dnsmasq knows.
        cls.dns = dnsmasq.Dnsmasq(cls.dir, zones=[DOMAIN], hosts={CLUSTER_HOST: "127.0.0.1"})
        cls.dns.start([])
        cls.port = mgtest.free_port()
        cls.addr = "127.0.0.1:%d" % cls.port
        log = open(os.path.join(cls.dir, "tenantd.log"), "ab")
        cls.tenantd = subprocess.Popen(
            [mgtest.binary("tenantd"), "--listen=" + cls.addr, "--metrics-listen=127.0.0.1:0",
             "--data-dir=" + os.path.join(cls.dir, "data"), "--store=local",
             "--token-public-key=" + cls.pub, "--dkim-master-key-file=" + master,
             "--mx-hosts=%s:10" % MX_HOST, "--cluster-hostname=" + CLUSTER_HOST,
             "--dns-resolver=127.0.0.1:%d" % cls.dns.port, "--domain-recheck-interval=1s",
             "--max-document-bytes=2097152"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()  # the child has its own descriptor
        mgtest.eventually(lambda: cls.tenantd.poll() is not None or mgtest.grpc_health(cls.addr) == "SERVING",
                          "tenantd to serve")
        if cls.tenantd.poll() is not None:
            raise AssertionError("tenantd exited:\n" + read(os.path.join(cls.dir, "tenantd.log")).decode())
        cls.operator = cls.mint("platform_operator")
        cls.reviewer = cls.mint("platform_reviewer")

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tenantd", None) is not None and cls.tenantd.poll() is None:
            cls.tenantd.send_signal(signal.SIGTERM)
            cls.tenantd.wait(timeout=60)
        if getattr(cls, "dns", None) is not None:
            cls.dns.stop()
        if getattr(cls, "dir", None) and not os.environ.get("MAILGRID_KEEP_TEST_DIRS"):
            shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def keypair(cls, name):
        key = os.path.join(cls.dir, name + ".pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", key + ".pub"], check=True)
        return key

    @classmethod
    def mint(cls, role, key=None):
        r = subprocess.run([mgtest.binary("mailctl"), "token", "mint", "--key", key or cls.op_key, "--role", role],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
        return r.stdout.strip()

    def mailctl(self, *args, token=None, ok=True):
        cmd = [mgtest.binary("mailctl"), "--json"] + list(args) + ["--tenantd", self.addr]
        if token:
            cmd += ["--token", token]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGRID_TOKEN")}
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if ok:
            self.assertEqual(r.returncode, 0, "mailctl %s failed: %s" % (" ".join(args), r.stderr))
            return json.loads(r.stdout) if r.stdout.strip() else {}
        self.assertNotEqual(r.returncode, 0, "mailctl %s should have failed: %s" % (" ".join(args), r.stdout))
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, "one clear line expected, got: %r" % r.stderr)
        return lines[0]

    def register(self, name, email, phone="+86 138 0013 8000", ok=True):
        return self.mailctl("tenant", "register", "--name", name, "--street", "1 Jianguo Road",
                            "--city", "Beijing", "--country", "cn", "--contact-name", "张伟",
                            "--phone", phone, "--email", email, ok=ok)

    def tenant_count(self):
        return len(self.mailctl("tenant", "list", "--state",
                                "pending_documents,under_review,active,rejected,suspended,deleted",
                                token=self.operator).get("tenants", []))

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_walk_from_registration_to_verified_domain_and_drift(self):
        plan = self.mailctl("plan", "create", "--name", "Business", "--mailboxes", "50", "--domains", "3",
                            "--storage-per-mailbox", "5GiB", "--features", "archive", token=self.operator)
        self.assertTrue(plan["plan_id"])

        # Register (no token needed). The Chinese name round-trips.
        before = self.tenant_count()
        reg = self.register("北京示例科技有限公司", "admin@" + DOMAIN)
        tenant = reg["tenant"]["tenant_id"]
        token = reg["onboarding_token"]
        self.assertTrue(token.startswith("mgot_"))
        shown = self.mailctl("tenant", "show", token=token)
        self.assertEqual(shown["company_name"], "北京示例科技有限公司")
        self.assertEqual(shown["contact"]["phone"], "+8613800138000")
        self.assertEqual(shown["state"], "TENANT_STATE_PENDING_DOCUMENTS")

        # Bad input: refused with the field named, nothing written.
        line = self.register("Other Corp", "x@other.test", phone="not a phone", ok=False)
        self.assertIn("INVALID_ARGUMENT: contact.phone", line)
        line = self.register("北京示例科技有限公司", "ADMIN@" + DOMAIN, phone="+86 139 0000 0000", ok=False)
        self.assertIn("ALREADY_EXISTS", line)
        self.assertEqual(self.tenant_count(), before + 1)

        # Approve with no documents: the precise state error.
        line = self.mailctl("tenant", "approve", tenant, token=self.reviewer, ok=False)
        self.assertIn("FAILED_PRECONDITION", line)
        self.assertIn("PENDING_DOCUMENTS", line)

        # Uploads checked by content and size; a refused upload stores nothing.
        line = self.mailctl("tenant", "upload-doc", self.write("licence.pdf.txt", b"just some text, no PDF"),
                            token=token, ok=False)
        self.assertIn("INVALID_ARGUMENT", line)
        self.assertIn("not a PDF, PNG or JPEG", line)
        big = self.write("big.pdf", b"%PDF-1.4\n" + b"x" * (3 << 20))
        line = self.mailctl("tenant", "upload-doc", big, token=token, ok=False)
        self.assertIn("INVALID_ARGUMENT", line)
        self.assertIn("exceeds the 2 MiB limit", line)
        self.assertEqual(self.mailctl("tenant", "docs", token=token).get("documents", []), [])
        self.assertEqual(self.mailctl("tenant", "show", token=token)["state"], "TENANT_STATE_PENDING_DOCUMENTS")

        # Callers without the role, and other tenants.
        other = self.register("Other Corp", "x@other.test")
        line = self.mailctl("tenant", "approve", tenant, token=token, ok=False)
        self.assertIn("PERMISSION_DENIED", line)
        line = self.mailctl("tenant", "show", tenant, token=other["onboarding_token"], ok=False)
        self.assertEqual(line, "mailctl tenant: NOT_FOUND: tenant %s not found" % tenant)
        line = self.mailctl("tenant", "show", tenant, ok=False)
        self.assertIn("UNAUTHENTICATED", line)
        stranger = self.mint("platform_operator", key=self.keypair("stranger"))
        line = self.mailctl("tenant", "list", token=stranger, ok=False)
        self.assertIn("UNAUTHENTICATED", line)

        # A real PDF: stored with its SHA-256, tenant goes UNDER_REVIEW.
        doc = self.mailctl("tenant", "upload-doc", self.write("营业执照.pdf", PDF), "--kind", "business-licence",
                           token=token)
        self.assertEqual(doc["sha256"], hashlib.sha256(PDF).hexdigest())
        self.assertEqual(doc["content_type"], "application/pdf")
        self.assertEqual(doc["filename"], "营业执照.pdf")
        self.assertEqual(self.mailctl("tenant", "show", token=token)["state"], "TENANT_STATE_UNDER_REVIEW")
        line = self.mailctl("tenant", "download-doc", doc["document_id"], os.path.join(self.dir, "t.pdf"),
                            token=token, ok=False)
        self.assertIn("PERMISSION_DENIED", line)
        out = os.path.join(self.dir, "reviewed.pdf")
        self.mailctl("tenant", "download-doc", doc["document_id"], out, token=self.reviewer)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), PDF)
        self.assertEqual(self.mailctl("tenant", "approve", tenant, "--reason", "licence checked",
                                      token=self.reviewer)["state"], "TENANT_STATE_ACTIVE")

        # Plan, then the domain.
        self.mailctl("plan", "set", "Business", token=token)
        line = self.mailctl("domain", "add", "not a domain", token=token, ok=False)
        self.assertIn("INVALID_ARGUMENT: name: not a domain name", line)
        added = self.mailctl("domain", "add", DOMAIN.upper(), token=token)
        self.assertEqual(added["name"], DOMAIN)
        self.assertEqual(added["state"], "DOMAIN_STATE_PENDING_VERIFICATION")
        line = self.mailctl("domain", "show", DOMAIN, token=other["onboarding_token"], ok=False)
        self.assertIn("NOT_FOUND: domain %s not found" % DOMAIN, line)

        records = self.mailctl("domain", "records", DOMAIN, token=token)["records"]
        purposes = sorted(r["purpose"] for r in records)
        for p in ["MX", "SPF", "DKIM", "DMARC", "VERIFICATION", "CNAME_MAIL", "CNAME_AUTOCONFIG",
                  "CNAME_AUTODISCOVER"]:
            self.assertIn("DNS_RECORD_PURPOSE_" + p, purposes)
        self.assertEqual(purposes.count("DNS_RECORD_PURPOSE_DKIM"), 2)

        # Nothing published yet: checked, all MISSING, still pending.
        checked = self.mailctl("domain", "check", DOMAIN, token=token)
        self.assertEqual(checked["domain"]["state"], "DOMAIN_STATE_PENDING_VERIFICATION")
        self.assertTrue(all(r["check"]["status"] == "RECORD_CHECK_STATUS_MISSING" for r in checked["records"]),
                        checked["records"])

        # Publish everything in the real DNS server: VERIFIED, every record OK.
        self.dns.start(records_to_dnsmasq(records))
        checked = self.mailctl("domain", "check", DOMAIN, token=token)
        self.assertEqual(checked["domain"]["state"], "DOMAIN_STATE_VERIFIED",
                         json.dumps(checked["records"], indent=1, ensure_ascii=False))
        self.assertEqual(checked["domain"]["verification_method"], "VERIFICATION_METHOD_DNS")
        bad = [(r["name"], r["type"], r["check"]) for r in checked["records"]
               if r["check"]["status"] != "RECORD_CHECK_STATUS_OK"]
        self.assertEqual(bad, [])

        # The MX moves elsewhere: the background recheck flags the drift.
        self.dns.start(records_to_dnsmasq(records, mx_override="mx.elsewhere.test"))
        drifted = mgtest.eventually(
            lambda: (lambda d: d if d.get("drift_detected_at") else None)(
                self.mailctl("domain", "show", DOMAIN, token=token)), "the recheck to flag drift")
        self.assertEqual(drifted["state"], "DOMAIN_STATE_VERIFIED")
        rec = self.mailctl("domain", "records", DOMAIN, token=token)["records"]
        mx = [r for r in rec if r["type"] == "DNS_RECORD_TYPE_MX"][0]
        self.assertEqual(mx["check"]["status"], "RECORD_CHECK_STATUS_WRONG")
        self.assertEqual(mx["check"]["found"], ["10 mx.elsewhere.test"])

        # Put it back: the drift clears.
        self.dns.start(records_to_dnsmasq(records))
        mgtest.eventually(lambda: not self.mailctl("domain", "show", DOMAIN, token=token).get("drift_detected_at"),
                          "the recheck to clear drift")

        # DKIM rotation through the real DNS: switch refused until published.
        rotated = self.mailctl("domain", "rotate-dkim", DOMAIN, "begin", token=token)
        fresh = [k for k in rotated["dkim_keys"] if k["state"] == "DKIM_KEY_STATE_PUBLISHED"]
        self.assertEqual(len(fresh), 2)
        line = self.mailctl("domain", "rotate-dkim", DOMAIN, "switch", token=token, ok=False)
        self.assertIn("FAILED_PRECONDITION", line)
        self.assertIn("not visible in DNS", line)
        records = self.mailctl("domain", "records", DOMAIN, token=token)["records"]
        self.dns.start(records_to_dnsmasq(records))
        switched = self.mailctl("domain", "rotate-dkim", DOMAIN, "switch", token=token)
        active = sorted(k["selector"] for k in switched["dkim_keys"] if k["state"] == "DKIM_KEY_STATE_ACTIVE")
        self.assertEqual(active, sorted(k["selector"] for k in fresh))
        self.mailctl("domain", "rotate-dkim", DOMAIN, "retire", token=token)

        # Every transition is recorded: who, when, why.
        events = self.mailctl("tenant", "events", tenant, token=self.operator)["events"]
        self.assertEqual([e["action"] for e in events],
                         ["registered", "document_uploaded", "approved", "plan_changed"])
        self.assertEqual(events[2]["reason"], "licence checked")
        self.assertIn("ROLE_PLATFORM_REVIEWER", events[2]["actor"].get("roles", []))

    def test_human_output(self):
        out = subprocess.run([mgtest.binary("mailctl"), "plan", "list", "--tenantd", self.addr,
                              "--token", self.operator], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith("PLAN\tNAME\t"), out.stdout)
        bad = subprocess.run([mgtest.binary("mailctl"), "tenant", "frobnicate", "--tenantd", self.addr],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertEqual(bad.stderr.strip(), 'mailctl tenant: unknown sub-command "frobnicate" (see mailctl help)')


class ReplicatedTenantdTest(unittest.TestCase):
    """Three tenantd replicas (--store=replicated): any replica serves the
    walk, and it survives the loss of one replica."""

    @classmethod
    def setUpClass(cls):
        cls.procs = {}
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()  # not called by unittest when setUpClass fails (or skips)
            raise

    @classmethod
    def start(cls):
        cls.dir = mgtest.temp_dir("tenantd-raft-")
        key = os.path.join(cls.dir, "op.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", key + ".pub"], check=True)
        cls.key = key
        master = os.path.join(cls.dir, "dkim-master.key")
        with open(master, "w") as f:
            f.write(os.urandom(32).hex())
        cls.addrs = {i: "127.0.0.1:%d" % mgtest.free_port() for i in (1, 2, 3)}
        peers = ",".join("%d=%s" % (i, a) for i, a in sorted(cls.addrs.items()))
        for i, addr in cls.addrs.items():
            env = dict(os.environ, MAILGRID_RAFT_ID=str(i), MAILGRID_RAFT_PEERS=peers)
            with open(os.path.join(cls.dir, "tenantd-%d.log" % i), "ab") as log:
                cls.procs[i] = subprocess.Popen(
                    [mgtest.binary("tenantd"), "--listen=" + addr, "--metrics-listen=127.0.0.1:0",
                     "--data-dir=" + os.path.join(cls.dir, "data-%d" % i), "--store=replicated",
                     "--token-public-key=" + key + ".pub", "--dkim-master-key-file=" + master,
                     "--dns-resolver=127.0.0.1:9", "--domain-recheck-interval=0s"],
                    env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for i, p in cls.procs.items():
            mgtest.eventually(lambda: p.poll() is not None or mgtest.grpc_health(cls.addrs[i]) == "SERVING",
                              "replica %d to serve" % i)
            if p.poll() is not None:
                text = read(os.path.join(cls.dir, "tenantd-%d.log" % i)).decode("utf-8", "replace")
                if "no libs/replica" in text:
                    raise unittest.SkipTest("this build has no libs/replica (tenantd runs on LocalStore only)")
                raise AssertionError("tenantd-%d exited:\n%s" % (i, text))
        cls.operator = subprocess.run([mgtest.binary("mailctl"), "token", "mint", "--key", key, "--role",
                                       "platform_operator,platform_reviewer"],
                                      stdout=subprocess.PIPE, text=True, check=True).stdout.strip()

    @classmethod
    def stop_all(cls):
        for p in cls.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in cls.procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()

    @classmethod
    def tearDownClass(cls):
        cls.stop_all()
        if getattr(cls, "dir", None) and not os.environ.get("MAILGRID_KEEP_TEST_DIRS"):
            shutil.rmtree(cls.dir, ignore_errors=True)

    def mailctl(self, addr, *args, token=None):
        cmd = [mgtest.binary("mailctl"), "--json"] + list(args) + ["--tenantd", addr]
        if token:
            cmd += ["--token", token]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return r.returncode, (json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else r.stderr)

    def until_ok(self, addr, *args, token=None):
        """Retries while the group elects a leader (UNAVAILABLE)."""
        def attempt():
            rc, out = self.mailctl(addr, *args, token=token)
            if rc == 0:
                return (out,)  # truthy even when the answer is {}
            # Only "no leader yet / try again" is retried; anything else fails.
            self.assertTrue("UNAVAILABLE" in out or "DEADLINE_EXCEEDED" in out,
                            "mailctl %s: %s" % (" ".join(args), out))
            return None
        return mgtest.eventually(attempt, "mailctl %s" % " ".join(args))[0]

    def test_walk_across_replicas_and_a_lost_replica(self):
        a1, a2, a3 = self.addrs[1], self.addrs[2], self.addrs[3]
        # Reads first, so no write is retried while the group elects.
        for addr in (a1, a2, a3):
            self.until_ok(addr, "plan", "list", token=self.operator)
        self.until_ok(a1, "plan", "create", "--name", "Raft plan", "--domains", "2", token=self.operator)
        reg = self.until_ok(a2, "tenant", "register", "--name", "上海复制公司", "--street", "8 Bund",
                            "--country", "CN", "--contact-name", "李雷", "--phone", "+86 21 5555 0000",
                            "--email", "ops@raft-corp.test")
        tenant, token = reg["tenant"]["tenant_id"], reg["onboarding_token"]
        pdf = os.path.join(self.dir, "licence.pdf")
        with open(pdf, "wb") as f:
            f.write(PDF)
        self.until_ok(a3, "tenant", "upload-doc", pdf, token=token)
        self.until_ok(a1, "tenant", "approve", tenant, token=self.operator)
        self.until_ok(a2, "plan", "set", "Raft plan", token=token)
        self.until_ok(a3, "domain", "add", "raft-corp.test", token=token)
        # Every replica sees the same state.
        for addr in (a1, a2, a3):
            self.assertEqual(self.until_ok(addr, "tenant", "show", token=token)["state"], "TENANT_STATE_ACTIVE")
        # Lose one replica: the other two still serve reads and writes.
        self.procs[1].send_signal(signal.SIGKILL)
        self.procs[1].wait()
        done = self.until_ok(a2, "domain", "verify-override", "raft-corp.test", "--reason", "test domain",
                             token=self.operator)
        self.assertEqual(done["state"], "DOMAIN_STATE_VERIFIED")
        self.assertEqual(self.until_ok(a3, "domain", "show", "raft-corp.test", token=token)["state"],
                         "DOMAIN_STATE_VERIFIED")


if __name__ == "__main__":
    unittest.main()
