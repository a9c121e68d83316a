#!/usr/bin/env python3
"""IMAP load generator (issue 10): N concurrent clients each loop
  LOGIN, SELECT INBOX, FETCH 1:50 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject Date)]),
  FETCH <n> BODY.PEEK[], STORE <n> +FLAGS (\\Flagged), LOGOUT
for --seconds while --idle more sessions sit in IDLE on INBOX, against
accessd (with real mailstored and the stand-in identityd) and against
Dovecot (Debian dovecot-imapd, a throwaway config with a passwd-file user
and a Maildir) holding the same messages, in the same run. Prints
commands/s and p50/p99 latency per command for each, the ratio
accessd/Dovecot and the load average; --runs repeats the pair back to back
on the same servers.

  bench/access/imap_load.py --build-dir build-access --clients 20 --seconds 20 --runs 3

Plain IMAP on loopback for both (accessd with --allow-plaintext-auth,
Dovecot with disable_plaintext_auth=no). A benchmark prints numbers; it
asserts nothing.
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
COMMANDS = ["LOGIN", "SELECT", "FETCH_HEADERS", "FETCH_BODY", "STORE", "LOGOUT"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("port %d never opened" % port)


def message(i):
    body = ("Line %d of a typical message body, some words to make it realistic.\r\n" % i) * 40
    return ("From: Sender %d <sender%d@example.org>\r\nTo: %s\r\nSubject: Message number %d\r\n"
            "Date: Mon, 1 Jan 2024 10:%02d:00 +0000\r\nMessage-ID: <m%d@example.org>\r\n\r\n%s"
            % (i, i, USER, i, i % 60, i, body)).encode()


class Client:
    def __init__(self, port, stats):
        self.port, self.stats, self.n = port, stats, 0

    async def cmd(self, name, text, literal=None):
        self.n += 1
        tag = b"t%d" % self.n
        t0 = time.perf_counter()
        if literal is None:
            self.w.write(tag + b" " + text + b"\r\n")
        else:
            self.w.write(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        await self.w.drain()
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            if line.endswith(b"}\r\n") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1:-3])
                await self.r.readexactly(size)
                continue
            if line.startswith(tag + b" "):
                ok = line.split()[1] == b"OK"
                if name:
                    self.stats.setdefault(name, []).append(time.perf_counter() - t0)
                if not ok:
                    raise RuntimeError(line)
                return

    async def loop(self, deadline, count):
        while time.time() < deadline:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
            await self.r.readline()
            await self.cmd("LOGIN", b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))
            await self.cmd("SELECT", b"SELECT INBOX")
            await self.cmd("FETCH_HEADERS", b"FETCH 1:50 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject Date)])")
            n = 1 + self.n % count
            await self.cmd("FETCH_BODY", b"FETCH %d BODY.PEEK[]" % n)
            await self.cmd("STORE", b"STORE %d +FLAGS (\\Flagged)" % n)
            await self.cmd("LOGOUT", b"LOGOUT")
            self.w.close()


async def idler(port, ready, stop):
    c = Client(port, {})
    c.r, c.w = await asyncio.open_connection("127.0.0.1", port)
    await c.r.readline()
    await c.cmd(None, b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))
    await c.cmd(None, b"SELECT INBOX")
    c.w.write(b"i IDLE\r\n")
    await c.w.drain()
    line = await c.r.readline()
    if not line.startswith(b"+"):
        raise RuntimeError(b"IDLE refused: " + line)
    ready.set_result(None) if not ready.done() else None
    await stop.wait()
    c.w.write(b"DONE\r\n")
    await c.w.drain()
    c.w.close()


async def drive(port, clients, seconds, count, idle):
    stats = {}
    stop = asyncio.Event()
    idlers, readies = [], []
    for _ in range(idle):
        ready = asyncio.get_running_loop().create_future()
        readies.append(ready)
        idlers.append(asyncio.ensure_future(idler(port, ready, stop)))
        await asyncio.wait([ready, idlers[-1]], return_when=asyncio.FIRST_COMPLETED)
        if idlers[-1].done() and idlers[-1].exception():
            raise idlers[-1].exception()
    deadline = time.time() + seconds
    t0 = time.time()
    results = await asyncio.gather(*(Client(port, stats).loop(deadline, count) for _ in range(clients)),
                                   return_exceptions=True)
    elapsed = time.time() - t0
    stop.set()
    results += await asyncio.gather(*idlers, return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    return stats, elapsed, errors


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def report(name, stats, elapsed, errors):
    total = sum(len(v) for v in stats.values())
    print("%-9s %7.0f commands/s over %.1fs (%d errors%s), load average after: %s" %
          (name, total / elapsed, elapsed, len(errors), (": " + repr(errors[0])) if errors else "",
           loadavg()))
    for c in COMMANDS:
        v = sorted(stats.get(c, []))
        if not v:
            continue
        p = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1000
        print("  %-14s n=%6d  p50 %7.2f ms  p99 %7.2f ms" % (c, len(v), p(0.5), p(0.99)))
    return total / elapsed


async def load_messages(port, count):
    c = Client(port, {})
    c.r, c.w = await asyncio.open_connection("127.0.0.1", port)
    await c.r.readline()
    await c.cmd(None, b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))
    for i in range(count):
        await c.cmd(None, b"APPEND INBOX", message(i))
    await c.cmd(None, b"LOGOUT")


def start_dovecot(d, port):
    mail = os.path.join(d, "dovecot-mail")
    os.makedirs(mail)
    shutil.chown(mail, "dovecot", "dovecot")
    with open(os.path.join(d, "users"), "w") as f:
        f.write("%s:{PLAIN}%s:%d:%d::%s\n" % (USER, PASSWORD, 104, 107, mail))
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("""protocols = imap
listen = 127.0.0.1
base_dir = {d}/dovecot-run
state_dir = {d}/dovecot-state
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 100
mail_max_userip_connections = 100000
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  process_min_avail = 2
  service_count = 0
}}
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
""".format(d=d, port=port))
    p = subprocess.Popen(["dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--idle", type=int, default=50, help="sessions in IDLE during the run")
    ap.add_argument("--runs", type=int, default=1, help="accessd+Dovecot pairs, back to back")
    ap.add_argument("--only", choices=["accessd", "dovecot"])
    ap.add_argument("--accessd-flag", action="append", default=[], help="extra accessd flag (repeatable)")
    args = ap.parse_args()
    bin_dir = os.path.join(os.path.abspath(args.build_dir), "bin")
    d = tempfile.mkdtemp(prefix="imap-load-")
    os.chmod(d, 0o755)
    procs = []
    try:
        print("machine: %d cores, load average %s; %d clients, %d in IDLE, %d messages, %ds per side" %
              (os.cpu_count(), loadavg(), args.clients, args.idle, args.messages, args.seconds))
        imap = port = None
        if args.only != "dovecot":
            key, pub = os.path.join(d, "k.pem"), os.path.join(d, "k.pub")
            subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
            ms, ident, imap = free_port(), free_port(), free_port()
            log = open(os.path.join(d, "log"), "w")
            procs.append(subprocess.Popen([os.path.join(bin_dir, "mailstored"), "--listen=127.0.0.1:%d" % ms,
                                           "--metrics-listen=127.0.0.1:0", "--data-dir=" + os.path.join(d, "ms"),
                                           "--store=local", "--token-public-key=" + pub], stdout=log, stderr=log))
            procs.append(subprocess.Popen([os.path.join(bin_dir, "access_fake_identityd"),
                                           "127.0.0.1:%d" % ident, key, "127.0.0.1:%d" % ms, "t-bench", USER,
                                           PASSWORD, "mbx-bench"], stdout=log, stderr=log))
            wait_port(ident)
            procs.append(subprocess.Popen([os.path.join(bin_dir, "accessd"), "--listen=127.0.0.1:0",
                                           "--metrics-listen=127.0.0.1:0", "--imap-listen=127.0.0.1:%d" % imap,
                                           "--identityd=127.0.0.1:%d" % ident, "--mailstored=127.0.0.1:%d" % ms,
                                           "--token-signing-key=" + key, "--allow-plaintext-auth",
                                           "--max-connections-per-ip=0"] + args.accessd_flag,
                                          stdout=log, stderr=log))
            wait_port(imap)
            asyncio.run(load_messages(imap, args.messages))
        if args.only != "accessd":
            port = free_port()
            procs.append(start_dovecot(d, port))
            asyncio.run(load_messages(port, args.messages))
        ratios = []
        for run in range(1, args.runs + 1):
            print("--- run %d of %d, load average before: %s" % (run, args.runs, loadavg()))
            a = b = None
            if imap:
                a = report("accessd", *asyncio.run(drive(imap, args.clients, args.seconds, args.messages, args.idle)))
            if port:
                b = report("dovecot", *asyncio.run(drive(port, args.clients, args.seconds, args.messages, args.idle)))
            if a and b:
                ratios.append(a / b)
                print("run %d: accessd/Dovecot throughput = %.2fx (%.0f / %.0f commands/s), load average %s" %
                      (run, a / b, a, b, loadavg()))
        if ratios:
            print("SUMMARY: accessd/Dovecot = %s; minimum %.2fx (target >= 1.0x in every run)" %
                  (" / ".join("%.2fx" % r for r in ratios), min(ratios)))
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
