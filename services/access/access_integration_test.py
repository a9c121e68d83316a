"""accessd end to end with clients nobody here wrote: Python imaplib and
poplib, and curl (imap, imaps, pop3, pop3s URLs), against a REAL accessd and
a REAL mailstored (local store), each on free loopback ports.

Two variants:
  AccessWithMailstore   identity comes from services/access/testing/
                        fake_identityd (one account; it mints the same MAIL
                        token identityd would, with the cluster key, and
                        creates the mailboxes in mailstored as tenantd does).
                        Runs today.
  AccessFullCluster     the whole cluster as `tools/mailgrid up --demo`
                        starts it (real identityd, tenantd, mailstored,
                        relayd, Redis); the demo user alice. FAILS (never
                        skips) when a binary is not built.

Both also drive mutt (Debian package `mutt`) on a pseudo-terminal: it
reads a message and saves it to Archive; the result is checked over IMAP.

Binaries come from MAILGRID_BUILD_DIR/bin; MAILGRID_EXTRA_BIN_DIRS (colon
list) is searched after it (other helpers' build dirs while the tree is
assembled).
"""
import fcntl
import imaplib
import json
import os
import poplib
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

USER = "user@example.test"
PASSWORD = "s3cret-Passw0rd"
CHINESE_FOLDER = "&mHl27g-/&VAhUDA-"  # 项目/合同 in modified UTF-7


def find_binary(name):
    dirs = [mgtest.BIN] + [d for d in os.environ.get("MAILGRID_EXTRA_BIN_DIRS", "").split(":") if d]
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    return ctx


class Proc:
    def __init__(self, name, cmd, log_dir, env=None):
        self.name = name
        self.log = open(os.path.join(log_dir, name + ".log"), "w")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def run_in_pty(cmd, env):
    """Runs a full-screen program on a pseudo-terminal until it exits (within
    PATIENCE_SECONDS, else it is killed); returns what it drew, escapes
    stripped, for failure messages."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        p.wait(timeout=mgtest.PATIENCE_SECONDS)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    reader.join(timeout=5)
    os.close(master)
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][0-9A-B]|\x1b[=>]", "", screen.decode("utf-8", "replace"))


def wait_port(port, what):
    def up():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            return False
    mgtest.eventually(up, what)


class Scenario:
    """The client-side walk shared by both variants."""

    def run_all(self, t):
        self.imap_clear_text_rules(t)
        self.imap_walk(t)
        self.sort_walk(t)
        self.qresync_esearch_walk(t)
        if t.shared:
            self.cross_mailbox_walk(t)
        self.idle_sees_delivery(t)
        self.pop3_walk(t)
        self.curl_walk(t)
        self.compress_walk(t)
        self.mutt_walk(t)

    def imap_clear_text_rules(self, t):
        m = imaplib.IMAP4("127.0.0.1", t.ports["imap"])
        t.assertIn("LOGINDISABLED", m.capabilities)
        t.assertIn("STARTTLS", m.capabilities)
        with t.assertRaises(imaplib.IMAP4.error):
            m.login(t.user, t.password)
        m.starttls(ssl_context=tls_context())
        typ, caps = m.capability()
        t.assertIn(b"AUTH=PLAIN", caps[0])
        t.assertNotIn(b"LOGINDISABLED", caps[0])
        with t.assertRaises(imaplib.IMAP4.error):
            m.login(t.user, "wrong-password")
        t.assertEqual(m.login(t.user, t.password)[0], "OK")
        m.logout()

    def sort_walk(self, t):
        """SORT (RFC 5256) through imaplib's own .sort(), in a folder of its own."""
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        typ, caps = m.capability()  # SORT is advertised after login
        t.assertIn(b"SORT", caps[0].split())
        t.assertEqual(m.create("SortWalk")[0], "OK")
        # (subject, from, Date:, body padding): base subjects B, a, C; sizes differ.
        for subject, sender, date, pad in [
                ("Re: Beta", "carol", "Mon, 1 Jan 2024 12:00:00 +0000", 10),
                ("alpha", "Bob", "Mon, 1 Jan 2024 13:00:00 +0200", 300),
                ("[fwd: Gamma]", "alice", "Mon, 1 Jan 2024 10:30:00 -0100", 100)]:
            msg = ("From: %s@example.org\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n\r\n%s\r\n"
                   % (sender, t.user, subject, date, "x" * pad)).encode()
            t.assertEqual(m.append("SortWalk", None, None, msg)[0], "OK")
        t.assertEqual(m.select("SortWalk")[0], "OK")
        expect = {"(SUBJECT)": b"2 1 3", "(REVERSE SUBJECT)": b"3 1 2", "(FROM)": b"3 2 1",
                  "(DATE)": b"2 3 1", "(REVERSE DATE)": b"1 3 2", "(SIZE)": b"1 3 2",
                  "(ARRIVAL)": b"1 2 3", "(TO SUBJECT)": b"2 1 3"}
        for criteria, order in expect.items():
            typ, data = m.sort(criteria, "UTF-8", "ALL")
            t.assertEqual((typ, data[0]), ("OK", order), criteria)
        typ, data = m.sort("(REVERSE SIZE)", "US-ASCII", "NOT", "FROM", "bob")
        t.assertEqual(data[0], b"3 1")
        typ, uids = m.uid("SEARCH", "ALL")
        u = uids[0].split()
        typ, data = m.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
        t.assertEqual(data[0].split(), [u[1], u[0], u[2]])
        typ, data = m.sort("(DATE)", "KOI8-R", "ALL")
        t.assertEqual(typ, "NO")
        t.assertIn(b"[BADCHARSET", data[0])
        # ESORT (RFC 5267): MIN/MAX the first/last in the sort order, ALL in that order.
        t.assertIn(b"ESORT", caps[0].split())
        typ, data = m._simple_command("SORT", "RETURN", "(MIN MAX COUNT ALL)", "(SUBJECT)",
                                      "UTF-8", "ALL")
        t.assertEqual(typ, "OK")
        typ, data = m._untagged_response(typ, data, "ESEARCH")
        t.assertRegex(data[-1], rb'^\(TAG "[^"]+"\) MIN 2 MAX 3 COUNT 3 ALL 2,1,3$')
        m.close()
        t.assertEqual(m.delete("SortWalk")[0], "OK")
        m.logout()

    def imap_walk(self, t):
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        typ, folders = m.list()
        names = b"\n".join(folders)
        for special in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk"):
            t.assertIn(special, names)
        msg = ("From: Alice <alice@example.org>\r\nTo: %s\r\n"
               "Subject: =?UTF-8?B?5ZCI5ZCM?= review\r\nMessage-ID: <e2e-1@example.org>\r\n"
               "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
               "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n\r\n关于合同的问题\r\n--b\r\n"
               "Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               "AAAA\r\n--b--\r\n" % t.user).encode()
        typ, data = m.append("INBOX", r"(\Flagged)", None, msg)
        t.assertEqual(typ, "OK")
        t.assertIn(b"APPENDUID", data[0])
        typ, data = m.select("INBOX")
        t.assertEqual(typ, "OK")
        count = int(data[0])
        t.assertGreaterEqual(count, 1)
        typ, data = m.fetch(str(count), "(FLAGS UID RFC822.SIZE ENVELOPE BODYSTRUCTURE)")
        t.assertEqual(typ, "OK")
        t.assertIn(b"\\Flagged", data[0])
        t.assertIn(b'"<e2e-1@example.org>"', data[0])
        t.assertIn(b'"APPLICATION" "PDF"', data[0])
        typ, data = m.fetch(str(count), "(BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[1] BODY.PEEK[]<0.20>)")
        t.assertIn(b"Subject: =?UTF-8?B?5ZCI5ZCM?= review", data[0][1])
        t.assertEqual(data[1][1], "关于合同的问题".encode())
        t.assertEqual(data[2][1], msg[:20])
        # SEARCH a Chinese subject (decoded from RFC 2047 by mailstored), as a literal.
        m.literal = "合同".encode()
        typ, data = m.search("UTF-8", "SUBJECT")
        t.assertIn(str(count).encode(), data[0].split())
        # ... and the way imaplib's documentation shows it (bare UTF-8 bytes).
        typ, data = m.search("UTF-8", "SUBJECT", "合同".encode())
        t.assertIn(str(count).encode(), data[0].split())
        typ, data = m.store(str(count), "+FLAGS", r"(\Seen)")
        t.assertIn(b"\\Seen", data[0])
        t.assertEqual(m.create(CHINESE_FOLDER)[0], "OK")
        typ, data = m.list()
        t.assertTrue(any(CHINESE_FOLDER.encode() in f for f in data))
        typ, data = m.uid("SEARCH", "ALL")
        uid = data[0].split()[-1].decode()
        t.assertEqual(m.uid("MOVE", uid, CHINESE_FOLDER)[0], "OK")
        typ, data = m.status(CHINESE_FOLDER, "(MESSAGES)")
        t.assertIn(b"MESSAGES 1", data[0])
        # Flag and expunge in another folder, checking the sequence numbers.
        m.select(CHINESE_FOLDER)
        m.store("1", "+FLAGS", r"(\Deleted)")
        typ, data = m.expunge()
        t.assertIn(b"1", data)
        typ, data = m.select(CHINESE_FOLDER)
        t.assertEqual(data[0], b"0")
        m.logout()

    def qresync_esearch_walk(self, t):
        """QRESYNC, ESEARCH and LIST-STATUS against the real mailstored."""
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        caps = m.capability()[1][0].split()
        for cap in (b"QRESYNC", b"ESEARCH", b"LIST-EXTENDED", b"LIST-STATUS", b"STATUS=SIZE"):
            t.assertIn(cap, caps)
        t.assertEqual(m.create("QR")[0], "OK")
        for i in range(3):
            m.append("QR", None, None, b"Subject: qr %d\r\n\r\nbody %d\r\n" % (i, i))
        typ, data = m._simple_command("ENABLE", "QRESYNC")
        t.assertEqual(typ, "OK")
        t.assertEqual(m.untagged_responses.pop("ENABLED", None), [b"QRESYNC"])
        typ, data = m.select("QR")
        uidvalidity = int(m.untagged_responses["UIDVALIDITY"][0])
        highest = int(m.untagged_responses["HIGHESTMODSEQ"][0])
        typ, data = m.uid("SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "ALL")
        t.assertEqual(typ, "OK")
        esearch = m.untagged_responses.pop("ESEARCH")[0]
        t.assertRegex(esearch, rb"UID MIN (\d+) MAX (\d+) COUNT 3 ALL \d+:\d+")
        uids = [int(x) for x in esearch.split(b"ALL ")[1].split(b":")]
        # Another client expunges the first message and flags the second.
        o = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        o.login(t.user, t.password)
        o.select("QR")
        o.uid("STORE", str(uids[0]), "+FLAGS", r"(\Deleted)")
        o.uid("STORE", str(uids[0] + 1), "+FLAGS", r"(\Flagged)")
        o.expunge()
        o.logout()
        typ, data = m.noop()
        t.assertEqual(m.untagged_responses.pop("VANISHED", None), [str(uids[0]).encode()])
        t.assertNotIn("EXPUNGE", m.untagged_responses)
        m.untagged_responses.pop("FETCH", None)  # the flag change, reported at NOOP
        # A client that was offline since `highest` resynchronises in SELECT.
        m.unselect()
        typ, data = m._simple_command("SELECT", "QR", "(QRESYNC (%d %d))" % (uidvalidity, highest))
        t.assertEqual(typ, "OK")
        m.state = "SELECTED"  # imaplib does not know this form of SELECT
        t.assertEqual(m.untagged_responses.pop("VANISHED", None), [b"(EARLIER) %d" % uids[0]])
        fetches = b" ".join(x for x in m.untagged_responses.pop("FETCH", []) if isinstance(x, bytes))
        t.assertIn(b"UID %d" % (uids[0] + 1), fetches)
        t.assertIn(b"\\Flagged", fetches)
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE %d VANISHED)" % highest)
        t.assertEqual(m.untagged_responses.pop("VANISHED", None), [b"(EARLIER) %d" % uids[0]])
        typ, data = m._simple_command("LIST", '""', "QR", "RETURN", "(STATUS (MESSAGES SIZE))")
        t.assertEqual(typ, "OK")
        status = m.untagged_responses.pop("STATUS", [b""])[0]
        t.assertRegex(status, rb"QR \(MESSAGES 2 SIZE \d+\)")
        m.logout()

    def cross_mailbox_walk(self, t):
        """COPY and MOVE between the own and a seated shared mailbox."""
        shared_inbox = "Shared/%s/INBOX" % t.shared
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        m.append(shared_inbox, r"(\Flagged)", None, b"Subject: ticket x\r\n\r\nplease help\r\n")
        typ, data = m.select(shared_inbox)
        t.assertEqual(typ, "OK")
        n = int(data[0])
        typ, data = m.copy(str(n), "INBOX")
        t.assertEqual(typ, "OK", data)
        t.assertIn(b"COPYUID", data[0])
        typ, data = m._simple_command("MOVE", str(n), "Archive")  # same mailbox
        t.assertEqual(typ, "OK")
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", '"ticket x"')
        mine = data[0].split()
        t.assertEqual(len(mine), 1)
        typ, data = m.fetch(mine[0], "(FLAGS BODY.PEEK[TEXT])")
        t.assertIn(b"\\Flagged", data[0][0])
        t.assertEqual(data[0][1], b"please help\r\n")
        typ, data = m._simple_command("MOVE", mine[0].decode(), shared_inbox)
        t.assertEqual(typ, "OK")
        typ, data = m.search(None, "SUBJECT", '"ticket x"')
        t.assertEqual(data[0].split(), [])
        typ, data = m.status(shared_inbox, "(MESSAGES)")
        t.assertIn(b"MESSAGES 1", data[0])
        m.logout()

    def compress_walk(self, t):
        """COMPRESS=DEFLATE (RFC 4978) with Python's zlib as the client."""
        s = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", t.ports["imaps"])))
        s.settimeout(mgtest.PATIENCE_SECONDS)
        f = s.makefile("rb")
        t.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b'c1 LOGIN "%s" "%s"\r\n' % (t.user.encode(), t.password.encode()))
        line = f.readline()
        t.assertTrue(line.startswith(b"c1 OK"), line)
        t.assertIn(b"COMPRESS=DEFLATE", line)
        s.sendall(b"c2 COMPRESS DEFLATE\r\n")
        t.assertEqual(f.readline(), b"c2 OK DEFLATE active\r\n")
        comp, dec = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
        s.sendall(comp.compress(b"c3 SELECT INBOX\r\nc4 CAPABILITY\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        got = b""
        while b"c4 OK" not in got:
            chunk = s.recv(65536)
            t.assertTrue(chunk, "connection closed; got %r" % got)
            got += dec.decompress(chunk)
        t.assertIn(b"EXISTS", got)
        t.assertIn(b"c3 OK [READ-WRITE]", got)
        t.assertNotIn(b"COMPRESS=DEFLATE", got)  # not offered twice
        s.sendall(comp.compress(b"c5 LOGOUT\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        while b"c5 OK" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += dec.decompress(chunk)
        t.assertIn(b"c5 OK", got)
        s.close()

    def mutt_walk(self, t):
        """mutt, driven through a pseudo-terminal: read a message, move it."""
        mutt = shutil.which("mutt")
        t.assertIsNotNone(mutt, "mutt is not installed (Debian package: mutt)")
        token = "mutt-%d" % int(time.time() * 1000)
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        m.append("INBOX", None, None, ("From: Carol <carol@example.org>\r\nSubject: %s\r\n\r\n"
                                       "Read me with mutt.\r\n" % token).encode())
        m.logout()
        d = tempfile.mkdtemp(prefix="mutt-", dir=t.dir)
        out = os.path.join(d, "read.txt")
        certs = os.path.join(d, "certificates")
        shutil.copyfile(t.server_cert, certs)
        with open(os.path.join(d, "muttrc"), "w") as f:
            f.write("\n".join([
                'set imap_user="%s"' % t.user,
                'set imap_pass="%s"' % t.password,
                'set folder="imaps://127.0.0.1:%d/"' % t.ports["imaps"],
                'set spoolfile="+INBOX"',
                'set certificate_file="%s"' % certs,
                'set ssl_ca_certificates_file="%s"' % t.cafile,
                "set ssl_verify_host=no",
                'set header_cache=""', 'set message_cachedir=""', 'set record=""',
                "set confirmappend=no", "set confirmcreate=no", "set delete=yes",
                "set quit=yes", "set wait_key=no", "set move=no", "set mark_old=no",
                "set imap_passive=yes", "set imap_idle=no", "set beep=no",
                "set mail_check=3600", "set timeout=3600", "",
            ]))
        keys = ("<limit>~s %s<enter><display-message><exit>"
                "<pipe-message>cat > %s<enter><save-message>=Archive<enter>"
                "<sync-mailbox><quit>" % (token, out))
        screen = run_in_pty([mutt, "-n", "-F", os.path.join(d, "muttrc"), "-e", "push '%s'" % keys],
                            env=dict(os.environ, HOME=d, TERM="xterm"))
        t.assertTrue(os.path.exists(out), "mutt did not pipe the message; screen:\n" + screen[-2000:])
        with open(out, "rb") as f:
            t.assertIn(b"Read me with mutt.", f.read())
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", token)
        t.assertEqual(data[0].split(), [], "still in INBOX after mutt's save+sync; screen:\n" + screen[-2000:])
        m.select("Archive")
        typ, data = m.search(None, "SUBJECT", token)
        t.assertEqual(len(data[0].split()), 1, "not in Archive; screen:\n" + screen[-2000:])
        typ, data = m.fetch(data[0].split()[0], "(FLAGS)")
        t.assertIn(b"\\Seen", data[0])  # mutt displayed it: read
        m.logout()

    def idle_sees_delivery(self, t):
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        typ, data = m.select("INBOX")
        before = int(data[0])
        m.send(b"i1 IDLE\r\n")
        t.assertTrue(m.readline().startswith(b"+"))

        def deliver():
            o = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
            o.login(t.user, t.password)
            o.append("INBOX", None, None, b"Subject: during idle\r\n\r\nhello\r\n")
            o.logout()
        threading.Thread(target=deliver).start()
        m.sock.settimeout(mgtest.PATIENCE_SECONDS)
        line = m.readline()
        t.assertEqual(line.strip(), b"* %d EXISTS" % (before + 1))
        m.send(b"DONE\r\n")
        t.assertTrue(m.readline().startswith(b"i1 OK"))
        m.logout()

    def pop3_walk(self, t):
        m = imaplib.IMAP4_SSL("127.0.0.1", t.ports["imaps"], ssl_context=tls_context())
        m.login(t.user, t.password)
        m.append("INBOX", None, None, b"Subject: for pop\r\n\r\n.starts with a dot\r\nend\r\n")
        m.logout()
        p = poplib.POP3("127.0.0.1", t.ports["pop3"])
        t.assertIn("STLS", p.capa())
        p.stls(context=tls_context())
        p.user(t.user)
        t.assertTrue(p.pass_(t.password).startswith(b"+OK"))
        count, size = p.stat()
        t.assertGreaterEqual(count, 1)
        resp, uidls, _ = p.uidl()
        t.assertEqual(len(uidls), count)
        resp, lines, _ = p.retr(count)
        t.assertIn(b".starts with a dot", lines)  # un-stuffed by poplib
        resp, lines, _ = p.top(count, 0)
        t.assertEqual(lines, [b"Subject: for pop", b""])
        p.dele(count)
        p.quit()
        p = poplib.POP3_SSL("127.0.0.1", t.ports["pop3s"], context=tls_context())
        p.user(t.user)
        p.pass_(t.password)
        t.assertEqual(p.stat()[0], count - 1)
        p.quit()

    def curl_walk(self, t):
        def curl(url, *extra):
            return subprocess.run(["curl", "-s", "-k", "--user", "%s:%s" % (t.user, t.password)] + list(extra) + [url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        r = curl("imap://127.0.0.1:%d/" % t.ports["imap"], "--ssl-reqd")
        t.assertEqual(r.returncode, 0, r.stderr)
        t.assertIn('"/" INBOX', r.stdout)
        r = curl("imaps://127.0.0.1:%d/INBOX;MAILINDEX=1" % t.ports["imaps"])
        t.assertEqual(r.returncode, 0, r.stderr)
        t.assertIn("Subject:", r.stdout)
        r = curl("pop3s://127.0.0.1:%d/" % t.ports["pop3s"])
        t.assertEqual(r.returncode, 0, r.stderr)
        r = curl("pop3://127.0.0.1:%d/1" % t.ports["pop3"], "--ssl-reqd")
        t.assertEqual(r.returncode, 0, r.stderr)
        t.assertIn("Subject:", r.stdout)
        bad = subprocess.run(["curl", "-s", "-k", "--user", t.user + ":nope", "imaps://127.0.0.1:%d/" % t.ports["imaps"]],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        t.assertNotEqual(bad.returncode, 0)


class Base(unittest.TestCase):
    @classmethod
    def make_dir_and_keys(cls, prefix):
        cls.dir = mgtest.temp_dir(prefix)
        cls.procs = []
        d = cls.dir
        cls.key = os.path.join(d, "signing.pem")
        cls.pub = os.path.join(d, "signing.pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", cls.key], check=True)
        subprocess.run(["openssl", "pkey", "-in", cls.key, "-pubout", "-out", cls.pub], check=True)
        cls.cert = os.path.join(d, "cert.pem")
        cls.tlskey = os.path.join(d, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", cls.tlskey,
                        "-out", cls.cert, "-days", "2", "-subj", "/CN=localhost"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @classmethod
    def start_mailstored(cls):
        cls.mailstored = "127.0.0.1:%d" % mgtest.free_port()
        cls.procs.append(Proc("mailstored", [
            find_binary("mailstored"), "--listen=" + cls.mailstored, "--metrics-listen=127.0.0.1:0",
            "--data-dir=" + os.path.join(cls.dir, "ms"), "--store=local", "--token-public-key=" + cls.pub],
            cls.dir))

    @classmethod
    def start_accessd(cls, identityd):
        cls.ports = {k: mgtest.free_port() for k in ("imap", "imaps", "pop3", "pop3s")}
        env = dict(os.environ, MAILGRID_TOKEN_SIGNING_KEY=cls.key, MAILGRID_IDENTITYD=identityd,
                   MAILGRID_MAILSTORED=cls.mailstored, MAILGRID_PUBLIC_TLS_CERT=cls.cert,
                   MAILGRID_PUBLIC_TLS_KEY=cls.tlskey,
                   MAILGRID_IMAP_LISTEN="127.0.0.1:%d" % cls.ports["imap"],
                   MAILGRID_IMAPS_LISTEN="127.0.0.1:%d" % cls.ports["imaps"],
                   MAILGRID_POP3_LISTEN="127.0.0.1:%d" % cls.ports["pop3"],
                   MAILGRID_POP3S_LISTEN="127.0.0.1:%d" % cls.ports["pop3s"])
        cls.procs.append(Proc("accessd", [find_binary("accessd"), "--listen=127.0.0.1:0",
                                          "--metrics-listen=127.0.0.1:0"], cls.dir, env=env))
        for name, port in cls.ports.items():
            wait_port(port, "accessd %s port" % name)

    @classmethod
    def tearDownClass(cls):
        for p in reversed(getattr(cls, "procs", [])):
            p.stop()
        if getattr(cls, "dir", None) and not os.environ.get("KEEP_TEST_DIR"):
            shutil.rmtree(cls.dir, ignore_errors=True)


class AccessWithMailstore(Base):
    @classmethod
    def setUpClass(cls):
        missing = [b for b in ("accessd", "mailstored", "access_fake_identityd") if not find_binary(b)]
        if missing:
            raise AssertionError("not built: %s (looked in %s and MAILGRID_EXTRA_BIN_DIRS)" %
                                 (", ".join(missing), mgtest.BIN))
        cls.make_dir_and_keys("access-it-")
        try:
            cls.start_mailstored()
            identityd = "127.0.0.1:%d" % mgtest.free_port()
            cls.procs.append(Proc("fake_identityd", [
                find_binary("access_fake_identityd"), identityd, cls.key, cls.mailstored, "t-e2e", USER,
                PASSWORD, "mbx-e2e,mbx-e2e-shared"], cls.dir))
            wait_port(int(identityd.split(":")[1]), "fake identityd (mailboxes created)")
            cls.start_accessd(identityd)
            cls.user, cls.password, cls.shared = USER, PASSWORD, "shared1@example.test"
            cls.server_cert = cls.cafile = cls.cert
        except Exception:
            cls.tearDownClass()
            raise

    def test_clients(self):
        Scenario().run_all(self)


class AccessFullCluster(unittest.TestCase):
    """Everything real: `tools/mailgrid up --demo` (Redis, tenantd, identityd,
    mailstored, relayd, accessd from MAILGRID_BUILD_DIR/bin), and the demo
    user alice, created in the directory with her password in identityd."""

    @classmethod
    def setUpClass(cls):
        missing = [b for b in ("accessd", "mailstored", "identityd", "tenantd", "relayd", "mailctl")
                   if not os.path.exists(os.path.join(mgtest.BIN, b))]
        if missing:
            raise AssertionError("not built in %s: %s" % (mgtest.BIN, ", ".join(missing)))
        cls.dir = mgtest.temp_dir("access-full-")
        try:
            mgtest.launcher("up", "--no-build", "--demo", "--replicas", "1", data_dir=cls.dir)
            with open(os.path.join(cls.dir, "cluster.json")) as f:
                cluster = json.load(f)
            users = {u["address"].split("@")[0]: u for u in cluster["demo"]["users"]}
            cls.user, cls.password = users["alice"]["address"], users["alice"]["password"]
            cls.shared = None  # the demo has no shared mailbox
            cls.ports = {k: int(cluster[k].rsplit(":", 1)[1]) for k in ("imap", "imaps", "pop3", "pop3s")}
            cls.cafile = cluster["ca_cert"]
            cls.server_cert = os.path.join(cls.dir, "tls", "server.pem")
            if not os.path.exists(cls.server_cert):
                cls.server_cert = cls.cafile
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        mgtest.launcher("down", data_dir=cls.dir, check=False)
        if not os.environ.get("KEEP_TEST_DIR"):
            shutil.rmtree(cls.dir, ignore_errors=True)

    def test_clients(self):
        Scenario().run_all(self)


if __name__ == "__main__":
    unittest.main()
