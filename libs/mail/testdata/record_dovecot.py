#!/usr/bin/env python3
"""Records what Dovecot answers for our sample messages (known server output).

For each message it writes <message>.dovecot: the FETCH attributes Dovecot
sends for (RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY), exactly as sent. For the
messages in SECTIONS it also writes <message>.sections.dovecot: Dovecot's
answer to FETCH of those BODY.PEEK[...] sections. imap_format_test compares
our output with these files.

Needs Debian's dovecot-imapd and root (Dovecot runs as `nobody` in PREAUTH
mode on a throw-away Maildir; no server is started). Recorded with Dovecot
2.3.19.1 (Debian 12). Run from anywhere: python3 record_dovecot.py
"""
import glob
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = ["rfc3501_fetch", "alternative", "mixed_attachments", "forward", "gb2312_subject",
        "gbk_subject", "utf8_headers", "rfc3501_sections", "missing_final_boundary",
        "truncated"]
SECTIONS = {
    "rfc3501_sections": [
        "HEADER", "TEXT", "1", "2", "3", "3.HEADER", "3.TEXT", "3.1", "3.2", "4", "4.1",
        "4.1.MIME", "4.2", "4.2.HEADER", "4.2.TEXT", "4.2.1", "4.2.2", "4.2.2.1", "4.2.2.2",
        "4.2.2.2.MIME", "1.MIME", "3.MIME", "HEADER.FIELDS (SUBJECT)",
        "HEADER.FIELDS.NOT (SUBJECT MIME-VERSION)", "4.2.HEADER.FIELDS (SUBJECT CONTENT-TYPE)",
        "HEADER.FIELDS (X-NONE)"],
    "mixed_attachments": ["1", "1.1", "1.2", "1.2.MIME", "2", "3", "3.MIME",
                          "HEADER.FIELDS (FROM TO CC)", "HEADER.FIELDS.NOT (RECEIVED)"],
    "forward": ["2", "2.HEADER", "2.TEXT", "2.1", "2.MIME", "1"],
    "rfc3501_fetch": ["1", "1.MIME", "TEXT"],
}


def messages():
    paths = [os.path.join(HERE, n + ".eml") for n in MAIN]
    return paths + sorted(glob.glob(os.path.join(HERE, "dovecot", "*.eml")))


def skip_value(data, i):
    """Index just past the IMAP value at data[i] (atom, quoted, literal, list)."""
    c = data[i:i + 1]
    if c == b"(":
        i += 1
        while data[i:i + 1] != b")":
            i = skip_value(data, i)
            while data[i:i + 1] == b" ":
                i += 1
        return i + 1
    if c == b'"':
        i += 1
        while data[i:i + 1] != b'"':
            i += 2 if data[i:i + 1] == b"\\" else 1
        return i + 1
    if c == b"{":
        close = data.index(b"}", i)
        n = int(data[i + 1:close])
        return close + 3 + n
    while data[i:i + 1] not in (b" ", b")", b"(", b"["):
        i += 1
    if data[i:i + 1] == b"[":  # BODY[...]
        i = data.index(b"]", i) + 1
    return i


def fetch_responses(output):
    """{message number: the attribute list "(...)" of its FETCH}."""
    out = {}
    i = 0
    while True:
        i = output.find(b"* ", i)
        if i < 0:
            return out
        end = output.find(b" FETCH (", i)
        line_end = output.find(b"\r\n", i)
        if end < 0 or end > line_end:
            i = line_end
            continue
        n = int(output[i + 2:end])
        start = end + len(b" FETCH ")
        stop = skip_value(output, start)
        out[n] = output[start:stop]
        i = stop


def run_dovecot(maildir_root, commands):
    conf = os.path.join(maildir_root, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("mail_location = maildir:%s/Maildir\nlog_path = %s/log\nssl = no\n" %
                (maildir_root, maildir_root))
    subprocess.run(["chown", "-R", "nobody:nogroup", maildir_root], check=True)
    script = b"a SELECT INBOX\r\n" + b"".join(commands) + b"z LOGOUT\r\n"
    env = {"USER": "nobody", "HOME": maildir_root, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "/usr/lib/dovecot/imap", "-c", conf],
        input=script, env=env, capture_output=True, check=True).stdout


def main():
    paths = messages()
    root = tempfile.mkdtemp(prefix="mail_dovecot_")
    try:
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(root, "Maildir", d))
        for k, p in enumerate(paths):
            shutil.copy(p, os.path.join(root, "Maildir", "cur", "%d.m%d:2," % (1000 + k, k)))
        # One session per command: Dovecot runs pipelined FETCHes in
        # parallel and interleaves their answers.
        structures = fetch_responses(run_dovecot(
            root, [b"b FETCH 1:* (RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY)\r\n"]))
        sections = {}
        for name, specs in SECTIONS.items():
            n = paths.index(os.path.join(HERE, name + ".eml")) + 1
            items = " ".join("BODY.PEEK[%s]" % s for s in specs)
            sections[name] = fetch_responses(run_dovecot(
                root, [b"s FETCH %d (%s)\r\n" % (n, items.encode())]))[n]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for k, p in enumerate(paths):
        with open(p[:-len(".eml")] + ".dovecot", "wb") as f:
            f.write(structures[k + 1] + b"\r\n")
    for name, answer in sections.items():
        with open(os.path.join(HERE, name + ".sections.dovecot"), "wb") as f:
            f.write(answer + b"\r\n")


if __name__ == "__main__":
    main()
