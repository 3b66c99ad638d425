#!/usr/bin/env python3
"""Checks the rendered Kubernetes manifests (`kubectl kustomize deploy/k8s/overlays/X`)
for what schema validation cannot see. Run by `make k8s-lint`.

    check-k8s.py RENDERED.yaml...              the checks below
    check-k8s.py --self-test RENDERED.yaml...  the files pass, and each of a set of
                                               breakages made to a copy of them fails

Every Deployment and StatefulSet container:
  - has a readiness and a liveness probe: the data service's are `grpc:` on the
    port it listens on (STRATA_LISTEN), the edges' `httpGet` /readyz and /healthz
    on theirs;
  - has resources requests and limits (cpu and memory);
  - runs restricted: runAsNonRoot, a non-root runAsUser (65532 for Strata's
    images), readOnlyRootFilesystem, no privilege escalation, every capability
    dropped, seccomp RuntimeDefault;
  - for Strata's images (strata/<binary>), sets only settings its binary accepts:
    every STRATA_* environment variable (env and envFrom) and every `--flag` in
    command/args is read from the Rust sources of the binary and the workspace
    crates it depends on (clap's `long`/`env`, literal "STRATA_…" names, the
    per-context STRATA_<CONTEXT>_<SETTING> variables), so no build is needed and
    a renamed setting fails here, not in a deployment;
  - refers only to ConfigMaps and Secrets that exist, names a file setting
    (*_FILE) and STRATA_DATA_DIR inside a mounted volume, and expands only
    variables defined before it.
Every Strata Deployment stops gracefully: a preStop `sleep` (the images have no
shell), and preStop + shutdown grace + drain < terminationGracePeriodSeconds.
Every Deployment has exactly one PodDisruptionBudget (maxUnavailable: 1), which
selects nothing else; every scaled Deployment (replicas > 1) has exactly one
autoscaling/v2 HPA, and no Deployment has two. The data services' Services are
headless, and every dns:// address an edge is given names such a Service, on its
port, whose pods host that context. Each namespace has a default-deny
NetworkPolicy for ingress and egress.

Exit status 1 with one line per problem, naming the object and what is wrong.
"""

from __future__ import annotations

import copy
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The binaries Strata's images hold: image strata/<name> runs services/<name>.
BINARIES = ("data-service", "storefront", "backoffice")
STRATA_UID = 65532
WORKLOADS = ("Deployment", "StatefulSet")


# --------------------------------------------------------------------------
# What the binaries accept, read from the sources
# --------------------------------------------------------------------------


@dataclass
class Accepts:
    """The settings one binary accepts."""

    env: set[str] = field(default_factory=set)
    longs: set[str] = field(default_factory=lambda: {"help", "version"})
    # STRATA_* variable -> clap's default_value, where it has a literal one.
    defaults: dict[str, str] = field(default_factory=dict)
    # The edges' drain time, where it is a literal in the source (no setting).
    fixed_drain_secs: int | None = None
    # The contexts it can host (their `CONTEXT` names).
    contexts: set[str] = field(default_factory=set)


def _crate_dirs(binary: str) -> list[Path]:
    """services/<binary> and every workspace crate it depends on, transitively."""
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    paths = {
        name: ROOT / spec["path"]
        for name, spec in workspace["workspace"]["dependencies"].items()
        if isinstance(spec, dict) and "path" in spec
    }
    seen: list[Path] = []
    todo = [ROOT / "services" / binary]
    while todo:
        crate = todo.pop()
        if crate in seen:
            continue
        seen.append(crate)
        manifest = tomllib.loads((crate / "Cargo.toml").read_text())
        for name, spec in manifest.get("dependencies", {}).items():
            if isinstance(spec, dict) and "path" in spec:
                todo.append((crate / spec["path"]).resolve())
            elif name in paths:
                todo.append(paths[name])
    return seen


def _without_tests(text: str) -> str:
    """The file up to its test module (names in tests are not settings)."""
    cut = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod\s", text, re.M)
    return text[: cut.start()] if cut else text


def _attributes(text: str, name: str):
    """(body, field name) of each `#[name(...)]` attribute on a struct field."""
    for match in re.finditer(r"#\[" + name + r"\(", text):
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = text[match.end() : i - 1]
        rest = text[i:]
        # Skip `]`, doc comments and further attributes up to the field.
        owner = re.match(r"\]\s*(?:(?:///[^\n]*|#\[[^\n]*\])\s*)*(?:pub(?:\([^)]*\))?\s+)?(\w+)\s*:", rest)
        yield body, owner.group(1) if owner else None


def accepts(binary: str) -> Accepts:
    result = Accepts()
    contexts: set[str] = set()
    per_context: set[str] = set()
    for crate in _crate_dirs(binary):
        for source in sorted((crate / "src").rglob("*.rs")):
            text = _without_tests(source.read_text())
            for body, owner in _attributes(text, "arg"):
                env = re.search(r'\benv\s*=\s*"([A-Z0-9_]+)"', body)
                if env:
                    result.env.add(env.group(1))
                    default = re.search(r'\bdefault_value\s*=\s*"([^"]*)"', body)
                    if default:
                        result.defaults[env.group(1)] = default.group(1)
                long = re.search(r'\blong\s*=\s*"([a-z0-9-]+)"', body)
                if long:
                    result.longs.add(long.group(1))
                elif re.search(r"\blong\b", body) and owner:
                    result.longs.add(owner.replace("_", "-"))
            result.env.update(re.findall(r'"(STRATA_[A-Z0-9_]*[A-Z0-9])"', text))
            contexts.update(re.findall(r'pub const CONTEXT: &str = "([a-z_]+)"', text))
            per_context.update(re.findall(r'context_var\(\s*[^,()]+,\s*"([A-Z0-9_]+)"\s*\)', text))
            # `serve("storefront", router, listener, shutdown, Duration::from_secs(10))`
            drain = re.search(r'\bserve\(\s*"[\w-]+"[^;]*?Duration::from_secs\((\d+)\)\s*\)', text, re.S)
            if drain:
                result.fixed_drain_secs = int(drain.group(1))
    for context in contexts:
        for setting in per_context:
            result.env.add(f"STRATA_{context.upper()}_{setting}")
    result.contexts = contexts
    return result


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


def _name(doc) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def _ns(doc) -> str:
    return (doc.get("metadata") or {}).get("namespace") or "default"


def _selects(selector: dict | None, labels: dict) -> bool:
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def _binary(image: str) -> str | None:
    repo = image.split("@")[0]  # without a digest
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]  # without a tag (a registry's port stays)
    for binary in BINARIES:
        if repo == f"strata/{binary}" or repo.endswith(f"/strata/{binary}"):
            return binary
    return None


def _port_of(address: str) -> int | None:
    match = re.search(r":(\d+)$", address or "")
    return int(match.group(1)) if match else None


class Checker:
    def __init__(self, docs: list[dict], label: str, sources: dict[str, Accepts]):
        self.docs = [d for d in docs if isinstance(d, dict)]
        self.label = label
        self.sources = sources
        self.problems: list[str] = []

    def problem(self, obj: str, what: str) -> None:
        self.problems.append(f"{self.label}: {obj}: {what}")

    def find(self, kind: str, name: str, namespace: str):
        for doc in self.docs:
            if doc.get("kind") == kind and _ns(doc) == namespace and doc["metadata"].get("name") == name:
                return doc
        return None

    # -- environment -------------------------------------------------------

    def environment(self, obj: str, ns: str, container: dict) -> dict[str, str | None]:
        """Every variable the container gets, with its value where it is known."""
        values: dict[str, str | None] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(key)
                if not ref:
                    continue
                found = self.find(kind, ref.get("name"), ns)
                if found is None:
                    if not ref.get("optional"):
                        self.problem(obj, f"envFrom {kind} {ref.get('name')!r} does not exist")
                    continue
                data = {**(found.get("data") or {}), **(found.get("stringData") or {})}
                for k, v in data.items():
                    values[prefix + k] = v if kind == "ConfigMap" else None
        defined: set[str] = set()
        for var in container.get("env") or []:
            name = var["name"]
            if "value" in var:
                for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(var["value"])):
                    if ref not in defined:
                        self.problem(obj, f"env {name} expands $({ref}), which is not defined before it")
                values[name] = str(var["value"])
            else:
                source = var.get("valueFrom") or {}
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = source.get(key)
                    if not ref:
                        continue
                    found = self.find(kind, ref.get("name"), ns)
                    data = {**(found.get("data") or {}), **(found.get("stringData") or {})} if found else {}
                    if found is None or ref.get("key") not in data:
                        if not ref.get("optional"):
                            self.problem(obj, f"env {name}: {kind} {ref.get('name')!r} has no key {ref.get('key')!r}")
                values[name] = None
            defined.add(name)
        return values

    def settings(self, obj: str, binary: str, container: dict, env: dict) -> None:
        accepted = self.sources[binary]
        for name in sorted(env):
            if name.startswith("STRATA_") and name not in accepted.env:
                self.problem(obj, f"{name} is not a setting {binary} accepts (not in its sources)")
        for arg in (container.get("command") or [])[1:] + (container.get("args") or []):
            arg = str(arg)
            if arg.startswith("--"):
                flag = arg[2:].split("=", 1)[0]
                if flag not in accepted.longs:
                    self.problem(obj, f"--{flag} is not a flag {binary} accepts (not in its sources)")

    # -- one workload --------------------------------------------------------

    def workload(self, doc: dict) -> None:
        obj, ns = _name(doc), _ns(doc)
        pod = doc["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext") or {}
        for container in (pod.get("initContainers") or []) + pod.get("containers", []):
            where = f"{obj} container {container.get('name')}"
            is_init = container in (pod.get("initContainers") or [])
            binary = _binary(container.get("image", ""))
            sc = container.get("securityContext") or {}

            def effective(key):
                return sc[key] if key in sc else pod_sc.get(key)

            if not is_init:
                for probe in ("readinessProbe", "livenessProbe"):
                    if not container.get(probe):
                        self.problem(where, f"has no {probe}")
            resources = container.get("resources") or {}
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if not (resources.get(part) or {}).get(resource):
                        self.problem(where, f"has no resources.{part}.{resource}")
            if effective("runAsNonRoot") is not True:
                self.problem(where, "securityContext: runAsNonRoot is not true")
            uid = effective("runAsUser")
            if uid in (None, 0):
                self.problem(where, "securityContext: runAsUser is not set to a non-root uid")
            elif binary and uid != STRATA_UID:
                self.problem(where, f"securityContext: runAsUser is {uid}, not {STRATA_UID} (the image's user)")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.problem(where, "securityContext: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                self.problem(where, "securityContext: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                self.problem(where, "securityContext: capabilities.drop does not include ALL")
            if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
                self.problem(where, "securityContext: seccompProfile.type is not RuntimeDefault")

            env = self.environment(where, ns, container)
            mounts = container.get("volumeMounts") or []
            for name, value in env.items():
                if value and (name.endswith("_FILE") or name == "STRATA_DATA_DIR"):
                    inside = [m for m in mounts if value == m["mountPath"] or value.startswith(m["mountPath"].rstrip("/") + "/")]
                    if not inside:
                        self.problem(where, f"{name}={value} is not inside a mounted volume")
                    elif name == "STRATA_DATA_DIR" and all(m.get("readOnly") for m in inside):
                        self.problem(where, f"{name}={value} is mounted read-only")
            if not binary or is_init:
                continue
            self.settings(where, binary, container, env)
            self.strata_container(doc, where, binary, container, env)

    def strata_container(self, doc, where, binary, container, env) -> None:
        accepted = self.sources[binary]

        def setting(name):
            value = env.get(name)
            return value if value is not None else accepted.defaults.get(name)

        ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
        listen = setting("STRATA_LISTEN") if "STRATA_LISTEN" in accepted.env else setting(f"STRATA_{binary.upper()}_LISTEN")
        port = _port_of(listen)
        for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            probe = container.get(probe_name) or {}
            if not probe:
                continue
            if binary == "data-service":
                grpc = probe.get("grpc")
                if not grpc:
                    self.problem(where, f"{probe_name} is not the native grpc: probe")
                elif grpc.get("port") != port:
                    self.problem(where, f"{probe_name} asks port {grpc.get('port')}, the service listens on {listen}")
            else:
                http = probe.get("httpGet")
                if not http or http.get("path") != path:
                    self.problem(where, f"{probe_name} is not httpGet {path}")
                else:
                    probed = ports.get(http.get("port"), http.get("port"))
                    if probed != port:
                        self.problem(where, f"{probe_name} asks port {probed}, the service listens on {listen}")

        if doc["kind"] != "Deployment":
            return
        pre_stop = ((container.get("lifecycle") or {}).get("preStop")) or {}
        if "exec" in pre_stop:
            self.problem(where, "preStop runs a command, but the image has no shell: use sleep")
        sleep = (pre_stop.get("sleep") or {}).get("seconds")
        if not sleep:
            self.problem(where, "has no preStop sleep")
            return
        grace_ms = int(setting("STRATA_SHUTDOWN_GRACE_MS") or 0) if "STRATA_SHUTDOWN_GRACE_MS" in accepted.env else 0
        if "STRATA_DRAIN_TIMEOUT_SECS" in accepted.env:
            drain = int(setting("STRATA_DRAIN_TIMEOUT_SECS") or 0)
        elif accepted.fixed_drain_secs is not None:
            drain = accepted.fixed_drain_secs
        else:
            self.problem(where, f"cannot tell {binary}'s drain time from its sources: update scripts/check-k8s.py")
            return
        period = doc["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        total = sleep + grace_ms / 1000 + drain
        if total >= period:
            self.problem(
                where,
                f"preStop {sleep} s + shutdown grace {grace_ms / 1000:g} s + drain {drain} s = {total:g} s "
                f"is not less than terminationGracePeriodSeconds {period}",
            )

    # -- across objects ------------------------------------------------------

    def run(self) -> list[str]:
        workloads = [d for d in self.docs if d.get("kind") in WORKLOADS]
        if not workloads:
            self.problem("(file)", "holds no Deployment or StatefulSet")
        for doc in workloads:
            self.workload(doc)
        self.budgets_and_autoscalers()
        self.services()
        self.network_policies()
        return self.problems

    def budgets_and_autoscalers(self) -> None:
        deployments = [d for d in self.docs if d.get("kind") == "Deployment"]
        workloads = [d for d in self.docs if d.get("kind") in WORKLOADS]
        pdbs = [d for d in self.docs if d.get("kind") == "PodDisruptionBudget"]
        hpas = [d for d in self.docs if d.get("kind") == "HorizontalPodAutoscaler"]
        for pdb in pdbs:
            chosen = [
                w for w in workloads
                if _ns(w) == _ns(pdb) and _selects(pdb["spec"].get("selector"), w["spec"]["template"]["metadata"].get("labels") or {})
            ]
            if len(chosen) != 1:
                names = ", ".join(_name(w) for w in chosen) or "nothing"
                self.problem(_name(pdb), f"selects {names}: a budget must select the pods of exactly one workload")
        for deployment in deployments:
            obj, labels = _name(deployment), deployment["spec"]["template"]["metadata"].get("labels") or {}
            own = [p for p in pdbs if _ns(p) == _ns(deployment) and _selects(p["spec"].get("selector"), labels)]
            if len(own) != 1:
                self.problem(obj, f"has {len(own)} PodDisruptionBudgets, needs exactly one")
            for pdb in own:
                if pdb["spec"].get("maxUnavailable") != 1:
                    self.problem(_name(pdb), "is not maxUnavailable: 1")
            scalers = [
                h for h in hpas
                if _ns(h) == _ns(deployment)
                and (h["spec"].get("scaleTargetRef") or {}).get("kind") == "Deployment"
                and h["spec"]["scaleTargetRef"].get("name") == deployment["metadata"]["name"]
            ]
            for hpa in scalers:
                if hpa.get("apiVersion") != "autoscaling/v2":
                    self.problem(_name(hpa), f"is {hpa.get('apiVersion')}, not autoscaling/v2")
            replicas = deployment["spec"].get("replicas", 1)
            if len(scalers) > 1:
                self.problem(obj, f"has {len(scalers)} HPAs ({', '.join(_name(h) for h in scalers)}): they fight over it")
            elif replicas > 1 and not scalers:
                self.problem(obj, f"is scaled ({replicas} replicas) but has no HPA")
            for hpa in scalers:
                low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
                if not low <= replicas <= high:
                    self.problem(obj, f"{replicas} replicas is outside its HPA's {low}..{high}")
        for hpa in hpas:
            ref = hpa["spec"].get("scaleTargetRef") or {}
            if self.find(ref.get("kind"), ref.get("name"), _ns(hpa)) is None:
                self.problem(_name(hpa), f"scales {ref.get('kind')}/{ref.get('name')}, which does not exist")

    def data_service_pods(self):
        """(namespace, pod labels, hosted contexts, listen port) of each data service."""
        for doc in self.docs:
            if doc.get("kind") not in WORKLOADS:
                continue
            for container in doc["spec"]["template"]["spec"].get("containers", []):
                if _binary(container.get("image", "")) == "data-service":
                    # Quietly: the workload check reports missing references.
                    saved = list(self.problems)
                    env = self.environment(_name(doc), _ns(doc), container)
                    self.problems = saved
                    accepted = self.sources["data-service"]
                    hosted = env.get("STRATA_CONTEXTS")
                    contexts = {c.strip() for c in hosted.split(",")} if hosted else set(accepted.contexts)
                    listen = env.get("STRATA_LISTEN") or accepted.defaults.get("STRATA_LISTEN")
                    yield doc, _ns(doc), doc["spec"]["template"]["metadata"].get("labels") or {}, contexts, _port_of(listen)

    def services(self) -> None:
        pods = list(self.data_service_pods())
        for svc in (d for d in self.docs if d.get("kind") == "Service"):
            if any(_ns(svc) == ns and _selects({"matchLabels": svc["spec"].get("selector") or {}}, labels) for _, ns, labels, _, _ in pods):
                if svc["spec"].get("clusterIP") != "None":
                    self.problem(_name(svc), "selects data-service pods but is not headless (clusterIP: None)")
        # Every dns:// address an edge is given reaches pods hosting that context.
        for doc in self.docs:
            if doc.get("kind") not in WORKLOADS:
                continue
            for container in doc["spec"]["template"]["spec"].get("containers", []):
                binary = _binary(container.get("image", ""))
                if binary not in ("storefront", "backoffice"):
                    continue
                saved = list(self.problems)
                env = self.environment(_name(doc), _ns(doc), container)
                self.problems = saved
                for name, value in sorted(env.items()):
                    match = re.fullmatch(r"STRATA_([A-Z]+)_ADDR", name)
                    if not match or not value or not value.startswith("dns://"):
                        continue
                    context = match.group(1).lower()
                    host, _, port = value[len("dns://"):].partition(":")
                    svc = self.find("Service", host.split(".")[0], _ns(doc))
                    where = f"{_name(doc)} {name}={value}"
                    if svc is None:
                        self.problem(where, f"names no Service {host!r}")
                        continue
                    if svc["spec"].get("clusterIP") != "None":
                        self.problem(where, f"{_name(svc)} is not headless: dns:// would see one address")
                    if not any(str(p.get("port")) == port for p in svc["spec"].get("ports") or []):
                        self.problem(where, f"{_name(svc)} has no port {port}")
                    hosts = [
                        w for w, ns, labels, contexts, listen in pods
                        if ns == _ns(svc) and _selects({"matchLabels": svc["spec"].get("selector") or {}}, labels)
                        and context in contexts and str(listen) == port
                    ]
                    if not hosts:
                        self.problem(where, f"{_name(svc)} selects no data service hosting {context} on port {port}")

    def network_policies(self) -> None:
        namespaces = {_ns(d) for d in self.docs if d.get("kind") in WORKLOADS}
        for ns in sorted(namespaces):
            deny = [
                p for p in self.docs
                if p.get("kind") == "NetworkPolicy" and _ns(p) == ns
                and p["spec"].get("podSelector") == {}
                and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
                and not p["spec"].get("ingress") and not p["spec"].get("egress")
            ]
            if not deny:
                self.problem(f"Namespace/{ns}", "has no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")


# --------------------------------------------------------------------------
# Running, and the self-test
# --------------------------------------------------------------------------


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def check(files: list[str], sources: dict[str, Accepts]) -> list[str]:
    problems = []
    for path in files:
        problems += Checker(load(path), Path(path).name, sources).run()
    return problems


def _first(docs, kind, pred=lambda d: True):
    return next(d for d in docs if d.get("kind") == kind and pred(d))


def _container(docs, binary):
    for doc in docs:
        if doc.get("kind") == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if _binary(c.get("image", "")) == binary:
                    return doc, c
    raise LookupError(binary)


def _config_of(docs, binary):
    doc, c = _container(docs, binary)
    name = c["envFrom"][0]["configMapRef"]["name"]
    return _first(docs, "ConfigMap", lambda d: d["metadata"]["name"] == name)


def mutations(docs):
    """(what it breaks, the object the error must name, the breakage)."""

    def dep(binary):
        return lambda d: _container(d, binary)

    def data_service_name(d):
        return _container(d, "data-service")[0]["metadata"]["name"]

    def edit(path_fn, fn):
        def run(d):
            fn(*path_fn(d))
        return run

    out = [
        ("no readiness probe", "has no readinessProbe", edit(dep("data-service"), lambda w, c: c.pop("readinessProbe"))),
        ("no liveness probe", "has no livenessProbe", edit(dep("storefront"), lambda w, c: c.pop("livenessProbe"))),
        ("an exec probe on the data service", "is not the native grpc: probe",
         edit(dep("data-service"), lambda w, c: c.__setitem__("livenessProbe", {"exec": {"command": ["true"]}}))),
        ("probes on the wrong port", "asks port 50052",
         edit(dep("data-service"), lambda w, c: c["readinessProbe"]["grpc"].__setitem__("port", 50052))),
        ("no memory limit", "has no resources.limits.memory", edit(dep("backoffice"), lambda w, c: c["resources"]["limits"].pop("memory"))),
        ("no requests", "has no resources.requests.cpu", edit(dep("storefront"), lambda w, c: c["resources"].pop("requests"))),
        ("runAsNonRoot false", "runAsNonRoot is not true",
         edit(dep("data-service"), lambda w, c: c["securityContext"].__setitem__("runAsNonRoot", False))),
        ("root uid", "runAsUser is not set to a non-root uid", edit(dep("storefront"), lambda w, c: c["securityContext"].__setitem__("runAsUser", 0))),
        ("a writable root", "readOnlyRootFilesystem is not true",
         edit(dep("backoffice"), lambda w, c: c["securityContext"].__setitem__("readOnlyRootFilesystem", False))),
        ("privilege escalation", "allowPrivilegeEscalation is not false",
         edit(dep("data-service"), lambda w, c: c["securityContext"].pop("allowPrivilegeEscalation"))),
        ("capabilities kept", "capabilities.drop does not include ALL", edit(dep("storefront"), lambda w, c: c["securityContext"].pop("capabilities"))),
        ("no seccomp", "seccompProfile.type is not RuntimeDefault", edit(dep("backoffice"), lambda w, c: (
            c["securityContext"].pop("seccompProfile"), w["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")))),
        ("an unknown variable", "STRATA_NO_SUCH_SETTING",
         edit(dep("storefront"), lambda w, c: c["env"].append({"name": "STRATA_NO_SUCH_SETTING", "value": "1"}))),
        ("a data-service variable on an edge", "STRATA_DRAIN_TIMEOUT_SECS",
         edit(dep("backoffice"), lambda w, c: c["env"].append({"name": "STRATA_DRAIN_TIMEOUT_SECS", "value": "5"}))),
        ("a renamed setting in a ConfigMap", "STRATA_LISTEN_ADDRESS",
         lambda d: _config_of(d, "data-service")["data"].__setitem__("STRATA_LISTEN_ADDRESS", "0.0.0.0:50051")),
        ("an unknown flag", "--no-such-flag", edit(dep("data-service"), lambda w, c: c.__setitem__("args", ["--no-such-flag=1"]))),
        ("a missing ConfigMap", "envFrom ConfigMap 'gone' does not exist",
         edit(dep("storefront"), lambda w, c: c["envFrom"][0]["configMapRef"].__setitem__("name", "gone"))),
        ("a file setting outside any volume", "STRATA_JWT_SECRET_FILE",
         edit(dep("storefront"), lambda w, c: c["env"].append({"name": "STRATA_JWT_SECRET_FILE", "value": "/etc/jwt"}))),
        ("no preStop sleep", "has no preStop sleep", edit(dep("data-service"), lambda w, c: c.pop("lifecycle"))),
        ("a grace period too short", "terminationGracePeriodSeconds",
         edit(dep("data-service"), lambda w, c: w["spec"]["template"]["spec"].__setitem__("terminationGracePeriodSeconds", 20))),
        ("no PDB", "has 0 PodDisruptionBudgets",
         lambda d: d.remove(_first(d, "PodDisruptionBudget", lambda p: p["metadata"]["name"] == data_service_name(d)))),
        ("a PDB selecting every pod", "must select the pods of exactly one workload",
         lambda d: _first(d, "PodDisruptionBudget")["spec"].__setitem__("selector", {"matchLabels": {"app.kubernetes.io/part-of": "strata"}})),
        ("a scaled Deployment without HPA", "but has no HPA",
         edit(dep("backoffice"), lambda w, c: w["spec"].__setitem__("replicas", 3))),
        ("a data-service Service with a cluster IP", "selects data-service pods but is not headless",
         lambda d: _first(d, "Service", lambda s: s["metadata"]["name"] == data_service_name(d))["spec"].pop("clusterIP")),
        ("an edge pointed at no Service", "names no Service",
         lambda d: _config_of(d, "storefront")["data"].__setitem__("STRATA_CATALOG_ADDR", "dns://nowhere:50051")),
        ("no default deny", "default-deny",
         lambda d: d.remove(_first(d, "NetworkPolicy", lambda p: p["spec"].get("podSelector") == {} and not p["spec"].get("egress")))),
    ]
    config = _config_of(docs, "storefront")["data"]
    if config.get("STRATA_IDENTITY_ADDR") != config.get("STRATA_CATALOG_ADDR"):
        out.append(("identity sent to catalog's group", "selects no data service hosting identity",
                    lambda d: _config_of(d, "storefront")["data"].__setitem__(
                        "STRATA_IDENTITY_ADDR", _config_of(d, "storefront")["data"]["STRATA_CATALOG_ADDR"])))
    if any(d.get("kind") == "HorizontalPodAutoscaler" for d in docs):
        out.append(("two HPAs on one Deployment", "they fight over it",
                    lambda d: d.append(copy.deepcopy(_first(d, "HorizontalPodAutoscaler")) | {"metadata": {"name": "second", "namespace": _ns(_first(d, "HorizontalPodAutoscaler"))}})))
    return out


def self_test(files: list[str], sources: dict[str, Accepts]) -> int:
    failed = 0
    # The sources were read: a few names each binary must be found to accept.
    expected = {
        "data-service": {"STRATA_LISTEN", "STRATA_CONTEXTS", "STRATA_SERVICE_TOKEN", "STRATA_CATALOG_DATABASE_URL",
                         "STRATA_SHUTDOWN_GRACE_MS", "STRATA_IDENTITY_ARGON2_MEMORY_KIB"},
        "storefront": {"STRATA_STOREFRONT_LISTEN", "STRATA_CATALOG_ADDR", "STRATA_JWT_SECRET_FILE", "STRATA_SERVICE_TOKEN"},
        "backoffice": {"STRATA_BACKOFFICE_LISTEN", "STRATA_ADMIN_EMAIL", "STRATA_JWT_SECRET"},
    }
    for binary, names in expected.items():
        missing = names - sources[binary].env
        if missing or "listen" not in sources[binary].longs:
            print(f"self-test: reading {binary}'s settings from the sources missed {sorted(missing) or '--listen'}")
            failed += 1
    if "STRATA_ADMIN_EMAIL" in sources["storefront"].env:
        print("self-test: the storefront is said to accept the backoffice's STRATA_ADMIN_EMAIL")
        failed += 1
    caught = 0
    for path in files:
        docs = load(path)
        label = Path(path).name
        problems = Checker(copy.deepcopy(docs), label, sources).run()
        if problems:
            print(f"self-test: {label} should pass but does not:", *problems, sep="\n  ")
            failed += 1
            continue
        for what, expect, breakage in mutations(docs):
            broken = copy.deepcopy(docs)
            breakage(broken)
            problems = Checker(broken, label, sources).run()
            if not any(expect in p for p in problems):
                print(f"self-test: {label} with {what}: not caught (wanted a problem naming {expect!r}; got {problems})")
                failed += 1
            else:
                caught += 1
    if failed:
        print(f"self-test: FAILED ({failed})")
        return 1
    print(f"self-test: {caught} breakages caught across {len(files)} overlays")
    return 0


def main(argv: list[str]) -> int:
    testing = "--self-test" in argv
    files = [a for a in argv if a != "--self-test"]
    if not files:
        print(__doc__)
        return 2
    sources = {binary: accepts(binary) for binary in BINARIES}
    if testing:
        return self_test(files, sources)
    problems = check(files, sources)
    for p in problems:
        print(p)
    if problems:
        print(f"check-k8s: {len(problems)} problem(s)")
        return 1
    print(f"check-k8s: {', '.join(Path(f).name for f in files)}: probes, resources, securityContext, "
          f"graceful stop, HPA/PDB, headless Services, default deny, and every setting known to the binaries")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
