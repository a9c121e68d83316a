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
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
from mgtest import eventually, free_port  # noqa: E402
from rotating_pki import RotatingPki  # noqa: E402

BUILD = os.environ.get("MAILGRID_BUILD_DIR",
                       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
ECHOD = os.path.join(BUILD, "bin", "echod")
PATIENCE = 120  # seconds; the machine is shared, never a time limit on behaviour


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
        self.pki = RotatingPki(self.tmp, "IP:127.0.0.1,DNS:localhost", "serverAuth,clientAuth")

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
