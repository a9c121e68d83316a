#!/usr/bin/python3
"""RSS of relayd holding N idle SMTP connections (issue 8: 10,000 idle
connections under 200 MB). Starts relayd alone (--bench-null-backend), opens
N connections from this process, reads each greeting, then reads relayd's
VmRSS from /proc. Run as: ulimit -n 65536; bench/relay/idle_memory.py [N]."""
import os
import resource
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    port = mgtest.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGRID_")}
    p = subprocess.Popen([mgtest.binary("relayd"), "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
                          "--smtp-listen=127.0.0.1:%d" % port, "--bench-null-backend=bench.test",
                          "--max-connections-per-ip=%d" % (n + 10), "--max-connections=%d" % (n + 10),
                          "--log-level=warn"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mgtest.eventually(lambda: _try(port), "relayd up", patience=60)
        base = rss_mb(p.pid)
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            socks.append(s)
        for s in socks:
            if not s.recv(200).startswith(b"220"):
                raise SystemExit("no greeting")
        for s in socks[:100]:  # some have said EHLO too
            s.sendall(b"EHLO idle.example\r\n")
            s.recv(1000)
        time.sleep(1)
        full = rss_mb(p.pid)
        print("relayd RSS: %.1f MB before, %.1f MB with %d idle connections (%.1f KB each)" %
              (base, full, n, (full - base) * 1024 / n))
        for s in socks:
            s.close()
    finally:
        p.terminate()
        p.wait(30)


def _try(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(100).startswith(b"220")
    except OSError:
        return False


if __name__ == "__main__":
    main()
