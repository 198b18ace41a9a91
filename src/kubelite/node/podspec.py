"""What the kubelet derives from a PodSpec, as pure functions: env, argv, etc files, status.

The kubelet turns a Pod object into processes through many small rules that users rely on
without reading them: service links, ``$(VAR)`` expansion with ``$$`` escaping, the
command/args versus ENTRYPOINT/CMD table, the exact /etc/hosts and resolv.conf it writes,
the pod phase and conditions it reports, the crash-loop back-off. They live here with no
I/O (the agent passes in what it read from the API server and the runtime) so that each
rule is unit-tested against Kubernetes' behaviour, and the agent stays a thin loop around
them. Texts (reasons, messages) are the kubelet's own, because users grep for them.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kubelite.api.resource import parse_quantity
from kubelite.api.types import Obj

CLUSTER_DOMAIN = "cluster.local"
DEFAULT_DNS_IP = "10.96.0.10"
MASTER_SERVICES = frozenset({"kubernetes"})
HOSTNAME_MAX = 63


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for whole seconds (``10s``, ``1m20s``, ``5m0s``)."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def pod_ref(pod: Obj) -> str:
    """The kubelet's ``format.Pod``: ``name_namespace(uid)``."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


# ---------------------------------------------------------------------------------- $(VAR) expansion


def expand(text: str, *contexts: Mapping[str, str]) -> str:
    """Kubernetes' ``expansion.Expand``: ``$(NAME)`` from the first context that has it.

    ``$$`` is an escaped ``$``; an unknown or unterminated reference stays as written.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            for ctx in contexts:
                if name in ctx:
                    out.append(ctx[name])
                    break
            else:
                out.append(f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# ---------------------------------------------------------------------------------- service links


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _has_cluster_ip(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _service_vars(svc: Obj) -> dict[str, str]:
    spec = svc.get("spec") or {}
    ip: str = spec["clusterIP"]
    ports = spec.get("ports") or []
    prefix = _env_name(svc["metadata"]["name"])
    out: dict[str, str] = {f"{prefix}_SERVICE_HOST": ip}
    if not ports:
        return out
    out[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
    for p in ports:
        if p.get("name"):
            out[f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p.get("port"))
    host = f"[{ip}]" if ":" in ip else ip
    for i, p in enumerate(ports):
        proto = (p.get("protocol") or "TCP").upper()
        url = f"{proto.lower()}://{host}:{p.get('port')}"
        if i == 0:
            out[f"{prefix}_PORT"] = url
        pp = f"{prefix}_PORT_{p.get('port')}_{proto}"
        out[pp] = url
        out[f"{pp}_PROTO"] = proto.lower()
        out[f"{pp}_PORT"] = str(p.get("port"))
        out[f"{pp}_ADDR"] = ip
    return out


def service_env(services: Sequence[Obj], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """The kubelet's ``getServiceEnvVarMap``: Docker-link style variables of the pod's Services.

    The ``kubernetes`` Service of ``default`` is always included; the namespace's own Services
    only with enableServiceLinks. Headless and ExternalName Services have no variables. A
    Service of the pod's namespace named like a master service wins over the master one.
    """
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        meta = svc.get("metadata") or {}
        name, ns = meta.get("name", ""), meta.get("namespace", "")
        if ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    env: dict[str, str] = {}
    for svc in chosen.values():
        env.update(_service_vars(svc))
    return env


def resource_field_value(container: Obj, ref: Obj, allocatable: Mapping[str, str]) -> str:
    """``resourceFieldRef``: a container's limit or request, divided and rounded up as the kubelet does.

    A limit that is not set defaults to the node's allocatable amount (as the kubelet's
    ``defaultPodLimitsForDownwardAPI``); an unset request reads as 0 (cpu: as the limit
    rounded to 1 when the whole thing is 0, as ``ExtractContainerResourceValue``).
    """
    resource = ref.get("resource") or ""
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "limits":
        raw = allocatable.get(name)
    value = parse_quantity(raw) if raw is not None else decimal.Decimal(0)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = decimal.Decimal(1)
    if name == "cpu":
        # convertResourceCPUToString works in millicores.
        return str(math.ceil((value * 1000).to_integral_value(decimal.ROUND_CEILING) / (divisor * 1000)))
    return str(math.ceil(value.to_integral_value(decimal.ROUND_CEILING) / divisor))


# ---------------------------------------------------------------------------------- downward API


def _subscript(path: str, base: str) -> str | None:
    prefix = base + "['"
    if path.startswith(prefix) and path.endswith("']"):
        return path[len(prefix):-2]
    return None


def _format_map(values: Mapping[str, str]) -> str:
    """fieldpath.FormatMap: ``key="value"`` lines, sorted, values Go-quoted."""
    return "\n".join(f"{k}={_go_quote(v)}" for k, v in sorted(values.items()))


def _go_quote(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def field_ref_value(pod: Obj, field_path: str, pod_ips: Sequence[str] = (), host_ips: Sequence[str] = ()) -> str:
    """The value of a downward API ``fieldRef`` (env or volume file)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ips[0] if host_ips else "",
        "status.hostIPs": ",".join(host_ips),
        "status.podIP": pod_ips[0] if pod_ips else "",
        "status.podIPs": ",".join(pod_ips),
    }
    if field_path in simple:
        return str(simple[field_path])
    if field_path == "metadata.labels":
        return _format_map(meta.get("labels") or {})
    if field_path == "metadata.annotations":
        return _format_map(meta.get("annotations") or {})
    for base in ("metadata.labels", "metadata.annotations"):
        key = _subscript(field_path, base)
        if key is not None:
            return str((meta.get(base.split(".")[1]) or {}).get(key, ""))
    raise EnvError(f"unsupported fieldPath: {field_path}")


# ---------------------------------------------------------------------------------- env


class EnvError(Exception):
    """The container cannot be configured (the kubelet's CreateContainerConfigError)."""


# A lookup returns the object's data (ConfigMap data, Secret data decoded) or None when missing.
Lookup = Callable[[str], Mapping[str, str] | None]


def _is_env_name(name: str) -> bool:
    return bool(name) and all(" " <= ch <= "~" and ch != "=" for ch in name)


@dataclass
class EnvResult:
    env: dict[str, str]
    invalid_keys: dict[str, list[str]]  # "configMap ns/name" → skipped keys, for the kubelet's warning event


def container_env(
    pod: Obj,
    container: Obj,
    *,
    service_vars: Mapping[str, str],
    configmaps: Lookup,
    secrets: Lookup,
    pod_ips: Sequence[str],
    host_ips: Sequence[str],
    allocatable: Mapping[str, str],
) -> EnvResult:
    """The kubelet's ``makeEnvironmentVariables``.

    envFrom first (later sources win), then env in order: a literal value is expanded against
    the variables defined so far and the service variables; a valueFrom is resolved. Service
    variables come last and never override a variable the container defines.
    """
    ns = (pod.get("metadata") or {}).get("namespace", "")
    defined: dict[str, str] = {}
    invalid: dict[str, list[str]] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, ref_key, lookup, label in (
            ("configmap", "configMapRef", configmaps, "configMap"),
            ("secret", "secretRef", secrets, "secret"),
        ):
            ref = source.get(ref_key)
            if ref is None:
                continue
            name = ref.get("name", "")
            data = lookup(name)
            if data is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'{kind} "{name}" not found')
            bad = []
            for k, v in data.items():
                key = prefix + k
                if not _is_env_name(key):
                    bad.append(key)
                    continue
                defined[key] = v
            if bad:
                invalid[f"{label} {ns}/{name}"] = sorted(bad)
    for var in container.get("env") or []:
        value: str | None = var.get("value") or ""
        source = var.get("valueFrom")
        if value:
            value = expand(str(value), defined, service_vars)
        elif source:
            value = _value_from(pod, container, source, configmaps, secrets, pod_ips, host_ips, allocatable)
        if value is not None:
            defined[var.get("name", "")] = value
    env = dict(defined)
    for k, v in service_vars.items():
        env.setdefault(k, v)
    return EnvResult(env, invalid)


def _value_from(
    pod: Obj, container: Obj, source: Obj, configmaps: Lookup, secrets: Lookup,
    pod_ips: Sequence[str], host_ips: Sequence[str], allocatable: Mapping[str, str],
) -> str | None:
    """One ``valueFrom``; None leaves the variable out (an optional reference that is missing)."""
    if source.get("fieldRef") is not None:
        return field_ref_value(pod, source["fieldRef"].get("fieldPath", ""), pod_ips, host_ips)
    if source.get("resourceFieldRef") is not None:
        return resource_field_value(container, source["resourceFieldRef"], allocatable)
    ns = (pod.get("metadata") or {}).get("namespace", "")
    for kind, ref_key, lookup, label in (
        ("configmap", "configMapKeyRef", configmaps, "ConfigMap"),
        ("secret", "secretKeyRef", secrets, "Secret"),
    ):
        ref = source.get(ref_key)
        if ref is None:
            continue
        name, key = ref.get("name", ""), ref.get("key", "")
        data = lookup(name)
        if data is None:
            if ref.get("optional"):
                return None
            raise EnvError(f'{kind} "{name}" not found')
        if key not in data:
            if ref.get("optional"):
                return None
            raise EnvError(f"couldn't find key {key} in {label} {ns}/{name}")
        return data[key]
    return ""


# ---------------------------------------------------------------------------------- command and args


def container_argv(container: Obj, entrypoint: Sequence[str], cmd: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Kubernetes' rules against the image's ENTRYPOINT/CMD, then ``$(VAR)`` expansion.

    command replaces the ENTRYPOINT and drops the CMD; args replaces the CMD. Only the
    container's own command/args are expanded, never the image's.
    """
    command = [expand(c, env) for c in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if command:
        return command + args
    return list(entrypoint) + (args if container.get("args") else list(cmd))


# ---------------------------------------------------------------------------------- hostname, hosts, resolv.conf


def pod_hostname(pod: Obj) -> tuple[str, str]:
    """(hostname, domain): spec.hostname or the pod name, truncated to 63; domain from subdomain."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    hostname = spec.get("hostname") or meta.get("name", "")
    if len(hostname) > HOSTNAME_MAX:
        hostname = hostname[:HOSTNAME_MAX].rstrip("-.")
    domain = ""
    if spec.get("subdomain"):
        domain = f"{spec['subdomain']}.{meta.get('namespace', '')}.svc.{CLUSTER_DOMAIN}"
    return hostname, domain


def uts_hostname(pod: Obj) -> str:
    """The container's hostname: the FQDN only with setHostnameAsFQDN."""
    hostname, domain = pod_hostname(pod)
    if (pod.get("spec") or {}).get("setHostnameAsFQDN") and domain:
        return f"{hostname}.{domain}"
    return hostname


def hosts_file(pod: Obj, pod_ips: Sequence[str], node_hosts: str | None = None) -> str:
    """The kubelet's managed /etc/hosts; for a hostNetwork pod, the node's own file
    (``node_hosts``) under the host-network header, as the kubelet's nodeHostsFileContent."""
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    alias_lines = ["", "# Entries added by HostAliases."] if aliases else []
    alias_lines += [f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) for a in aliases]
    if (pod.get("spec") or {}).get("hostNetwork") and node_hosts is not None:
        return "# Kubernetes-managed hosts file (host network).\n" + node_hosts + \
            "".join(line + "\n" for line in alias_lines)
    hostname, domain = pod_hostname(pod)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    for ip in pod_ips:
        lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{ip}\t{hostname}")
    return "\n".join(lines + alias_lines) + "\n"


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def _merge_options(base: Sequence[str], extra: Sequence[Obj]) -> tuple[str, ...]:
    """dnsConfig options override base options of the same name (``ndots`` once)."""
    merged: dict[str, str] = {}
    for text in base:
        merged[text.partition(":")[0]] = text
    for opt in extra:
        name = opt.get("name", "")
        merged[name] = f"{name}:{opt['value']}" if opt.get("value") is not None else name
    return tuple(merged.values())


def _dedup(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def resolv_conf(pod: Obj, *, cluster_dns: str, host: ResolvConf) -> str:
    """The pod's resolv.conf per dnsPolicy (ClusterFirst, ClusterFirstWithHostNet, Default, None) and dnsConfig."""
    spec = pod.get("spec") or {}
    ns = (pod.get("metadata") or {}).get("namespace", "")
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        base = ResolvConf(
            (cluster_dns,),
            (f"{ns}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN),
            ("ndots:5",),
        )
    elif policy == "Default":
        base = host
    else:
        base = ResolvConf()
    extra = spec.get("dnsConfig") or {}
    conf = ResolvConf(
        _dedup([*base.nameservers, *(extra.get("nameservers") or [])]),
        _dedup([*base.searches, *(extra.get("searches") or [])]),
        _merge_options(base.options, extra.get("options") or []),
    )
    return conf.render()


# ---------------------------------------------------------------------------------- back-off


class Backoff:
    """The kubelet's ``flowcontrol.Backoff``: 10 s doubling to 300 s, forgotten after twice the maximum idle."""

    def __init__(self, initial: float = 10.0, maximum: float = 300.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, tuple[float, float]] = {}  # key → (backoff, last update)

    def _expired(self, now: float, last: float) -> bool:
        return now - last > 2 * self.maximum

    def get(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def in_backoff_since(self, key: str, event_time: float, now: float) -> bool:
        entry = self._entries.get(key)
        if entry is None or self._expired(now, entry[1]):
            return False
        return now - event_time < entry[0]

    def next(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None or self._expired(now, entry[1]):
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.maximum), now)

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        """IsInBackOffSinceUpdate: less than the current back-off since the last failure."""
        entry = self._entries.get(key)
        return entry is not None and not self._expired(now, entry[1]) and now - entry[1] < entry[0]

    def until_retry(self, key: str, now: float) -> float:
        entry = self._entries.get(key)
        return max(0.0, entry[1] + entry[0] - now) if entry else 0.0

    def remaining(self, key: str, event_time: float, now: float) -> float:
        entry = self._entries.get(key)
        return max(0.0, event_time + entry[0] - now) if entry else 0.0

    def forget(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def crashloop_message(backoff: float, container: str, pod: Obj) -> str:
    return f"back-off {go_duration(backoff)} restarting failed container={container} pod={pod_ref(pod)}"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def terminated_reason(exit_code: int, oom: bool = False) -> str:
    if oom:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


# ---------------------------------------------------------------------------------- status


def _go_list(names: Sequence[str]) -> str:
    return "[" + " ".join(names) + "]"


def _by_name(statuses: Sequence[Obj]) -> dict[str, Obj]:
    return {s["name"]: s for s in statuses}


def pod_phase(pod: Obj, init_statuses: Sequence[Obj], statuses: Sequence[Obj], terminal: bool = False) -> str:
    """The kubelet's ``getPhase`` (no sidecar init containers)."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    init = _by_name(init_statuses)
    pending_init = failed_init = 0
    for c in spec.get("initContainers") or []:
        s = init.get(c["name"])
        state = (s or {}).get("state") or {}
        last = (s or {}).get("lastState") or {}
        if s is None or "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        elif "waiting" in state:
            if "terminated" in last:
                if last["terminated"].get("exitCode", 0) != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    regular = _by_name(statuses)
    unknown = running = waiting = stopped = succeeded = 0
    any_started = False
    for c in spec.get("containers") or []:
        s = regular.get(c["name"])
        if s is None:
            unknown += 1
            continue
        state = s.get("state") or {}
        last = s.get("lastState") or {}
        if "running" in state or "terminated" in state or "terminated" in last:
            any_started = True
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init and policy == "Never":
        return "Failed"
    if (pending_init and not any_started) or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(type_: str, status: bool, reason: str = "", message: str = "") -> Obj:
    c: Obj = {"type": type_, "status": "True" if status else "False"}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _initialized(pod: Obj, phase: str, init: Sequence[Obj], regular: Sequence[Obj]) -> Obj:
    spec = pod.get("spec") or {}
    known = _by_name(init)
    unknown, incomplete = [], []
    for c in spec.get("initContainers") or []:
        s = known.get(c["name"])
        if s is None:
            unknown.append(c["name"])
            continue
        term = (s.get("state") or {}).get("terminated")
        if term is None or term.get("exitCode", 0) != 0:
            incomplete.append(c["name"])
    if phase == "Succeeded" and not unknown:
        return _condition("Initialized", True, "PodCompleted")
    if any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
           or "terminated" in (s.get("lastState") or {}) for s in regular):
        return _condition("Initialized", True)
    messages = []
    if unknown:
        messages.append(f"containers with unknown status: {_go_list(unknown)}")
    if incomplete:
        messages.append(f"containers with incomplete status: {_go_list(incomplete)}")
    if messages:
        return _condition("Initialized", False, "ContainersNotInitialized", ", ".join(messages))
    return _condition("Initialized", True)


def _containers_ready(pod: Obj, phase: str, regular: Sequence[Obj]) -> Obj:
    known = _by_name(regular)
    unknown, unready = [], []
    for c in (pod.get("spec") or {}).get("containers") or []:
        s = known.get(c["name"])
        if s is None:
            unknown.append(c["name"])
        elif not s.get("ready"):
            unready.append(c["name"])
    if phase == "Succeeded" and not unknown:
        return _condition("ContainersReady", False, "PodCompleted")
    if phase == "Failed":
        return _condition("ContainersReady", False, "PodFailed")
    messages = []
    if unknown:
        messages.append(f"containers with unknown status: {_go_list(unknown)}")
    if unready:
        messages.append(f"containers with unready status: {_go_list(unready)}")
    if messages:
        return _condition("ContainersReady", False, "ContainersNotReady", ", ".join(messages))
    return _condition("ContainersReady", True)


def _ready(pod: Obj, containers_ready: Obj, conditions: Sequence[Obj]) -> Obj:
    if containers_ready["status"] != "True":
        return {**containers_ready, "type": "Ready"}
    present = {c.get("type"): c for c in conditions}
    messages = []
    for gate in (pod.get("spec") or {}).get("readinessGates") or []:
        t = gate.get("conditionType", "")
        c = present.get(t)
        if c is None:
            messages.append(f'corresponding condition of pod readiness gate "{t}" does not exist.')
        elif c.get("status") != "True":
            messages.append(f'the status of pod readiness gate "{t}" is not "True", but {c.get("status")}')
    if messages:
        return _condition("Ready", False, "ReadinessGatesNotReady", ", ".join(messages))
    return _condition("Ready", True)


KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def pod_conditions(
    pod: Obj,
    phase: str,
    init_statuses: Sequence[Obj],
    statuses: Sequence[Obj],
    *,
    sandbox_ready: bool,
    now: str,
    force_unready: bool = False,
) -> list[Obj]:
    """The pod's conditions in the kubelet's order; others (PodScheduled, gates) are kept.

    ``lastTransitionTime`` moves only when a condition's status changes. ``force_unready``
    reports Ready/ContainersReady False while a pod terminates.
    """
    old = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    cready = _containers_ready(pod, phase, statuses)
    if force_unready and cready["status"] == "True":
        cready = _condition("ContainersReady", False, "ContainersNotReady", "pod is terminating")
    computed = [
        _condition("PodReadyToStartContainers", sandbox_ready),
        _initialized(pod, phase, init_statuses, statuses),
        _ready(pod, cready, list(old.values())),
        cready,
    ]
    out: list[Obj] = []
    for c in computed:
        prev = old.get(c["type"])
        c["lastProbeTime"] = None
        c["lastTransitionTime"] = (prev or {}).get("lastTransitionTime") if prev and prev.get("status") == c["status"] else now
        out.append(c)
    out += [c for t, c in old.items() if t not in KUBELET_CONDITIONS]
    return out



def supplementary_groups(pod: Obj) -> list[int]:
    """The container processes' extra groups: the pod's fsGroup, then its supplementalGroups."""
    sc = (pod.get("spec") or {}).get("securityContext") or {}
    groups = [int(sc["fsGroup"])] if sc.get("fsGroup") is not None else []
    return groups + [int(g) for g in sc.get("supplementalGroups") or [] if int(g) not in groups]
