"""A real dnsmasq on a free loopback port, serving the records a test
publishes: the DNS a tenant edits when it points its domain at us.

dnsmasq reads records from its command line only at start, so publishing
new records restarts it on the same port.
"""
import os
import shutil
import subprocess
import time

import mgtest


def available():
    return shutil.which("dnsmasq") is not None or os.path.exists("/usr/sbin/dnsmasq")


def txt_arg(name, value):
    # One TXT record is comma-separated character-strings of at most 255
    # bytes each (an RSA-2048 DKIM key needs two). On dnsmasq's command line
    # quotes are literal; none of our values contains a comma.
    if "," in value:
        raise ValueError("dnsmasq cannot serve a TXT value with a comma: %r" % value)
    parts = [value[i:i + 255] for i in range(0, len(value), 255)]
    return "--txt-record=%s,%s" % (name, ",".join(parts))


def records_to_args(records):
    """tenantd's DnsRecord list (mailctl --json) as dnsmasq arguments."""
    args = []
    for r in records:
        kind, name, value = r["type"], r["name"], r["value"]
        if kind == "DNS_RECORD_TYPE_MX":
            args.append("--mx-host=%s,%s,%d" % (name, value, r.get("priority", 0)))
        elif kind == "DNS_RECORD_TYPE_TXT":
            args.append(txt_arg(name, value))
        elif kind == "DNS_RECORD_TYPE_CNAME":
            args.append("--cname=%s,%s" % (name, value))
        else:
            raise ValueError("unknown record type %r" % kind)
    return args


class Dnsmasq:
    """Authoritative-ish for `zones` (answers NXDOMAIN there, never forwards)."""

    def __init__(self, workdir, zones, hosts=()):
        self.port = mgtest.free_port()
        self.workdir = workdir
        self.zones = list(zones)
        self.hosts = dict(hosts)  # name -> IPv4, e.g. CNAME and MX targets
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self, record_args=()):
        self.stop()
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        cmd = [binary, "--port=%d" % self.port, "--listen-address=127.0.0.1", "--bind-interfaces",
               "--no-resolv", "--no-hosts", "--keep-in-foreground", "--conf-file=/dev/null",
               "--log-facility=-", "--pid-file="]
        cmd += ["--local=/%s/" % z for z in self.zones]
        cmd += ["--host-record=%s,%s" % (n, ip) for n, ip in self.hosts.items()]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        cmd += list(record_args)
        log_path = os.path.join(self.workdir, "dnsmasq-%d.log" % time.monotonic_ns())
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def started():
            with open(log_path, "rb") as f:
                return b"started" in f.read() or self.proc.poll() is not None
        mgtest.eventually(started, "dnsmasq to start")
        if self.proc.poll() is not None:
            with open(log_path, "rb") as f:
                raise AssertionError("dnsmasq exited: " + f.read().decode("utf-8", "replace"))

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


def query_txt(server, name):
    """The TXT strings of `name` asked of `server` ("127.0.0.1:53") over UDP,
    joined per record as a resolver does (a DKIM key split into several
    character-strings is one value). A tiny RFC 1035 client, so that tests
    read DNS the way a peer MTA does without another package."""
    import random
    import socket
    import struct
    host, port = mgtest.host_port(server)
    qid = random.randrange(65536)
    qname = b"".join(bytes([len(p)]) + p for p in name.rstrip(".").encode().split(b".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 16, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(packet, (host, port))
        reply, _ = s.recvfrom(65535)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", reply[:12])
    if rid != qid or flags & 0x000F not in (0, 3):
        raise AssertionError("DNS %s TXT: bad reply flags %#x" % (name, flags))

    def skip_name(i):
        while True:
            n = reply[i]
            if n == 0:
                return i + 1
            if n & 0xC0 == 0xC0:
                return i + 2
            i += n + 1

    i = 12
    for _ in range(qd):
        i = skip_name(i) + 4
    out = []
    for _ in range(an):
        i = skip_name(i)
        rtype, _, _, rdlen = struct.unpack(">HHIH", reply[i:i + 10])
        i += 10
        if rtype == 16:
            j, parts = i, []
            while j < i + rdlen:
                n = reply[j]
                parts.append(reply[j + 1:j + 1 + n])
                j += n + 1
            out.append(b"".join(parts))
        i += rdlen
    return out
