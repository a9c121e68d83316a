#!/usr/bin/python3
"""A/B of one replicated write's latency and CPU: two replicad builds, same load.

  libs/replica/testing/write_path_ab.py --a OLD_BIN --b NEW_BIN [--clients 1,16,64]
      [--seconds 8] [--rounds 2] [--idle 5] [--bench RAFT_BENCH] [--raw]

For each round and each side (A, B, A, B, ... alternating, so load drift hits
both): starts three `replicad` from that side's bin dir on loopback (data on
the repository's disk), waits until ready, measures the group's idle CPU
over --idle seconds, then runs `raft_bench replicated` for each client count
with ONE raft_bench binary for both sides (default B's), sampling the three
replicads' CPU (utime+stime of every thread, /proc) and context switches
over the measured window. Prints per point: w/s, p50, p99, replica CPU per
write (µs, all three), context switches per write, the leader's write
stages, and at the end the B/A ratios of the medians. Everything it started
is stopped on exit. --raw: one Write RPC per write (no client coalescing).
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TICK = os.sysconf("SC_CLK_TCK")
PROCS = []


def log(msg):
    print("[ab] " + msg, file=sys.stderr, flush=True)


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_counters(pid):
    """(cpu seconds, context switches) summed over every thread of pid."""
    cpu, cs = 0.0, 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0.0, 0
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                        cs += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return cpu, cs


def group_counters(pids):
    cpu, cs = 0.0, 0
    for p in pids:
        c, s = proc_counters(p)
        cpu += c
        cs += s
    return cpu, cs


def metrics(port):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read()
    except OSError:
        return {}
    v = {}
    for line in text.decode().splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        if parts[0].startswith("mailgrid_raft_write_stage_seconds_total{"):
            v[parts[0].split('stage="')[1].split('"')[0]] = float(parts[1])
        elif parts[0] == "mailgrid_raft_write_stage_writes_total":
            v["count"] = float(parts[1])
    return v


STAGES = ["queue", "persist", "ack", "commit", "apply", "answer"]


def stage_note(before, after):
    best = None
    for b, a in zip(before, after):
        n = a.get("count", 0) - b.get("count", 0)
        if n > 0 and (best is None or n > best[0]):
            best = (n, b, a)
    if best is None:
        return ""
    n, b, a = best
    return " ".join("%s %.3f" % (k, 1000 * (a.get(k, 0) - b.get(k, 0)) / n) for k in STAGES)


def start_group(bin_dir, root, env=None):
    ports = [free_port() for _ in range(3)]
    mports = [free_port() for _ in range(3)]
    addrs = ["127.0.0.1:%d" % p for p in ports]
    peers = ",".join("%d=%s" % (i + 1, a) for i, a in enumerate(addrs))
    procs = []
    for i, a in enumerate(addrs):
        d = os.path.join(root, "replica%d" % (i + 1))
        out = open(os.path.join(root, "replica%d.log" % (i + 1)), "a")
        p = subprocess.Popen([os.path.join(bin_dir, "replicad"), "--raft-id=%d" % (i + 1),
                              "--raft-peers=" + peers, "--raft-group=ab", "--listen=" + a,
                              "--metrics-listen=127.0.0.1:%d" % mports[i], "--data-dir=" + d],
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             env=dict(os.environ, **(env or {})))
        procs.append(p)
        PROCS.append(p)
    for a in addrs:
        subprocess.run([os.path.join(bin_dir, "replicactl"), "--group=ab", a, "wait-ready",
                        "120"], check=True, stdout=subprocess.DEVNULL)
    return procs, addrs, mports


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p in PROCS:
            PROCS.remove(p)


def run_point(bench, addrs, mports, pids, clients, seconds, raw):
    warmup = 1.0
    args = [bench, "replicated", "--clients", str(clients), "--seconds", str(seconds),
            "--warmup", "1s", "--addresses", ",".join(addrs)] + (["--raw-writes"] if raw else [])
    sample = {}

    def sampler():
        time.sleep(warmup + 0.05)
        sample["b"] = group_counters(pids)
        sample["mb"] = [metrics(m) for m in mports]
        time.sleep(seconds - 0.1)
        sample["a"] = group_counters(pids)
        sample["ma"] = [metrics(m) for m in mports]

    th = threading.Thread(target=sampler)
    ld = load()
    th.start()
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=seconds + 300)
    th.join()
    line = next((l for l in r.stdout.splitlines() if l.startswith("result ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError("raft_bench failed: %s %s" % (r.stdout, r.stderr))
    res = dict(part.split("=", 1) for part in line.split()[1:])
    wps = float(res["writes_per_sec"])
    writes = wps * (seconds - 0.1)
    cpu = sample["a"][0] - sample["b"][0]
    cs = sample["a"][1] - sample["b"][1]
    return {"wps": wps, "p50": float(res["p50_ms"]), "p99": float(res["p99_ms"]),
            "cpu_us": 1e6 * cpu / writes if writes else 0, "cs": cs / writes if writes else 0,
            "stages": stage_note(sample["mb"], sample["ma"]), "load": ld}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="bin dir of side A (e.g. a copy of build/bin)")
    ap.add_argument("--b", required=True, help="bin dir of side B")
    ap.add_argument("--bench", help="raft_bench for both sides (default: B's)")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=float, default=5, help="idle CPU window (0: skip)")
    ap.add_argument("--b-env", action="append", default=[],
                    help="K=V in side B's replicad environment (repeatable)")
    ap.add_argument("--raw", action="store_true", help="raft_bench --raw-writes")
    ap.add_argument("--work", help="the temp dir goes under this directory (default: B's "
                    "parent, i.e. the build dir: the repository's disk)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    bench = a.bench or os.path.join(a.b, "raft_bench")
    counts = [int(c) for c in a.clients.split(",")]
    root = tempfile.mkdtemp(prefix="raft-ab-",
                            dir=a.work or os.path.dirname(os.path.abspath(a.b)))
    results = {"A": {n: [] for n in counts}, "B": {n: [] for n in counts}}
    idle = {"A": [], "B": []}
    try:
        for rnd in range(a.rounds):
            for side, bin_dir in (("A", a.a), ("B", a.b)):
                d = os.path.join(root, "%s%d" % (side, rnd))
                os.makedirs(d)
                env = dict(kv.split("=", 1) for kv in a.b_env) if side == "B" else None
                procs, addrs, mports = start_group(bin_dir, d, env)
                pids = [p.pid for p in procs]
                try:
                    if a.idle > 0:
                        time.sleep(1)
                        c0 = group_counters(pids)
                        time.sleep(a.idle)
                        c1 = group_counters(pids)
                        idle[side].append((c1[0] - c0[0]) / a.idle)
                        log("round %d %s idle: %.4f cores (3 replicas), %.0f ctx switches/s" % (
                            rnd, side, idle[side][-1], (c1[1] - c0[1]) / a.idle))
                    for n in counts:
                        r = run_point(bench, addrs, mports, pids, n, a.seconds, a.raw)
                        results[side][n].append(r)
                        log("round %d %s clients=%d: %.0f w/s p50 %.2f p99 %.2f ms, replicas "
                            "%.0f us CPU/write, %.1f ctx sw/write, load %s; leader stages ms: %s"
                            % (rnd, side, n, r["wps"], r["p50"], r["p99"], r["cpu_us"], r["cs"],
                               r["load"], r["stages"]))
                finally:
                    stop(procs)
    finally:
        stop(list(PROCS))
        shutil.rmtree(root, ignore_errors=True)
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    print("write path A/B: A=%s B=%s, %d rounds, %gs per point, load at end %s%s" % (
        a.a, a.b, a.rounds, a.seconds, load(), ", raw writes" if a.raw else ""))
    print("%-7s | %-44s | %-44s | %s" % ("clients", "A: w/s p50 p99 (ms) cpu_us/w cs/w",
                                         "B: w/s p50 p99 (ms) cpu_us/w cs/w",
                                         "B/A: w/s p50 p99 cpu"))
    for n in counts:
        row = []
        m = {}
        for side in ("A", "B"):
            rs = results[side][n]
            m[side] = {k: med([r[k] for r in rs]) for k in ("wps", "p50", "p99", "cpu_us", "cs")}
            row.append("%8.0f %6.2f %6.2f %8.0f %5.1f" % tuple(
                m[side][k] for k in ("wps", "p50", "p99", "cpu_us", "cs")))
        ratio = " ".join("%.2f" % (m["B"][k] / m["A"][k] if m["A"][k] else float("nan"))
                         for k in ("wps", "p50", "p99", "cpu_us"))
        print("%-7d | %-44s | %-44s | %s" % (n, row[0], row[1], ratio))
    if idle["A"]:
        print("idle CPU of the 3-replica group (cores): A %.4f  B %.4f" % (med(idle["A"]),
                                                                           med(idle["B"])))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop(list(PROCS))
