"""Helpers shared by the Python integration and end-to-end tests.

Tests run against the binaries of the build under test (MAILGRID_BUILD_DIR,
set by CTest) and never assume a port: every server is started on a free
loopback port and stopped by the test.
"""
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

SOURCE_DIR = os.environ.get("MAILGRID_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD_DIR = os.environ.get("MAILGRID_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
BIN = os.path.join(BUILD_DIR, "bin")
LAUNCHER = os.path.join(SOURCE_DIR, "tools", "mailgrid")

# Generous: the machine is shared and noisy. These bound waiting for a
# condition, they never assert how fast something was.
PATIENCE_SECONDS = 120


def binary(name):
    return os.path.join(BIN, name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
