#!/usr/bin/env python3
"""relayd's outbound delivery end to end (issue 9): real relayd + tenantd +
identityd + mailstored started by the local launcher, a real Postfix
smtp-sink as the remote MX on a free loopback port, a real dnsmasq serving
the remote domain's MX, and Python's dkimpy (Debian python3-dkim) as the
independent DKIM verifier.

  1. a message submitted (587, STARTTLS + AUTH) to a remote domain arrives
     at the sink, DKIM-signed; dkimpy verifies it against the key tenantd
     publishes (mailctl domain records);
  2. the peer answers 550 to RCPT: the sender gets a DSN in her INBOX;
  3. the peer is down: the entry is DEFERRED (mailctl queue list shows
     it); the peer comes back; mailctl queue retry delivers it.
  4. smart-host AUTH with failover: a route's first smart host is down, the
     second is a second relayd's submission listener (a real server that
     requires STARTTLS + AUTH, backed by identityd) with its own queue
     store (a replicad): the message goes through it, authenticated, to
     the sink; wrong credentials defer with the server's 535; credentials
     over TLS_MODE_NONE are refused at SetRoute.
  5. MTA-STS: dnsmasq publishes the TXT records, a local HTTPS server
     (python, certificate from a test CA given to relayd with
     --mta-sts-ca-file) serves the policies: enforce + an MX without
     STARTTLS → deferred; enforce + an MX not in the policy → deferred;
     testing + the same mismatch → delivered (reported only).
  6. region routes: relayd runs with --route-regions (a .example domain
     mapped to JP); a route {region: JP} to the sink carries mail to a .jp
     domain (ccTLD) and to the mapped domain, neither of which has an MX.
  7. lease renewal: relayd's lease is 8 s and a second smtp-sink answers
     DATA after 20 s (a slow peer); relayd runs four runner threads, so a
     lapsed lease would be re-leased and the message sent twice: it arrives
     exactly once.
  8. per-destination concurrency: a route with concurrency_limit 2 to a
     third smtp-sink, stopped (SIGSTOP) so every connection hangs at the
     greeting; six messages to it open exactly two connections (counted
     with ss), while mail to another destination is delivered meanwhile by
     the runner's other threads; once the peer resumes all six arrive over
     at most two connections at a time, sessions reused.
  9. MTA-STS with real TLS peers: two private Postfix instances with
     STARTTLS on 127.0.0.2 and 127.0.0.3 (same port as the sink): one with
     a certificate for its MX name from the policy CA, one self-signed.
     enforce + the valid certificate → delivered over TLS (ESMTPS);
     enforce + the same server under another MX name (name mismatch) →
     deferred, nothing sent; enforce + the self-signed one → deferred;
     testing + the self-signed one → delivered and reported
     (mailgrid_relay_mta_sts_failures_total{mode="testing"}).

Nothing is skipped: a missing binary or module fails the test saying which.
"""
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

NEEDED = ["tenantd", "identityd", "mailstored", "relayd", "mailctl", "relay_testctl"]
PASSWORD = "Correct-Horse-Battery-9"
SINK = "/usr/sbin/smtp-sink"
DNSMASQ = "/usr/sbin/dnsmasq"
REMOTE = "remote.example"
AUTH_DOMAIN = "auth.example"
BADAUTH_DOMAIN = "badauth.example"
STS_ENFORCE = "sts.example"      # enforce; MX mx.sts.example matches, but the sink has no STARTTLS
STS_MISMATCH = "stsbad.example"  # enforce; MX mx.remote.example is not in the policy
STS_TESTING = "stst.example"     # testing; same mismatch: delivered anyway
REGION_MAPPED = "corp-jp.example"  # --route-regions maps it to JP; no MX anywhere
SLOW_DOMAIN = "slow.example"       # routed to a smtp-sink that answers DATA after 20 s
BUSY_DOMAIN = "busy.example"       # routed (concurrency 2) to a smtp-sink the test pauses
TLS_GOOD = "tlsgood.example"       # enforce; Postfix at 127.0.0.2, certificate for its MX name
TLS_NAME = "tlsname.example"       # enforce; its MX name is another name for the same Postfix
TLS_CA = "tlsca.example"           # enforce; Postfix at 127.0.0.3 with a self-signed certificate
TLS_TESTING = "tlstest.example"    # testing; MX is that self-signed Postfix: delivered, reported
TLS_PEERS = {TLS_GOOD: "127.0.0.2", TLS_NAME: "127.0.0.2", TLS_CA: "127.0.0.3", TLS_TESTING: "127.0.0.3"}
LEASE = "8s"
POLICIES = {
    "mta-sts." + STS_ENFORCE: "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.example\r\nmax_age: 600\r\n",
    "mta-sts." + STS_MISMATCH: "version: STSv1\r\nmode: enforce\r\nmx: good.stsbad.example\r\nmax_age: 600\r\n",
    "mta-sts." + STS_TESTING: "version: STSv1\r\nmode: testing\r\nmx: good.stst.example\r\nmax_age: 600\r\n",
}
for _d in TLS_PEERS:
    POLICIES["mta-sts." + _d] = "version: STSv1\r\nmode: %s\r\nmx: mx.%s\r\nmax_age: 600\r\n" % (
        "testing" if _d == TLS_TESTING else "enforce", _d)


def start(cmd, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


def can_connect(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Peers:
    """dnsmasq answering MX remote.example -> 127.0.0.1, and smtp-sink."""

    def __init__(self, work):
        self.work = work
        self.dns_port = mgtest.free_port()
        self.sink_port = mgtest.free_port()
        self.dump = os.path.join(work, "dump")
        os.makedirs(self.dump)
        os.chmod(work, 0o777)
        os.chmod(self.dump, 0o777)  # smtp-sink runs as nobody when started as root
        self.dns = None
        self.sink = None

    def start_dns(self):
        cmd = [DNSMASQ, "--port=%d" % self.dns_port, "--listen-address=127.0.0.1", "--bind-interfaces",
               "--no-resolv", "--no-hosts", "--keep-in-foreground", "--conf-file=/dev/null",
               "--log-facility=-", "--pid-file=", "--local=/%s/" % REMOTE,
               "--mx-host=%s,mx.%s,10" % (REMOTE, REMOTE), "--host-record=mx.%s,127.0.0.1" % REMOTE]
        # The domains of tests 4 and 5: their MX is the sink too.
        for d in (AUTH_DOMAIN, BADAUTH_DOMAIN, STS_MISMATCH, STS_TESTING):
            cmd += ["--local=/%s/" % d, "--mx-host=%s,mx.%s,10" % (d, REMOTE)]
        cmd += ["--local=/%s/" % STS_ENFORCE, "--mx-host=%s,mx.%s,10" % (STS_ENFORCE, STS_ENFORCE),
                "--host-record=mx.%s,127.0.0.1" % STS_ENFORCE]
        for d, ip in TLS_PEERS.items():  # test 9: each MX is a TLS Postfix
            cmd += ["--local=/%s/" % d, "--mx-host=%s,mx.%s,10" % (d, d), "--host-record=mx.%s,%s" % (d, ip)]
        for i, d in enumerate((STS_ENFORCE, STS_MISMATCH, STS_TESTING) + tuple(TLS_PEERS)):
            cmd += ["--txt-record=_mta-sts.%s,v=STSv1; id=%d" % (d, i + 1),
                    "--host-record=mta-sts.%s,127.0.0.1" % d]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        log = os.path.join(self.work, "dnsmasq.log")
        self.dns = start(cmd, log)
        mgtest.eventually(lambda: b"started" in read(log) or self.dns.poll() is not None,
                          "dnsmasq to start")
        if self.dns.poll() is not None:
            raise AssertionError("dnsmasq exited: " + read(log).decode("utf-8", "replace"))

    def start_sink(self, *extra):
        self.stop_sink()
        cmd = [SINK]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        cmd += ["-d", os.path.join(self.dump, "%M.")] + list(extra) + ["127.0.0.1:%d" % self.sink_port, "10"]
        self.sink = start(cmd, os.path.join(self.work, "sink.log"))
        mgtest.eventually(lambda: can_connect(self.sink_port), "smtp-sink to listen")

    def stop_sink(self):
        stop(self.sink)
        self.sink = None
        mgtest.eventually(lambda: not can_connect(self.sink_port), "smtp-sink to stop")

    def received(self, marker):
        out = []
        for name in os.listdir(self.dump):
            with open(os.path.join(self.dump, name), "rb") as f:
                data = f.read()
            if marker.encode() in data:
                out.append(data)
        return out

    def stop(self):
        stop(self.sink)
        stop(self.dns)


class PolicyServer:
    """The MTA-STS policy files over HTTPS (python's http.server), with a
    certificate for every mta-sts.<domain> from a CA made for the test."""

    def __init__(self, work):
        import http.server
        import threading
        self.work = work
        self.requests = []
        self.ca = os.path.join(work, "sts-ca.pem")
        cert, key = self.make_certs()
        self.port = mgtest.free_port()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                outer.requests.append((host, self.path))
                body = POLICIES.get(host)
                if self.path != "/.well-known/mta-sts.txt" or body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def make_certs(self):
        w = self.work
        ca_key, key = os.path.join(w, "sts-ca.key"), os.path.join(w, "sts.key")
        csr, cert, ext = os.path.join(w, "sts.csr"), os.path.join(w, "sts.pem"), os.path.join(w, "sts.ext")

        def openssl(*args):
            subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", ca_key, "-out", self.ca, "-days", "30", "-subj", "/CN=MTA-STS test CA")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % ",".join("DNS:" + h for h in POLICIES))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                "-out", csr, "-subj", "/CN=mta-sts")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
                "-out", cert, "-days", "30", "-extfile", ext)
        return cert, key

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def strip_sink_fields(dump):
    """The message as our relay sent it: smtp-sink prepends X-* envelope
    fields and its own Received field."""
    lines = dump.replace(b"\r\n", b"\n").split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(b"X-"):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received: from") and b"smtp-sink" in b"\n".join(lines[i:i + 3]):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])



class ConnectionSampler:
    """Counts the established TCP connections to a local port (ss, every
    20 ms, in a thread): the most seen at once, and every peer port seen."""

    def __init__(self, port):
        import threading
        self.port = port
        self.max = 0
        self.last = 0
        self.peers = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self):
        out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % self.port],
                             stdout=subprocess.PIPE, text=True).stdout
        peers = [line.split()[-1] for line in out.splitlines() if line.strip()]
        self.peers.update(peers)
        self.last = len(peers)
        self.max = max(self.max, self.last)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join()


class TlsPeer:
    """A private Postfix (tests/lib/postfix.py) offering STARTTLS with the
    given certificate, delivering every recipient of `domains` to one
    Maildir. relayd sends to every MX on one port (--outbound-mx-port), so
    peers differ by loopback address: Postfix starts on a free 127.0.0.1
    port, then its master.cf service moves to ip:port and it reloads."""

    def __init__(self, work, hostname, ip, port, cert, key, domains):
        import postfix
        self.ip, self.port = ip, port
        self.maildir = postfix.Maildir(os.path.join(work, "maildir"))
        settings = self.maildir.settings(domains)
        settings.update({"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
                         "smtpd_tls_security_level": "may", "smtpd_tls_received_header": "yes"})
        self.pf = postfix.Postfix(work, hostname, settings)

    def start(self):
        import socket
        self.pf.start()
        master = os.path.join(self.pf.conf, "master.cf")
        with open(master) as f:
            text = f.read()
        moved = text.replace("127.0.0.1:%d " % self.pf.port, "%s:%d " % (self.ip, self.port))
        if moved == text:
            raise AssertionError("the smtpd service of master.cf was not found")
        with open(master, "w") as f:
            f.write(moved)
        self.pf._postfix("reload")

        def listening():
            try:
                with socket.create_connection((self.ip, self.port), timeout=2):
                    return True
            except OSError:
                return False
        mgtest.eventually(listening, "Postfix to listen on %s:%d" % (self.ip, self.port))

    def stop(self):
        self.pf.stop()


class OutboundIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [b for b in NEEDED if not os.path.exists(mgtest.binary(b))]
        if missing:
            raise AssertionError("needs %s in %s (not built)" % (", ".join(missing), mgtest.BIN))
        for path in (SINK, DNSMASQ):
            if not os.path.exists(path):
                raise AssertionError("%s is missing (apt-get install -y postfix dnsmasq)" % path)
        try:
            import dkim  # noqa: F401
            import nacl  # noqa: F401
        except ImportError as e:
            raise AssertionError("python3-dkim and python3-nacl are needed: %s" % e)
        cls.work = mgtest.temp_dir("relay-out-")
        cls.peers = Peers(cls.work)
        cls.extra = []  # processes of test 4 (replicad, second relayd)
        cls.policies = None
        cls.peers.start_dns()
        cls.peers.start_sink()
        cls.data = os.path.join(cls.work, "cluster")
        cls.secrets = os.path.join(cls.work, "smarthost-secrets")
        os.makedirs(cls.secrets)
        env = {
            "MAILGRID_DNS_SERVER": "127.0.0.1:%d" % cls.peers.dns_port,
            "MAILGRID_OUTBOUND_MX_PORT": str(cls.peers.sink_port),
            # More threads than test 8's per-destination limit (2).
            "MAILGRID_QUEUE_THREADS": "4",
            "MAILGRID_OUTBOUND_SECRETS_DIR": cls.secrets,
            "MAILGRID_ROUTE_REGIONS": "*.%s=JP,%s=jp" % (REGION_MAPPED, REGION_MAPPED),
            # Short leases: test 7's slow peer outlasts one; renewals keep it.
            "MAILGRID_QUEUE_LEASE": LEASE,
        }
        try:
            cls.policies = PolicyServer(cls.work)
        except Exception:
            cls.peers.stop()
            raise
        env["MAILGRID_MTA_STS_PORT"] = str(cls.policies.port)
        env["MAILGRID_MTA_STS_CA_FILE"] = cls.policies.ca
        cls.env = dict(os.environ, MAILGRID_BUILD_DIR=mgtest.BUILD_DIR, **env)
        try:
            r = subprocess.run([mgtest.LAUNCHER, "up", "--no-build", "--demo", "--data", cls.data],
                               env=cls.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise AssertionError("tools/mailgrid up failed:\n" + r.stdout)
            with open(os.path.join(cls.data, "cluster.json")) as f:
                cls.doc = json.load(f)
            cls.domain = cls.doc["demo"]["domain"]
            cls.tenant_id = cls.doc["demo"]["tenant_id"]
            cls.key = os.path.join(cls.data, "secrets", "token.pem")
            cls.alice = cls.make_user("alice")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in reversed(getattr(cls, "extra", [])):
            stop(p)
        if getattr(cls, "data", None) and os.path.exists(cls.data):
            subprocess.run([mgtest.LAUNCHER, "down", "--data", cls.data], env=cls.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if cls.policies is not None:
            cls.policies.stop()
        cls.peers.stop()

    @classmethod
    def ctl(cls, *args, role="platform_operator", check=True):
        cmd = [mgtest.binary("mailctl"), "--cluster=" + os.path.join(cls.data, "cluster.json"), "--json"]
        cmd += list(args) + ["--token-key", cls.key, "--role", role]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cls.env)
        if check and r.returncode != 0:
            raise AssertionError("mailctl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        return r

    @classmethod
    def run_testctl(cls, *args):
        r = subprocess.run([mgtest.binary("relay_testctl")] + list(args) + ["--key", cls.key],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cls.env)
        if r.returncode != 0:
            raise AssertionError("relay_testctl %s failed: %s" % (args[0], r.stderr))
        return json.loads(r.stdout)

    @classmethod
    def make_user(cls, name):
        address = "%s-%d@%s" % (name, time.time_ns() % 1000000, cls.domain)
        user = cls.run_testctl("create-user", "--tenantd", cls.doc["grpc"]["tenantd"][0], "--tenant",
                           cls.tenant_id, "--address", address, "--name", name.title())
        cls.ctl("auth", "initial-password", cls.tenant_id, user["user_id"], PASSWORD, role="service")
        return user

    def inbox(self, user):
        out = self.run_testctl("messages", "--mailstored", ",".join(self.doc["grpc"]["mailstored"]),
                           "--tenant", self.tenant_id, "--user", user["user_id"],
                           "--mailbox", user["mailbox_id"], "--shard", str(user["shard"]))
        return [m["raw"] for m in out]

    def queue(self):
        r = self.ctl("queue", "list")
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip().startswith("{")]

    def submit(self, marker, to):
        host, port = self.doc["submission"].rsplit(":", 1)
        msg = ("From: Alice <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@%s>\r\n"
               "Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\nHello from the test, %s.\r\n") % (
                   self.alice["address"], to, marker, marker, self.domain, marker)
        ctx = ssl.create_default_context(cafile=self.doc["ca_cert"])
        ctx.check_hostname = False
        with smtplib.SMTP(host, int(port), timeout=120) as s:
            s.ehlo("laptop.test")
            s.starttls(context=ctx)
            s.ehlo("laptop.test")
            s.login(self.alice["address"], PASSWORD)
            refused = s.sendmail(self.alice["address"], [to], msg)
            self.assertEqual(refused, {})

    def dkim_txt(self):
        r = self.ctl("domain", "records", self.domain)
        doc = json.loads(r.stdout.strip().splitlines()[-1])
        out = {}
        for rec in doc.get("records", []):
            if rec.get("type") == "DNS_RECORD_TYPE_TXT" and "._domainkey." in rec.get("name", ""):
                out[rec["name"].rstrip(".").lower()] = rec["value"]
        return out

    # ---- 1. signed delivery to the remote MX ----------------------------

    def test_1_remote_delivery_is_dkim_signed(self):
        marker = "out-%d" % time.time_ns()
        self.submit(marker, "bob@" + REMOTE)
        got = mgtest.eventually(lambda: self.peers.received(marker), "the message at smtp-sink")
        self.assertEqual(len(got), 1)
        dump = got[0]
        self.assertIn(b"X-Rcpt-Args: <bob@remote.example>", dump)
        message = strip_sink_fields(dump)
        self.assertTrue(message.startswith(b"DKIM-Signature:"), message[:400])
        import dkim
        txt = self.dkim_txt()
        self.assertTrue(txt, "tenantd publishes no DKIM record for %s" % self.domain)

        def dnsfunc(name, timeout=5):
            n = name.decode() if isinstance(name, bytes) else name
            v = txt.get(n.rstrip(".").lower())
            return v.encode() if v else None

        # Every signature (one per ACTIVE key: Ed25519 and RSA) must verify.
        sigs = message.count(b"DKIM-Signature:")
        self.assertGreaterEqual(sigs, 1)
        d = dkim.DKIM(message)
        for i in range(sigs):
            self.assertTrue(d.verify(idx=i, dnsfunc=dnsfunc), "signature %d does not verify:\n%s" % (
                i, message[:1500].decode("utf-8", "replace")))
        # The queue entry is gone once delivered.
        mgtest.eventually(lambda: not [e for e in self.queue() if e.get("subject") == marker],
                          "the delivered entry to leave the queue")
        # Metrics: the delivery is counted and the queue store is up.
        def metric(prefix):
            for url in self.doc["metrics"]:
                _, body = mgtest.http_get(url)
                for line in body.splitlines():
                    if line.startswith(prefix):
                        return float(line.rsplit(" ", 1)[1])
            return None
        mgtest.eventually(lambda: (metric('mailgrid_relay_deliveries_total{path="remote",result="delivered"}')
                                   or 0) >= 1, "the remote delivery counted in /metrics")
        self.assertEqual(metric('mailgrid_relay_queue{what="store_up"}'), 1.0)
        self.assertIsNotNone(metric('mailgrid_relay_queue{what="depth"}'))

    # ---- 2. a permanent refusal becomes a DSN in the sender's INBOX ------

    def test_2_peer_550_produces_dsn_in_inbox(self):
        self.peers.start_sink("-f", "RCPT")
        try:
            marker = "bounce-%d" % time.time_ns()
            self.submit(marker, "nobody@" + REMOTE)

            def dsn():
                return [m for m in self.inbox(self.alice)
                        if "multipart/report" in m and marker in m]
            got = mgtest.eventually(dsn, "the DSN in alice's INBOX")
            self.assertEqual(len(got), 1)
            m = got[0]
            self.assertIn("report-type=delivery-status", m)
            self.assertIn("nobody@remote.example", m)
            self.assertIn("Action: failed", m)
            self.assertIn("Status: 5.", m)
            self.assertTrue(m.startswith("Return-Path: <>"), m[:200])
            self.assertEqual(self.peers.received(marker), [])
        finally:
            self.peers.start_sink()

    # ---- 3. peer down, then up: RetryNow delivers ------------------------

    def test_3_peer_down_then_retry_now_delivers(self):
        self.peers.stop_sink()
        marker = "later-%d" % time.time_ns()
        self.submit(marker, "carol@" + REMOTE)

        def deferred():
            for e in self.queue():
                if e.get("subject") == marker and e.get("state") == "QUEUE_STATE_DEFERRED":
                    return e
            return None
        entry = mgtest.eventually(deferred, "the entry DEFERRED in mailctl queue list")
        rcpt = entry["recipients"][0]
        self.assertEqual(rcpt["address"], "carol@" + REMOTE)
        self.assertEqual(rcpt["state"], "RECIPIENT_STATE_DEFERRED")
        self.assertIn("last_reply", rcpt)
        # The human view lists it too.
        r = subprocess.run([mgtest.binary("mailctl"), "--cluster=" + os.path.join(self.data, "cluster.json"),
                            "queue", "list", "--token-key", self.key], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(entry["queue_id"], r.stdout)
        self.assertIn("DEFERRED", r.stdout)
        self.assertEqual(self.peers.received(marker), [])

        self.peers.start_sink()
        self.ctl("queue", "retry", entry["queue_id"])
        got = mgtest.eventually(lambda: self.peers.received(marker), "the message after RetryNow")
        self.assertEqual(len(got), 1)
        mgtest.eventually(lambda: self.ctl("queue", "show", entry["queue_id"], check=False).returncode != 0,
                          "the entry to leave the queue")


    # ---- 4. smart-host AUTH after STARTTLS, with failover ---------------

    def start_auth_relay(self):
        """A second relayd: submission with STARTTLS + AUTH (identityd), its
        own queue on a one-replica replicad, direct MX delivery to the sink."""
        doc, data = self.doc, self.data
        rport = mgtest.free_port()
        rdir = os.path.join(self.work, "relay2-store")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILGRID_")}
        log = open(os.path.join(self.work, "replicad.log"), "ab")
        store = subprocess.Popen([mgtest.binary("replicad"), "--raft-id=1", "--raft-peers=1=127.0.0.1:%d" % rport,
                                  "--raft-group=relay2", "--listen=127.0.0.1:%d" % rport,
                                  "--metrics-listen=127.0.0.1:0", "--data-dir=" + rdir],
                                 stdout=log, stderr=subprocess.STDOUT, env=clean)
        self.extra.append(store)
        mgtest.eventually(lambda: mgtest.grpc_health("127.0.0.1:%d" % rport) == "SERVING", "replicad SERVING")
        sport = mgtest.free_port()
        tls_dir = os.path.join(data, "tls")
        cmd = [mgtest.binary("relayd"), "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
               "--submission-listen=127.0.0.1:%d" % sport,
               "--public-tls-cert=" + os.path.join(tls_dir, "server.pem"),
               "--public-tls-key=" + os.path.join(tls_dir, "server.key"),
               "--cluster-hostname=relay2.test",
               "--tenantd=" + ",".join(doc["grpc"]["tenantd"]),
               "--identityd=" + ",".join(doc["grpc"]["identityd"]),
               "--mailstored=" + ",".join(doc["grpc"]["mailstored"]),
               "--token-signing-key=" + os.path.join(data, "secrets", "token.pem"),
               "--token-public-key=" + os.path.join(data, "secrets", "token.pub"),
               "--queue-store=127.0.0.1:%d" % rport, "--queue-threads=1",
               "--dns-server=127.0.0.1:%d" % self.peers.dns_port,
               "--outbound-mx-port=%d" % self.peers.sink_port, "--inbound-auth=false",
               "--rate-user-per-hour=0", "--rate-tenant-per-hour=0"]
        log = open(os.path.join(self.work, "relayd2.log"), "ab")
        relay = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean)
        self.extra.append(relay)
        mgtest.eventually(lambda: can_connect(sport), "the second relayd's submission port")
        return sport

    def test_4_smart_host_auth_after_starttls_with_failover(self):
        sport = self.start_auth_relay()
        with open(os.path.join(self.secrets, "smarthost"), "w") as f:
            f.write("%s:%s\n" % (self.alice["address"], PASSWORD))
        with open(os.path.join(self.secrets, "wrong"), "w") as f:
            f.write("%s:not-the-password\n" % self.alice["address"])
        dead = mgtest.free_port()  # nothing listens: connection refused, next host
        self.ctl("route", "set", "--domain", AUTH_DOMAIN, "--smart-host",
                 "127.0.0.1:%d,127.0.0.1:%d" % (dead, sport), "--credentials-ref", "smarthost")
        self.ctl("route", "set", "--domain", BADAUTH_DOMAIN, "--smart-host", "127.0.0.1:%d" % sport,
                 "--credentials-ref", "wrong")
        # Credentials in clear text: refused unless explicitly allowed.
        r = self.ctl("route", "set", "--domain", "clear.example", "--smart-host", "127.0.0.1:%d" % sport,
                     "--tls", "none", "--credentials-ref", "smarthost", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("allow_plaintext_auth", r.stderr)

        marker = "auth-%d" % time.time_ns()
        self.submit(marker, "carol@" + AUTH_DOMAIN)
        got = mgtest.eventually(lambda: self.peers.received(marker), "the message through the AUTH smart host")
        self.assertEqual(len(got), 1)
        # It went through the second relayd, authenticated over TLS (RFC 3848 ESMTPSA).
        self.assertIn(b"relay2.test", got[0])
        self.assertIn(b"ESMTPSA", got[0])

        bad = "badauth-%d" % time.time_ns()
        self.submit(bad, "dave@" + BADAUTH_DOMAIN)

        def refused():
            for e in self.queue():
                if e.get("subject") == bad and e.get("state") == "QUEUE_STATE_DEFERRED":
                    return e
            return None
        entry = mgtest.eventually(refused, "the wrong-credentials entry DEFERRED")
        reply = entry["recipients"][0]["last_reply"]
        self.assertEqual(reply.get("code"), 535, reply)
        self.assertEqual(self.peers.received(bad), [])
        self.ctl("queue", "delete", entry["queue_id"], "--reason", "test done")

    # ---- 5. MTA-STS -------------------------------------------------------

    def deferred_entry(self, subject):
        for e in self.queue():
            if e.get("subject") == subject and e.get("state") == "QUEUE_STATE_DEFERRED":
                return e
        return None

    def test_5_mta_sts_enforce_defers_testing_delivers(self):
        enforce = "sts-enforce-%d" % time.time_ns()
        self.submit(enforce, "erin@" + STS_ENFORCE)
        e = mgtest.eventually(lambda: self.deferred_entry(enforce), "the enforce-mode entry DEFERRED")
        reason = json.dumps(e["recipients"][0]["last_reply"])
        self.assertIn("STARTTLS not offered", reason)
        self.assertIn(("mta-sts." + STS_ENFORCE, "/.well-known/mta-sts.txt"), self.policies.requests)

        mismatch = "sts-mismatch-%d" % time.time_ns()
        self.submit(mismatch, "frank@" + STS_MISMATCH)
        e2 = mgtest.eventually(lambda: self.deferred_entry(mismatch), "the MX-mismatch entry DEFERRED")
        self.assertIn("MTA-STS", json.dumps(e2["recipients"][0]["last_reply"]))

        testing = "sts-testing-%d" % time.time_ns()
        self.submit(testing, "gina@" + STS_TESTING)
        got = mgtest.eventually(lambda: self.peers.received(testing), "the testing-mode message at the sink")
        self.assertEqual(len(got), 1)
        self.assertEqual(self.peers.received(enforce), [])
        self.assertEqual(self.peers.received(mismatch), [])
        for entry in (e, e2):
            self.ctl("queue", "delete", entry["queue_id"], "--reason", "test done")

    # ---- 6. region routes ---------------------------------------------------

    def test_6_region_route_carries_cctld_and_mapped_domains(self):
        r = self.ctl("route", "set", "--region", "jp", "--smart-host", "127.0.0.1:%d" % self.peers.sink_port,
                     "--tls", "none", "--description", "Japan via the sink")
        route = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(route["match"]["region"], "JP")  # normalised
        try:
            listed = self.ctl("route", "list").stdout
            self.assertIn(route["route_id"], listed)
            bad = self.ctl("route", "set", "--region", "J1", "--smart-host", "127.0.0.1:25", check=False)
            self.assertNotEqual(bad.returncode, 0)
            self.assertIn("match.region", bad.stderr)
            cc = "region-cc-%d" % time.time_ns()
            self.submit(cc, "hana@far.jp")
            mapped = "region-map-%d" % time.time_ns()
            self.submit(mapped, "ito@tokyo.%s" % REGION_MAPPED)
            for marker in (cc, mapped):
                got = mgtest.eventually(lambda: self.peers.received(marker),
                                        "%s through the JP region route" % marker)
                self.assertEqual(len(got), 1)
        finally:
            self.ctl("route", "delete", route["route_id"])

    # ---- 7. a slow peer: the lease is renewed, the message sent once --------

    def test_7_slow_peer_renews_lease_and_is_sent_once(self):
        port = mgtest.free_port()
        cmd = [SINK] + (["-u", "nobody"] if os.geteuid() == 0 else [])
        cmd += ["-d", os.path.join(self.peers.dump, "%M."), "-w", "20", "127.0.0.1:%d" % port, "10"]
        slow = start(cmd, os.path.join(self.work, "slow-sink.log"))
        self.extra.append(slow)
        mgtest.eventually(lambda: can_connect(port), "the slow smtp-sink to listen")
        r = self.ctl("route", "set", "--domain", SLOW_DOMAIN, "--smart-host", "127.0.0.1:%d" % port,
                     "--tls", "none")
        route = json.loads(r.stdout.strip().splitlines()[-1])
        try:
            marker = "slow-%d" % time.time_ns()
            self.submit(marker, "ken@" + SLOW_DOMAIN)
            got = mgtest.eventually(lambda: self.peers.received(marker), "the message at the slow peer")
            mgtest.eventually(lambda: not any(e.get("subject") == marker for e in self.queue()),
                              "the entry to leave the queue")
            # Had another runner taken the lease over (8 s < 20 s), the first
            # runner's Complete would have failed and the entry stayed queued
            # until the takeover's copy was delivered: so any second copy is
            # at the sink by now.
            self.assertEqual(len(self.peers.received(marker)), 1, "sent twice: the lease was taken over")
            self.assertEqual(len(got), 1)
        finally:
            self.ctl("route", "delete", route["route_id"])
            stop(slow)


    # ---- 8. per-destination concurrency ----------------------------------

    def test_8_destination_limit_parks_entries_and_other_mail_flows(self):
        import signal
        port = mgtest.free_port()
        cmd = [SINK] + (["-u", "nobody"] if os.geteuid() == 0 else [])
        cmd += ["-d", os.path.join(self.peers.dump, "%M."), "127.0.0.1:%d" % port, "10"]
        busy = start(cmd, os.path.join(self.work, "busy-sink.log"))
        self.extra.append(busy)
        mgtest.eventually(lambda: can_connect(port), "the busy smtp-sink to listen")
        r = self.ctl("route", "set", "--domain", BUSY_DOMAIN, "--smart-host", "127.0.0.1:%d" % port,
                     "--tls", "none", "--concurrency", "2")
        route = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(route["concurrency_limit"], 2)
        bad = self.ctl("route", "set", "--domain", BUSY_DOMAIN, "--smart-host", "127.0.0.1:25",
                       "--concurrency", "5000", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("concurrency_limit", bad.stderr)
        sampler = ConnectionSampler(port)
        markers = ["busy-%d-%d" % (i, time.time_ns()) for i in range(6)]
        # Stopped, the sink's kernel still completes TCP handshakes: each
        # delivery hangs at the greeting, holding its connection.
        os.kill(busy.pid, signal.SIGSTOP)
        try:
            for m in markers:
                self.submit(m, "lee@" + BUSY_DOMAIN)
            mgtest.eventually(lambda: sampler.last == 2, "two connections to the paused peer")
            # Four runner threads, two of them waiting on the paused peer;
            # its other four entries are parked, not holding threads.
            quick = "quick-%d" % time.time_ns()
            self.submit(quick, "mia@" + REMOTE)
            got = mgtest.eventually(lambda: self.peers.received(quick),
                                    "mail to another destination while the busy one is full")
            self.assertEqual(len(got), 1)
            self.assertEqual(sampler.max, 2, "more connections than the route's limit")
            self.assertEqual([m for m in markers if self.peers.received(m)], [])
        finally:
            os.kill(busy.pid, signal.SIGCONT)
        try:
            for m in markers:
                got = mgtest.eventually(lambda: self.peers.received(m), "%s at the resumed peer" % m)
                self.assertEqual(len(got), 1)
            sampler.stop()
            self.assertLessEqual(sampler.max, 2, "more connections than the route's limit")
            # Sessions are reused across queue entries (ConnectionCache):
            # fewer connections than messages.
            self.assertLess(len(sampler.peers), len(markers), sorted(sampler.peers))
        finally:
            sampler.stop()
            self.ctl("route", "delete", route["route_id"])
            stop(busy)

    # ---- 9. MTA-STS against real STARTTLS peers ------------------------------

    def make_peer_certs(self):
        """mx.tlsgood.example from the policy CA (the CA relayd trusts for
        MTA-STS); a self-signed one for the 127.0.0.3 names."""
        w = self.work

        def openssl(*args):
            subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        good_key, good_csr, good = (os.path.join(w, n) for n in ("mx-good.key", "mx-good.csr", "mx-good.pem"))
        ext = os.path.join(w, "mx-good.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:mx.%s\n" % TLS_GOOD)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", good_key,
                "-out", good_csr, "-subj", "/CN=mx.%s" % TLS_GOOD)
        openssl("x509", "-req", "-in", good_csr, "-CA", self.policies.ca,
                "-CAkey", os.path.join(w, "sts-ca.key"), "-CAcreateserial", "-out", good, "-days", "30",
                "-extfile", ext)
        self_key, self_cert = os.path.join(w, "mx-self.key"), os.path.join(w, "mx-self.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self_key, "-out", self_cert, "-days", "30", "-subj", "/CN=mx.%s" % TLS_CA,
                "-addext", "subjectAltName=DNS:mx.%s,DNS:mx.%s" % (TLS_CA, TLS_TESTING))
        return (good, good_key), (self_cert, self_key)

    def sts_failures(self, mode, kind):
        total = 0.0
        for url in self.doc["metrics"]:
            _, body = mgtest.http_get(url)
            for line in body.splitlines():
                if (line.startswith("mailgrid_relay_mta_sts_failures_total{") and 'mode="%s"' % mode in line
                        and 'kind="%s"' % kind in line):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def test_9_mta_sts_verifies_tls_against_real_peers(self):
        (good, good_key), (self_cert, self_key) = self.make_peer_certs()
        peers = [TlsPeer(os.path.join(self.work, "pf-good"), "mx.%s" % TLS_GOOD, "127.0.0.2",
                         self.peers.sink_port, good, good_key, [TLS_GOOD, TLS_NAME]),
                 TlsPeer(os.path.join(self.work, "pf-self"), "mx.%s" % TLS_CA, "127.0.0.3",
                         self.peers.sink_port, self_cert, self_key, [TLS_CA, TLS_TESTING])]
        started = []
        try:
            for p in peers:
                p.start()
                started.append(p)
            good_peer, self_peer = peers
            before = self.sts_failures("enforce", "certificate")
            ok = "tls-good-%d" % time.time_ns()
            self.submit(ok, "erin@" + TLS_GOOD)
            got = mgtest.eventually(lambda: good_peer.maildir.find(ok), "enforce + valid certificate: delivered")
            self.assertEqual(len(got), 1)
            self.assertIn(b"with ESMTPS", got[0])  # Postfix's Received: the session was TLS
            self.assertIn(b"(using TLS", got[0])

            entries = []
            for domain, peer in ((TLS_NAME, good_peer), (TLS_CA, self_peer)):
                marker = "tls-bad-%s-%d" % (domain.split(".")[0], time.time_ns())
                self.submit(marker, "fay@" + domain)
                e = mgtest.eventually(lambda: self.deferred_entry(marker), "%s: deferred" % domain)
                reason = json.dumps(e["recipients"][0]["last_reply"])
                self.assertIn("TLS handshake failed", reason, domain)
                self.assertEqual(peer.maildir.find(marker), [], "%s: sent despite the certificate" % domain)
                self.assertEqual(self.peers.received(marker), [])
                entries.append(e)
            self.assertGreaterEqual(self.sts_failures("enforce", "certificate"), before + 2)

            testing = "tls-testing-%d" % time.time_ns()
            self.submit(testing, "hal@" + TLS_TESTING)
            got = mgtest.eventually(lambda: self_peer.maildir.find(testing),
                                    "testing + self-signed certificate: delivered")
            self.assertEqual(len(got), 1)
            self.assertIn(b"with ESMTPS", got[0])
            mgtest.eventually(lambda: self.sts_failures("testing", "certificate") >= 1,
                              "the testing-mode certificate failure reported in /metrics")
            # Still nothing for the enforce-mode entries.
            for e, peer in zip(entries, peers):
                self.assertEqual(peer.maildir.find(e["subject"]), [])
            for e in entries:
                self.ctl("queue", "delete", e["queue_id"], "--reason", "test done")
        finally:
            for p in reversed(started):
                p.stop()

if __name__ == "__main__":
    unittest.main()
