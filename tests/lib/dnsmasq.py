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
