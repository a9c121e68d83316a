"""A private Postfix instance on a free loopback port: its own config
directory, queue and log, never the machine's /etc/postfix instance.

Used as the outside world's MTA by the end-to-end tests (it receives our
outbound mail into a Maildir and relays the outside's mail to relayd) and
as the peer of bench/compare (delivering over LMTP to Dovecot).

Needs the Debian package postfix and root (Postfix's master drops to the
`postfix` user; its delivery agents to the uid we name), and every
directory above `workdir` (and a Maildir's base) searchable by those users:
a test's temporary directory is 0700, so chmod it 0755 first.
"""
import email
import os
import shutil
import socket
import subprocess

import mgtest


def available():
    return shutil.which("postfix") is not None or os.path.exists("/usr/sbin/postfix")


def _can_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Postfix:
    """`settings` are main.cf lines added after the defaults below (later
    lines win in Postfix), e.g. virtual_transport for LMTP to Dovecot."""

    def __init__(self, workdir, hostname, settings=None, port=None):
        self.dir = workdir
        self.hostname = hostname
        self.port = port or mgtest.free_port()
        self.settings = dict(settings or {})
        self.conf = os.path.join(workdir, "postfix")
        self.started = False

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        d = self.dir
        for sub in ("postfix", "pf-queue", "pf-data"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(d, 0o755)
        shutil.chown(os.path.join(d, "pf-data"), "postfix")
        lines = {
            "compatibility_level": "3.6",
            "queue_directory": d + "/pf-queue",
            "data_directory": d + "/pf-data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": self.hostname,
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
            # Mail from loopback clients is relayed as sent: no header
            # rewriting, so a DKIM signature made upstream stays valid.
            "local_header_rewrite_clients": "",
            "maillog_file": d + "/postfix.log",
            "maillog_file_prefixes": d,
            "smtpd_client_connection_count_limit": "0",
            "default_process_limit": "200",
            # Retry a deferred message soon (a test waits for it).
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        lines.update(self.settings)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in lines.items():
                f.write("%s = %s\n" % (k, v))
        # Debian's master.cf with our smtpd port and no chroot (a private
        # queue directory has no chroot files).
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                cols = line.split()
                if line[:1] not in ("#", " ", "\t", "\n") and len(cols) >= 8:
                    if cols[0] == "smtp" and cols[1] == "inet":
                        cols[0] = "127.0.0.1:%d" % self.port
                    cols[4] = "n"
                    line = " ".join(cols) + "\n"
                out.append(line)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.writelines(out)
        for verb in ("post-install create-missing", "check", "start"):
            self._postfix(verb)
            if verb == "start":
                self.started = True
        mgtest.eventually(lambda: _can_connect(self.port), "Postfix to listen on %d" % self.port)

    def _postfix(self, verb, check=True):
        # Postfix reports only to syslog unless stderr is a terminal: run
        # its commands under script(1) so a failure says why.
        r = subprocess.run(["script", "-qec", "postfix -c %s %s" % (self.conf, verb), "/dev/null"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if check and r.returncode != 0:
            raise AssertionError("postfix %s failed: %s" % (verb, r.stdout))
        return r

    def queue_empty(self):
        """True when Postfix holds no message in any queue (all delivered)."""
        r = subprocess.run(["postqueue", "-c", self.conf, "-j"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        return r.returncode == 0 and not r.stdout.strip()

    def flush(self):
        subprocess.run(["postqueue", "-c", self.conf, "-f"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def log(self):
        try:
            with open(os.path.join(self.dir, "postfix.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.started:
            self._postfix("stop", check=False)
            self.started = False
            mgtest.eventually(lambda: not _can_connect(self.port), "Postfix to stop")


class Maildir:
    """A Maildir that Postfix's virtual(8) agent delivers into: every
    recipient of the virtual domains ends up here (one mailbox for the
    whole outside world), told apart by Delivered-To."""

    def __init__(self, base, uid_name="nobody"):
        import pwd
        self.base = base
        self.path = os.path.join(base, "Maildir")
        os.makedirs(base, exist_ok=True)
        pw = pwd.getpwnam(uid_name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        shutil.chown(base, self.uid, self.gid)

    def settings(self, domains):
        return {
            "virtual_mailbox_domains": " ".join(domains),
            "virtual_mailbox_base": self.base,
            "virtual_mailbox_maps": "static:Maildir/",
            "virtual_uid_maps": "static:%d" % self.uid,
            "virtual_gid_maps": "static:%d" % self.gid,
            "virtual_minimum_uid": "1",
        }

    def messages(self):
        """Every delivered message as bytes (CRLF line ends, as sent)."""
        out = []
        new = os.path.join(self.path, "new")
        if not os.path.isdir(new):
            return out
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                out.append(f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        return out

    def find(self, needle):
        """The messages whose bytes contain `needle` (str or bytes)."""
        if isinstance(needle, str):
            needle = needle.encode()
        return [m for m in self.messages() if needle in m]

    @staticmethod
    def parse(raw):
        return email.message_from_bytes(raw)
