"""Starting, watching and stopping a local cluster in one data directory.

Layout of DIR (default ./.mailgrid):
  cluster.json   where everything listens (read by mailctl, tests, people)
  ports.json     the ports chosen at first start, reused by later starts so
                 that Raft peers keep their addresses
  tls/           local CA and listener certificate
  data/<proc>/   each replica's persistent data
  logs/<proc>.log, run/<proc>.pid
"""
import json
import os
import signal
import socket
import subprocess
import time

from . import paths, ports as port_chooser, tls

# The daemons in start order. A daemon whose binary is not built is skipped
# (and `status` says so), so the cluster grows as services land.
SERVICES = [
    {"name": "tenantd", "stateful": True, "listeners": []},
    {"name": "identityd", "stateful": True, "listeners": []},
    {"name": "mailstored", "stateful": True, "listeners": []},
    {"name": "relayd", "stateful": False,
     "listeners": ["smtp", "submission", "submission_tls"]},
    {"name": "accessd", "stateful": False,
     "listeners": ["imap", "imaps", "pop3", "pop3s"]},
]
DEMO_DOMAIN = "demo.mailgrid.test"
PUBLIC_LISTENERS = ["smtp", "submission", "submission_tls", "imap", "imaps", "pop3", "pop3s"]
HEALTH_WAIT_SECONDS = 180


class Cluster:
    def __init__(self, data_dir, replicas=None):
        self.dir = os.path.abspath(data_dir)
        self.settings_path = os.path.join(self.dir, "ports.json")
        self.settings = self._load_settings()
        if replicas is not None:
            old = self.settings.get("replicas")
            if old is not None and old != replicas:
                raise SystemExit("mailgrid: %s was created with --replicas %d; "
                                 "use another --data or remove it" % (self.dir, old))
            self.settings["replicas"] = replicas
        self.settings.setdefault("replicas", 1)
        self.settings.setdefault("ports", {})
        for port in self.settings["ports"].values():
            port_chooser.reserve(port)  # kept across restarts: renewed once per run

    # ---- processes -------------------------------------------------------

    def processes(self):
        """(proc name, service dict, replica id) for every process, in start order."""
        out = []
        for svc in SERVICES:
            count = self.settings["replicas"] if svc["stateful"] else 1
            for i in range(1, count + 1):
                out.append(("%s-%d" % (svc["name"], i), svc, i))
        return out

    def built(self, svc):
        return os.path.exists(paths.binary(svc["name"]))

    def port(self, key):
        ports = self.settings["ports"]
        if key not in ports:
            ports[key] = port_chooser.pick(set(ports.values()))
            self._save_settings()
        return ports[key]

    def addr(self, key):
        return "127.0.0.1:%d" % self.port(key)

    # ---- up ---------------------------------------------------------------

    def up(self):
        for sub in ("run", "logs", "data"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.ca_cert, self.cert, self.key = tls.ensure(
            os.path.join(self.dir, "tls"), ["localhost", "127.0.0.1", DEMO_DOMAIN])
        self.secrets = tls.ensure_secrets(os.path.join(self.dir, "secrets"))
        self._start_redis()
        started = []
        for proc, svc, replica in self.processes():
            if not self.built(svc):
                continue
            if self.pid_alive(proc):
                continue
            self._start(proc, svc, replica)
            started.append(proc)
        for proc, svc, _ in self.processes():
            if self.built(svc):
                self.wait_healthy(proc)
        self.write_cluster_json()
        return started

    def _env(self):
        env = dict(os.environ)
        env["MAILGRID_REDIS"] = self.addr("redis")
        for svc in SERVICES:
            if self.built(svc):
                addrs = [self.addr(p + ".grpc") for p, s, _ in self.processes() if s is svc]
                env["MAILGRID_" + svc["name"].upper()] = ",".join(addrs)
        env["MAILGRID_PUBLIC_TLS_CERT"] = self.cert
        env["MAILGRID_PUBLIC_TLS_KEY"] = self.key
        # No MAILGRID_TLS_CA: it names the CA of internal gRPC TLS (the
        # chart's mTLS mode), and local gRPC is plain text on loopback. The
        # local CA of the public listeners is cluster.json's ca_cert.
        # Access tokens: daemons verify with the public key; mailctl mints
        # operator tokens with the private key (ctl_env).
        env["MAILGRID_TOKEN_PUBLIC_KEY"] = self.secrets["token_public"]
        # Daemons sign their service-internal calls (libs/auth/service_token.h)
        # and identityd signs user tokens with the cluster's key.
        env["MAILGRID_TOKEN_SIGNING_KEY"] = self.secrets["token_private"]
        env["MAILGRID_DKIM_MASTER_KEY_FILE"] = self.secrets["dkim_master"]
        env["MAILGRID_CLUSTER_HOSTNAME"] = DEMO_DOMAIN
        env["MAILGRID_MX_HOSTS"] = DEMO_DOMAIN + ":10"
        return env

    def ctl_env(self):
        """Environment for mailctl run against this cluster."""
        env = dict(os.environ)
        env["MAILGRID_TOKEN_KEY"] = tls.ensure_secrets(os.path.join(self.dir, "secrets"))["token_private"]
        return env

    def _start(self, proc, svc, replica):
        env = self._env()
        if svc["stateful"]:
            peers = ["%d=%s" % (i, self.addr("%s-%d.grpc" % (svc["name"], i)))
                     for i in range(1, self.settings["replicas"] + 1)]
            env["MAILGRID_RAFT_ID"] = str(replica)
            env["MAILGRID_RAFT_PEERS"] = ",".join(peers)
        for listener in svc["listeners"]:
            env["MAILGRID_%s_LISTEN" % listener.upper()] = self.addr(listener)
        data = os.path.join(self.dir, "data", proc)
        os.makedirs(data, exist_ok=True)
        cmd = [paths.binary(svc["name"]),
               "--listen=" + self.addr(proc + ".grpc"),
               "--metrics-listen=" + self.addr(proc + ".metrics"),
               "--data-dir=" + data]
        self._spawn(proc, cmd, env)

    def _start_redis(self):
        if self.pid_alive("redis"):
            return
        rdir = os.path.join(self.dir, "redis")
        os.makedirs(rdir, exist_ok=True)
        # Redis holds only what may be lost (sessions, counters, tickets), so
        # it runs without persistence.
        cmd = ["redis-server", "--port", str(self.port("redis")), "--bind", "127.0.0.1",
               "--dir", rdir, "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self._spawn("redis", cmd, dict(os.environ))
        deadline = time.time() + 30
        while time.time() < deadline:
            if _redis_ping(self.port("redis")):
                return
            if not self.pid_alive("redis"):
                break
            time.sleep(0.1)
        raise SystemExit("mailgrid: redis-server did not start; see " + self.log_path("redis"))

    def _spawn(self, proc, cmd, env):
        log = open(self.log_path(proc), "ab")
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        with open(self.pid_path(proc), "w") as f:
            f.write(str(p.pid))

    def wait_healthy(self, proc):
        deadline = time.time() + HEALTH_WAIT_SECONDS
        while time.time() < deadline:
            if not self.pid_alive(proc):
                raise SystemExit("mailgrid: %s exited during start; last lines of %s:\n%s"
                                 % (proc, self.log_path(proc), _tail(self.log_path(proc))))
            if self.health(proc) == "SERVING":
                return
            time.sleep(0.2)
        raise SystemExit("mailgrid: %s not healthy after %ds; see %s"
                         % (proc, HEALTH_WAIT_SECONDS, self.log_path(proc)))

    def health(self, proc):
        r = subprocess.run([paths.binary("mailctl"), "health", self.addr(proc + ".grpc")],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        parts = r.stdout.split()
        return parts[-1] if parts else "UNREACHABLE"

    # ---- down / status ---------------------------------------------------

    def down(self, grace=30):
        """SIGTERM front ends first, then stateful services, then Redis."""
        order = [p for p, _, _ in reversed(self.processes())] + ["redis"]
        stopped = []
        for proc in order:
            pid = self.pid(proc)
            if pid is None:
                continue
            if self.pid_alive(proc):
                os.kill(pid, signal.SIGTERM)
                deadline = time.time() + grace
                while time.time() < deadline and self.pid_alive(proc):
                    time.sleep(0.05)
                if self.pid_alive(proc):
                    os.kill(pid, signal.SIGKILL)
                stopped.append(proc)
            os.unlink(self.pid_path(proc))
        return stopped

    def status(self):
        rows = [("redis", "running" if self.pid_alive("redis") else "stopped",
                 self.addr("redis") if "redis" in self.settings["ports"] else "-")]
        for proc, svc, _ in self.processes():
            if not self.built(svc):
                rows.append((proc, "not built", "-"))
            elif not self.pid_alive(proc):
                rows.append((proc, "stopped", self.addr(proc + ".grpc")))
            else:
                rows.append((proc, self.health(proc), self.addr(proc + ".grpc")))
        return rows

    # ---- cluster.json ----------------------------------------------------

    def write_cluster_json(self, demo=None):
        doc = {}
        for listener in PUBLIC_LISTENERS:
            owner = next(s for s in SERVICES if listener in s["listeners"])
            doc[listener] = self.addr(listener) if self.built(owner) else None
        doc["grpc"] = {}
        doc["metrics"] = []
        for proc, svc, _ in self.processes():
            if not self.built(svc):
                continue
            doc["grpc"].setdefault(svc["name"], []).append(self.addr(proc + ".grpc"))
            doc["metrics"].append("http://%s/metrics" % self.addr(proc + ".metrics"))
        doc["redis"] = self.addr("redis")
        doc["ca_cert"] = os.path.join(self.dir, "tls", "ca.pem")
        doc["replicas"] = self.settings["replicas"]
        if demo is not None:
            doc["demo"] = demo
        elif os.path.exists(self.cluster_json_path()):
            with open(self.cluster_json_path()) as f:
                old = json.load(f)
            if "demo" in old:
                doc["demo"] = old["demo"]
        tmp = self.cluster_json_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, self.cluster_json_path())
        return doc

    # ---- files -----------------------------------------------------------

    def cluster_json_path(self):
        return os.path.join(self.dir, "cluster.json")

    def log_path(self, proc):
        return os.path.join(self.dir, "logs", proc + ".log")

    def pid_path(self, proc):
        return os.path.join(self.dir, "run", proc + ".pid")

    def pid(self, proc):
        try:
            with open(self.pid_path(proc)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def pid_alive(self, proc):
        pid = self.pid(proc)
        if pid is None:
            return False
        try:
            # A zombie (exited, not yet reaped) counts as dead.
            with open("/proc/%d/stat" % pid) as f:
                return f.read().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def _load_settings(self):
        try:
            with open(self.settings_path) as f:
                return json.load(f)
        except OSError:
            return {}

    def _save_settings(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.settings_path, "w") as f:
            json.dump(self.settings, f, indent=2)


def _redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"
