#!/usr/bin/env python3
"""The directory (issue 5) end to end through mailctl on a 3-replica tenantd.

Starts three real tenantd processes forming one Raft group (replicated
store), walks a tenant to ACTIVE with a VERIFIED domain, then drives the
directory with `mailctl` only, each call sent to a different replica:

  * builds a department tree, moves a subtree and sees a group's
    membership by department follow the move;
  * imports a CSV with five bad rows: all five reported by line, nothing
    created; then a good CSV;
  * resolves through two levels of nested groups, with the loop that would
    close them refused (CYCLE);
  * exceeds the plan's mailbox count (RESOURCE_EXHAUSTED, nothing written);
  * refuses bad input precisely (unverified/foreign domains, duplicates by
    case and Unicode normalisation, moving a department under its descendant);
  * stores a user's Sieve script (Resolve reports its version on every
    replica), refuses a bad one and an audit policy the plan lacks, and
    refuses to remove a domain that still has addresses.

identityd and mailstored are not started: tenantd must create users anyway
(pending), which this test checks too.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

DOMAIN = "acme-corp.test"

PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")


def read(path):
    with open(path, "rb") as f:
        return f.read()


class DirectoryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        cls.dir = mgtest.temp_dir("directory-it-")
        cls.key = os.path.join(cls.dir, "signing.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", cls.key], check=True)
        subprocess.run(["openssl", "pkey", "-in", cls.key, "-pubout", "-out", cls.key + ".pub"], check=True)
        master = os.path.join(cls.dir, "dkim-master.key")
        with open(master, "w") as f:
            f.write(os.urandom(32).hex())
        ports = [mgtest.free_port() for _ in range(3)]
        cls.addrs = ["127.0.0.1:%d" % p for p in ports]
        peers = ",".join("%d=%s" % (i + 1, a) for i, a in enumerate(cls.addrs))
        cls.procs = []
        for i, addr in enumerate(cls.addrs):
            log = open(os.path.join(cls.dir, "tenantd-%d.log" % (i + 1)), "ab")
            cls.procs.append(subprocess.Popen(
                [mgtest.binary("tenantd"), "--listen=" + addr, "--metrics-listen=127.0.0.1:0",
                 "--data-dir=" + os.path.join(cls.dir, "data-%d" % (i + 1)), "--store=replicated",
                 "--raft-id=%d" % (i + 1), "--raft-peers=" + peers,
                 "--token-public-key=" + cls.key + ".pub", "--token-signing-key=" + cls.key,
                 "--dkim-master-key-file=" + master, "--mailstore-shards=2"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith("MAILGRID_")}))
            log.close()
        for i, addr in enumerate(cls.addrs):
            mgtest.eventually(lambda: cls.procs[i].poll() is not None or mgtest.grpc_health(addr) == "SERVING",
                              "tenantd replica %d to serve" % (i + 1))
            if cls.procs[i].poll() is not None:
                raise AssertionError("tenantd exited:\n" +
                                     read(os.path.join(cls.dir, "tenantd-%d.log" % (i + 1))).decode())
        cls.calls = 0
        cls.operator = cls.mint("platform_operator")
        cls.reviewer = cls.mint("platform_reviewer")
        cls.relayd = cls.mint("service", subject="relayd")

    @classmethod
    def tearDownClass(cls):
        for p in getattr(cls, "procs", []):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in getattr(cls, "procs", []):
            p.wait(timeout=60)
        if getattr(cls, "dir", None) and not os.environ.get("MAILGRID_KEEP_TEST_DIRS"):
            shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def mint(cls, role, tenant="", subject="it"):
        cmd = [mgtest.binary("mailctl"), "token", "mint", "--key", cls.key, "--role", role, "--subject", subject]
        if tenant:
            cmd += ["--tenant", tenant]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
        return r.stdout.strip()

    def mailctl(self, *args, token=None, ok=True, json_out=True):
        # Round-robin over the replicas: any replica serves any call.
        cls = type(self)
        addr = cls.addrs[cls.calls % 3]
        cls.calls += 1
        cmd = [mgtest.binary("mailctl")] + (["--json"] if json_out else []) + list(args) + ["--tenantd", addr]
        if token != "":
            cmd += ["--token", token or self.admin]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGRID_")}
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if ok:
            self.assertEqual(r.returncode, 0, "mailctl %s failed: %s" % (" ".join(args), r.stderr))
            if not json_out:
                return r.stdout
            lines = [l for l in r.stdout.splitlines() if l.strip()]
            if len(lines) > 1:
                return [json.loads(l) for l in lines]
            return json.loads(lines[0]) if lines else {}
        self.assertNotEqual(r.returncode, 0, "mailctl %s should have failed: %s" % (" ".join(args), r.stdout))
        return r.stderr.strip() + "\n" + r.stdout

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def recipients(self, address):
        out = self.mailctl("resolve", address, token=self.relayd)
        return sorted(r["address"] for r in out.get("recipients", []))

    def expect_recipients(self, address, expected):
        """Resolve on every replica until each answers `expected`: a change made
        through one replica reaches another's Resolve cache within
        --resolve-max-staleness (1 s), by design (README, Resolve)."""
        expected = sorted(expected)
        for _ in range(3):
            mgtest.eventually(lambda: self.recipients(address) == expected,
                              "%s to resolve to %s" % (address, expected))

    def user_count(self):
        out = self.mailctl("user", "list", json_out=False)
        return len(out.strip().splitlines()) - 1

    def test_directory(self):
        # ---- a tenant, ACTIVE, with a plan of 8 mailboxes and a VERIFIED domain.
        self.admin = self.operator
        self.mailctl("plan", "create", "--name", "Team", "--mailboxes", "8", "--domains", "3", "--seats", "2",
                     "--features", "shared_mailboxes", token=self.operator)
        reg = self.mailctl("tenant", "register", "--name", "Acme Corp", "--street", "1 Road", "--city", "Beijing",
                           "--country", "cn", "--contact-name", "Boss", "--phone", "+86 138 0013 8000",
                           "--email", "boss@" + DOMAIN, token="")
        tenant = reg["tenant"]["tenant_id"]
        onboarding = reg["onboarding_token"]
        self.mailctl("tenant", "upload-doc", self.write("licence.pdf", PDF), "--kind", "business-licence",
                     token=onboarding)
        self.mailctl("tenant", "approve", tenant, "--reason", "ok", token=self.reviewer)
        self.mailctl("plan", "set", "Team", token=onboarding)
        for d in (DOMAIN, "unverified.test"):
            self.mailctl("domain", "add", d, token=onboarding)
        self.mailctl("domain", "verify-override", DOMAIN, "--reason", "test", token=self.operator)
        self.admin = self.mint("user,tenant_admin", tenant=tenant, subject="admin-1")
        other = self.mailctl("tenant", "register", "--name", "Other Ltd", "--street", "2 Road", "--country", "cn",
                             "--contact-name", "O", "--phone", "+86 139 0013 8000", "--email", "o@other.test",
                             token="")
        other_tok = other["onboarding_token"]
        self.mailctl("tenant", "upload-doc", self.write("l2.pdf", PDF), "--kind", "business-licence", token=other_tok)
        self.mailctl("tenant", "approve", other["tenant"]["tenant_id"], "--reason", "ok", token=self.reviewer)
        self.mailctl("plan", "set", "Team", token=other_tok)
        self.mailctl("domain", "add", "other-corp.test", token=other_tok)
        self.mailctl("domain", "verify-override", "other-corp.test", "--reason", "test", token=self.operator)

        # ---- the tree.
        self.mailctl("dept", "create", "Sales")
        self.mailctl("dept", "create", "East", "--parent", "Sales")
        self.mailctl("dept", "create", "Shanghai", "--parent", "Sales/East")
        self.mailctl("dept", "create", "Marketing")
        shown = self.mailctl("dept", "show", "sales/east/SHANGHAI")
        self.assertEqual(shown["path"], "Sales/East/Shanghai")
        self.assertEqual(shown["depth"], 2)
        line = self.mailctl("dept", "move", "Sales", "--to", "Sales/East/Shanghai", ok=False)
        self.assertIn("INVALID_ARGUMENT: new_parent_id", line)
        self.assertIn("own subtree", line)

        ann = self.mailctl("user", "create", "ann@" + DOMAIN, "--name", "Ann", "--dept", "Sales/East/Shanghai")
        self.assertTrue(ann["generated_password"])
        self.assertIn(ann["user"].get("shard", 0), (0, 1))
        self.mailctl("user", "create", "ben@" + DOMAIN, "--name", "Ben", "--dept", "Sales")
        self.mailctl("user", "create", "carl@" + DOMAIN, "--name", "Carl", "--dept", "Marketing")
        self.mailctl("group", "create", "sales@" + DOMAIN, "--policy", "anyone", "dept:Sales")
        self.expect_recipients("sales@" + DOMAIN, ["ann@" + DOMAIN, "ben@" + DOMAIN])
        line = self.mailctl("dept", "delete", "Sales", ok=False)
        self.assertIn("FAILED_PRECONDITION", line)
        # Move East (with Shanghai and Ann) under Marketing: the group follows.
        moved = self.mailctl("dept", "move", "Sales/East", "--to", "Marketing")
        self.assertEqual(moved["path"], "Marketing/East")
        self.expect_recipients("sales@" + DOMAIN, ["ben@" + DOMAIN])
        self.mailctl("group", "create", "marketing@" + DOMAIN, "--policy", "anyone", "dept:Marketing")
        self.expect_recipients("marketing@" + DOMAIN, ["ann@" + DOMAIN, "carl@" + DOMAIN])

        # ---- nested groups, two levels, and the loop refused.
        self.mailctl("group", "create", "all@" + DOMAIN, "--policy", "anyone", "group:sales@" + DOMAIN)
        self.mailctl("group", "add", "sales@" + DOMAIN, "group:marketing@" + DOMAIN)
        self.expect_recipients("all@" + DOMAIN, ["ann@" + DOMAIN, "ben@" + DOMAIN, "carl@" + DOMAIN])
        line = self.mailctl("group", "add", "marketing@" + DOMAIN, "group:all@" + DOMAIN, ok=False)
        self.assertIn("INVALID_ARGUMENT: member", line)
        self.assertIn("loop", line)
        self.expect_recipients("all@" + DOMAIN, ["ann@" + DOMAIN, "ben@" + DOMAIN, "carl@" + DOMAIN])
        # Plus-addressing and unknown addresses, as relayd sees them.
        self.expect_recipients("ann+news@" + DOMAIN, ["ann@" + DOMAIN])
        line = self.mailctl("resolve", "nobody@" + DOMAIN, token=self.relayd, ok=False)
        self.assertIn("NOT_FOUND", line)
        line = self.mailctl("resolve", "ann@nowhere.example", token=self.relayd, ok=False)
        self.assertIn("not hosted", line)

        # ---- bad input, refused precisely, nothing written.
        before = self.user_count()
        line = self.mailctl("user", "create", "x@unverified.test", "--name", "X", ok=False)
        self.assertIn("FAILED_PRECONDITION", line)
        self.assertIn("not VERIFIED", line)
        line = self.mailctl("user", "create", "x@other-corp.test", "--name", "X", ok=False)
        self.assertIn("INVALID_ARGUMENT: address: domain other-corp.test is not a domain of this tenant", line)
        line = self.mailctl("user", "create", "ANN@" + DOMAIN.upper(), "--name", "Ann again", ok=False)
        self.assertIn("ALREADY_EXISTS", line)
        self.mailctl("user", "create", "zoë@" + DOMAIN, "--name", "Zoë")  # NFC
        line = self.mailctl("user", "create", "zoe\u0308@" + DOMAIN, "--name", "Zoe", ok=False)  # NFD
        self.assertIn("ALREADY_EXISTS", line)
        self.assertEqual(self.user_count(), before + 1)

        # ---- CSV import: five bad rows, every one reported, nothing created.
        before = self.user_count()
        bad = ("address,name,department,phone,password\n"
               "dan@{d},Dan,Sales,,\n"
               "not-an-address,Bad One,,,\n"
               "dan@{D},Dan Twice,,,\n"
               "ann@{d},Ann Again,,,\n"
               "eve@other-corp.test,Eve,,,\n"
               "fay@{d},Fay,,12345,\n"
               "gus@{d},Gus,New/Team,,\n").format(d=DOMAIN, D=DOMAIN.upper())
        line = self.mailctl("user", "import", self.write("bad.csv", bad.encode()), ok=False)
        report = json.loads(line.split("\n", 1)[1])
        self.assertEqual(sorted((int(e["line"]), e["reason"]) for e in report["errors"]),
                         [(3, "BAD_ADDRESS"), (4, "DUPLICATE_IN_FILE"), (5, "ALREADY_EXISTS"),
                          (6, "DOMAIN_NOT_IN_TENANT"), (7, "NOT_E164")])
        self.assertNotIn("created", report)
        self.assertEqual(self.user_count(), before)
        self.mailctl("dept", "show", "New/Team", ok=False)  # not created either
        good = "address,name,department\ndan@{d},Dan,Sales\ngus@{d},Gus,New/Team\n".format(d=DOMAIN)
        out = self.mailctl("user", "import", self.write("good.csv", good.encode()))
        self.assertEqual(len(out["created"]), 2)
        self.assertTrue(all(c["initial_password"] for c in out["created"]))
        self.assertEqual(self.mailctl("dept", "show", "New/Team")["path"], "New/Team")
        self.expect_recipients("sales@" + DOMAIN, ["ann@" + DOMAIN, "ben@" + DOMAIN, "carl@" + DOMAIN, "dan@" + DOMAIN])

        # ---- the plan's mailbox count (8): 6 used; a 3-row import is refused whole.
        self.assertEqual(self.user_count(), 6)
        three = "address,name\nh1@{d},H\nh2@{d},H\nh3@{d},H\n".format(d=DOMAIN)
        line = self.mailctl("user", "import", self.write("three.csv", three.encode()), ok=False)
        self.assertIn("RESOURCE_EXHAUSTED", line)
        self.mailctl("user", "create", "h1@" + DOMAIN, "--name", "H1")
        self.mailctl("user", "create", "h2@" + DOMAIN, "--name", "H2")
        line = self.mailctl("user", "create", "h3@" + DOMAIN, "--name", "H3", ok=False)
        self.assertIn("RESOURCE_EXHAUSTED", line)
        self.assertIn("mailboxes", line)
        self.assertEqual(self.user_count(), 8)
        usage = self.mailctl("tenant", "usage", tenant, token=self.operator)
        self.assertEqual(int(usage["mailboxes"]), 8)

        # ---- identityd/mailstored absent: users exist, placement recorded;
        # identityd finds them through GetPrincipal (service token).
        shown = self.mailctl("user", "show", "ann@" + DOMAIN)
        self.assertTrue(shown["mailbox_id"])
        # The audit log saw it all.
        log = self.mailctl("user", "list", json_out=False)
        self.assertIn("zoë@" + DOMAIN, log)

        # ---- inbox rules and policies through mailctl (directory_policies.cc).
        script = b'require ["fileinto"];\nif header :contains "subject" "invoice" { fileinto "Invoices"; }\n'
        out = self.mailctl("sieve", "set", "ann@" + DOMAIN, self.write("ann.sieve", script))
        self.assertEqual(int(out["version"]), 1)
        self.assertEqual(self.mailctl("sieve", "get", "ann@" + DOMAIN, json_out=False).encode(), script)
        line = self.mailctl("sieve", "set", "ann@" + DOMAIN, self.write("bad.sieve", b'fileinto "x";\n'),
                            ok=False)
        self.assertIn("INVALID_ARGUMENT", line)

        def ann_sieve_version():
            rcpts = self.mailctl("resolve", "ann@" + DOMAIN, token=self.relayd).get("recipients", [])
            return [int(r.get("sieve_version", 0)) for r in rcpts]
        for _ in range(3):  # every replica
            mgtest.eventually(lambda: ann_sieve_version() == [1], "Resolve to report ann's Sieve version")
        self.assertEqual(int(self.mailctl("audit-policy", "get").get("version", 0)), 0)
        line = self.mailctl("audit-policy", "set", self.write(
            "audit.json", b'{"enabled": true, "rules": [{"name": "all", "enabled": true}]}'), ok=False)
        self.assertIn("FAILED_PRECONDITION", line)
        self.assertIn("mail audit", line)
        # A domain with addresses cannot be released.
        line = self.mailctl("domain", "remove", DOMAIN, ok=False)
        self.assertIn("FAILED_PRECONDITION", line)
        self.assertIn("still use", line)


if __name__ == "__main__":
    unittest.main()
