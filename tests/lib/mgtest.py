"""Helpers shared by the Python integration and end-to-end tests.

Tests run against the binaries of the build under test (MAILGRID_BUILD_DIR,
set by CTest) and never assume a port: every server is started on a free
loopback port and stopped by the test.
"""
import base64
import hashlib
import hmac
import os
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

SOURCE_DIR = os.environ.get("MAILGRID_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD_DIR = os.environ.get("MAILGRID_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
BIN = os.path.join(BUILD_DIR, "bin")
LAUNCHER = os.path.join(SOURCE_DIR, "tools", "mailgrid")

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
from launcher import ports  # noqa: E402  (the launcher's port chooser)

# Generous: the machine is shared and noisy. These bound waiting for a
# condition, they never assert how fast something was.
PATIENCE_SECONDS = 120


def binary(name):
    return os.path.join(BIN, name)


def free_port():
    """A loopback port for a server the test starts after naming its address;
    chosen outside the kernel's range for connections and reserved
    (tools/launcher/ports.py says why)."""
    return ports.pick()


def eventually(predicate, what, patience=PATIENCE_SECONDS, interval=0.1):
    """Polls predicate until it returns a truthy value, which is returned."""
    deadline = time.time() + patience
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("gave up waiting for %s (last value %r)" % (what, last))


def http_get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read().decode("utf-8", "replace")


def grpc_health(address):
    """SERVING / NOT_SERVING / UNREACHABLE, asked with mailctl health."""
    r = subprocess.run([binary("mailctl"), "health", address], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    parts = r.stdout.split()
    return parts[-1] if parts else "UNREACHABLE"


def launcher(*args, data_dir, check=True, env=None):
    """Runs tools/mailgrid; `env` adds variables (the daemons inherit them)."""
    env = dict(os.environ, MAILGRID_BUILD_DIR=BUILD_DIR, **(env or {}))
    r = subprocess.run([LAUNCHER] + list(args) + ["--data", data_dir], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise AssertionError("tools/mailgrid %s failed (%d):\n%s" % (" ".join(args), r.returncode, r.stdout))
    return r


def temp_dir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def host_port(address):
    """("127.0.0.1", 2525) from "127.0.0.1:2525" (cluster.json's form)."""
    host, port = address.rsplit(":", 1)
    return host, int(port)


class LocalCluster:
    """`tools/mailgrid up` in a fresh temporary directory, for one test class.

    `cluster` is cluster.json, `ports` ports.json's map, `tls` an SSL context
    trusting the local CA (host names unchecked: tests dial 127.0.0.1).
    """

    def __init__(self, prefix, *up_args, env=None):
        import json
        import ssl
        self.data = temp_dir(prefix)
        try:
            launcher("up", "--no-build", *up_args, data_dir=self.data, env=env)
            with open(os.path.join(self.data, "cluster.json")) as f:
                self.cluster = json.load(f)
            with open(os.path.join(self.data, "ports.json")) as f:
                self.ports = json.load(f)["ports"]
        except BaseException:
            self.stop()
            raise
        self.tls = ssl.create_default_context(cafile=self.cluster["ca_cert"])
        self.tls.check_hostname = False

    def address(self, listener):
        return host_port(self.cluster[listener])

    def demo_users(self):
        """{"alice": {"address", "password"}, "bob": {...}} of a --demo cluster."""
        return {u["address"].split("@")[0]: u for u in self.cluster["demo"]["users"]}

    def stop(self):
        """Stops every process; MAILGRID_TEST_KEEP=1 keeps the directory
        (logs, data) for a post-mortem."""
        import shutil
        launcher("down", data_dir=self.data, check=False)
        if os.environ.get("MAILGRID_TEST_KEEP") == "1":
            print("kept " + self.data)
            return
        shutil.rmtree(self.data, ignore_errors=True)


def totp(secret_b32, at=None, step=30, digits=6):
    """RFC 6238 TOTP (HMAC-SHA1), computed here, independently of identityd."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return str(code).zfill(digits)
