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

--cluster runs accessd inside a whole cluster instead (`tools/mailgrid up
--demo --replicas 3` in a temporary directory: real identityd checking an
argon2id hash, real mailstored replicated by Raft, relayd, tenantd), with
the demo user; Dovecot's user then gets an argon2id hash with the same
parameters (--argon2-ops/--argon2-mem-kib, passed to identityd too), as
bench/compare/run does. Every daemon must be built in --build-dir.

--ab-accessd BIN (with --cluster): a second accessd, this binary, started
with the cluster accessd's own flags and environment on other ports, is
measured in the same runs between the cluster's accessd and Dovecot: an A/B
of two accessd builds against the same cluster, same load.

--login once: each client logs in once and loops SELECT, FETCH headers,
FETCH body, STORE (what a mail client does); every: LOGIN ... LOGOUT each
iteration; both (default): the two mixes one after the other in each run,
each with its own ratio.

Plain IMAP on loopback for both (accessd with --allow-plaintext-auth,
Dovecot with disable_plaintext_auth=no). A benchmark prints numbers; it
asserts nothing.
"""
import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import sys
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

    async def connect(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        await self.r.readline()
        await self.cmd("LOGIN", b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))

    async def mix(self, count):
        await self.cmd("SELECT", b"SELECT INBOX")
        await self.cmd("FETCH_HEADERS", b"FETCH 1:50 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject Date)])")
        n = 1 + self.n % count
        await self.cmd("FETCH_BODY", b"FETCH %d BODY.PEEK[]" % n)
        await self.cmd("STORE", b"STORE %d +FLAGS (\\Flagged)" % n)

    async def loop(self, deadline, count, login_every=True):
        if not login_every:
            # A mail client: one login, then the mix again and again.
            await self.connect()
            while time.time() < deadline:
                await self.mix(count)
            await self.cmd("LOGOUT", b"LOGOUT")
            self.w.close()
            return
        while time.time() < deadline:
            await self.connect()
            await self.mix(count)
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


async def drive(port, clients, seconds, count, idle, login_every=True):
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
    results = await asyncio.gather(*(Client(port, stats).loop(deadline, count, login_every)
                                     for _ in range(clients)),
                                   return_exceptions=True)
    elapsed = time.time() - t0
    stop.set()
    results += await asyncio.gather(*idlers, return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    return stats, elapsed, errors


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def server_cpu(pids):
    """CPU seconds of these processes and all their descendants, reaped
    children included (Dovecot's short-lived imap processes count after they
    exit)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    by_pid, todo = {}, list(pids)
    while todo:
        pid = todo.pop()
        if pid in by_pid:
            continue
        try:
            with open("/proc/%d/stat" % pid) as f:
                text = f.read()
            fields = text.rsplit(")", 1)[1].split()
            by_pid[pid] = (text[text.index("(") + 1:text.rindex(")")],
                           sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError):
            continue
        todo.extend(children.get(pid, []))
    return by_pid


def measured(pids, fn):
    """Runs fn(); returns its result and the servers' CPU seconds meanwhile,
    in all and by process (pid, name) of the processes that exist at both ends."""
    before = server_cpu(pids)
    result = fn()
    after = server_cpu(pids)
    total = sum(c for _, c in after.values()) - sum(c for _, c in before.values())
    parts = {}
    for pid, (name, c) in after.items():
        if pid in before:
            parts["%s[%d]" % (name, pid)] = c - before[pid][1]
    return result, (total, parts)


def report(name, stats, elapsed, errors, cpu=None):
    total = sum(len(v) for v in stats.values())
    print("%-9s %7.0f commands/s over %.1fs (%d errors%s), load average after: %s" %
          (name, total / elapsed, elapsed, len(errors), (": " + repr(errors[0])) if errors else "",
           loadavg()))
    if cpu is not None and total:
        cpu, parts = cpu
        print("  server CPU: %.2f ms per command (%.1f s in all); by process, ms per command: %s" % (
            cpu * 1000 / total, cpu, ", ".join("%s %.2f" % (k, v * 1000 / total) for k, v in
                                               sorted(parts.items(), key=lambda kv: -kv[1]) if v >= 0.01)))
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


def start_dovecot(d, port, argon2=None):
    mail = os.path.join(d, "dovecot-mail")
    os.makedirs(mail)
    shutil.chown(mail, "dovecot", "dovecot")
    scheme = "{PLAIN}" + PASSWORD
    if argon2:
        # identityd's parameters, in the PHC string Dovecot's ARGON2ID reads.
        import nacl.pwhash
        ops, mem_kib = argon2
        scheme = "{ARGON2ID}" + nacl.pwhash.argon2id.str(PASSWORD.encode(), opslimit=ops,
                                                         memlimit=mem_kib * 1024).decode()
    with open(os.path.join(d, "users"), "w") as f:
        f.write("%s:%s:%d:%d::%s\n" % (USER, scheme, 104, 107, mail))
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
    # Its own session, as tools/mailgrid gives every daemon: with autogroup
    # scheduling a server in the load generator's session is favoured on a
    # loaded machine (bench/access/README.md).
    p = subprocess.Popen(["dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    wait_port(port)
    return p


def start_twin_accessd(cluster_dir, binary, log_path):
    """Starts `binary` as a second accessd of the running cluster: the cluster
    accessd's command line and environment with fresh ports. Returns
    (process, imap port)."""
    with open(os.path.join(cluster_dir, "run", "accessd-1.pid")) as f:
        pid = int(f.read().strip())
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open("/proc/%d/environ" % pid, "rb") as f:
        env = dict(kv.decode().split("=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    imap = free_port()
    args = [binary]
    for a in argv[1:]:
        if a.startswith("--listen="):
            a = "--listen=127.0.0.1:%d" % free_port()
        elif a.startswith("--metrics-listen="):
            a = "--metrics-listen=127.0.0.1:0"
        elif a.startswith("--data-dir="):
            a = "--data-dir=" + os.path.join(cluster_dir, "data", "accessd-ab")
        args.append(a)
    env["MAILGRID_IMAP_LISTEN"] = "127.0.0.1:%d" % imap
    for k in ("MAILGRID_IMAPS_LISTEN", "MAILGRID_POP3_LISTEN", "MAILGRID_POP3S_LISTEN"):
        if k in env:
            env[k] = "127.0.0.1:0"
    p = subprocess.Popen(args, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                         start_new_session=True)  # like the cluster's own accessd
    wait_port(imap)
    return p, imap


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
    ap.add_argument("--cluster", action="store_true",
                    help="accessd in a whole 3-replica cluster (tools/mailgrid up), argon2id on both sides")
    ap.add_argument("--login", choices=["once", "every", "both"], default="both",
                    help="log in once per client, every iteration, or run both mixes")
    ap.add_argument("--ab-accessd", help="--cluster: also measure this accessd binary on the same cluster")
    ap.add_argument("--argon2-ops", type=int, default=2, help="argon2id t (--cluster; identityd's default)")
    ap.add_argument("--argon2-mem-kib", type=int, default=19 * 1024, help="argon2id m (--cluster)")
    args = ap.parse_args()
    global USER, PASSWORD
    bin_dir = os.path.join(os.path.abspath(args.build_dir), "bin")
    d = tempfile.mkdtemp(prefix="imap-load-")
    os.chmod(d, 0o755)
    procs = []
    cluster_dir = None
    try:
        print("machine: %d cores, load average %s; %d clients, %d in IDLE, %d messages, %ds per side" %
              (os.cpu_count(), loadavg(), args.clients, args.idle, args.messages, args.seconds))
        imap = port = imap_b = twin = None
        if args.cluster and args.only != "dovecot":
            os.environ["MAILGRID_BUILD_DIR"] = os.path.abspath(args.build_dir)
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
            import mgtest
            cluster_dir = os.path.join(d, "mailgrid")
            mgtest.launcher("up", "--no-build", "--demo", "--replicas", "3", data_dir=cluster_dir, env={
                "MAILGRID_ALLOW_PLAINTEXT_AUTH": "true",
                "MAILGRID_ARGON2_OPS": str(args.argon2_ops),
                "MAILGRID_ARGON2_MEM_KIB": str(args.argon2_mem_kib),
            })
            with open(os.path.join(cluster_dir, "cluster.json")) as f:
                cluster = json.load(f)
            imap = int(cluster["imap"].rsplit(":", 1)[1])
            demo = cluster["demo"]["users"][1]
            USER, PASSWORD = demo["address"], demo["password"]
            print("cluster: %s, user %s (argon2id t=%d m=%d KiB on both sides)" %
                  (cluster_dir, USER, args.argon2_ops, args.argon2_mem_kib))
            asyncio.run(load_messages(imap, args.messages))
            if args.ab_accessd:
                twin, imap_b = start_twin_accessd(cluster_dir, os.path.abspath(args.ab_accessd),
                                                  os.path.join(d, "accessd-ab.log"))
                procs.append(twin)
                print("A/B: accessd A = %s, accessd B = %s (same cluster)" %
                      (os.path.join(bin_dir, "accessd"), os.path.abspath(args.ab_accessd)))
        elif args.only != "dovecot":
            key, pub = os.path.join(d, "k.pem"), os.path.join(d, "k.pub")
            subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
            ms, ident, imap = free_port(), free_port(), free_port()
            log = open(os.path.join(d, "log"), "w")
            procs.append(subprocess.Popen([os.path.join(bin_dir, "mailstored"), "--listen=127.0.0.1:%d" % ms,
                                           "--metrics-listen=127.0.0.1:0", "--data-dir=" + os.path.join(d, "ms"),
                                           "--store=local", "--token-public-key=" + pub], stdout=log, stderr=log,
                                          start_new_session=True))
            procs.append(subprocess.Popen([os.path.join(bin_dir, "access_fake_identityd"),
                                           "127.0.0.1:%d" % ident, key, "127.0.0.1:%d" % ms, "t-bench", USER,
                                           PASSWORD, "mbx-bench"], stdout=log, stderr=log,
                                          start_new_session=True))
            wait_port(ident)
            procs.append(subprocess.Popen([os.path.join(bin_dir, "accessd"), "--listen=127.0.0.1:0",
                                           "--metrics-listen=127.0.0.1:0", "--imap-listen=127.0.0.1:%d" % imap,
                                           "--identityd=127.0.0.1:%d" % ident, "--mailstored=127.0.0.1:%d" % ms,
                                           "--token-signing-key=" + key, "--allow-plaintext-auth",
                                           "--max-connections-per-ip=0"] + args.accessd_flag,
                                          stdout=log, stderr=log, start_new_session=True))
            wait_port(imap)
            asyncio.run(load_messages(imap, args.messages))
        if args.only != "accessd":
            port = free_port()
            procs.append(start_dovecot(d, port, (args.argon2_ops, args.argon2_mem_kib) if args.cluster else None))
            asyncio.run(load_messages(port, args.messages))
        # Whose CPU counts: every mailgrid daemon of the cluster (or the
        # stand-in's three processes), and Dovecot's master with its children.
        mg_pids, dc_pids = [], []
        if cluster_dir:
            run_dir = os.path.join(cluster_dir, "run")
            for name in os.listdir(run_dir):
                with open(os.path.join(run_dir, name)) as f:
                    mg_pids.append(int(f.read().strip()))
        elif imap:
            mg_pids = [p.pid for p in procs[:3]]
        if port:
            dc_pids = [procs[-1].pid]
        # B runs against the same cluster: its CPU is every daemon's but the
        # cluster accessd's, plus its own; A's excludes B.
        a_pids, b_pids = mg_pids, []
        if twin:
            accessd_a = int(open(os.path.join(cluster_dir, "run", "accessd-1.pid")).read().strip())
            b_pids = [p for p in mg_pids if p != accessd_a] + [twin.pid]
        if mg_pids:
            # What the daemons burn with no client at all (Raft heartbeats,
            # background jobs): to tell it from the per-command cost below.
            _, (idle_cpu, parts) = measured(mg_pids, lambda: time.sleep(10))
            print("mailgrid servers with no client: %.0f ms CPU per second; by process: %s" % (
                idle_cpu * 100, ", ".join("%s %.0f" % (k, v * 100) for k, v in
                                          sorted(parts.items(), key=lambda kv: -kv[1]) if v >= 0.001)))
        modes = ["once", "every"] if args.login == "both" else [args.login]
        ratios = {m: [] for m in modes}
        ratios_b = {m: [] for m in modes}
        side = "accessd (cluster)" if args.cluster else "accessd"
        for run in range(1, args.runs + 1):
            for mode in modes:
                every = mode == "every"
                print("--- run %d of %d, login %s, load average before: %s" % (run, args.runs, mode, loadavg()))
                a = b = None
                ab = None
                # A then B in odd runs, B then A in even ones (the load of a
                # shared machine drifts).
                for which in (["A", "B"] if run % 2 else ["B", "A"]):
                    if which == "A" and imap:
                        r, cpu = measured(a_pids, lambda: asyncio.run(drive(
                            imap, args.clients, args.seconds, args.messages, args.idle, every)))
                        a = report(side, *r, cpu=cpu)
                    if which == "B" and imap_b:
                        r, cpu = measured(b_pids, lambda: asyncio.run(drive(
                            imap_b, args.clients, args.seconds, args.messages, args.idle, every)))
                        ab = report("accessd B", *r, cpu=cpu)
                if ab is not None and a:
                    ratios_b[mode].append(ab / a)
                if port:
                    r, cpu = measured(dc_pids, lambda: asyncio.run(drive(
                        port, args.clients, args.seconds, args.messages, args.idle, every)))
                    b = report("dovecot", *r, cpu=cpu)
                if a and b:
                    ratios[mode].append(a / b)
                    print("run %d, login %s: %s/Dovecot throughput = %.2fx (%.0f / %.0f commands/s), "
                          "load average %s" % (run, mode, side, a / b, a, b, loadavg()))
                if imap_b and b and ratios_b[mode]:
                    print("run %d, login %s: accessd B/Dovecot = %.2fx, accessd B/accessd A = %.2fx" %
                          (run, mode, ratios_b[mode][-1] * a / b, ratios_b[mode][-1]))
        for mode in modes:
            if ratios[mode]:
                print("SUMMARY login %s: %s/Dovecot = %s; minimum %.2fx (target >= 1.0x in every run)" %
                      (mode, side, " / ".join("%.2fx" % r for r in ratios[mode]), min(ratios[mode])))
            if ratios_b[mode]:
                print("SUMMARY login %s: accessd B/accessd A = %s" %
                      (mode, " / ".join("%.2fx" % r for r in ratios_b[mode])))
    finally:
        if cluster_dir:
            mgtest.launcher("down", data_dir=cluster_dir, check=False)
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
