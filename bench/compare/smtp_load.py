"""The SMTP load generator bench/compare uses for the time to 250 (smtp-source,
which gives the inbound rates, reports no per-message latency).

N sessions, each one connection that sends its share of the messages back to
back (EHLO once; MAIL, RCPT, DATA, the message, "."; RSET-free like
smtp-source -d), the same bytes to both sides. For every message the time
from sending MAIL FROM to the 250 after the final dot is recorded: the time
to 250 a client sees for the whole transaction. Returns messages/s over the
run and p50/p99 of that time. Nothing here asserts a speed.
"""
import asyncio
import time


def _message(size):
    head = b"From: <sender@example.org>\r\nTo: <bench@example.test>\r\nSubject: compare load\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    body = line * max(0, (size - len(head)) // len(line))
    return head + body + b".\r\n"


async def _reply(r):
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("connection closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), line


async def _expect(r, code, what):
    got, line = await _reply(r)
    if got != code:
        raise RuntimeError("%s: %r" % (what, line))


async def _session(port, rcpt, data, count, times):
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await _expect(r, 220, "greeting")
    w.write(b"EHLO load.example.org\r\n")
    await _expect(r, 250, "EHLO")
    for _ in range(count):
        t0 = time.perf_counter()
        w.write(b"MAIL FROM:<sender@example.org>\r\n")
        await _expect(r, 250, "MAIL")
        w.write(b"RCPT TO:<%s>\r\n" % rcpt.encode())
        await _expect(r, 250, "RCPT")
        w.write(b"DATA\r\n")
        await _expect(r, 354, "DATA")
        w.write(data)
        await w.drain()
        await _expect(r, 250, "end of data")
        times.append(time.perf_counter() - t0)
    w.write(b"QUIT\r\n")
    try:
        await _reply(r)
    except ConnectionError:
        pass
    w.close()


async def _drive(port, rcpt, size, sessions, messages):
    data = _message(size)
    times = []
    share = [messages // sessions + (1 if i < messages % sessions else 0) for i in range(sessions)]
    t0 = time.time()
    results = await asyncio.gather(*[_session(port, rcpt, data, n, times) for n in share if n],
                                   return_exceptions=True)
    return times, time.time() - t0, [x for x in results if isinstance(x, Exception)]


def run(port, rcpt, size, sessions, messages):
    """{"sent": n, "rate": msgs/s, "p50_ms", "p99_ms", "errors": [...]}"""
    times, elapsed, errors = asyncio.run(_drive(port, rcpt, size, sessions, messages))
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000 if times else 0.0  # noqa: E731
    return {"sent": len(times), "rate": len(times) / elapsed, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "errors": errors}
