#!/usr/bin/env python3
"""Checks the rendered Kubernetes manifests (`kubectl kustomize deploy/k8s/overlays/X`)
for what schema validation cannot see. Run by `make k8s-lint`.

    check-k8s.py RENDERED.yaml... [--compose docker-compose.yml]
                  the checks below
    check-k8s.py --self-test RENDERED.yaml... [--compose docker-compose.yml]
                  the files pass, and each of a set of breakages made to a copy
                  of them fails

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
    per-context STRATA_<CONTEXT>_<SETTING> variables, VAR and VAR_FILE for each
    `setting_or_file(VAR, …)`: a literal, a constant, every context's
    `context_var(…)`, every caller's `token_var(…)` of data-service's callers.rs),
    so no build is needed and a renamed setting fails here, not in a deployment;
    a call this script cannot follow fails it, to be taught;
  - refers only to ConfigMaps and Secrets (and their keys) that exist, in env,
    envFrom and volumes; names a file setting (*_FILE) and STRATA_DATA_DIR
    inside a mounted volume, a file setting in a Secret or projected volume one
    of its files; and expands only variables defined before it;
  - takes no Secret in its environment where its binary reads a file instead
    (VAR from a Secret while VAR_FILE is a setting).
Every application service (each caller in callers.rs: storefront, backoffice)
presents, as STRATA_SERVICE_TOKEN(_FILE), the very Secret key each data service
holds for it as STRATA_SERVICE_TOKEN_<CALLER>_FILE; no two callers share one, and
no data service is given STRATA_SERVICE_TOKEN(_FILE), the credential for every
call. Every data service hosting identity reserves backoffice's
STRATA_ADMIN_EMAIL in STRATA_IDENTITY_RESERVED_EMAILS (where both are known).
Every Strata Deployment stops gracefully: a preStop `sleep` (the images have no
shell), and preStop + shutdown grace + drain < terminationGracePeriodSeconds.
Every Deployment has exactly one PodDisruptionBudget (maxUnavailable: 1), which
selects nothing else; every scaled Deployment (replicas > 1) has exactly one
autoscaling/v2 HPA, and no Deployment has two. The data services' Services are
headless, and every dns:// address an edge is given names such a Service, on its
port, whose pods host that context. Each namespace has a default-deny
NetworkPolicy for ingress and egress.

With --compose, the compose topology too: every STRATA_* variable a service
running a Strata image sets (environment: as a map or a list, env_file:) and
every --flag in its command is one its binary accepts, by the same reading of the
sources; each *_FILE names a secret the service is given, declared at the top
level; the credentials and the reserved staff email as above, by secret name.

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
# PyYAML's safe loader, with libyaml's parser where it was built with it (the
# same constructor: merge keys and anchors alike; several times faster).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    # The callers it gives credentials of their own (data-service/src/callers.rs).
    callers: list[str] = field(default_factory=list)
    # Settings read in a way this script cannot follow (it must be taught).
    unresolved: list[str] = field(default_factory=list)


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


def _without_line_comments(text: str) -> str:
    """The file without its `//` comment lines (doc comments name settings too)."""
    return re.sub(r"^[ \t]*//[^\n]*", "", text, flags=re.M)


def _caller_names(text: str) -> list[str]:
    """The `name`s of `pub const CALLERS: &[CallerPolicy] = &[...]`."""
    match = re.search(r"\bconst CALLERS\s*:[^=]*=\s*&\[(.*?)\];", text, re.S)
    return re.findall(r'\bname\s*:\s*"([a-z0-9_]+)"', match.group(1)) if match else []


def _file_settings(texts: dict[Path, str], consts: dict[str, str], per_context_files: set[str], result: Accepts) -> None:
    """The settings read through `strata_rpc::client::setting_or_file(VAR, …)`,
    which also reads the file `VAR_FILE` names: VAR a literal, a constant, or a
    local `let` from `context_var(…, "SETTING")` (every context's) or
    `token_var(…)` (every caller's, `callers.rs`)."""
    callers: list[str] = []
    token_var: tuple[str, str] | None = None  # (format, prefix) of `fn token_var`
    for text in texts.values():
        callers += _caller_names(text)
        fn = re.search(r"\bfn token_var\s*\([^)]*\)[^{]*\{(.*?)\n\}", text, re.S)
        if fn:
            shape = re.search(r'format!\(\s*"([^"]*)"\s*,\s*([\w:]+)\s*,\s*\w+\.to_ascii_uppercase\(\)\s*,?\s*\)', fn.group(1))
            prefix = consts.get(shape.group(2).rsplit("::", 1)[-1]) if shape else None
            if shape and prefix and shape.group(1).count("{}") == 2:
                token_var = (shape.group(1), prefix)
            else:
                result.unresolved.append("fn token_var: not format!(\"{}_{}\", <const>, name.to_ascii_uppercase())")
    result.callers = callers
    for source, text in texts.items():
        for call in re.finditer(r"(?<!fn )\bsetting_or_file\(\s*&?\s*([^,()]+?)\s*,", text):
            arg, where = call.group(1), f"{source.relative_to(ROOT)}:{text.count(chr(10), 0, call.start()) + 1}"
            names: list[str] = []
            if re.fullmatch(r'"STRATA_[A-Z0-9_]+"', arg):
                names = [arg.strip('"')]
            elif re.fullmatch(r"(?:\w+::)*[A-Z][A-Z0-9_]*", arg) and arg.rsplit("::", 1)[-1] in consts:
                names = [consts[arg.rsplit("::", 1)[-1]]]
            elif re.fullmatch(r"[a-z_][a-z0-9_]*", arg):
                lets = re.findall(r"\blet\s+(?:mut\s+)?" + arg + r"\s*=\s*([^;]+);", text[: call.start()])
                value = lets[-1] if lets else ""
                setting = re.search(r'\bcontext_var\(\s*[^,()]+,\s*"([A-Z0-9_]+)"\s*\)', value)
                if setting:
                    per_context_files.add(setting.group(1))
                    continue
                if re.search(r"\btoken_var\(", value) and token_var and callers:
                    fmt, prefix = token_var
                    names = [fmt.replace("{}", prefix, 1).replace("{}", c.upper(), 1) for c in callers]
            if not names:
                result.unresolved.append(f"{where}: setting_or_file({arg}, …)")
            for name in names:
                result.env.update({name, f"{name}_FILE"})


def accepts(binary: str) -> Accepts:
    result = Accepts()
    contexts: set[str] = set()
    per_context: set[str] = set()
    per_context_files: set[str] = set()
    texts = {
        source: _without_line_comments(_without_tests(source.read_text()))
        for crate in _crate_dirs(binary)
        for source in sorted((crate / "src").rglob("*.rs"))
    }
    consts = {
        name: value
        for text in texts.values()
        for name, value in re.findall(r'\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:\'static\s+)?str\s*=\s*"(STRATA_[A-Z0-9_]+)"\s*;', text)
    }
    _file_settings(texts, consts, per_context_files, result)
    for text in texts.values():
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
        for setting in per_context_files:
            result.env.update({f"STRATA_{context.upper()}_{setting}", f"STRATA_{context.upper()}_{setting}_FILE"})
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
                # Known for a ConfigMap key; None (set, value not known) otherwise.
                values[name] = None
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
                    elif kind == "ConfigMap":
                        values[name] = str(data[ref["key"]])
            defined.add(name)
        return values

    def from_secrets(self, ns: str, container: dict) -> set[str]:
        """The variables the container takes from Secrets (env and envFrom)."""
        names = set()
        for source in container.get("envFrom") or []:
            found = self.find("Secret", (source.get("secretRef") or {}).get("name"), ns) if source.get("secretRef") else None
            if found:
                data = {**(found.get("data") or {}), **(found.get("stringData") or {})}
                names |= {source.get("prefix", "") + k for k in data}
        for var in container.get("env") or []:
            if "secretKeyRef" in (var.get("valueFrom") or {}):
                names.add(var["name"])
        names -= {v["name"] for v in container.get("env") or [] if "secretKeyRef" not in (v.get("valueFrom") or {})}
        return names

    def volume_files(self, ns: str, volume: dict, where: str | None = None) -> dict[str, tuple[str, str, str]] | None:
        """path -> (kind, name, key) of each file a Secret, ConfigMap or projected
        volume holds; None for a volume whose files are not known here (emptyDir,
        downwardAPI, …). With `where`, a missing object or key is a problem."""
        refs = []
        if "secret" in volume:
            refs.append(("Secret", volume["secret"].get("secretName"), volume["secret"]))
        elif "configMap" in volume:
            refs.append(("ConfigMap", volume["configMap"].get("name"), volume["configMap"]))
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
                    if key in source:
                        refs.append((kind, source[key].get("name"), source[key]))
                if not {"secret", "configMap"} & set(source):
                    return None
        else:
            return None
        files: dict[str, tuple[str, str, str]] = {}
        for kind, name, spec in refs:
            found = self.find(kind, name, ns)
            if found is None:
                if where and not spec.get("optional"):
                    self.problem(where, f"volume {volume.get('name')}: {kind} {name!r} does not exist")
                continue
            data = {**(found.get("data") or {}), **(found.get("stringData") or {}), **(found.get("binaryData") or {})}
            for item in spec.get("items") or [{"key": k, "path": k} for k in data]:
                if item["key"] not in data:
                    if where and not spec.get("optional"):
                        self.problem(where, f"volume {volume.get('name')}: {kind} {name!r} has no key {item['key']!r}")
                    continue
                files[item["path"]] = (kind, name, item["key"])
        return files

    def file_source(self, ns: str, pod: dict, container: dict, path: str):
        """Where the file at `path` comes from in this container: ("outside", None)
        when no volume is mounted there; ("unknown", None) in a volume whose files
        are not known here; ("missing", (volume, its files)); ("ok", (kind, name,
        key))."""
        mounts = [
            m for m in container.get("volumeMounts") or []
            if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
        ]
        if not mounts:
            return "outside", None
        mount = max(mounts, key=lambda m: len(m["mountPath"]))
        rel = path[len(mount["mountPath"]):].strip("/")
        if mount.get("subPath"):
            rel = f"{mount['subPath'].strip('/')}/{rel}" if rel else mount["subPath"].strip("/")
        volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount["name"]), None)
        files = self.volume_files(ns, volume) if volume else None
        if files is None:
            return "unknown", None
        if rel in files:
            return "ok", files[rel]
        return "missing", (mount["name"], sorted(files))

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
        for volume in pod.get("volumes") or []:
            self.volume_files(ns, volume, where=obj)
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
                    elif name.endswith("_FILE"):
                        found, detail = self.file_source(ns, pod, container, value)
                        if found == "missing":
                            volume, files = detail
                            self.problem(where, f"{name}={value}: volume {volume} holds no such file (it holds {', '.join(files) or 'none'})")
            if not binary or is_init:
                continue
            # Secrets as files wherever the binary reads one (VAR_FILE).
            for name in sorted(self.from_secrets(ns, container)):
                if f"{name}_FILE" in self.sources[binary].env:
                    self.problem(where, f"{name} comes from a Secret in the environment: mount it and set {name}_FILE")
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
            # Unset, the binaries' default (10 s, data service and edges alike).
            drain = int(setting("STRATA_DRAIN_TIMEOUT_SECS") or 10)
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
        self.credentials()
        self.network_policies()
        return list(dict.fromkeys(self.problems))  # once each, in order

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

    def strata_containers(self):
        """(workload, namespace, binary, pod, container, environment) of each
        Strata container, read quietly (the workload check reports)."""
        for doc in self.docs:
            if doc.get("kind") not in WORKLOADS:
                continue
            pod = doc["spec"]["template"]["spec"]
            for container in pod.get("containers", []):
                binary = _binary(container.get("image", ""))
                if binary:
                    saved = list(self.problems)
                    env = self.environment(_name(doc), _ns(doc), container)
                    self.problems = saved
                    yield doc, _ns(doc), binary, pod, container, env

    def credentials(self) -> None:
        """Each application service presents its own credential, the one the data
        services hold for it; no data service is given the one for everything;
        the identity hosts reserve backoffice's first staff email."""
        containers = list(self.strata_containers())
        callers = self.sources["data-service"].callers

        def token(ns, pod, container, env, var):
            """Where the credential in VAR / VAR_FILE comes from, as text."""
            if var in env and env[var] is None:
                # From a Secret in the environment (reported as such): which key.
                for entry in container.get("env") or []:
                    ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
                    if entry["name"] == var and ref:
                        return f"Secret {ref.get('name')} key {ref.get('key')}"
                for source in container.get("envFrom") or []:
                    prefix = source.get("prefix", "")
                    if source.get("secretRef") and var.startswith(prefix):
                        return f"Secret {source['secretRef'].get('name')} key {var[len(prefix):]}"
                return f"the environment ({var})"
            path = env.get(f"{var}_FILE")
            if not path:
                return None
            found, source = self.file_source(ns, pod, container, path)
            return f"{source[0]} {source[1]} key {source[2]}" if found == "ok" else f"the file {path}"

        services = [c for c in containers if c[2] == "data-service"]
        for doc, ns, _, pod, container, env in services:
            where = f"{_name(doc)} container {container.get('name')}"
            for var in ("STRATA_SERVICE_TOKEN", "STRATA_SERVICE_TOKEN_FILE"):
                if var in env:
                    self.problem(where, f"sets {var}, the credential for every call: give each caller its own "
                                        f"({', '.join(f'STRATA_SERVICE_TOKEN_{c.upper()}_FILE' for c in callers)})")
            held = {c: token(ns, pod, container, env, f"STRATA_SERVICE_TOKEN_{c.upper()}") for c in callers}
            for i, a in enumerate(callers):
                for b in callers[i + 1:]:
                    if held[a] and held[a] == held[b]:
                        self.problem(where, f"the credentials of {a} and {b} are one ({held[a]}): each its own")
            for edge_doc, edge_ns, binary, edge_pod, edge_container, edge_env in containers:
                if edge_ns != ns or binary not in callers:
                    continue
                edge = f"{_name(edge_doc)} container {edge_container.get('name')}"
                presented = token(edge_ns, edge_pod, edge_container, edge_env, "STRATA_SERVICE_TOKEN")
                if held[binary] is None:
                    self.problem(where, f"holds no credential for {binary} (STRATA_SERVICE_TOKEN_{binary.upper()}_FILE)")
                elif presented is None:
                    self.problem(edge, "presents no service credential (STRATA_SERVICE_TOKEN_FILE)")
                elif presented != held[binary]:
                    self.problem(edge, f"presents {presented}, but {_name(doc)} holds {held[binary]} for {binary}")

        admins = [
            (ns, env["STRATA_ADMIN_EMAIL"].strip().lower())
            for _, ns, binary, _, _, env in containers
            if binary == "backoffice" and env.get("STRATA_ADMIN_EMAIL")
        ]
        for doc, ns, _, pod, container, env in services:
            hosted = env.get("STRATA_CONTEXTS")
            contexts = {c.strip() for c in hosted.split(",")} if hosted else self.sources["data-service"].contexts
            if "identity" not in contexts:
                continue
            reserved = env.get("STRATA_IDENTITY_RESERVED_EMAILS")
            if reserved is None and "STRATA_IDENTITY_RESERVED_EMAILS" in env:
                continue  # from a Secret: not known here
            emails = {e.strip().lower() for e in (reserved or "").split(",")}
            for admin_ns, admin in admins:
                if admin_ns == ns and admin not in emails:
                    self.problem(f"{_name(doc)} container {container.get('name')}",
                                 f"hosts identity but does not reserve backoffice's STRATA_ADMIN_EMAIL {admin!r} "
                                 f"(STRATA_IDENTITY_RESERVED_EMAILS)")

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
# The compose topology (deploy/compose/docker-compose.yml)
# --------------------------------------------------------------------------


def _interpolate(value: str) -> str:
    """A compose value as it is with nothing set in docker-compose's environment:
    ${VAR:-default} and ${VAR-default} give the default, other forms nothing."""

    def one(match):
        if match.group(0) == "$$":
            return "$"
        return match.group(3) if match.group(2) in ("-", ":-") else ""

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, str(value))


def _compose_environment(service: dict, base: Path) -> tuple[dict[str, str | None], list[str]]:
    """The variables a compose service sets (environment: map or list, env_file),
    values interpolated; and the problems met reading them."""
    values: dict[str, str | None] = {}
    problems = []
    env_files = service.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
        path, required = (entry, True) if isinstance(entry, str) else (entry.get("path"), entry.get("required", True))
        try:
            lines = (base / path).read_text().splitlines()
        except OSError:
            if required:
                problems.append(f"env_file {path} cannot be read")
            continue
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                name, _, value = line.partition("=")
                values[name.strip()] = value.strip()
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        items = environment.items()
    else:
        items = [(e.partition("=")[0], e.partition("=")[2] if "=" in e else None) for e in map(str, environment)]
    for name, value in items:
        values[str(name)] = None if value is None else _interpolate(value)
    return values, problems


def _compose_files(service: dict) -> dict[str, str]:
    """In-container path -> secret name of each secret the service is given."""
    files = {}
    for secret in service.get("secrets") or []:
        source, target = (secret, secret) if isinstance(secret, str) else (secret["source"], secret.get("target") or secret["source"])
        files[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return files


def check_compose(path: str, sources: dict[str, Accepts]) -> list[str]:
    """Every STRATA_* variable a Strata service sets is one its binary accepts;
    each *_FILE names a secret the service is given (declared at the top level);
    each application service presents the credential the data services hold for
    it, and no data service is given the one for everything; the identity hosts
    reserve backoffice's first staff email."""
    label = Path(path).name
    with open(path) as f:
        compose = yaml.load(f, Loader=YAML_LOADER) or {}
    declared = set((compose.get("secrets") or {}).keys())
    problems = []
    tokens: dict[str, dict[str, str | None]] = {}  # caller -> service -> secret it presents
    held: dict[str, dict[str, str | None]] = {}  # data service -> caller -> secret it holds
    callers = sources["data-service"].callers
    environments, names = [], []
    for name, service in sorted((compose.get("services") or {}).items()):
        where = f"{label}: service {name}"
        env, trouble = _compose_environment(service, Path(path).parent)
        problems += [f"{where}: {p}" for p in trouble]
        binary = _binary(_interpolate(service.get("image", "")))
        environments.append((env, binary))
        names.append(name)
        strata = sorted(n for n in env if n.startswith("STRATA_"))
        if binary is None:
            if strata and "image" not in service:
                problems.append(f"{where}: sets {strata[0]}, but has no image to tell which binary it runs")
            continue
        accepted = sources[binary]
        for var in strata:
            if var not in accepted.env:
                problems.append(f"{where}: {var} is not a setting {binary} accepts (not in its sources)")
        command = service.get("command") or []
        for arg in command.split() if isinstance(command, str) else map(str, command):
            if arg.startswith("--") and arg[2:].split("=", 1)[0] not in accepted.longs:
                problems.append(f"{where}: {arg.split('=', 1)[0]} is not a flag {binary} accepts (not in its sources)")
        files = _compose_files(service)
        for source in sorted(set(files.values()) - declared):
            problems.append(f"{where}: secret {source!r} is not declared under the top-level secrets:")
        for var in strata:
            if var.endswith("_FILE") and env[var] and env[var] not in files:
                problems.append(f"{where}: {var}={env[var]} is not a secret the service is given ({', '.join(sorted(files)) or 'none'})")
        if binary == "data-service":
            for var in ("STRATA_SERVICE_TOKEN", "STRATA_SERVICE_TOKEN_FILE"):
                if var in env:
                    problems.append(f"{where}: sets {var}, the credential for every call: give each caller its own")
            held[name] = {
                c: files.get(env.get(f"STRATA_SERVICE_TOKEN_{c.upper()}_FILE") or "") for c in callers
            }
            for c in callers:
                if held[name][c] is None:
                    problems.append(f"{where}: holds no credential for {c} (STRATA_SERVICE_TOKEN_{c.upper()}_FILE)")
        elif binary in callers:
            tokens.setdefault(binary, {})[name] = files.get(env.get("STRATA_SERVICE_TOKEN_FILE") or "")
    admins = [env["STRATA_ADMIN_EMAIL"].strip().lower() for env, binary in environments if binary == "backoffice" and env.get("STRATA_ADMIN_EMAIL")]
    for (env, binary), name in zip(environments, names):
        hosted = env.get("STRATA_CONTEXTS")
        if binary != "data-service" or "identity" not in ({c.strip() for c in hosted.split(",")} if hosted else sources[binary].contexts):
            continue
        reserved = {e.strip().lower() for e in (env.get("STRATA_IDENTITY_RESERVED_EMAILS") or "").split(",")}
        for admin in sorted(set(admins) - reserved):
            problems.append(f"{label}: service {name}: hosts identity but does not reserve backoffice's "
                            f"STRATA_ADMIN_EMAIL {admin!r} (STRATA_IDENTITY_RESERVED_EMAILS)")
    for caller, presented in sorted(tokens.items()):
        for name, secret in sorted(presented.items()):
            for data_service, holds in sorted(held.items()):
                if secret is None:
                    problems.append(f"{label}: service {name}: presents no service credential (STRATA_SERVICE_TOKEN_FILE as a secret)")
                    break
                if holds[caller] is not None and holds[caller] != secret:
                    problems.append(f"{label}: service {name}: presents the secret {secret}, but {data_service} holds {holds[caller]} for {caller}")
    return problems


# --------------------------------------------------------------------------
# Running, and the self-test
# --------------------------------------------------------------------------


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=YAML_LOADER) if d]


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


def _secret(docs, name):
    """The rendered name of the Secret generated as `name` (a hash appended)."""
    return _first(docs, "Secret", lambda s: re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?", s["metadata"]["name"]))["metadata"]["name"]


def _projected(workload, name):
    """The projected volume source of the Secret generated as `name`."""
    for volume in workload["spec"]["template"]["spec"].get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            secret = source.get("secret") or {}
            if re.fullmatch(re.escape(name) + r"(-[a-z0-9-]+)?", secret.get("name", "")):
                return secret
    raise LookupError(name)


def _identity_host(docs):
    """The first data-service container with STRATA_IDENTITY_RESERVED_EMAILS."""
    for doc in docs:
        if doc.get("kind") == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if _binary(c.get("image", "")) == "data-service" and any(
                    e["name"] == "STRATA_IDENTITY_RESERVED_EMAILS" for e in c.get("env") or []
                ):
                    return c
    raise LookupError("STRATA_IDENTITY_RESERVED_EMAILS")


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
         edit(dep("storefront"), lambda w, c: c.setdefault("env", []).append({"name": "STRATA_NO_SUCH_SETTING", "value": "1"}))),
        ("a data-service variable on an edge", "STRATA_CONTEXTS",
         edit(dep("backoffice"), lambda w, c: c.setdefault("env", []).append({"name": "STRATA_CONTEXTS", "value": "catalog"}))),
        ("a renamed setting in a ConfigMap", "STRATA_LISTEN_ADDRESS",
         lambda d: _config_of(d, "data-service")["data"].__setitem__("STRATA_LISTEN_ADDRESS", "0.0.0.0:50051")),
        ("an unknown flag", "--no-such-flag", edit(dep("data-service"), lambda w, c: c.__setitem__("args", ["--no-such-flag=1"]))),
        ("a missing ConfigMap", "envFrom ConfigMap 'gone' does not exist",
         edit(dep("storefront"), lambda w, c: c["envFrom"][0]["configMapRef"].__setitem__("name", "gone"))),
        ("a file setting outside any volume", "STRATA_JWT_SECRET_FILE",
         edit(dep("storefront"), lambda w, c: c.setdefault("env", []).append({"name": "STRATA_JWT_SECRET_FILE", "value": "/etc/jwt"}))),
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
    out += [
        ("a service token from a Secret in the environment", "STRATA_SERVICE_TOKEN comes from a Secret in the environment",
         edit(dep("storefront"), lambda w, c: c.setdefault("env", []).append(
             {"name": "STRATA_SERVICE_TOKEN", "valueFrom": {"secretKeyRef": {"name": _secret(docs, "storefront-service-token"), "key": "token"}}}))),
        ("a database URL from a Secret in the environment", "STRATA_CATALOG_DATABASE_URL comes from a Secret in the environment",
         edit(dep("data-service"), lambda w, c: c.setdefault("env", []).append(
             {"name": "STRATA_CATALOG_DATABASE_URL", "valueFrom": {"secretKeyRef": {
                 "name": _projected(w, "data-service-database")["name"], "key": "catalog-database-url"}}}))),
        ("a file setting naming no file of its volume", "holds no such file",
         lambda d: _config_of(d, "data-service")["data"].__setitem__(
             "STRATA_SERVICE_TOKEN_STOREFRONT_FILE", "/run/secrets/strata/storefront")),
        ("a projected Secret that does not exist", "Secret 'gone' does not exist",
         edit(dep("storefront"), lambda w, c: _projected(w, "storefront-service-token").__setitem__("name", "gone"))),
        ("the one credential for everything on a data service", "the credential for every call",
         lambda d: _config_of(d, "data-service")["data"].__setitem__(
             "STRATA_SERVICE_TOKEN_FILE", "/run/secrets/strata/backoffice-token")),
        ("the storefront presenting backoffice's credential", "for storefront",
         edit(dep("storefront"), lambda w, c: _projected(w, "storefront-service-token").__setitem__(
             "name", _secret(docs, "backoffice-service-token")))),
        ("one credential held for both callers", "the credentials of storefront and backoffice are one",
         edit(dep("data-service"), lambda w, c: _projected(w, "backoffice-service-token").__setitem__(
             "name", _secret(docs, "storefront-service-token")))),
        ("the identity host not reserving the staff email", "does not reserve backoffice's STRATA_ADMIN_EMAIL",
         lambda d: _identity_host(d)["env"].remove(
             next(e for e in _identity_host(d)["env"] if e["name"] == "STRATA_IDENTITY_RESERVED_EMAILS"))),
        ("backoffice's staff email set apart from the reserved one", "does not reserve backoffice's STRATA_ADMIN_EMAIL 'boss@example.com'",
         edit(dep("backoffice"), lambda w, c: c.__setitem__("env", [
             e for e in c["env"] if e["name"] != "STRATA_ADMIN_EMAIL"] + [{"name": "STRATA_ADMIN_EMAIL", "value": "boss@example.com"}]))),
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


def compose_mutations(compose_text: str):
    """(what it breaks, the problem it must give, the broken file's text) for
    the compose file: renamed variables by text, the rest on the parsed file."""

    def renamed(old, new):
        return lambda text: text.replace(old, new) if text.count(old) == 1 else None

    def parsed(fn):
        def run(text):
            compose = yaml.load(text, Loader=YAML_LOADER)
            fn(compose["services"])
            return yaml.safe_dump(compose, sort_keys=False)
        return run

    def environment_of(services, name):
        return services[name]["environment"]

    def as_list(services, name, extra):
        env = services[name]["environment"]
        services[name]["environment"] = [f"{k}={v}" for k, v in env.items()] + extra

    return [
        ("a data-service variable renamed", "STRATA_SERVICE_TOKEN_STORE_FRONT_FILE is not a setting data-service accepts",
         renamed("STRATA_SERVICE_TOKEN_STOREFRONT_FILE:", "STRATA_SERVICE_TOKEN_STORE_FRONT_FILE:")),
        ("backoffice's password file renamed", "STRATA_ADMIN_PASSWORD_PATH is not a setting backoffice accepts",
         renamed("STRATA_ADMIN_PASSWORD_FILE:", "STRATA_ADMIN_PASSWORD_PATH:")),
        ("a per-context variable for no context", "STRATA_CATALOGUE_DATABASE_URL_FILE is not a setting data-service accepts",
         renamed("STRATA_CATALOG_DATABASE_URL_FILE:", "STRATA_CATALOGUE_DATABASE_URL_FILE:")),
        ("an unknown variable in a list-form environment", "service backoffice: STRATA_NO_SUCH_SETTING",
         parsed(lambda s: as_list(s, "backoffice", ["STRATA_NO_SUCH_SETTING=1"]))),
        ("a data-service variable on the storefront", "STRATA_SERVICE_TOKEN_STOREFRONT_FILE is not a setting storefront accepts",
         parsed(lambda s: environment_of(s, "storefront-1").__setitem__("STRATA_SERVICE_TOKEN_STOREFRONT_FILE", "/run/secrets/storefront_token"))),
        ("a file setting naming a secret the service is not given", "is not a secret the service is given",
         renamed("STRATA_SERVICE_TOKEN_FILE: /run/secrets/storefront_token", "STRATA_SERVICE_TOKEN_FILE: /run/secrets/backoffice_token")),
        ("the storefront presenting backoffice's credential", "presents the secret backoffice_token",
         parsed(lambda s: (s["storefront-1"].__setitem__("secrets", ["backoffice_token", "jwt_secret"]),
                           environment_of(s, "storefront-1").__setitem__("STRATA_SERVICE_TOKEN_FILE", "/run/secrets/backoffice_token")))),
        ("the one credential for everything on a data service", "the credential for every call",
         parsed(lambda s: environment_of(s, "catalog-inventory-1").__setitem__("STRATA_SERVICE_TOKEN_FILE", "/run/secrets/backoffice_token"))),
        ("an identity host not reserving the staff email", "service identity-ordering-1: hosts identity but does not reserve",
         parsed(lambda s: environment_of(s, "identity-ordering-1").pop("STRATA_IDENTITY_RESERVED_EMAILS"))),
    ]


def self_test_compose(path: str, sources: dict[str, Accepts]) -> tuple[int, int]:
    """(failed, caught): the compose file passes, and so does every environment
    written as a list; each breakage of a copy fails."""
    import tempfile

    failed = caught = 0
    text = Path(path).read_text()
    label = Path(path).name
    with tempfile.TemporaryDirectory() as scratch:
        copy_path = Path(scratch) / label

        def run(broken_text):
            copy_path.write_text(broken_text)
            return check_compose(str(copy_path), sources)

        problems = run(text)
        compose = yaml.load(text, Loader=YAML_LOADER)
        for service in compose["services"].values():
            if isinstance(service.get("environment"), dict):
                service["environment"] = [f"{k}={v}" for k, v in service["environment"].items()]
        problems += run(yaml.safe_dump(compose))
        if problems:
            print(f"self-test: {label} should pass (as written, and with list environments) but does not:", *problems, sep="\n  ")
            return 1, 0
        for what, expect, breakage in compose_mutations(text):
            broken = breakage(text)
            if broken is None:
                print(f"self-test: {label} with {what}: the breakage no longer applies to the file (update the self-test)")
                failed += 1
                continue
            problems = run(broken)
            if not any(expect in p for p in problems):
                print(f"self-test: {label} with {what}: not caught (wanted a problem naming {expect!r}; got {problems})")
                failed += 1
            else:
                caught += 1
    return failed, caught


def self_test(files: list[str], sources: dict[str, Accepts], compose: str | None = None) -> int:
    failed = 0
    # The sources were read: a few names each binary must be found to accept.
    expected = {
        "data-service": {"STRATA_LISTEN", "STRATA_CONTEXTS", "STRATA_SERVICE_TOKEN", "STRATA_CATALOG_DATABASE_URL",
                         "STRATA_SHUTDOWN_GRACE_MS", "STRATA_IDENTITY_ARGON2_MEMORY_KIB", "STRATA_IDENTITY_RESERVED_EMAILS",
                         # setting_or_file's *_FILE forms, per context and per caller (callers.rs)
                         "STRATA_SERVICE_TOKEN_FILE", "STRATA_ORDERING_DATABASE_URL_FILE",
                         "STRATA_SERVICE_TOKEN_STOREFRONT", "STRATA_SERVICE_TOKEN_BACKOFFICE_FILE"},
        "storefront": {"STRATA_STOREFRONT_LISTEN", "STRATA_CATALOG_ADDR", "STRATA_JWT_SECRET_FILE", "STRATA_SERVICE_TOKEN",
                       "STRATA_SERVICE_TOKEN_FILE", "STRATA_TRUSTED_PROXIES"},
        "backoffice": {"STRATA_BACKOFFICE_LISTEN", "STRATA_ADMIN_EMAIL", "STRATA_JWT_SECRET", "STRATA_ADMIN_PASSWORD_FILE",
                       "STRATA_SERVICE_TOKEN_FILE"},
    }
    refused = {
        "data-service": {"STRATA_ADMIN_PASSWORD_FILE", "STRATA_SERVICE_TOKEN_STOREFRONT_FILE_FILE"},
        "storefront": {"STRATA_ADMIN_EMAIL", "STRATA_ADMIN_PASSWORD_FILE", "STRATA_SERVICE_TOKEN_STOREFRONT_FILE",
                       "STRATA_CATALOG_DATABASE_URL_FILE"},
        "backoffice": {"STRATA_SERVICE_TOKEN_BACKOFFICE_FILE"},
    }
    for binary, names in expected.items():
        missing = names - sources[binary].env
        if missing or "listen" not in sources[binary].longs:
            print(f"self-test: reading {binary}'s settings from the sources missed {sorted(missing) or '--listen'}")
            failed += 1
        wrong = refused[binary] & sources[binary].env
        if wrong:
            print(f"self-test: {binary} is said to accept {sorted(wrong)}, which it does not read")
            failed += 1
    if sources["data-service"].callers != ["storefront", "backoffice"]:
        print(f"self-test: the callers read from callers.rs are {sources['data-service'].callers}, not storefront, backoffice")
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
    compose_caught = 0
    if compose:
        compose_failed, compose_caught = self_test_compose(compose, sources)
        failed += compose_failed
    if failed:
        print(f"self-test: FAILED ({failed})")
        return 1
    print(f"self-test: {caught} breakages caught across {len(files)} overlays"
          + (f", {compose_caught} in {Path(compose).name}" if compose else ""))
    return 0


def main(argv: list[str]) -> int:
    testing = "--self-test" in argv
    compose = None
    if "--compose" in argv:
        at = argv.index("--compose")
        compose = argv[at + 1] if at + 1 < len(argv) else None
        argv = argv[:at] + argv[at + 2:]
        if compose is None:
            print("--compose needs a file")
            return 2
    files = [a for a in argv if a != "--self-test"]
    if not files:
        print(__doc__)
        return 2
    sources = {binary: accepts(binary) for binary in BINARIES}
    unresolved = [f"{binary}: {what}" for binary, accepted in sources.items() for what in accepted.unresolved]
    if unresolved:
        print("check-k8s: settings read in a way this script cannot follow (teach scripts/check-k8s.py):", *unresolved, sep="\n  ")
        return 1
    if testing:
        return self_test(files, sources, compose)
    problems = check(files, sources)
    if compose:
        problems += check_compose(compose, sources)
    for p in problems:
        print(p)
    if problems:
        print(f"check-k8s: {len(problems)} problem(s)")
        return 1
    print(f"check-k8s: {', '.join(Path(f).name for f in files)}: probes, resources, securityContext, "
          f"graceful stop, HPA/PDB, headless Services, default deny, secrets as files, one credential per caller, "
          f"and every setting known to the binaries"
          + (f"; {Path(compose).name}: every setting known to the binaries, secrets and credentials" if compose else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
