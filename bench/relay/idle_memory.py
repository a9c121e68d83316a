#!/usr/bin/python3
"""RSS of relayd holding N idle SMTP connections (issue 8: 10,000 idle
connections under 200 MB). Starts relayd alone (--bench-null-backend), opens
N connections from this process, reads each greeting, then reads relayd's
VmRSS from /proc. Run as: ulimit -n 65536; bench/relay/idle_memory.py [N]
[--after-message KB] [--relayd PATH].

--after-message KB: every connection first sends one message of KB
kilobytes (EHLO, MAIL, RCPT, DATA) and then stays idle: what an idle
connection keeps of its last message. --relayd: another relayd binary (an
older build), for a before/after."""
import argparse
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


def send_message(s, kb):
    """One message on an open, greeted connection; returns once it is accepted."""
    f = s.makefile("rb")
    s.sendall(b"EHLO idle.example\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    body = (b"x" * 62 + b"\r\n") * (kb * 1024 // 64)
    s.sendall(b"MAIL FROM:<a@idle.example>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n")
    for want in (b"250", b"250", b"354"):
        line = f.readline()
        if not line.startswith(want):
            raise SystemExit("unexpected reply %r" % line)
    s.sendall(body + b".\r\n")
    line = f.readline()
    if not line.startswith(b"250"):
        raise SystemExit("message refused: %r" % line)
    f.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=10000)
    ap.add_argument("--after-message", type=int, default=0, metavar="KB")
    ap.add_argument("--relayd", default=mgtest.binary("relayd"))
    a = ap.parse_args()
    n = a.n
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    port = mgtest.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGRID_")}
    p = subprocess.Popen([a.relayd, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
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
        if a.after_message:
            for s in socks:
                send_message(s, a.after_message)
        else:
            for s in socks[:100]:  # some have said EHLO too
                s.sendall(b"EHLO idle.example\r\n")
                s.recv(1000)
        time.sleep(1)
        full = rss_mb(p.pid)
        print("relayd RSS: %.1f MB before, %.1f MB with %d idle connections%s (%.1f KB each)" %
              (base, full, n, " after one %d KB message each" % a.after_message
               if a.after_message else "", (full - base) * 1024 / n))
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
