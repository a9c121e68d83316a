"""What the fault tests share: delivering a stream of uniquely identified
messages over SMTP while something breaks, counting them in an INBOX
afterwards, and looking at processes and Raft replicas."""
import collections
import email
import email.utils
import imaplib
import smtplib
import subprocess

import mgtest

SENDER = "partner@example.org"


def fault_message(to, mid, subject):
    """A minimal RFC 5322 message to `to` whose Message-ID is `mid`."""
    return ("From: %s\r\nTo: %s\r\nSubject: %s %s\r\nMessage-ID: %s\r\nDate: %s\r\n\r\nmessage %s\r\n"
            % (SENDER, to, subject, mid, mid, email.utils.formatdate(), mid))


def deliver_each(cluster, to, mids, outcome, subject):
    """Sends one message per Message-ID in `mids` (any iterable, also an
    endless generator) to relayd's port 25, on as few connections as it can:
    a refused or broken transaction closes the connection and the next
    message opens a new one. outcome[mid] becomes "acked" (250) or
    "refused: <why>"."""
    s = None
    for mid in mids:
        try:
            if s is None:
                s = smtplib.SMTP(*mgtest.host_port(cluster["smtp"]), timeout=120)
                s.ehlo("mx.example.org")
            s.sendmail(SENDER, [to], fault_message(to, mid, subject))
            outcome[mid] = "acked"
        except (smtplib.SMTPException, OSError) as e:
            outcome[mid] = "refused: %s" % (e,)
            try:
                if s is not None:
                    s.close()
            except OSError:
                pass
            s = None
    if s is not None:
        s.quit()


def inbox_message_ids(cluster, tls, user, containing=None):
    """Message-ID -> how many copies are in the user's INBOX (only IDs that
    contain `containing`, when given), read over IMAP with STARTTLS."""
    c = imaplib.IMAP4(*mgtest.host_port(cluster["imap"]))
    try:
        c.starttls(ssl_context=tls)
        c.login(user["address"], user["password"])
        typ, data = c.select("INBOX", readonly=True)
        if typ != "OK":
            raise AssertionError("SELECT INBOX: %s %s" % (typ, data))
        ids = collections.Counter()
        if int(data[0]) == 0:
            return ids
        typ, parts = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ != "OK":
            raise AssertionError("FETCH: %s %s" % (typ, parts))
        for p in parts:
            if isinstance(p, tuple):
                mid = email.message_from_bytes(p[1])["Message-ID"]
                if mid and (containing is None or containing in mid):
                    ids[mid] += 1
        return ids
    finally:
        try:
            c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def zombie(pid):
    """True when `pid` is gone or a zombie (dead, not yet reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def replicactl(group, address, *args, check=True):
    r = subprocess.run([mgtest.binary("replicactl"), "--group=" + group, address] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise AssertionError("replicactl %s %s failed: %s" % (address, " ".join(args), r.stderr))
    return r


def replica_status(group, address):
    """`replicactl status` as a dict of its key=value fields; None when the
    replica does not answer."""
    r = replicactl(group, address, "status", check=False)
    if r.returncode != 0:
        return None
    return dict(part.split("=", 1) for part in r.stdout.split() if "=" in part)
