"""A real daemon on the common bootstrap (echod) with mTLS: its certificate
files are rotated under it the way a Kubernetes Secret volume rotates them
(a new directory, then an atomic swap of a symlink), and a new connection
(Python's ssl module, verifying against the CA and presenting a client
certificate) sees the new certificate without a restart; the expiry gauge on
/metrics follows. Also the wiring of --peer-acl: a bad spec stops the daemon
with exit 2, an ACL without mTLS with exit 1, both naming the flag; and of
--kv-scope (exit 2 for a daemon without KvService, a bad spec, no mTLS).

Needs only echod and the openssl CLI: python3 libs/rpc/tls_reload_integration_test.py
"""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

BUILD = os.environ.get("MAILGRID_BUILD_DIR",
                       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
ECHOD = os.path.join(BUILD, "bin", "echod")
PATIENCE = 120  # seconds; the machine is shared, never a time limit on behaviour


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(predicate, what):
    deadline = time.time() + PATIENCE
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("gave up waiting for " + what)


class Pki:
    """A CA and certificates it signs, each in its own directory."""

    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", os.path.join(root, "ca.key"), "-out", os.path.join(root, "ca.pem"),
                "-days", "2", "-subj", "/CN=test-ca")

    def issue(self, name, cn, days):
        d = os.path.join(self.root, name)
        os.makedirs(d)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", os.path.join(d, "tls.key"), "-out", os.path.join(d, "csr.pem"), "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", os.path.join(d, "csr.pem"), "-CA", os.path.join(self.root, "ca.pem"),
                "-CAkey", os.path.join(self.root, "ca.key"), "-CAcreateserial", "-days", str(days),
                "-out", os.path.join(d, "tls.crt"), "-extfile", os.path.join(self.root, "ext"))
        shutil.copy(os.path.join(self.root, "ca.pem"), os.path.join(d, "ca.crt"))
        return d

    def point(self, link, name):
        """Atomically makes root/link point at root/name (kubelet's ..data swap)."""
        tmp = os.path.join(self.root, link + ".tmp")
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(os.path.join(self.root, name), tmp)
        os.replace(tmp, os.path.join(self.root, link))


def server_common_name(port, client_dir):
    """CN of the certificate a new TLS connection gets, verified against the CA."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.path.join(client_dir, "ca.crt"))
    ctx.load_cert_chain(os.path.join(client_dir, "tls.crt"), os.path.join(client_dir, "tls.key"))
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
                return subject.get("commonName")
    except (OSError, ssl.SSLError):
        return None


def expiry_gauge(metrics_port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=30) as r:
        body = r.read().decode()
    m = re.search(r'mailgrid_tls_certificate_expiry_seconds\{listener="grpc"\} (\S+)', body)
    return float(m.group(1)) if m else None


class TlsReload(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(ECHOD):
            self.skipTest("echod is not built (%s)" % ECHOD)
        self.tmp = tempfile.mkdtemp(prefix="tls_reload")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pki = Pki(self.tmp)

    def test_new_connections_get_the_renewed_certificate(self):
        self.pki.issue("v1", "echod-v1", days=2)
        self.pki.issue("v2", "echod-v2", days=60)
        client = self.pki.issue("client", "tenantd", days=2)
        self.pki.point("current", "v1")
        tls = os.path.join(self.tmp, "current")
        port, metrics_port = free_port(), free_port()
        log = open(os.path.join(self.tmp, "echod.log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen([ECHOD, "--listen=127.0.0.1:%d" % port,
                                 "--metrics-listen=127.0.0.1:%d" % metrics_port,
                                 "--tls-cert=" + os.path.join(tls, "tls.crt"),
                                 "--tls-key=" + os.path.join(tls, "tls.key"),
                                 "--tls-client-ca=" + os.path.join(tls, "ca.crt"),
                                 "--tls-reload-interval=1s",
                                 "--peer-acl=mailgrid.testing.v1.=tenantd"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            self.assertEqual(eventually(lambda: server_common_name(port, client), "echod's TLS listener"),
                             "echod-v1")
            self.assertLess(eventually(lambda: expiry_gauge(metrics_port), "the expiry gauge"), 3 * 86400)

            self.pki.point("current", "v2")
            eventually(lambda: server_common_name(port, client) == "echod-v2",
                       "a new connection to see the renewed certificate")
            eventually(lambda: (expiry_gauge(metrics_port) or 0) > 50 * 86400,
                       "the expiry gauge to follow the renewed certificate")
            self.assertIsNone(proc.poll(), "echod exited")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=PATIENCE)
        self.assertEqual(proc.returncode, 0)
        with open(os.path.join(self.tmp, "echod.log")) as f:
            text = f.read()
        self.assertRegex(text, r"msg=\"gRPC serving\".* mtls=true tls_reload=1s peer_acl_rules=1")

    def test_peer_acl_flag_errors_name_the_flag(self):
        d = self.pki.issue("server", "echod", days=2)
        bad = subprocess.run([ECHOD, "--peer-acl=mailgrid.raft.v1."], stderr=subprocess.PIPE, text=True,
                             timeout=PATIENCE)
        self.assertEqual(bad.returncode, 2, bad.stderr)
        self.assertIn("--peer-acl", bad.stderr)
        no_mtls = subprocess.run([ECHOD, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
                                  "--tls-cert=" + os.path.join(d, "tls.crt"),
                                  "--tls-key=" + os.path.join(d, "tls.key"),
                                  "--peer-acl=mailgrid.raft.v1.=echod"],
                                 stderr=subprocess.PIPE, text=True, timeout=PATIENCE)
        self.assertEqual(no_mtls.returncode, 1, no_mtls.stderr)
        self.assertIn("--peer-acl needs mTLS", no_mtls.stderr)

    def test_kv_scope_flag_errors(self):
        """--kv-scope (libs/replica kv_scope.h) is checked at start: refused by a daemon that serves no
        KvService (echod), and by one that does (tenantd, when built) for a bad spec or without mTLS."""
        refused = subprocess.run([ECHOD, "--kv-scope=relayd=global:outq*"], stderr=subprocess.PIPE, text=True,
                                 timeout=PATIENCE)
        self.assertEqual(refused.returncode, 2, refused.stderr)
        self.assertIn("--kv-scope: this daemon serves no KvService", refused.stderr)
        tenantd = os.path.join(BUILD, "bin", "tenantd")
        if not os.path.exists(tenantd):
            return
        bad = subprocess.run([tenantd, "--kv-scope=relayd=outq"], stderr=subprocess.PIPE, text=True,
                             timeout=PATIENCE)
        self.assertEqual(bad.returncode, 2, bad.stderr)
        self.assertIn('--kv-scope \\"relayd=outq\\"', bad.stderr)
        no_mtls = subprocess.run([tenantd, "--kv-scope=relayd=global:outq*"], stderr=subprocess.PIPE, text=True,
                                 timeout=PATIENCE)
        self.assertEqual(no_mtls.returncode, 2, no_mtls.stderr)
        self.assertIn("--kv-scope needs mTLS", no_mtls.stderr)


if __name__ == "__main__":
    unittest.main()
