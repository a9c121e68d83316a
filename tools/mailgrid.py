"""tools/mailgrid: set up, build, run and test mailgrid on one machine.

  tools/mailgrid up [--data DIR] [--replicas 1|3] [--demo] [--no-build]
  tools/mailgrid down [--data DIR]
  tools/mailgrid status [--data DIR]
  tools/mailgrid ctl [--data DIR] ARGS...     (mailctl against this cluster)
  tools/mailgrid test [-R REGEX] [-L LABEL]   (build, then every test)
"""
import argparse
import json
import os
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from launcher import build, cluster, packages, paths  # noqa: E402


def cmd_up(args):
    packages.ensure()
    if not args.no_build:
        build.build()
    c = cluster.Cluster(args.data, replicas=args.replicas)
    started = c.up()
    doc = c.write_cluster_json()
    print("mailgrid is up (%d replica%s per stateful service); data in %s"
          % (c.settings["replicas"], "" if c.settings["replicas"] == 1 else "s", c.dir))
    if started:
        print("started: " + ", ".join(started))
    for proc, state, addr in c.status():
        print("  %-14s %-12s %s" % (proc, state, addr))
    for key in cluster.PUBLIC_LISTENERS:
        if doc.get(key):
            print("  %-14s %s" % (key, doc[key]))
    print("cluster file: " + c.cluster_json_path())
    if args.demo:
        demo(c)
    return 0


# The smallest valid PDF: the demo's "business licence".
DEMO_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
            b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def demo(c):
    """Onboards the demo tenant through the real APIs (mailctl -> tenantd)."""
    if not c.built({"name": "tenantd"}):
        print("demo: tenantd is not built; no demo tenant")
        return
    with open(c.cluster_json_path()) as f:
        if "demo" in json.load(f):
            print("demo: already onboarded (see cluster.json \"demo\")")
            return
    key = c.ctl_env()["MAILGRID_TOKEN_KEY"]

    def ctl(*args, role=None, token=None, tenant=None):
        cmd = [paths.binary("mailctl"), "--cluster=" + c.cluster_json_path(), "--json"] + list(args)
        if role:
            cmd += ["--token-key", key, "--role", role]
        if tenant:
            cmd += ["--token-tenant", tenant]
        if token:
            cmd += ["--token", token]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=c.ctl_env())
        if r.returncode != 0:
            sys.exit("demo: mailctl %s failed: %s" % (" ".join(args[:2]), r.stderr.strip()))
        return json.loads(r.stdout) if r.stdout.strip() else {}

    domain = cluster.DEMO_DOMAIN
    ctl("plan", "create", "--name", "Demo", "--mailboxes", "100", "--domains", "5", role="platform_operator")
    reg = ctl("tenant", "register", "--name", "Demo Company", "--street", "1 Demo Street", "--city", "Beijing",
              "--country", "cn", "--contact-name", "Demo Admin", "--phone", "+8613800138000",
              "--email", "admin@" + domain)
    tenant_id, onboarding = reg["tenant"]["tenant_id"], reg["onboarding_token"]
    pdf = os.path.join(c.dir, "demo-licence.pdf")
    with open(pdf, "wb") as f:
        f.write(DEMO_PDF)
    ctl("tenant", "upload-doc", pdf, "--kind", "business-licence", token=onboarding)
    ctl("tenant", "approve", tenant_id, "--reason", "local demo", role="platform_reviewer")
    ctl("plan", "set", "Demo", token=onboarding)
    ctl("domain", "add", domain, token=onboarding)
    ctl("domain", "verify-override", domain, "--reason", "local demo domain", role="platform_operator")
    users = demo_users(c, ctl, tenant_id, domain)
    if users:
        # RFC 5321 4.5.1: <Postmaster> and postmaster@ must reach someone;
        # relayd maps <Postmaster> to postmaster@<cluster hostname>.
        ctl("alias", "add", "postmaster@" + domain, "--to", users[0]["address"],
            role="tenant_admin", tenant=tenant_id)
    c.write_cluster_json(demo={"tenant_id": tenant_id, "domain": domain, "users": users})
    print("demo: tenant %s is ACTIVE with domain %s (VERIFIED by operator override)" % (tenant_id, domain))
    for u in users:
        print("demo: user %s password %s" % (u["address"], u["password"]))


# The demo's employees. Their initial passwords are admin-set, so identityd
# makes them change at first login; the demo does that first login itself,
# so a newcomer's mail client works with the passwords printed.
DEMO_USERS = [("alice", "Alice Demo", "tenant_admin"), ("bob", "Bob Demo", None)]


def demo_users(c, ctl, tenant_id, domain):
    if not (c.built({"name": "identityd"}) and c.built({"name": "mailstored"})):
        print("demo: identityd or mailstored is not built; no users")
        return []
    users = []
    for name, display, role in DEMO_USERS:
        address = "%s@%s" % (name, domain)
        initial = secrets.token_urlsafe(12)
        password = "%s-%s" % (name, secrets.token_urlsafe(9))
        args = ["user", "create", address, "--name", display, "--password", initial]
        if role:
            args += ["--user-role", role]
        ctl(*args, role="tenant_admin", tenant=tenant_id)
        ctl("auth", "login", address, "--password", initial, "--new-password", password)
        users.append({"address": address, "password": password})
    return users


def cmd_down(args):
    c = cluster.Cluster(args.data)
    stopped = c.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running")
          + "; data kept in " + c.dir)
    return 0


def cmd_status(args):
    c = cluster.Cluster(args.data)
    rows = c.status()
    for proc, state, addr in rows:
        print("%-14s %-12s %s" % (proc, state, addr))
    bad = [r for r in rows if r[1] not in ("SERVING", "running", "not built")]
    return 1 if bad else 0


def cmd_ctl(args):
    c = cluster.Cluster(args.data)
    mailctl = paths.binary("mailctl")
    if not os.path.exists(mailctl):
        sys.exit("mailgrid: mailctl is not built; run tools/mailgrid up first")
    os.execve(mailctl, [mailctl, "--cluster=" + c.cluster_json_path()] + args.rest, c.ctl_env())


def cmd_test(args):
    packages.ensure()
    build.build(werror=True)
    cmd = ["ctest", "--test-dir", paths.BUILD_DIR, "--output-on-failure",
           "-j", os.environ.get("MAILGRID_TEST_JOBS", "2")]
    if args.R:
        cmd += ["-R", args.R]
    if args.L:
        cmd += ["-L", args.L]
    print("+ " + " ".join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    if args.R or args.L or args.no_fuzz:
        return rc
    # The fuzz smoke (issue 12): every libFuzzer target, built with clang and
    # ASan/UBSan in its own build directory, runs briefly over its corpus.
    smoke = [os.path.join(paths.ROOT, "tools", "fuzz_smoke")]
    print("+ " + " ".join(smoke), flush=True)
    return rc or subprocess.run(smoke).returncode


def main():
    p = argparse.ArgumentParser(prog="tools/mailgrid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="install, build and start a local cluster")
    up.add_argument("--data", default=paths.DEFAULT_DATA)
    up.add_argument("--replicas", type=int, choices=[1, 3], default=None)
    up.add_argument("--demo", action="store_true", help="onboard a demo tenant")
    up.add_argument("--no-build", action="store_true", help="use the binaries already built")
    up.set_defaults(fn=cmd_up)
    for name, fn, text in (("down", cmd_down, "stop the cluster, keep its data"),
                           ("status", cmd_status, "health of every process")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--data", default=paths.DEFAULT_DATA)
        sp.set_defaults(fn=fn)
    ctl = sub.add_parser("ctl", help="run mailctl against this cluster")
    ctl.add_argument("--data", default=paths.DEFAULT_DATA)
    ctl.add_argument("rest", nargs=argparse.REMAINDER)
    ctl.set_defaults(fn=cmd_ctl)
    test = sub.add_parser("test", help="build, then run every test")
    test.add_argument("-R", help="only tests matching this regex")
    test.add_argument("-L", help="only tests with this label (unit, integration, fuzz)")
    test.add_argument("--no-fuzz", action="store_true",
                      help="skip the ASan/UBSan fuzz smoke that follows a full run")
    test.set_defaults(fn=cmd_test)
    args = p.parse_args()
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()
