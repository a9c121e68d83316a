#!/usr/bin/env python3
"""mailstored on a real 3-replica shard (three mailstored processes).

test_appends_survive_two_leader_kills: mailstore_load --mode=chaos appends
MAILSTORE_CHAOS_MESSAGES messages (default 6000) from 8 writers, each
retried with its idempotency key until acknowledged, while a Watch stream
records every added UID. Meanwhile the leader is SIGKILLed twice (and
restarted). The tool then checks that every acknowledged append is present
exactly once with its acknowledged UID, that no writer saw a UID go
backwards, and that the Watch stream (which reconnects to the new leader
from its cursor) saw every appended UID.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
import mgtest  # noqa: E402

MESSAGES = int(os.environ.get("MAILSTORE_CHAOS_MESSAGES", "6000"))


class Shard:
    def __init__(self, root):
        self.root = root
        self.key = os.path.join(root, "signing.pem")
        self.pub = os.path.join(root, "public.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.key], check=True)
        subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-out", self.pub], check=True)
        self.ports = [mgtest.free_port() for _ in range(3)]
        self.metrics = [mgtest.free_port() for _ in range(3)]
        self.peers = ",".join("%d=127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(self.ports))
        self.procs = [None, None, None]
        self.logs = []

    def addresses(self):
        return ",".join("127.0.0.1:%d" % p for p in self.ports)

    def start(self, i):
        log = open(os.path.join(self.root, "mailstored-%d.log" % (i + 1)), "a")
        self.logs.append(log)
        self.procs[i] = subprocess.Popen(
            [mgtest.binary("mailstored"), "--listen=127.0.0.1:%d" % self.ports[i],
             "--metrics-listen=127.0.0.1:%d" % self.metrics[i],
             "--data-dir=%s" % os.path.join(self.root, "r%d" % (i + 1)),
             "--raft-id=%d" % (i + 1), "--raft-peers=%s" % self.peers,
             "--token-public-key=%s" % self.pub],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, MAILGRID_LOG_LEVEL="warn"))

    def role(self, i):
        if self.procs[i] is None or self.procs[i].poll() is not None:
            return None
        try:
            _, text = mgtest.http_get("http://127.0.0.1:%d/metrics" % self.metrics[i])
        except Exception:
            return None
        m = re.search(r'mailgrid_raft_role\{role="leader"\} 1', text)
        return "leader" if m else "other"

    def leader(self):
        for i in range(3):
            if self.role(i) == "leader":
                return i
        return None

    def stop_all(self):
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in self.procs:
            if p is not None:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        for log in self.logs:
            log.close()


class MailstoreShardTest(unittest.TestCase):
    def setUp(self):
        self.shard = Shard(mgtest.temp_dir("mailstore-it-"))
        for i in range(3):
            self.shard.start(i)
        mgtest.eventually(lambda: self.shard.leader() is not None, "a shard leader")

    def tearDown(self):
        self.shard.stop_all()
        shutil.rmtree(self.shard.root, ignore_errors=True)

    def test_appends_survive_two_leader_kills(self):
        load = subprocess.Popen(
            [mgtest.binary("mailstore_load"), "--mode=chaos", "--mailstored=" + self.shard.addresses(),
             "--signing-key=" + self.shard.key, "--writers=8", "--messages=%d" % MESSAGES,
             "--tenant=it-tenant", "--prefix=it"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kills = 0
        # Kill the leader twice while the load runs: early, and again as soon
        # as the first victim is back, so a faster store (appends to one
        # mailbox share a write) still sees both kills mid-load.
        for _ in range(2):
            time.sleep(1.5)
            if load.poll() is not None:
                break
            mgtest.eventually(lambda: self.shard.leader() is not None, "a leader to kill")
            victim = self.shard.leader()
            if victim is None:
                continue
            self.shard.procs[victim].send_signal(signal.SIGKILL)
            self.shard.procs[victim].wait()
            kills += 1
            mgtest.eventually(lambda: self.shard.leader() not in (None, victim), "a new leader")
            self.shard.start(victim)  # back as a follower; it catches up
        try:
            out, err = load.communicate(timeout=1800)
        except subprocess.TimeoutExpired:
            load.kill()
            raise
        sys.stderr.write(err[-4000:])
        print(out)
        self.assertEqual(load.returncode, 0, out + err[-2000:])
        result = json.loads(out.strip().splitlines()[-1])
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["acked"], MESSAGES)
        self.assertEqual(result["stored"], MESSAGES)
        self.assertGreaterEqual(kills, 2, "the load finished before two kills; raise MAILSTORE_CHAOS_MESSAGES")
        # The Watch stream reconnected after the failovers (one READY per connection).
        self.assertGreaterEqual(result["watch_ready_events"], 2, result)


if __name__ == "__main__":
    unittest.main()
