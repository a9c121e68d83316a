"""Real processes: a replica group of three replicad daemons on loopback.

1. Crashes and a partition under load: kvload writes while the test kill -9s
   the leader, then a follower, restarts them, and cuts one replica off at
   the transport (test hook). Afterwards every acknowledged write is readable
   with its value, no value that was never written appears, every replica
   holds the same data, and the recorded history (invoke/return times,
   unknown outcomes) is linearizable (kvlincheck).
2. Snapshot catch-up: a replica is wiped (killed, data dir deleted), removed,
   and replaced by an empty member with a fresh id (Raft ids are never
   reused: a wiped replica forgot its votes). The log was compacted, so the
   newcomer needs a snapshot; two snapshot streams are damaged on purpose (in
   transit and at the source) and must be refused and fetched again. Writes
   continue meanwhile; the newcomer ends with everything.

Sizes: MAILGRID_REPLICA_TEST_OPS (default 10000) operations in test 1 (four
fifths are writes of unique keys); raise it for a longer soak.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

SOURCE_DIR = os.environ.get(
    "MAILGRID_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "lib"))
import mgtest  # noqa: E402

OPS = int(os.environ.get("MAILGRID_REPLICA_TEST_OPS", "10000"))
GROUP = "itest"


def ctl(address, *args, check=True):
    r = subprocess.run([mgtest.binary("replicactl"), "--group=" + GROUP, address] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError("replicactl %s %s failed: %s" % (address, " ".join(args), r.stderr))
    return r


def parse_status(line):
    out = {}
    for part in line.split():
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class Group:
    def __init__(self, root, extra_flags=()):
        self.root = root
        self.extra = list(extra_flags)
        self.addresses = {}
        self.procs = {}

    def add_address(self, node):
        self.addresses[node] = "127.0.0.1:%d" % mgtest.free_port()

    def peers(self, ids):
        return ",".join("%d=%s" % (i, self.addresses[i]) for i in sorted(ids))

    def data_dir(self, node):
        return os.path.join(self.root, "r%d" % node)

    def start(self, node, peer_ids, join=False):
        args = [mgtest.binary("replicad"), "--raft-id=%d" % node,
                "--raft-peers=" + self.peers(peer_ids), "--raft-group=" + GROUP,
                "--listen=" + self.addresses[node], "--metrics-listen=127.0.0.1:0",
                "--data-dir=" + self.data_dir(node)] + self.extra
        if join:
            args.append("--raft-join")
        with open(os.path.join(self.root, "r%d.log" % node), "a") as log:
            self.procs[node] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, node):
        p = self.procs.pop(node)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=120)

    def terminate_all(self):
        codes = {}
        for node, p in list(self.procs.items()):
            p.send_signal(signal.SIGTERM)
        for node, p in list(self.procs.items()):
            try:
                codes[node] = p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[node] = "hung"
        self.procs.clear()
        return codes

    def status(self, node):
        r = ctl(self.addresses[node], "status", check=False)
        return parse_status(r.stdout) if r.returncode == 0 else None

    def wait_ready(self, node):
        ctl(self.addresses[node], "wait-ready", str(mgtest.PATIENCE_SECONDS))

    def leader(self):
        """The node that says it leads and that every running member follows."""
        def find():
            statuses = {n: self.status(n) for n in self.procs}
            leaders = [n for n, s in statuses.items() if s and s.get("role") == "leader"]
            if len(leaders) != 1:
                return None
            lead = leaders[0]
            if all(s and s.get("leader") == str(lead) for s in statuses.values()):
                return lead
            return None
        return mgtest.eventually(find, "one leader followed by every running replica")

    def address_list(self, ids=None):
        return ",".join(self.addresses[i] for i in sorted(ids or self.procs))


def read_file(path):
    with open(path) as f:
        return f.read()


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def kvload(mode, addresses, run, ops, out_path, history=None, extra=(), wait=True):
    args = [mgtest.binary("kvload"), "--addresses=" + addresses, "--run=" + run,
            "--ops=%d" % ops] + list(extra) + [mode]
    if history:
        args.insert(1, "--history=" + history)
    with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
        p = subprocess.Popen(args, stdout=out, stderr=err)  # the child keeps its own fds
    if wait:
        p.wait()
    return p


def parse_writes(path):
    acked, attempted = {}, {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            kind, key, value = parts[0], parts[1], parts[2]
            attempted.setdefault(key, set()).add(value)
            if kind == "ack":
                acked.setdefault(key, set()).add(value)
    return acked, attempted


def parse_reads(path):
    values = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "value":
                values[parts[1]] = parts[2]
            elif parts and parts[0] == "missing":
                values[parts[1]] = None
    return values


class ReplicaProcessTest(unittest.TestCase):
    def setUp(self):
        self.root = mgtest.temp_dir("replica_it")

    def tearDown(self):
        for p in getattr(self, "group", Group(self.root)).procs.values():
            p.kill()
        if not getattr(self, "keep", False):
            shutil.rmtree(self.root, ignore_errors=True)

    def check_reads(self, acked, attempted, reads, what):
        self.assertTrue(reads, what + ": nothing read")
        for key, value in reads.items():
            if value is None:
                self.assertNotIn(key, acked, "%s: acknowledged key %s is missing" % (what, key))
                continue
            # Never a value that no client tried to write.
            self.assertIn(value, attempted.get(key, set()),
                          "%s: %s holds %r, never written" % (what, key, value))
            if "/k-" in key and key in acked:
                # A unique key is written once: it must hold that value.
                self.assertEqual({value}, acked[key], "%s: %s" % (what, key))
        for key in acked:
            self.assertIn(key, reads, "%s: acknowledged key %s not read back" % (what, key))
            self.assertIsNotNone(reads[key], "%s: acknowledged key %s lost" % (what, key))

    def start_group(self, extra_flags=()):
        self.group = g = Group(self.root, extra_flags)
        for n in (1, 2, 3):
            g.add_address(n)
        for n in (1, 2, 3):
            g.start(n, (1, 2, 3))
        for n in (1, 2, 3):
            g.wait_ready(n)
        return g

    def test_acknowledged_writes_survive_crashes_and_partition(self):
        self.keep = True  # logs stay on failure; removed below on success
        g = self.start_group()
        acks = os.path.join(self.root, "writes.txt")
        history = os.path.join(self.root, "history.txt")
        load = kvload("write", g.address_list(), "crash", OPS, acks, history=history,
                      extra=("--clients=8", "--hot-keys=20", "--timeout=20s"), wait=False)

        answered = [0]

        def progress(fraction, event):
            """Waits until `fraction` of the writes more were answered."""
            target = answered[0] + int(OPS * 0.8 * fraction)
            mgtest.eventually(lambda: count_lines(acks) >= target or load.poll() is not None,
                              "%d writes answered" % target)
            answered[0] = count_lines(acks)
            sys.stderr.write("%s after %d writes answered%s\n" % (
                event, answered[0], "" if load.poll() is None else " (load finished)"))

        progress(0.05, "kill -9 the leader")
        victim = g.leader()
        g.kill(victim)                       # the leader dies
        progress(0.05, "restart it")
        g.start(victim, (1, 2, 3))           # and comes back
        g.wait_ready(victim)
        follower = [n for n in (1, 2, 3) if n != g.leader()][0]
        progress(0.05, "kill -9 a follower")
        g.kill(follower)                     # a follower dies
        progress(0.05, "restart it")
        g.start(follower, (1, 2, 3))
        g.wait_ready(follower)
        progress(0.05, "partition the leader")
        cut = g.leader()                     # the leader is cut off
        others = [n for n in (1, 2, 3) if n != cut]
        ctl(g.addresses[cut], "partition", ",".join(map(str, others)))
        mgtest.eventually(lambda: g.status(others[0]) and g.status(others[0]).get("role") in (
            "leader", "follower") and g.status(others[0]).get("leader") not in ("0", str(cut)),
            "the majority side elects a new leader")
        progress(0.05, "heal the partition")
        ctl(g.addresses[cut], "heal")
        self.assertEqual(load.wait(timeout=3600), 0, read_file(acks + ".err"))
        sys.stderr.write("kvload: " + read_file(acks + ".err"))

        for n in (1, 2, 3):
            g.wait_ready(n)
        acked, attempted = parse_writes(acks)
        self.assertGreater(len(acked), OPS // 2, "most writes must succeed")
        sys.stderr.write("keys acknowledged: %d, keys with an unknown outcome: %d\n" % (
            len(acked), sum(1 for k, v in attempted.items() if v - acked.get(k, set()))))
        reads_path = os.path.join(self.root, "reads.txt")
        p = kvload("read", g.address_list(), "crash", OPS, reads_path, history=history,
                   extra=("--hot-keys=20",))
        self.assertEqual(p.returncode, 0, read_file(reads_path + ".err"))
        self.check_reads(acked, attempted, parse_reads(reads_path), "linearizable read")

        # Every replica converges on the same data.
        commit = int(g.status(g.leader())["commit"])
        for n in (1, 2, 3):
            mgtest.eventually(lambda: int(g.status(n)["applied"]) >= commit, "replica %d applied" % n)
            path = os.path.join(self.root, "stale%d.txt" % n)
            p = kvload("read", g.addresses[n], "crash", OPS, path, extra=("--hot-keys=20", "--stale"))
            self.assertEqual(p.returncode, 0)
            self.assertEqual(parse_reads(path), parse_reads(reads_path), "replica %d differs" % n)

        r = subprocess.run([mgtest.binary("kvlincheck"), history], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=3600)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("linearizable", r.stdout)

        codes = g.terminate_all()
        self.assertEqual(set(codes.values()), {0}, codes)
        self.keep = False

    def test_wiped_replica_rejoins_from_snapshot(self):
        self.keep = True
        g = self.start_group(("--raft-compact-entries=200", "--raft-compact-keep=50",
                              "--raft-snapshot-chunk-bytes=4096"))
        first = os.path.join(self.root, "first.txt")
        # One writer: KvClient coalesces concurrent writes into one entry
        # per call, so 8 writers could leave fewer than 200 entries and
        # nothing to compact; one writer makes 1,000 entries.
        p = kvload("write", g.address_list(), "before", 1000, first,
                   extra=("--clients=1", "--hot-keys=0"))
        self.assertEqual(p.returncode, 0, read_file(first + ".err"))
        leader = g.leader()
        self.assertGreater(int(g.status(leader)["first_index"]), 1, "the log must be compacted")

        # Wipe a follower: it is gone for good, its id is retired.
        victim = [n for n in (1, 2, 3) if n != leader][0]
        g.kill(victim)
        shutil.rmtree(g.data_dir(victim))
        ctl(g.addresses[leader], "remove", str(victim))

        # Damage the next two snapshot streams the leader sends.
        ctl(g.addresses[leader], "corrupt-snapshots", "1", "1")
        newcomer = 4
        g.add_address(newcomer)
        g.start(newcomer, (1, 2, 3, 4), join=True)
        second = os.path.join(self.root, "second.txt")
        load = kvload("write", g.address_list([n for n in (1, 2, 3) if n != victim]), "during",
                      1000, second, extra=("--clients=4", "--hot-keys=0"), wait=False)
        ctl(g.addresses[leader], "add-learner", str(newcomer), g.addresses[newcomer])
        self.assertEqual(load.wait(timeout=3600), 0, read_file(second + ".err"))
        ctl(g.addresses[leader], "add-voter", str(newcomer))
        g.wait_ready(newcomer)

        commit = int(g.status(g.leader())["commit"])
        mgtest.eventually(lambda: int(g.status(newcomer)["applied"]) >= commit, "newcomer caught up")
        mgtest.eventually(lambda: int(g.status(newcomer)["snapshots_installed"]) >= 1,
                          "newcomer installed a snapshot")
        st = g.status(newcomer)
        sys.stderr.write("newcomer: %r\n" % st)
        self.assertGreaterEqual(int(st["snapshots_installed"]), 1, st)
        self.assertGreaterEqual(int(st["snapshot_chunks_refused"]), 2, st)
        self.assertIn("4@", st["members"])
        self.assertNotIn("%d@" % victim, st["members"])

        # The newcomer alone (stale reads) holds every acknowledged write.
        for run, path in (("before", first), ("during", second)):
            acked, attempted = parse_writes(path)
            reads = os.path.join(self.root, "reads-%s.txt" % run)
            p = kvload("read", g.addresses[newcomer], run, 1000, reads,
                       extra=("--hot-keys=0", "--stale"))
            self.assertEqual(p.returncode, 0, read_file(reads + ".err"))
            self.check_reads(acked, attempted, parse_reads(reads), "newcomer " + run)

        codes = g.terminate_all()
        self.assertEqual(set(codes.values()), {0}, codes)
        self.keep = False

    def test_transfer_leadership_on_a_single_voter_says_so_and_succeeds(self):
        """`mailctl raft transfer-leadership` (the preStop hook) on a group of
        one: nobody to hand over to, so it says so and exits 0; on a group of
        three it really moves the leadership."""
        self.keep = True
        mailctl = mgtest.binary("mailctl")
        self.assertTrue(os.path.exists(mailctl), "build mailctl first: " + mailctl)

        def transfer(address):
            return subprocess.run([mailctl, "raft", "transfer-leadership",
                                   "--address=" + address, "--timeout=30s"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  timeout=120)

        solo = Group(os.path.join(self.root, "solo"))
        os.makedirs(solo.root)
        self.group = solo
        solo.add_address(1)
        solo.start(1, (1,))
        solo.wait_ready(1)
        self.assertEqual(solo.leader(), 1)
        r = transfer(solo.addresses[1])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("only voter", r.stdout)
        self.assertEqual(solo.leader(), 1)
        self.assertEqual(solo.terminate_all(), {1: 0})

        g = self.start_group()
        leader = g.leader()
        r = transfer(g.addresses[leader])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("moved from", r.stdout)
        mgtest.eventually(lambda: g.leader() != leader, "another replica leads")
        self.keep = False


if __name__ == "__main__":
    unittest.main()
