"""The IMAP load generator bench/compare runs against both sides, the same
code for each (plain IMAP on loopback, LOGIN with a password):

- mix:   N clients each loop LOGIN, SELECT INBOX, FETCH 1:50 (FLAGS and
         three header fields), FETCH one whole body, STORE +FLAGS, LOGOUT;
- session: N clients each connect and LOGIN once before the clock starts,
         then loop SELECT INBOX, FETCH 1:50 headers, FETCH one body, STORE
         +FLAGS until the end, then LOGOUT: the mailbox work of signed-in
         clients, no password hashing (logins have their own row);
- login: N clients each loop connect, LOGIN, LOGOUT (the password hash
         check dominates: argon2id with the same parameters on both sides).

Results: operations/s over the run and p50/p99 per command. A benchmark
prints numbers; nothing here asserts a speed.
"""
import asyncio
import time

MIX = ["LOGIN", "SELECT", "FETCH_HEADERS", "FETCH_BODY", "STORE", "LOGOUT"]


def message(i, user):
    body = ("Line %d of a typical message body, some words to make it realistic.\r\n" % i) * 40
    return ("From: Sender %d <sender%d@example.org>\r\nTo: %s\r\nSubject: Message number %d\r\n"
            "Date: Mon, 1 Jan 2024 10:%02d:00 +0000\r\nMessage-ID: <m%d@example.org>\r\n\r\n%s"
            % (i, i, user, i, i % 60, i, body)).encode()


def quote(s):
    return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class Client:
    def __init__(self, port, user, password, stats):
        self.port, self.user, self.password, self.stats, self.n = port, user, password, stats, 0

    async def connect(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        greeting = await self.r.readline()
        if not greeting.startswith(b"* OK"):
            raise ConnectionError("greeting: %r" % greeting)

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
                raise ConnectionError("closed during %s" % name)
            if line.endswith(b"}\r\n") and b"{" in line:
                await self.r.readexactly(int(line[line.rindex(b"{") + 1:-3]))
                continue
            if line.startswith(tag + b" "):
                if line.split()[1] != b"OK":
                    raise RuntimeError("%s: %r" % (name, line))
                if name:
                    self.stats.setdefault(name, []).append(time.perf_counter() - t0)
                return

    async def login(self):
        await self.cmd("LOGIN", b"LOGIN " + quote(self.user) + b" " + quote(self.password))

    async def close(self):
        self.w.close()
        try:
            await self.w.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def mix_loop(self, deadline, count):
        while time.time() < deadline:
            await self.connect()
            await self.login()
            await self.cmd("SELECT", b"SELECT INBOX")
            await self.cmd("FETCH_HEADERS", b"FETCH 1:50 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject Date)])")
            n = 1 + self.n % count
            await self.cmd("FETCH_BODY", b"FETCH %d BODY.PEEK[]" % n)
            await self.cmd("STORE", b"STORE %d +FLAGS (\\Flagged)" % n)
            await self.cmd("LOGOUT", b"LOGOUT")
            await self.close()

    async def session_loop(self, deadline, count):
        """After connect() and login(): the mix without logins."""
        while time.time() < deadline:
            await self.cmd("SELECT", b"SELECT INBOX")
            await self.cmd("FETCH_HEADERS", b"FETCH 1:50 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject Date)])")
            n = 1 + self.n % count
            await self.cmd("FETCH_BODY", b"FETCH %d BODY.PEEK[]" % n)
            await self.cmd("STORE", b"STORE %d +FLAGS (\\Flagged)" % n)
        await self.cmd(None, b"LOGOUT")
        await self.close()

    async def login_loop(self, deadline):
        while time.time() < deadline:
            await self.connect()
            await self.login()
            await self.cmd(None, b"LOGOUT")
            await self.close()


async def _append(port, user, password, count):
    c = Client(port, user, password, {})
    await c.connect()
    await c.login()
    for i in range(count):
        await c.cmd(None, b"APPEND INBOX", message(i, user))
    await c.cmd(None, b"LOGOUT")
    await c.close()


def fill_inbox(port, user, password, count):
    asyncio.run(_append(port, user, password, count))


async def _drive(port, user, password, clients, seconds, kind, count):
    stats = {}
    sessions = []
    if kind == "session":
        # Every client signs in before the clock starts: the row measures
        # signed-in work only, so neither side's password hashing counts.
        sessions = [Client(port, user, password, {}) for _ in range(clients)]
        await asyncio.gather(*[c.connect() for c in sessions])
        await asyncio.gather(*[c.login() for c in sessions])
        for c in sessions:
            c.stats = stats
    deadline = time.time() + seconds
    t0 = time.time()
    loops = []
    for i in range(clients):
        c = sessions[i] if sessions else Client(port, user, password, stats)
        if kind == "mix":
            loops.append(c.mix_loop(deadline, count))
        elif kind == "session":
            loops.append(c.session_loop(deadline, count))
        else:
            loops.append(c.login_loop(deadline))
    results = await asyncio.gather(*loops, return_exceptions=True)
    elapsed = time.time() - t0
    return stats, elapsed, [r for r in results if isinstance(r, Exception)]


def run(port, user, password, clients, seconds, kind, count=100):
    """{"rate": commands/s (mix, session) or logins/s (login), "p50"/"p99": {command: ms}, "errors": [...]}"""
    stats, elapsed, errors = asyncio.run(_drive(port, user, password, clients, seconds, kind, count))
    out = {"errors": errors, "p50": {}, "p99": {}}
    for name, v in stats.items():
        v.sort()
        out["p50"][name] = v[len(v) // 2] * 1000
        out["p99"][name] = v[min(len(v) - 1, int(0.99 * len(v)))] * 1000
    if kind == "login":
        total = len(stats.get("LOGIN", []))
    else:
        total = sum(len(v) for k, v in stats.items() if kind == "mix" or k != "LOGIN")
    out["rate"] = total / elapsed
    return out
