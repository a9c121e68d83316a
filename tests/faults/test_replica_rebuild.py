"""Faults (issue 12): a mailstored replica wiped and rebuilt from a
snapshot while mail keeps arriving; nothing acknowledged may be lost.

On `tools/mailgrid up --demo --replicas 3` whose Raft logs compact early
(MAILGRID_RAFT_COMPACT_ENTRIES, so a newcomer can only catch up from a
snapshot), two SMTP clients deliver to alice over port 25 the whole time
while the test does what an operator does for a lost disk
(libs/replica/README.md, "Replacing a dead replica"):

1. kill -9 a mailstored follower and delete its data directory;
2. `replicactl remove` its id from the group (ids are never reused: a
   wiped replica forgot its votes);
3. start an empty mailstored with a new id at the same address
   (--raft-join), `add-learner`, wait until it has caught up, `add-voter`;
4. hand the leadership to the newcomer, so that what IMAP reads next is
   served by the rebuilt replica.

Then: the newcomer installed at least one snapshot and is a voter, the old
id is gone, and every message answered 250 is in alice's INBOX exactly
once (read through the new leader).
"""
import imaplib
import os
import shutil
import signal
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import faults  # noqa: E402
import mgtest  # noqa: E402

# Each client delivers until the newcomer is a voter, and at least this many.
CLIENTS, AT_LEAST = 2, 100
GROUP = "mailstore-0"
NEWCOMER = 4


def replicactl(address, *args, check=True):
    return faults.replicactl(GROUP, address, *args, check=check)


def status(address):
    return faults.replica_status(GROUP, address)


class ReplicaRebuildTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-faults-rebuild", "--demo", "--replicas", "3", env={
            "MAILGRID_RAFT_COMPACT_ENTRIES": "40",
            "MAILGRID_RAFT_COMPACT_KEEP": "10",
            "MAILGRID_RAFT_SNAPSHOT_CHUNK_BYTES": "65536",
        })
        cls.data, cls.cluster, cls.ports, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.ports, cls.mg.tls
        cls.alice = cls.mg.demo_users()["alice"]

    @classmethod
    def tearDownClass(cls):
        cls.mg.stop()

    # ---- the group -------------------------------------------------------------

    def address(self, replica):
        return "127.0.0.1:%d" % self.ports["mailstored-%d.grpc" % replica]

    def leader(self):
        """(replica number, status) of the one leader every live replica follows."""
        statuses = {n: status(self.address(n)) for n in (1, 2, 3)}
        leaders = [n for n, s in statuses.items() if s and s["role"] == "leader"]
        if len(leaders) != 1:
            return None
        return leaders[0], statuses[leaders[0]]

    @staticmethod
    def pid_of(data, proc):
        with open(os.path.join(data, "run", proc + ".pid")) as f:
            return int(f.read())

    def start_newcomer(self, victim, env, argv):
        """The victim's process again (same address, same environment) but
        empty, with a new Raft id and --raft-join; `tools/mailgrid down`
        stops it through the victim's pid file."""
        proc = "mailstored-%d" % victim
        data_dir = os.path.join(self.data, "data", "mailstored-newcomer")
        os.makedirs(data_dir)
        # The group's voters as the newcomer will know them: the victim's
        # id is retired, its address now names the newcomer.
        peers = ["%d=%s" % (NEWCOMER if n == victim else n, self.address(n)) for n in (1, 2, 3)]
        env = dict(env, MAILGRID_RAFT_ID=str(NEWCOMER), MAILGRID_RAFT_PEERS=",".join(peers))
        argv = [a for a in argv if not a.startswith("--data-dir=")] + ["--data-dir=" + data_dir, "--raft-join"]
        with open(os.path.join(self.data, "logs", proc + ".log"), "ab") as log:
            p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        with open(os.path.join(self.data, "run", proc + ".pid"), "w") as f:
            f.write(str(p.pid))
        return p

    # ---- mail --------------------------------------------------------------------

    def deliver_many(self, client, outcome, stop):
        def mids():
            n = 0
            while n < AT_LEAST or not stop.is_set():
                n += 1
                yield "<rebuild.%s.%d@faults.test>" % (client, n)
        faults.deliver_each(self.cluster, self.alice["address"], mids(), outcome, "rebuild")

    def message_ids(self):
        return faults.inbox_message_ids(self.cluster, self.tls, self.alice)

    def test_wiped_replica_rebuilt_from_snapshot_while_mail_arrives(self):
        outcome = {}
        stop = threading.Event()
        threads = [threading.Thread(target=self.deliver_many, args=("c%d" % i, outcome, stop))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            mgtest.eventually(lambda: len(outcome) >= 40, "deliveries before the wipe", patience=600)

            def compacted():
                lead = self.leader()
                return lead if lead and int(lead[1]["first_index"]) > 1 else None
            leader, st = mgtest.eventually(compacted, "the leader's log to be compacted", patience=600)
            victim = [n for n in (1, 2, 3) if n != leader][0]
            proc = "mailstored-%d" % victim
            pid = self.pid_of(self.data, proc)
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            env = {k.decode(): v.decode() for k, v in env.items()}
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]

            at_wipe = len(outcome)
            os.kill(pid, signal.SIGKILL)
            mgtest.eventually(lambda: not os.path.exists("/proc/%d" % pid) or faults.zombie(pid), proc + " to die")
            shutil.rmtree(os.path.join(self.data, "data", proc))
            replicactl(self.address(leader), "remove", str(victim))
            self.start_newcomer(victim, env, argv)
            replicactl(self.address(leader), "add-learner", str(NEWCOMER), self.address(victim))

            def caught_up():
                lead = self.leader()
                mine = status(self.address(victim))
                return lead and mine and int(mine["applied"]) >= int(lead[1]["commit"]) - 10
            mgtest.eventually(caught_up, "the newcomer to catch up", patience=600)
            replicactl(self.address(leader), "add-voter", str(NEWCOMER), self.address(victim))
            replicactl(self.address(victim), "wait-ready", str(mgtest.PATIENCE_SECONDS))
            during = len(outcome)
        finally:
            stop.set()
            for t in threads:
                t.join()

        mine = status(self.address(victim))
        print("\nnewcomer: %r" % mine)
        self.assertGreaterEqual(int(mine["snapshots_installed"]), 1, mine)
        members = mine["members"].split(",")
        self.assertIn("%d@%s" % (NEWCOMER, self.address(victim)), members)
        self.assertFalse([m for m in members if m.startswith("%d@" % victim) or m.startswith("%dL@" % victim)],
                         members)

        # Reads are served by the leader: make it the rebuilt replica.
        lead = mgtest.eventually(self.leader, "a leader after the rebuild")[0]
        if lead != victim:
            replicactl(self.address(lead), "transfer", str(NEWCOMER))
        mgtest.eventually(lambda: (self.leader() or (None,))[0] == victim, "the newcomer to lead")

        present = mgtest.eventually(self.try_ids, "alice's INBOX through the rebuilt leader")
        acked = [m for m, o in outcome.items() if o == "acked"]
        refused = [m for m, o in outcome.items() if o != "acked"]
        lost = [m for m in acked if present[m] == 0]
        duplicated = [m for m, n in present.items() if m and "@faults.test>" in m and n > 1]
        print("replica %d wiped and rebuilt as %d: sent %d (%d at the wipe, %d when the newcomer voted), acknowledged %d, "
              "refused %d, lost %d, duplicated %d" % (victim, NEWCOMER, len(outcome), at_wipe, during, len(acked),
                                                      len(refused), len(lost), len(duplicated)))
        self.assertGreater(during, at_wipe, "mail kept arriving during the rebuild")
        self.assertEqual(lost, [], "acknowledged messages missing")
        self.assertEqual(duplicated, [], "messages stored more than once")
        self.assertGreater(len(acked), len(outcome) // 2)

    def try_ids(self):
        try:
            return self.message_ids()
        except (imaplib.IMAP4.error, OSError):
            return None


if __name__ == "__main__":
    unittest.main()
