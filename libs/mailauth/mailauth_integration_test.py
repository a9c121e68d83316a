#!/usr/bin/env python3
"""libs/mailauth against independent implementations and a real DNS server.

A real dnsmasq on a free loopback port serves the SPF, DKIM and DMARC
records; our c-ares resolver asks it (through mailauth_check), and Debian's
dkimpy (python3-dkim) checks our signatures with dnspython asking the same
dnsmasq, and signs messages that we verify. Nothing here is mocked.
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

DOMAIN = "example-sender.test"
MESSAGE = (b"From: Alice <alice@example-sender.test>\r\n"
           b"To: Bob <bob@mailgrid.test>\r\n"
           b"Subject: Quarterly  numbers\r\n"
           b"Date: Fri, 27 Nov 2026 04:00:00 +0000\r\n"
           b"Message-ID: <q4@example-sender.test>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n"
           b"\r\n"
           b"The numbers are in.  \r\n"
           b"\r\n"
           b"-- \r\nAlice\r\n")


def tool(*args, stdin=b""):
    r = subprocess.run([mgtest.binary("mailauth_check")] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise AssertionError("mailauth_check %s failed: %s" % (args, r.stderr.decode()))
    return r.stdout


def openssl_key(path, kind):
    args = ["openssl", "genpkey", "-out", path]
    args += ["-algorithm", "ed25519"] if kind == "ed25519" else ["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pub = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"], check=True,
                         stdout=subprocess.PIPE).stdout
    if kind == "ed25519":
        pub = pub[-32:]  # RFC 8463: the raw key, not SPKI
    return "v=DKIM1; k=%s; p=%s" % ("ed25519" if kind == "ed25519" else "rsa", base64.b64encode(pub).decode())


def ed25519_seed_b64(path):
    # dkimpy takes an Ed25519 private key as the base64 32-byte seed: the
    # tail of the PKCS#8 DER.
    der = subprocess.run(["openssl", "pkey", "-in", path, "-outform", "DER"], check=True,
                         stdout=subprocess.PIPE).stdout
    return base64.b64encode(der[-32:])


def read(path):
    with open(path, "rb") as f:
        return f.read()


def txt_arg(name, value):
    assert "," not in value
    parts = [value[i:i + 255] for i in range(0, len(value), 255)]
    return "--txt-record=%s,%s" % (name, ",".join(parts))


class Dnsmasq:
    def __init__(self, workdir, records):
        self.port = mgtest.free_port()
        cmd = ["dnsmasq", "--port=%d" % self.port, "--listen-address=127.0.0.1", "--bind-interfaces",
               "--no-resolv", "--no-hosts", "--keep-in-foreground", "--conf-file=/dev/null",
               "--log-facility=-", "--pid-file=", "--local=/test/"]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        self.log_path = os.path.join(workdir, "dnsmasq.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd + records, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        mgtest.eventually(lambda: b"started" in self.log() or self.proc.poll() is not None, "dnsmasq to start")
        if self.proc.poll() is not None:
            raise AssertionError("dnsmasq exited: " + self.log().decode("utf-8", "replace"))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)


class MailauthInteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("dnsmasq") is None and not os.path.exists("/usr/sbin/dnsmasq"):
            raise unittest.SkipTest("dnsmasq is not installed (Debian package dnsmasq)")
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
        try:
            import dkim  # noqa: F401
            import dns.resolver  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("python3-dkim (dkimpy) is not installed")
        cls.dir = tempfile.mkdtemp(prefix="mailauth-it-")
        cls.ed_pem = os.path.join(cls.dir, "ed.pem")
        cls.rsa_pem = os.path.join(cls.dir, "rsa.pem")
        cls.ed_txt = openssl_key(cls.ed_pem, "ed25519")
        cls.rsa_txt = openssl_key(cls.rsa_pem, "rsa")
        records = [
            txt_arg(DOMAIN, "v=spf1 ip4:192.0.2.0/24 include:_spf.partner.test -all"),
            txt_arg("_spf.partner.test", "v=spf1 a:relay.partner.test mx:partner.test -all"),
            "--host-record=relay.partner.test,198.51.100.20",
            "--mx-host=partner.test,mx.partner.test,10",
            "--host-record=mx.partner.test,198.51.100.30,2001:db8::30",
            txt_arg("ed._domainkey." + DOMAIN, cls.ed_txt),
            txt_arg("rsa._domainkey." + DOMAIN, cls.rsa_txt),
            txt_arg("_dmarc." + DOMAIN, "v=DMARC1; p=reject; adkim=r; aspf=r"),
            "--mx-host=%s,mx1.%s,10" % (DOMAIN, DOMAIN),
            "--mx-host=%s,mx2.%s,20" % (DOMAIN, DOMAIN),
            "--host-record=mx1.%s,192.0.2.25,2001:db8::25" % DOMAIN,
        ]
        cls.dns = Dnsmasq(cls.dir, records)
        cls.resolver = "--resolver=127.0.0.1:%d" % cls.dns.port

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "dns", None) is not None:
            cls.dns.stop()
        if getattr(cls, "dir", None):
            shutil.rmtree(cls.dir, ignore_errors=True)

    # dkimpy's DNS: dnspython asking the same dnsmasq (not our resolver).
    def dnsfunc(self, name, timeout=5):
        import dns.resolver
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.dns.port
        try:
            answer = r.resolve(name.decode().rstrip("."), "TXT")
        except Exception:
            return None
        return b"".join(answer[0].strings)

    def verify_with_dkimpy(self, message):
        import dkim
        d = dkim.DKIM(message)
        out = []
        for i in range(message.count(b"DKIM-Signature:")):
            try:
                out.append(d.verify(idx=i, dnsfunc=self.dnsfunc))
            except dkim.DKIMException:  # dkimpy raises on a body hash mismatch
                out.append(False)
        return out

    def our_verify(self, message, *extra):
        return tool("verify", self.resolver, *extra, stdin=message).decode().splitlines()

    def test_resolver_against_dnsmasq(self):
        out = tool("dns", self.resolver, "TXT", "rsa._domainkey." + DOMAIN).decode().splitlines()
        self.assertEqual(out[0], "ok")
        self.assertEqual(out[1], self.rsa_txt)  # the 255-byte strings joined back into one
        self.assertEqual(tool("dns", self.resolver, "MX", DOMAIN).decode().splitlines(),
                         ["ok", "10 mx1." + DOMAIN, "20 mx2." + DOMAIN])
        self.assertEqual(tool("dns", self.resolver, "A", "mx1." + DOMAIN).decode().splitlines(),
                         ["ok", "192.0.2.25"])
        self.assertEqual(tool("dns", self.resolver, "AAAA", "mx1." + DOMAIN).decode().splitlines(),
                         ["ok", "2001:db8::25"])
        self.assertEqual(tool("dns", self.resolver, "TXT", "nothing." + DOMAIN).decode().split(),
                         ["nxdomain"])
        # A port where nobody answers: a temporary error, not "no record".
        dead = "--resolver=127.0.0.1:%d" % mgtest.free_port()
        self.assertTrue(tool("dns", dead, "TXT", DOMAIN).decode().startswith("temperror"))

    def test_dkimpy_verifies_our_signatures(self):
        for pem, selector in ((self.ed_pem, "ed"), (self.rsa_pem, "rsa")):
            for canon in ("relaxed/relaxed", "simple/simple"):
                signed = tool("sign", "--key=" + pem, "--domain=" + DOMAIN, "--selector=" + selector,
                              "--canon=" + canon, stdin=MESSAGE)
                self.assertEqual(self.verify_with_dkimpy(signed), [True], (selector, canon, signed[:400]))
                tampered = signed.replace(b"numbers are in", b"numbers are out")
                self.assertEqual(self.verify_with_dkimpy(tampered), [False], (selector, canon))
        # Both signatures on one message.
        once = tool("sign", "--key=" + self.ed_pem, "--domain=" + DOMAIN, "--selector=ed", stdin=MESSAGE)
        twice = tool("sign", "--key=" + self.rsa_pem, "--domain=" + DOMAIN, "--selector=rsa", stdin=once)
        self.assertEqual(self.verify_with_dkimpy(twice), [True, True])

    def test_we_verify_dkimpy_signatures(self):
        import dkim
        rsa_key = read(self.rsa_pem)
        ed_key = ed25519_seed_b64(self.ed_pem)
        cases = [(b"rsa", rsa_key, b"rsa-sha256"), (b"ed", ed_key, b"ed25519-sha256")]
        for selector, key, algo in cases:
            for canon in ((b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")):
                sig = dkim.sign(MESSAGE, selector, DOMAIN.encode(), key, canonicalize=canon,
                                signature_algorithm=algo,
                                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
                out = self.our_verify(sig + MESSAGE)
                self.assertEqual(len(out), 1)
                self.assertTrue(out[0].startswith("pass d=%s s=%s" % (DOMAIN, selector.decode())),
                                (out, canon))
                bad = self.our_verify(sig + MESSAGE.replace(b"Quarterly", b"Yearly"))
                self.assertTrue(bad[0].startswith("fail"), bad)

    def test_body_length_tag_is_policy_not_pass(self):
        import dkim
        sig = dkim.sign(MESSAGE, b"rsa", DOMAIN.encode(), read(self.rsa_pem), length=True)
        self.assertIn(b"l=", sig)
        self.assertTrue(self.our_verify(sig + MESSAGE)[0].startswith("pass"))
        appended = sig + MESSAGE + b"\r\nP.S. wire the money to account 1234.\r\n"
        self.assertTrue(self.our_verify(appended)[0].startswith("policy"), self.our_verify(appended))
        self.assertTrue(self.our_verify(appended, "--accept-partial-body")[0].startswith("pass"))

    def inbound(self, message, ip, mail_from, helo="mail.example-sender.test"):
        out = tool("inbound", self.resolver, "--ip=" + ip, "--helo=" + helo, "--mail-from=" + mail_from,
                   "--receiver=mx.mailgrid.test", stdin=message).decode()
        header, disposition = out.rsplit("disposition=", 1)
        return header, disposition.strip()

    def test_inbound_verdicts_through_real_dns(self):
        signed = tool("sign", "--key=" + self.ed_pem, "--domain=" + DOMAIN, "--selector=ed", stdin=MESSAGE)
        # From the partner's relay (SPF via include: and a:), signed: all pass.
        header, disposition = self.inbound(signed, "198.51.100.20", "alice@" + DOMAIN)
        self.assertIn("spf=pass", header)
        self.assertIn("smtp.mailfrom=alice@" + DOMAIN, header)
        self.assertIn("dkim=pass header.d=%s header.s=ed" % DOMAIN, header)
        self.assertIn("dmarc=pass (p=reject dis=NONE) header.from=" + DOMAIN, header)
        self.assertEqual(disposition, "none")
        # Through the partner's MX over IPv6 (mx: with an AAAA), unsigned: SPF alone aligns.
        header, disposition = self.inbound(MESSAGE, "2001:db8::30", "bounce@" + DOMAIN)
        self.assertIn("spf=pass", header)
        self.assertIn("dkim=none", header)
        self.assertIn("dmarc=pass", header)
        # A forgery from elsewhere: SPF fails, no DKIM, DMARC says reject.
        header, disposition = self.inbound(MESSAGE, "203.0.113.9", "alice@" + DOMAIN)
        self.assertIn("spf=fail", header)
        self.assertIn("dmarc=fail (p=reject dis=REJECT)", header)
        self.assertEqual(disposition, "reject")


if __name__ == "__main__":
    unittest.main()
