"""Faults (issue 12): SIGTERM to relayd with 200 open SMTP sessions.

On `tools/mailgrid up --demo --replicas 3` (relayd's per-IP cap raised so
one test client may hold 200 connections), the test opens 200 sessions on
port 25 and leaves them in three states:

  idle       EHLO done, nothing else;
  mid-DATA   MAIL, two RCPTs (alice and bob), DATA, half a body;
  in flight  the same with the whole body and the final dot, sent right
             before the SIGTERM, their replies not yet read.

Then relayd gets SIGTERM. Expected (services/relay/README.md, "SIGTERM"):
every idle and mid-DATA session is answered 421 and closed; every
in-flight transaction gets either 250 (and is then stored for both
recipients) or a 4xx (421/451), never a 5xx or silence. relayd exits, is
started again, and the mailboxes are read over IMAP:

- every message answered 250 is in alice's and bob's INBOX exactly once;
- no mid-DATA message is anywhere;
- a message answered 4xx is in both INBOXes or in neither (never
  half-stored), at most once (RFC 5321 allows a duplicate only after a
  lost 250).
"""
import os
import signal
import socket
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import faults  # noqa: E402
import mgtest  # noqa: E402

IDLE, MID_DATA, IN_FLIGHT = 70, 60, 70  # 200 sessions


class Session:
    """A raw SMTP client: smtplib cannot leave a DATA half-sent."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=mgtest.PATIENCE_SECONDS)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self):
        """(code, text) of one possibly multi-line reply; (None, "") at EOF."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return None, b"".join(lines).decode("utf-8", "replace")
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"".join(lines).decode("utf-8", "replace")

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def rest(self):
        """Every reply until the server closes the connection."""
        out = []
        while True:
            try:
                code, text = self.reply()
            except OSError as e:
                out.append((None, "socket error: %s" % e))
                return out
            if code is None:
                return out
            out.append((code, text))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class RelaydSigtermTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-faults-sigterm", "--demo", "--replicas", "3",
                                     env={"MAILGRID_MAX_CONNECTIONS_PER_IP": "1000"})
        cls.data, cls.cluster, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.tls
        users = cls.mg.demo_users()
        cls.alice, cls.bob = users["alice"], users["bob"]

    @classmethod
    def tearDownClass(cls):
        cls.mg.stop()

    def message_ids(self, user, run):
        """Message-ID -> copies in the user's INBOX, for this run's messages."""
        return faults.inbox_message_ids(self.cluster, self.tls, user, containing=run)

    def open_transaction(self, mid):
        s = Session(mgtest.host_port(self.cluster["smtp"]))
        self.assertEqual(s.greeting[0], 220, s.greeting)
        self.assertEqual(s.cmd("EHLO mx.example.org")[0], 250)
        self.assertEqual(s.cmd("MAIL FROM:<partner@example.org>")[0], 250)
        for user in (self.alice, self.bob):
            code, text = s.cmd("RCPT TO:<%s>" % user["address"])
            self.assertEqual(code, 250, text)
        code, text = s.cmd("DATA")
        self.assertEqual(code, 354, text)
        header = ("From: partner@example.org\r\nTo: %s, %s\r\nSubject: drain %s\r\nMessage-ID: %s\r\n\r\n"
                  % (self.alice["address"], self.bob["address"], mid, mid))
        s.sock.sendall(header.encode() + b"first half of the body\r\n")
        return s

    def test_sigterm_with_200_open_sessions(self):
        run = uuid.uuid4().hex[:10]
        sessions = {"idle": [], "mid": [], "flight": []}
        try:
            for _ in range(IDLE):
                s = Session(mgtest.host_port(self.cluster["smtp"]))
                self.assertEqual(s.greeting[0], 220, s.greeting)
                self.assertEqual(s.cmd("EHLO idle.example.org")[0], 250)
                sessions["idle"].append(s)
            for i in range(MID_DATA):
                mid = "<mid.%d.%s@faults.test>" % (i, run)
                sessions["mid"].append((mid, self.open_transaction(mid)))
            for i in range(IN_FLIGHT):
                mid = "<flight.%d.%s@faults.test>" % (i, run)
                sessions["flight"].append((mid, self.open_transaction(mid)))
            # The in-flight transactions end now, all at once; relayd gets
            # SIGTERM while their deliveries are being committed.
            for _, s in sessions["flight"]:
                s.sock.sendall(b"second half\r\n.\r\n")
            with open(os.path.join(self.data, "run", "relayd-1.pid")) as f:
                relayd = int(f.read())
            os.kill(relayd, signal.SIGTERM)

            idle_replies = [s.rest() for s in sessions["idle"]]
            mid_replies = [(mid, s.rest()) for mid, s in sessions["mid"]]
            flight_replies = [(mid, s.rest()) for mid, s in sessions["flight"]]
        finally:
            for s in sessions["idle"] + [s for _, s in sessions["mid"] + sessions["flight"]]:
                s.close()
        mgtest.eventually(lambda: not os.path.exists("/proc/%d" % relayd) or faults.zombie(relayd), "relayd to exit")

        for replies in idle_replies:
            self.assertEqual([c for c, _ in replies], [421], replies)
        for mid, replies in mid_replies:
            self.assertEqual([c for c, _ in replies], [421], (mid, replies))
        acked, refused = [], []
        for mid, replies in flight_replies:
            self.assertTrue(replies, "%s: no reply at all" % mid)
            code, text = replies[0]
            self.assertIsNotNone(code, (mid, replies))
            self.assertTrue(code == 250 or 400 <= code < 500, "%s: %r" % (mid, replies))
            (acked if code == 250 else refused).append(mid)
            # After the transaction's reply, only the goodbye may follow.
            self.assertTrue(all(c == 421 for c, _ in replies[1:]), (mid, replies))

        mgtest.launcher("up", "--no-build", data_dir=self.data)  # relayd again
        alice, bob = self.message_ids(self.alice, run), self.message_ids(self.bob, run)
        lost = [m for m in acked if alice[m] == 0 or bob[m] == 0]
        duplicated = [m for m in acked + refused if alice[m] > 1 or bob[m] > 1]
        print("\nSIGTERM with %d sessions: %d idle and %d mid-DATA got 421; %d in flight: %d answered 250, "
              "%d answered 4xx (of those, stored: %d); acknowledged %d, present %d, lost %d, duplicated %d" % (
                  IDLE + MID_DATA + IN_FLIGHT, IDLE, MID_DATA, IN_FLIGHT, len(acked), len(refused),
                  sum(1 for m in refused if alice[m]), len(acked), sum(1 for m in acked if alice[m] and bob[m]),
                  len(lost), len(duplicated)))
        self.assertEqual(lost, [], "acknowledged messages missing")
        self.assertEqual(duplicated, [], "messages stored more than once")
        for mid in acked:
            self.assertEqual((alice[mid], bob[mid]), (1, 1), "acknowledged %s must be stored once for both" % mid)
        for mid in refused:
            self.assertIn((alice[mid], bob[mid]), ((0, 0), (1, 1)), "%s half-stored or duplicated" % mid)
        for mid, _ in mid_replies:
            self.assertEqual((alice[mid], bob[mid]), (0, 0), "an unfinished DATA %s was stored" % mid)



if __name__ == "__main__":
    unittest.main()
