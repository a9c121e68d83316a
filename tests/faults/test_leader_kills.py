"""Faults (issue 12): nothing acknowledged may be lost.

On one `tools/mailgrid up --demo --replicas 3` cluster:

1. Four SMTP clients deliver 1,000 messages to alice over port 25 while the
   mailstored Raft leader is `kill -9`ed five times (each victim restarted
   by `tools/mailgrid up` before the next kill, so a majority always
   exists). Every message that got 250 is in alice's INBOX exactly once;
   a message refused with 4xx may be there at most once (a retry after a
   451 is deduplicated by relayd's delivery id, RFC 5321 allows nothing
   more).
2. The tenantd and the identityd leaders are each `kill -9`ed five times
   (both in each of five rounds) while bob signs in over IMAP again and again and the
   tenant admin onboards employees one after another (tenantd: user
   create; identityd: the forced first password change): sign-ins fail
   only while a group elects and succeed again afterwards; every employee
   whose creation was acknowledged exists afterwards, every acknowledged
   password change signs in over IMAP, and alice and bob still sign in
   with the same passwords and see all their mail (0 accounts lost).
3. Redis is `kill -9`ed while an SMTP client delivers 200 messages to
   alice, and stays down for a while (at most 100 more deliveries or
   5 s): it holds only what may be lost. Every message answered 250 is
   in alice's INBOX exactly once and all earlier mail is still there; bob's
   session from before is gone (its refresh token is refused: he signs in
   again), and he and alice sign in with the same passwords (0 accounts
   lost).

Counts are printed: acknowledged, refused, present, lost (must be 0),
duplicated (must be 0).
"""
import imaplib
import os
import signal
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import faults  # noqa: E402
import mgctl  # noqa: E402
import mgtest  # noqa: E402

CLIENTS, PER_CLIENT, KILLS = 4, 250, 5
MAX_ONBOARDED = 80  # the demo plan has 100 mailboxes
REDIS_MESSAGES = 200


class LeaderKillTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mg = mgtest.LocalCluster("mailgrid-faults", "--demo", "--replicas", "3")
        cls.data, cls.cluster, cls.ports, cls.tls = cls.mg.data, cls.mg.cluster, cls.mg.ports, cls.mg.tls
        users = cls.mg.demo_users()
        cls.alice, cls.bob = users["alice"], users["bob"]
        cls.admin = mgctl.Mailctl(cls.data)
        cls.admin.tenant_id = cls.cluster["demo"]["tenant_id"]
        cls.domain = cls.cluster["demo"]["domain"]

    @classmethod
    def tearDownClass(cls):
        cls.mg.stop()

    # ---- the cluster's processes -------------------------------------------------

    def leader(self, service):
        """The replica number whose /metrics says it leads `service`'s group."""
        for i in (1, 2, 3):
            url = "http://127.0.0.1:%d/metrics" % self.ports["%s-%d.metrics" % (service, i)]
            try:
                text = urllib.request.urlopen(url, timeout=10).read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("mailgrid_raft_role{") and 'role="leader"' in line and line.endswith(" 1"):
                    return i
        return None

    def kill9(self, proc):
        with open(os.path.join(self.data, "run", proc + ".pid")) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        mgtest.eventually(lambda: not os.path.exists("/proc/%d" % pid) or faults.zombie(pid), proc + " to die")

    def restart_dead(self):
        """`tools/mailgrid up` starts exactly the processes that are not running."""
        mgtest.launcher("up", "--no-build", data_dir=self.data)

    def kill_leader(self, service):
        victim = mgtest.eventually(lambda: self.leader(service), "a %s leader" % service)
        self.kill9("%s-%d" % (service, victim))
        return victim

    # ---- mail ----------------------------------------------------------------------

    def imap(self, user):
        c = imaplib.IMAP4(*mgtest.host_port(self.cluster["imap"]))
        c.starttls(ssl_context=self.tls)
        c.login(user["address"], user["password"])
        return c

    def message_ids(self, user):
        """Message-ID -> how many times it is in the user's INBOX."""
        return faults.inbox_message_ids(self.cluster, self.tls, user)

    def deliver_many(self, run_id, outcome):
        """One SMTP client: PER_CLIENT messages on as few connections as it can."""
        mids = ("<%s.%d@faults.test>" % (run_id, n) for n in range(PER_CLIENT))
        faults.deliver_each(self.cluster, self.alice["address"], mids, outcome, "fault")

    # ---- tests -----------------------------------------------------------------------

    def test_1_mailstored_leader_killed_five_times_during_1000_deliveries(self):
        outcome = {}
        threads = [threading.Thread(target=self.deliver_many, args=("c%d" % i, outcome))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        total = CLIENTS * PER_CLIENT
        killed = []
        for k in range(KILLS):
            # Spread the kills over the run.
            mgtest.eventually(lambda: len(outcome) >= (k + 1) * total // (KILLS + 1), "deliveries to progress",
                              patience=600)
            killed.append(self.kill_leader("mailstored"))
            self.restart_dead()
        for t in threads:
            t.join()

        present = self.message_ids(self.alice)
        acked = [m for m, o in outcome.items() if o == "acked"]
        refused = [m for m, o in outcome.items() if o != "acked"]
        lost = [m for m in acked if present[m] == 0]
        duplicated = [m for m, n in present.items() if m.endswith("@faults.test>") and n > 1]
        print("\nmailstored leaders killed: %s; sent %d, acknowledged %d, refused %d, present %d, "
              "lost %d, duplicated %d" % (killed, total, len(acked), len(refused),
                                          sum(1 for m in outcome if present[m] > 0), len(lost), len(duplicated)))
        self.assertEqual(len(outcome), total)
        self.assertEqual(lost, [], "acknowledged messages missing from the INBOX")
        self.assertEqual(duplicated, [], "messages stored more than once")
        self.assertGreater(len(acked), 0)

    def onboard_loop(self, stop, created, activated, refused):
        """The admin onboards employees until `stop`: `created` gets each
        address whose `user create` was acknowledged, `activated` each
        address -> password whose first password change was acknowledged."""
        n = 0
        while not stop.is_set():
            if len(created) >= MAX_ONBOARDED:
                time.sleep(0.5)
                continue
            n += 1
            address = "onboard%03d-%s@%s" % (n, os.urandom(3).hex(), self.domain)
            initial, new = "Initial-" + os.urandom(6).hex(), "Pw-" + os.urandom(9).hex()
            r = self.admin.admin("user", "create", address, "--name", "Employee %d" % n, "--password", initial,
                                 check=False)
            if r.returncode != 0:
                refused.append(("create", address, r.stderr.strip()[-200:]))
                time.sleep(0.2)
                continue
            created.append(address)
            r = self.admin.run("auth", "login", address, "--password", initial, "--new-password", new, check=False)
            if r.returncode == 0:
                activated[address] = new
            else:
                refused.append(("first login", address, r.stderr.strip()[-200:]))
            time.sleep(0.5)

    def onboarded_since(self, mark, activated, created):
        return len(activated) > mark or len(created) >= MAX_ONBOARDED

    def user_exists(self, address):
        r = self.admin.admin("user", "show", address, check=False)
        if r.returncode == 0:
            return True
        if "NOT_FOUND" in r.stderr:
            return False
        return None  # UNAVAILABLE while a group elects: ask again

    def signs_in(self, address, password):
        try:
            self.imap({"address": address, "password": password}).logout()
            return True
        except (imaplib.IMAP4.error, OSError):
            return None

    def signs_in_eventually(self, address, password):
        try:
            return mgtest.eventually(lambda: self.signs_in(address, password), address + " to sign in", patience=120)
        except AssertionError:
            return False

    def test_2_tenantd_and_identityd_leaders_killed_during_sign_ins_and_onboarding(self):
        before = self.message_ids(self.bob)
        results = []
        created, activated, refused = [], {}, []
        stop = threading.Event()

        def sign_in_loop():
            while not stop.is_set():
                try:
                    self.imap(self.bob).logout()
                    results.append(True)
                except (imaplib.IMAP4.error, OSError):
                    results.append(False)
                time.sleep(0.05)

        threads = [threading.Thread(target=sign_in_loop),
                   threading.Thread(target=self.onboard_loop, args=(stop, created, activated, refused))]
        for t in threads:
            t.start()
        killed = []
        try:
            for k in range(KILLS):
                # Both leaders at once (two Raft groups, each keeps a
                # majority), then one restart: five rounds cost five restarts.
                mark, onboarded = len(results), len(activated)
                mgtest.eventually(lambda: any(results[mark:]) and self.onboarded_since(onboarded, activated, created),
                                  "sign-ins and onboarding to progress before round %d" % (k + 1), patience=300)
                for service in ("tenantd", "identityd"):
                    killed.append("%s-%d" % (service, self.kill_leader(service)))
                self.restart_dead()
            mark, onboarded = len(results), len(activated)
            mgtest.eventually(lambda: any(results[mark:]) and self.onboarded_since(onboarded, activated, created),
                              "a sign-in and an onboarding after the last kill", patience=300)
        finally:
            stop.set()
            for t in threads:
                t.join()
        print("\nleaders killed: %s" % ", ".join(killed))
        print("sign-ins: %d ok, %d failed during elections" % (results.count(True), results.count(False)))
        # Every acknowledged account is there and works: tenantd has each
        # created user, identityd each changed password.
        lost_users = [a for a in created if mgtest.eventually(
            lambda: {True: "present", False: "missing"}.get(self.user_exists(a)), "tenantd to answer for " + a)
            == "missing"]
        lost_passwords = [a for a, pw in activated.items() if not self.signs_in_eventually(a, pw)]
        print("onboarding: %d users created (acknowledged), %d first password changes acknowledged, "
              "%d attempts refused during elections; lost users %d, lost passwords %d" % (
                  len(created), len(activated), len(refused), len(lost_users), len(lost_passwords)))
        self.assertEqual(len(killed), 2 * KILLS)
        self.assertEqual(lost_users, [], "acknowledged users missing")
        self.assertEqual(lost_passwords, [], "acknowledged password changes that do not sign in")
        # No account lost: both still sign in with the same passwords and
        # nothing left bob's mailbox.
        self.imap(self.alice).logout()
        after = self.message_ids(self.bob)
        self.assertGreaterEqual(set(after), set(before))

    def test_3_redis_lost(self):
        before = self.message_ids(self.alice)
        session = self.admin.run("auth", "login", self.bob["address"], "--password",
                                 self.bob["password"])["session"]
        outcome = {}
        mids = ["<redis.%d@faults.test>" % n for n in range(REDIS_MESSAGES)]
        sender = threading.Thread(target=faults.deliver_each,
                                  args=(self.cluster, self.alice["address"], mids, outcome, "redis"))
        sender.start()
        mgtest.eventually(lambda: len(outcome) >= REDIS_MESSAGES // 4, "deliveries to progress", patience=600)
        self.kill9("redis")
        at_kill = len(outcome)
        # Down for a while: how long only shapes the fault, nothing is asserted on it.
        down_until = time.time() + 5
        while time.time() < down_until and len(outcome) < at_kill + REDIS_MESSAGES // 2:
            time.sleep(0.1)
        tried_while_down = len(outcome) - at_kill
        self.restart_dead()
        sender.join()

        # Sessions and counters are gone; accounts and mail are not.
        after = mgtest.eventually(lambda: self.try_ids(self.alice), "alice to sign in after Redis came back")
        acked = [m for m, o in outcome.items() if o == "acked"]
        refused = [m for m, o in outcome.items() if o != "acked"]
        lost = [m for m in acked if after[m] == 0]
        duplicated = [m for m in mids if after[m] > 1]
        earlier_lost = [m for m, n in before.items() if after[m] < n]
        print("\nRedis killed after %d of %d deliveries, %d tried while it was down; acknowledged %d, refused %d, "
              "present %d, lost %d, duplicated %d; earlier messages %d, lost %d" % (
                  at_kill, REDIS_MESSAGES, tried_while_down, len(acked), len(refused),
                  sum(1 for m in mids if after[m] > 0), len(lost), len(duplicated), sum(before.values()),
                  len(earlier_lost)))
        self.assertEqual(len(outcome), REDIS_MESSAGES)
        self.assertEqual(lost, [], "acknowledged messages missing from the INBOX")
        self.assertEqual(duplicated, [], "messages stored more than once")
        self.assertEqual(earlier_lost, [], "mail from before the fault missing")
        self.assertGreater(len(acked), 0)
        def settled_refresh():
            r = self.admin.run("auth", "refresh", session["refresh_token"], check=False)
            return None if "UNAVAILABLE" in r.stderr else r
        refreshed = mgtest.eventually(settled_refresh, "identityd to answer a refresh")
        self.assertNotEqual(refreshed.returncode, 0, "a session from before Redis was lost must be gone")
        self.assertRegex(refreshed.stderr, "NOT_FOUND|UNAUTHENTICATED")
        again = self.admin.run("auth", "login", self.bob["address"], "--password", self.bob["password"])
        self.assertEqual(again["session"]["address"], self.bob["address"], "bob signs in again")
        self.imap(self.bob).logout()

    def try_ids(self, user):
        try:
            return self.message_ids(user)
        except (imaplib.IMAP4.error, OSError):
            return None


if __name__ == "__main__":
    unittest.main()
