"""mailctl against a local cluster, as the tests' admin and operator tool,
and the onboarding every end-to-end test starts from."""
import json
import os
import subprocess

import mgtest

# The smallest valid PDF: a "business licence" or "tax registration".
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


class MailctlError(AssertionError):
    pass


class Mailctl:
    """Runs build/bin/mailctl --json against the cluster in `data_dir`.

    Operator roles are minted with the cluster's token key (as the launcher
    does); `admin()` acts as the tenant admin of `tenant_id`.
    """

    def __init__(self, data_dir):
        self.data = data_dir
        self.key = os.path.join(data_dir, "secrets", "token.pem")
        self.tenant_id = None

    def run(self, *args, role=None, tenant=None, token=None, check=True, lines=False):
        """The parsed JSON output; with lines=True the list of JSON lines
        (list commands print one object per line); with check=False the
        CompletedProcess."""
        cmd = [mgtest.binary("mailctl"), "--cluster=" + os.path.join(self.data, "cluster.json"), "--json"]
        cmd += list(args)
        if role:
            cmd += ["--token-key", self.key, "--role", role]
        if tenant:
            cmd += ["--token-tenant", tenant]
        if token:
            cmd += ["--token", token]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not check:
            return r
        if r.returncode != 0:
            raise MailctlError("mailctl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        docs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        return docs if lines else (docs[0] if docs else {})

    def admin(self, *args, **kw):
        return self.run(*args, role="tenant_admin", tenant=self.tenant_id, **kw)

    def register(self, name, domain, plan_args=(), documents=("business-licence",)):
        """Plan, registration, documents, approval, plan choice, domain added.
        Returns the onboarding token; the domain is not verified yet."""
        plan = "%s plan" % name
        self.run("plan", "create", "--name", plan, *plan_args, role="platform_operator")
        reg = self.run("tenant", "register", "--name", name, "--street", "88 Century Avenue",
                       "--city", "Shanghai", "--country", "cn", "--contact-name", "Li Lei",
                       "--phone", "+8613800138000", "--email", "it@" + domain)
        self.tenant_id, onboarding = reg["tenant"]["tenant_id"], reg["onboarding_token"]
        for kind in documents:
            path = os.path.join(self.data, "%s-%s.pdf" % (self.tenant_id, kind))
            with open(path, "wb") as f:
                f.write(PDF)
            self.run("tenant", "upload-doc", path, "--kind", kind, token=onboarding)
        self.run("tenant", "approve", self.tenant_id, "--reason", "documents match", role="platform_reviewer")
        self.run("plan", "set", plan, token=onboarding)
        self.run("domain", "add", domain, token=onboarding)
        return onboarding

    def onboard_with_override(self, name, domain, plan_args=()):
        """An ACTIVE tenant with `domain` VERIFIED by an operator override
        (for tests whose subject is not DNS)."""
        self.register(name, domain, plan_args)
        self.run("domain", "verify-override", domain, "--reason", "test domain", role="platform_operator")

    def create_user(self, address, name, *extra):
        """Creates the user and does the forced first password change.
        Returns the password it can sign in with."""
        initial = "Initial-" + os.urandom(6).hex()
        self.admin("user", "create", address, "--name", name, "--password", initial, *extra)
        password = "Pw-" + os.urandom(9).hex()
        self.run("auth", "login", address, "--password", initial, "--new-password", password)
        return password
