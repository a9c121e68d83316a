"""The public listeners reload renewed certificates: a real relayd (SMTP
submissions, implicit TLS) and a real accessd (IMAPS), each started with
--public-tls-cert/--public-tls-key pointing into a directory that is rotated
the way a Kubernetes Secret volume rotates (a new directory, then an atomic
swap of a symlink). A new TLS connection (Python's ssl module, verifying
against the CA and the host name) then gets the renewed certificate without
a restart, within --tls-reload-interval; a connection opened before the
rotation keeps working; a rotation to a certificate whose key does not match
is refused (the listener keeps serving the previous one).

Needs relayd, accessd and the openssl CLI:
    MAILGRID_BUILD_DIR=build python3 libs/netserver/public_tls_reload_integration_test.py
"""
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
from mgtest import eventually, free_port  # noqa: E402
from rotating_pki import RotatingPki  # noqa: E402

BUILD = os.environ.get("MAILGRID_BUILD_DIR",
                       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
PATIENCE = 120  # seconds; the machine is shared, never a time limit on behaviour


class PublicTlsReload(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="public_tls_reload")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pki = RotatingPki(self.tmp, "DNS:mail.example.test", "serverAuth", ca_cn="public-test-ca")
        self.client = ssl.create_default_context(cafile=os.path.join(self.tmp, "ca.pem"))

    def start(self, daemon, listener_flag, port):
        binary = os.path.join(BUILD, "bin", daemon)
        if not os.path.exists(binary):
            self.skipTest("%s is not built (%s)" % (daemon, binary))
        current = os.path.join(self.tmp, "current")
        data = os.path.join(self.tmp, daemon + "-data")
        os.makedirs(data)
        log_path = os.path.join(self.tmp, daemon + ".log")
        log = open(log_path, "w")
        self.addCleanup(log.close)
        # Nothing but the public listener: peers unset (the daemon starts and
        # warns), gRPC and metrics on free ports. --tls-reload-interval is the
        # common flag; the public listeners follow it.
        proc = subprocess.Popen([binary, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
                                 "--data-dir=" + data, "--tls-reload-interval=1s",
                                 "--%s=127.0.0.1:%d" % (listener_flag, port),
                                 "--public-tls-cert=" + os.path.join(current, "tls.crt"),
                                 "--public-tls-key=" + os.path.join(current, "tls.key")],
                                stdout=log, stderr=subprocess.STDOUT)

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=PATIENCE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.addCleanup(stop)
        self.log_path = log_path
        return proc

    def connect(self, port):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            return self.client.wrap_socket(raw, server_hostname="mail.example.test")
        except Exception:
            raw.close()
            raise

    def common_name(self, port):
        """CN of the certificate a new connection gets (verified), None while not listening."""
        try:
            with self.connect(port) as tls:
                return dict(pair[0] for pair in tls.getpeercert()["subject"]).get("commonName")
        except (OSError, ssl.SSLError):
            return None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def check_rotation(self, daemon, listener_flag, greeting, command, reply):
        self.pki.issue("v1", "public-v1")
        self.pki.issue("v2", "public-v2")
        # v3: a certificate paired with v1's key (a half-written rotation).
        bad = self.pki.issue("v3", "public-v3")
        shutil.copy(os.path.join(self.tmp, "v1", "tls.key"), os.path.join(bad, "tls.key"))
        self.pki.point("current", "v1")
        port = free_port()
        proc = self.start(daemon, listener_flag, port)
        eventually(lambda: proc.poll() is not None or self.common_name(port) == "public-v1",
                   "%s serving public-v1" % daemon)
        self.assertIsNone(proc.poll(), self.log()[-2000:])

        before = self.connect(port)
        self.addCleanup(before.close)
        before_file = before.makefile("rb")
        self.assertTrue(before_file.readline().startswith(greeting))

        self.pki.point("current", "v3")  # mismatched: refused, v1 stays
        eventually(lambda: "TLS certificate not reloaded" in self.log(),
                   "%s logging the refused pair" % daemon)
        self.assertEqual(self.common_name(port), "public-v1")

        self.pki.point("current", "v2")
        eventually(lambda: self.common_name(port) == "public-v2", "%s serving the renewed certificate" % daemon)
        self.assertIsNone(proc.poll())

        # The session opened before the renewal is untouched.
        before.sendall(command)
        self.assertTrue(before_file.readline().startswith(reply))

    def test_relayd_submissions(self):
        self.check_rotation("relayd", "submission-tls-listen", b"220 ", b"NOOP\r\n", b"250")

    def test_accessd_imaps(self):
        self.check_rotation("accessd", "imaps-listen", b"* OK", b"a1 NOOP\r\n", b"a1 OK")


if __name__ == "__main__":
    unittest.main()
