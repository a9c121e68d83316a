#!/usr/bin/env python3
"""IDLE population benchmark for accessd (issue 10): N IMAP sessions log in,
SELECT INBOX and IDLE; then one message is appended from another session
and we count how many IDLE sessions announce it. Prints accessd's resident
memory and thread count before and with the population (from /proc), and
the time until every session saw the new message.

Starts its own accessd + mailstored (local store) + the test stand-in
identityd (services/access/testing/fake_identityd.cc) on free loopback ports,
from BUILD_DIR/bin. Plain IMAP with --allow-plaintext-auth (loopback only),
so the numbers are the sessions' cost, not TLS's.

  bench/access/idle_bench.py --build-dir build-access --sessions 2000
  bench/access/idle_bench.py --sessions 2000 --append-kb 100 [--accessd OLD]

--append-kb N: each session first APPENDs one N KB message to folder Bulk (a
non-synchronizing literal), so the population is of sessions that have
carried a message, not only of sessions that never did.

A benchmark prints numbers; it asserts nothing about speed.
"""
import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time

USER, PASSWORD = "bench@example.test", "bench-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def wait_port(port, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("port %d never opened" % port)


class Session:
    def __init__(self):
        self.reader = self.writer = None
        self.saw_exists = asyncio.Event()

    async def line(self):
        return await self.reader.readline()

    async def command(self, tag, text):
        self.writer.write(("%s %s\r\n" % (tag, text)).encode())
        await self.tagged_ok(tag)

    async def tagged_ok(self, tag):
        await self.writer.drain()
        while True:
            l = await self.line()
            if not l:
                raise ConnectionError("closed")
            if l.startswith(tag.encode() + b" "):
                if not l.split()[1] == b"OK":
                    raise RuntimeError(l)
                return

    async def start(self, port, append_kb):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        await self.line()  # greeting
        await self.command("a", "LOGIN %s %s" % (USER, PASSWORD))
        if append_kb:
            body = b"Subject: bulk\r\n\r\n" + (b"x" * 78 + b"\r\n") * (append_kb * 1024 // 80)
            # Into another folder: the INBOX every session selects stays as
            # small as without --append-kb (a session's view of a folder
            # grows with its messages).
            self.writer.write(b"p APPEND Bulk {%d+}\r\n" % len(body) + body + b"\r\n")
            await self.tagged_ok("p")
        await self.command("b", "SELECT INBOX")
        self.writer.write(b"c IDLE\r\n")
        await self.writer.drain()
        while not (await self.line()).startswith(b"+"):
            pass

    async def wait_exists(self):
        while True:
            l = await self.line()
            if not l:
                return
            if l.endswith(b"EXISTS\r\n"):
                self.saw_exists.set()
                return

    async def stop(self):
        try:
            self.writer.write(b"DONE\r\nz LOGOUT\r\n")
            await self.writer.drain()
            self.writer.close()
        except Exception:
            pass


async def run(args, port, pid, ms_pid):
    sessions = []
    base = proc_status(pid)
    ms_base = proc_status(ms_pid)
    t0 = time.time()
    sem = asyncio.Semaphore(200)
    if args.append_kb:
        c = Session()
        c.reader, c.writer = await asyncio.open_connection("127.0.0.1", port)
        await c.line()
        await c.command("a", "LOGIN %s %s" % (USER, PASSWORD))
        await c.command("b", "CREATE Bulk")
        await c.stop()

    async def one():
        s = Session()
        async with sem:
            await s.start(port, args.append_kb)
        sessions.append(s)
    results = await asyncio.gather(*(one() for _ in range(args.sessions)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    setup = time.time() - t0
    await asyncio.sleep(args.settle)
    loaded = proc_status(pid)
    ms_loaded = proc_status(ms_pid)
    print("sessions in IDLE: %d (%d failed to start: %s) in %.1fs" %
          (len(sessions), len(errors), repr(errors[:1]), setup))
    rss0, rss1 = int(base["VmRSS"].split()[0]), int(loaded["VmRSS"].split()[0])
    print("accessd RSS: %d KiB idle-less -> %d KiB with the population (%.1f KiB/session)" %
          (rss0, rss1, (rss1 - rss0) / max(1, len(sessions))))
    print("accessd threads: %s -> %s" % (base["Threads"], loaded["Threads"]))
    # mailstored serves each Watch stream on a thread: accessd shares one
    # stream per mailbox, so this should not grow with the population.
    print("mailstored threads: %s -> %s, RSS %s -> %s" % (ms_base["Threads"], ms_loaded["Threads"],
                                                         ms_base["VmRSS"], ms_loaded["VmRSS"]))
    waiters = [asyncio.ensure_future(s.wait_exists()) for s in sessions]
    t1 = time.time()
    w = Session()
    w.reader, w.writer = await asyncio.open_connection("127.0.0.1", port)
    await w.line()
    await w.command("a", "LOGIN %s %s" % (USER, PASSWORD))
    msg = b"Subject: wake up\r\n\r\nhello\r\n"
    w.writer.write(b"b APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg))
    await w.writer.drain()
    done, pending = await asyncio.wait(waiters, timeout=args.patience)
    seen = sum(1 for s in sessions if s.saw_exists.is_set())
    print("EXISTS seen by %d of %d IDLE sessions, last after %.2fs" % (seen, len(sessions), time.time() - t1))
    await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--patience", type=float, default=120)
    ap.add_argument("--append-kb", type=int, default=0,
                    help="each session first APPENDs one message of this many KB")
    ap.add_argument("--settle", type=float, default=2,
                    help="seconds between the population's set-up and reading RSS (the allocator "
                         "returns freed pages to the system within ~10 s)")
    ap.add_argument("--accessd", help="this accessd binary instead of BUILD_DIR's (an A/B)")
    args = ap.parse_args()
    bin_dir = os.path.join(os.path.abspath(args.build_dir), "bin")
    d = tempfile.mkdtemp(prefix="idle-bench-")
    procs = []
    try:
        key, pub = os.path.join(d, "k.pem"), os.path.join(d, "k.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
        ms, ident, imap = free_port(), free_port(), free_port()
        log = open(os.path.join(d, "log"), "w")
        ms_proc = subprocess.Popen([os.path.join(bin_dir, "mailstored"), "--listen=127.0.0.1:%d" % ms,
                                       "--metrics-listen=127.0.0.1:0", "--data-dir=" + os.path.join(d, "ms"),
                                       "--store=local", "--token-public-key=" + pub], stdout=log, stderr=log)
        procs.append(ms_proc)
        procs.append(subprocess.Popen([os.path.join(bin_dir, "access_fake_identityd"), "127.0.0.1:%d" % ident,
                                       key, "127.0.0.1:%d" % ms, "t-bench", USER, PASSWORD, "mbx-bench"],
                                      stdout=log, stderr=log))
        wait_port(ident)
        acc = subprocess.Popen([args.accessd or os.path.join(bin_dir, "accessd"), "--listen=127.0.0.1:0",
                                "--metrics-listen=127.0.0.1:0", "--imap-listen=127.0.0.1:%d" % imap,
                                "--identityd=127.0.0.1:%d" % ident, "--mailstored=127.0.0.1:%d" % ms,
                                "--token-signing-key=" + key, "--allow-plaintext-auth",
                                "--max-connections-per-ip=0", "--max-connections=%d" % (args.sessions + 100)],
                               stdout=log, stderr=log)
        procs.append(acc)
        wait_port(imap)
        print("machine: %d cores, load %s" % (os.cpu_count(), open("/proc/loadavg").read().split()[:3]))
        asyncio.run(run(args, imap, acc.pid, ms_proc.pid))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
