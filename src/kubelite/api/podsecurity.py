"""Pod Security Standards: the checks of kube-apiserver's PodSecurity admission (pure logic).

A namespace chooses a level (``privileged``, ``baseline``, ``restricted``) and a policy
version for each of three modes with its ``pod-security.kubernetes.io/enforce|warn|audit``
labels (and ``...-version``); the API server evaluates pods and pod templates against them.
This module is what ``k8s.io/pod-security-admission`` keeps in ``api`` and ``policy``,
written after it (no code of theirs), at the API server's version (1.33): the label
parsing with its field errors, every versioned check with its exact wording, the order the
evaluator runs them in (baseline IDs sorted, then restricted IDs sorted; a restricted
check replaces the baseline one it overrides), and the aggregation into the one-line
reasons kubectl shows. What to do with a verdict (refuse, warn, annotate the audit event)
is the admission plugin's (:mod:`kubelite.apiserver.admission`); nothing here does I/O.

The plugin's configuration (``PodSecurityConfiguration``, pod-security.admission.config.k8s.io,
given to kube-apiserver inside its ``--admission-control-config-file``) is decoded and validated
here too (:func:`configuration_from`), with kube-apiserver's field errors: ``defaults`` (the
policy of a namespace without labels, and of each mode a namespace leaves unset) and
``exemptions`` (usernames, runtimeClasses, namespaces whose requests are not evaluated).

Pods and templates stay the API's JSON dicts: a field that is absent or null counts as
unset, as a nil pointer in Go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api import errors

Obj = dict[str, Any]

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LABEL_PREFIX = "pod-security.kubernetes.io/"
ENFORCE_LEVEL, ENFORCE_VERSION = LABEL_PREFIX + "enforce", LABEL_PREFIX + "enforce-version"
AUDIT_LEVEL, AUDIT_VERSION = LABEL_PREFIX + "audit", LABEL_PREFIX + "audit-version"
WARN_LEVEL, WARN_VERSION = LABEL_PREFIX + "warn", LABEL_PREFIX + "warn-version"
# Audit annotations, under LABEL_PREFIX as the plugin adds them.
ENFORCE_POLICY_ANNOTATION = LABEL_PREFIX + "enforce-policy"
AUDIT_VIOLATIONS_ANNOTATION = LABEL_PREFIX + "audit-violations"
ERROR_ANNOTATION = LABEL_PREFIX + "error"

LATEST = 10**6  # "latest": newer than any version (api.Version{latest: true})
_VERSION_RE = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")


# ---------------------------------------------------------------------------- levels and policies


@dataclass(frozen=True)
class LevelVersion:
    level: str
    version: int = LATEST  # the minor of v1.N, or LATEST

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.version == LATEST else f'v1.{self.version}'}"


DEFAULT = LevelVersion(PRIVILEGED, LATEST)  # kube-apiserver's default PodSecurityConfiguration


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion = DEFAULT
    audit: LevelVersion = DEFAULT
    warn: LevelVersion = DEFAULT

    def fully_privileged(self) -> bool:
        return self.enforce.level == self.audit.level == self.warn.level == PRIVILEGED


def _compare_levels(a: str, b: str) -> int:
    return LEVELS.index(a) - LEVELS.index(b)


def parse_version(text: str) -> int | None:
    if text == "latest":
        return LATEST
    m = _VERSION_RE.match(text)
    return int(m.group(1)) if m else None


def policy_to_evaluate(labels: Mapping[str, str] | None, defaults: Policy = Policy()
                       ) -> tuple[Policy, list[errors.FieldError]]:
    """api.PolicyToEvaluate: the namespace's policy over the configured ``defaults``, and its
    label errors.

    A bad enforce level fails closed (restricted), a bad audit or warn level fails open
    (privileged), a bad version means latest; warn follows a stricter enforce unless set.
    """
    errs: list[errors.FieldError] = []
    if not labels:
        return defaults, errs

    def level(label: str, fail: str) -> str | None:
        if label not in labels:
            return None
        value = labels[label]
        if value in LEVELS:
            return value
        errs.append(errors.invalid(f"metadata.labels[{label}]", value, "must be one of privileged, baseline, restricted"))
        return fail

    def version(label: str) -> int | None:
        if label not in labels:
            return None
        v = parse_version(labels[label])
        if v is None:
            errs.append(errors.invalid(f"metadata.labels[{label}]", labels[label], 'must be "latest" or "v1.x"'))
            return LATEST
        return v

    enforce_level = level(ENFORCE_LEVEL, RESTRICTED)
    enforce_ok = enforce_level is not None and labels[ENFORCE_LEVEL] in LEVELS
    enforce = LevelVersion(enforce_level or defaults.enforce.level,
                           _or(version(ENFORCE_VERSION), defaults.enforce.version))
    audit = LevelVersion(level(AUDIT_LEVEL, PRIVILEGED) or defaults.audit.level,
                         _or(version(AUDIT_VERSION), defaults.audit.version))
    warn_level = level(WARN_LEVEL, PRIVILEGED)
    warn_version = version(WARN_VERSION)
    warn = LevelVersion(warn_level or defaults.warn.level, _or(warn_version, defaults.warn.version))
    if warn_level is None and enforce_ok and _compare_levels(enforce.level, warn.level) > 0:
        warn = LevelVersion(enforce.level, enforce.version if warn_version is None else warn_version)
    return Policy(enforce, audit, warn), errs


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def has_labels(labels: Mapping[str, str] | None) -> bool:
    return bool(labels) and any(k.startswith(LABEL_PREFIX) for k in labels or ())


def _equivalent(a: LevelVersion, b: LevelVersion) -> bool:
    """LevelVersion.Equivalent: privileged is privileged at any version."""
    return a.level == b.level and (a.level == PRIVILEGED or a.version == b.version)


# ---------------------------------------------------------------------------- the plugin's configuration


CONFIG_GROUP = "pod-security.admission.config.k8s.io"
CONFIG_VERSIONS = ("v1", "v1beta1", "v1alpha1")
EXEMPT_ANNOTATION = LABEL_PREFIX + "exempt"  # its value: namespace, user or runtimeClass


@dataclass(frozen=True)
class Exemptions:
    usernames: tuple[str, ...] = ()
    runtime_classes: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Configuration:
    """PodSecurityConfiguration; the default is kube-apiserver's: privileged everywhere, no exemptions."""

    defaults: Policy = Policy()
    exemptions: Exemptions = Exemptions()


class ConfigurationError(Exception):
    """The configuration cannot be used; the message is kube-apiserver's (without the plugin's prefix)."""

    def __init__(self, message: str, *, decoding: bool = False) -> None:
        super().__init__(message)
        self.decoding = decoding  # a decode error (the plugin's factory), else a validation error


_GO_TYPES = {dict: "map[string]interface {}", list: "array", str: "string", bool: "bool", int: "number",
             float: "number", type(None): "null"}


def _decode_error(value: Any, struct: str, field_path: str, go_type: str) -> ConfigurationError:
    kind = _GO_TYPES.get(type(value), "value")
    kind = "object" if kind.startswith("map") else kind
    return ConfigurationError(f"failed to decode: json: cannot unmarshal {kind} into Go struct field "
                              f"{struct}.{field_path} of type {go_type}", decoding=True)


def configuration_from(obj: Any) -> Configuration:
    """LoadFromData, then ValidatePodSecurityConfiguration: the configuration of ``obj`` (the
    decoded file or the AdmissionConfiguration's embedded ``configuration``; None or empty
    means the default), or a ConfigurationError with kube-apiserver's message."""
    if obj is None or obj == {}:
        return Configuration()
    if not isinstance(obj, dict):
        raise ConfigurationError("failed to decode: couldn't get version/kind; json parse error: json: cannot "
                                 f"unmarshal {_GO_TYPES.get(type(obj), 'value')} into Go value of type struct "
                                 '{ APIVersion string "json:\"apiVersion,omitempty\""; Kind string '
                                 '"json:\"kind,omitempty\"" }', decoding=True)
    api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    if not kind:
        raise ConfigurationError(f"failed to decode: Object 'Kind' is missing in '{orjson.dumps(obj).decode()}'",
                                 decoding=True)
    group, _, version = api_version.rpartition("/")
    if group != CONFIG_GROUP or version not in CONFIG_VERSIONS or kind != "PodSecurityConfiguration":
        raise ConfigurationError(f'failed to decode: no kind "{kind}" is registered for version "{api_version}" '
                                 'in scheme "k8s.io/pod-security-admission/admission/api/scheme/scheme.go:28"',
                                 decoding=True)
    defaults = obj.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise _decode_error(defaults, "PodSecurityConfiguration", "defaults", "v1.PodSecurityDefaults")
    exemptions = obj.get("exemptions") or {}
    if not isinstance(exemptions, dict):
        raise _decode_error(exemptions, "PodSecurityConfiguration", "exemptions", "v1.PodSecurityExemptions")
    raw: dict[str, str] = {}
    for key in ("enforce", "enforce-version", "audit", "audit-version", "warn", "warn-version"):
        value = defaults.get(key)
        if value is not None and not isinstance(value, str):
            raise _decode_error(value, "PodSecurityDefaults", f"defaults.{key}", "string")
        # SetDefaults_PodSecurityDefaults: an unset level is privileged, an unset version latest.
        raw[key] = value or ("latest" if key.endswith("-version") else PRIVILEGED)
    lists: dict[str, list[str]] = {}
    for key in ("usernames", "runtimeClasses", "namespaces"):
        value = exemptions.get(key)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            bad = value if not isinstance(value, list) else next(v for v in value if not isinstance(v, str))
            raise _decode_error(bad, "PodSecurityExemptions", f"exemptions.{key}", "[]string" if not isinstance(
                value, list) else "string")
        lists[key] = value
    errs: list[errors.FieldError] = []
    for key, value in raw.items():
        path = f"defaults.{key}"
        if key.endswith("-version"):
            if parse_version(value) is None:
                errs.append(errors.invalid(path, value, 'must be "latest" or "v1.x"'))
        elif value not in LEVELS:
            errs.append(errors.invalid(path, value, "must be one of privileged, baseline, restricted"))
    from kubelite.api.validation.names import is_dns1123_label, is_dns1123_subdomain

    for key, check in (("namespaces", is_dns1123_label), ("runtimeClasses", is_dns1123_subdomain), ("usernames", None)):
        seen: set[str] = set()
        for i, value in enumerate(lists[key]):
            path = f"exemptions.{key}[{i}]"
            problems = (["username must not be empty"] if value == "" else []) if check is None else check(value)
            if problems:
                errs.append(errors.invalid(path, value, ", ".join(problems)))
            elif value in seen:
                errs.append(errors.duplicate(path, value))
            else:
                seen.add(value)
    if errs:
        raise ConfigurationError(errors.aggregate(str(e) for e in errs))

    def lv(mode: str) -> LevelVersion:
        version = parse_version(raw[f"{mode}-version"])
        assert version is not None
        return LevelVersion(raw[mode], version)

    return Configuration(Policy(lv("enforce"), lv("audit"), lv("warn")),
                         Exemptions(tuple(lists["usernames"]), tuple(lists["runtimeClasses"]),
                                    tuple(lists["namespaces"])))


def exempt_namespace_warning(namespace: str, policy: Policy, defaults: Policy, labels: Mapping[str, str] | None
                             ) -> str:
    """exemptNamespaceWarning: what labelling an exempt namespace with a policy says ("" when nothing)."""
    if policy.fully_privileged() or (_equivalent(policy.enforce, defaults.enforce)
                                     and _equivalent(policy.audit, defaults.audit)
                                     and _equivalent(policy.warn, defaults.warn)):
        return ""
    labels = labels or {}
    parts = [f"{mode}={lv}" for mode, lv, level_label, version_label in (
        ("enforce", policy.enforce, ENFORCE_LEVEL, ENFORCE_VERSION),
        ("audit", policy.audit, AUDIT_LEVEL, AUDIT_VERSION),
        ("warn", policy.warn, WARN_LEVEL, WARN_VERSION),
    ) if lv.level != PRIVILEGED and (level_label in labels or version_label in labels)]
    return f"namespace {_go_quote(namespace)} is exempt from Pod Security, and the policy ({', '.join(parts)}) will be ignored"


# ---------------------------------------------------------------------------- check helpers


@dataclass(frozen=True)
class CheckResult:
    allowed: bool
    reason: str = ""
    detail: str = ""


ALLOWED = CheckResult(True)


def _join_quote(items: Iterable[str]) -> str:
    items = list(items)
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _containers(spec: Obj) -> Iterator[Obj]:
    """visitContainers: init containers, containers, ephemeral containers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or ():
            if isinstance(c, dict):
                yield c


def _sc(obj: Obj) -> Obj:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _windows(spec: Obj) -> bool:
    return (spec.get("os") or {}).get("name") == "windows"


def _go_quote(text: str) -> str:
    return orjson.dumps(text).decode()


def _setters(pod: bool, containers: list[str]) -> list[str]:
    out = ["pod"] if pod else []
    if containers:
        out.append(f"{_plural('container', 'containers', len(containers))} {_join_quote(containers)}")
    return out


CheckFn = Callable[[Obj, Obj], CheckResult]


# ---------------------------------------------------------------------------- baseline checks


def _app_armor(meta: Obj, spec: Obj) -> CheckResult:
    bad_values: set[str] = set()
    pod_bad = False
    profile = _sc(spec).get("appArmorProfile")
    if isinstance(profile, dict) and profile.get("type") not in ("RuntimeDefault", "Localhost"):
        pod_bad = True
        bad_values.add(str(profile.get("type") or ""))
    containers = []
    for c in _containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if isinstance(profile, dict) and profile.get("type") not in ("RuntimeDefault", "Localhost"):
            containers.append(c.get("name", ""))
            bad_values.add(str(profile.get("type") or ""))
    setters = _setters(pod_bad, containers)
    annotations = sorted(
        f"{k}={_go_quote(v)}" for k, v in (meta.get("annotations") or {}).items()
        if k.startswith("container.apparmor.security.beta.kubernetes.io/")
        and not (not v or v == "runtime/default" or str(v).startswith("localhost/"))
    )
    values = sorted(bad_values)
    if annotations:
        values += annotations
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if setters:
        return CheckResult(False, _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
                           f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(values)}")
    return ALLOWED


BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})


def _capabilities_baseline(meta: Obj, spec: Obj) -> CheckResult:
    bad: list[str] = []
    caps: set[str] = set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities")
        if isinstance(capabilities, dict):
            added = [str(a) for a in capabilities.get("add") or () if a not in BASELINE_CAPABILITIES]
            if added:
                bad.append(c.get("name", ""))
                caps.update(added)
    if bad:
        return CheckResult(False, "non-default capabilities",
                           f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} must not include "
                           f"{_join_quote(sorted(caps))} in securityContext.capabilities.add")
    return ALLOWED


def _host_namespaces(meta: Obj, spec: Obj) -> CheckResult:
    found = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    return CheckResult(False, "host namespaces", ", ".join(found)) if found else ALLOWED


def _host_path_volumes(meta: Obj, spec: Obj) -> CheckResult:
    names = [v.get("name", "") for v in spec.get("volumes") or () if isinstance(v, dict) and v.get("hostPath") is not None]
    if names:
        return CheckResult(False, "hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_join_quote(names)}")
    return ALLOWED


def _host_ports(meta: Obj, spec: Obj) -> CheckResult:
    bad: list[str] = []
    ports: set[str] = set()
    for c in _containers(spec):
        used = [str(p.get("hostPort")) for p in c.get("ports") or () if isinstance(p, dict) and p.get("hostPort")]
        if used:
            bad.append(c.get("name", ""))
            ports.update(used)
    if bad:
        return CheckResult(False, "hostPort",
                           f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
                           f"{_plural('uses', 'use', len(bad))} {_plural('hostPort', 'hostPorts', len(ports))} "
                           f"{', '.join(sorted(ports))}")
    return ALLOWED


def _privileged(meta: Obj, spec: Obj) -> CheckResult:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged") is True]
    if bad:
        return CheckResult(False, "privileged", f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
                                                "must not set securityContext.privileged=true")
    return ALLOWED


def _proc_mount(meta: Obj, spec: Obj) -> CheckResult:
    bad: list[str] = []
    types: set[str] = set()
    for c in _containers(spec):
        pm = _sc(c).get("procMount")
        if pm is not None and pm != "Default":
            bad.append(c.get("name", ""))
            types.add(str(pm))
    if bad:
        return CheckResult(False, "procMount", f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
                                               f"must not set securityContext.procMount to {_join_quote(sorted(types))}")
    return ALLOWED


SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
SELINUX_TYPES_1_31 = SELINUX_TYPES_1_0 | {"container_engine_t"}


def _se_linux(allowed_types: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> CheckResult:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(opts: Obj) -> bool:
            ok = True
            if str(opts.get("type") or "") not in allowed_types:
                ok = False
                bad_types.add(str(opts.get("type") or ""))
            for key in ("user", "role"):
                if opts.get(key):
                    ok = False
                    flags[key] = True
            return ok

        pod_opts = _sc(spec).get("seLinuxOptions")
        pod_bad = isinstance(pod_opts, dict) and not valid(pod_opts)
        bad = [c.get("name", "") for c in _containers(spec)
               if isinstance(_sc(c).get("seLinuxOptions"), dict) and not valid(_sc(c)["seLinuxOptions"])]
        setters = _setters(pod_bad, bad)
        if not setters:
            return ALLOWED
        data = []
        if bad_types:
            data.append(f"{_plural('type', 'types', len(bad_types))} {_join_quote(sorted(bad_types))}")
        if flags["user"]:
            data.append("user may not be set")
        if flags["role"]:
            data.append("role may not be set")
        return CheckResult(False, "seLinuxOptions",
                           f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}")

    return check


def _seccomp_baseline_1_0(meta: Obj, spec: Obj) -> CheckResult:
    """Before 1.19: the seccomp annotations."""
    annotations = meta.get("annotations") or {}

    def valid(v: str) -> bool:
        return v in ("runtime/default", "docker/default") or v.startswith("localhost/")

    forbidden: set[str] = set()
    pod_key = "seccomp.security.alpha.kubernetes.io/pod"
    if pod_key in annotations and not valid(str(annotations[pod_key])):
        forbidden.add(f"{pod_key}={_go_quote(str(annotations[pod_key]))}")
    for c in _containers(spec):
        key = "container.seccomp.security.alpha.kubernetes.io/" + str(c.get("name", ""))
        if key in annotations and not valid(str(annotations[key])):
            forbidden.add(f"{key}={_go_quote(str(annotations[key]))}")
    if forbidden:
        return CheckResult(False, "seccompProfile", f"forbidden {_plural('annotation', 'annotations', len(forbidden))} "
                                                    f"{', '.join(sorted(forbidden))}")
    return ALLOWED


def _valid_seccomp(profile: Obj) -> bool:
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def _seccomp(restricted: bool) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> CheckResult:
        if restricted and _windows(spec):
            return ALLOWED
        bad_values: set[str] = set()
        pod_bad = pod_set = False
        profile = _sc(spec).get("seccompProfile")
        if isinstance(profile, dict):
            if _valid_seccomp(profile):
                pod_set = True
            else:
                pod_bad = True
                bad_values.add(str(profile.get("type") or ""))
        explicit: list[str] = []
        implicit: list[str] = []
        for c in _containers(spec):
            profile = _sc(c).get("seccompProfile")
            if isinstance(profile, dict):
                if not _valid_seccomp(profile):
                    explicit.append(c.get("name", ""))
                    bad_values.add(str(profile.get("type") or ""))
            elif not pod_set:
                implicit.append(c.get("name", ""))
        setters = _setters(pod_bad, explicit)
        if setters:
            return CheckResult(False, "seccompProfile", f"{' and '.join(setters)} must not set "
                                                        f"securityContext.seccompProfile.type to {_join_quote(sorted(bad_values))}")
        if restricted and implicit:
            return CheckResult(False, "seccompProfile",
                               f"pod or {_plural('container', 'containers', len(implicit))} {_join_quote(implicit)} "
                               'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')
        return ALLOWED

    return check


SYSCTLS_1_0 = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                         "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})
SYSCTLS_1_27 = SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
SYSCTLS_1_29 = SYSCTLS_1_27 | {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                               "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SYSCTLS_1_32 = SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> CheckResult:
        bad = [str(s.get("name", "")) for s in _sc(spec).get("sysctls") or ()
               if isinstance(s, dict) and s.get("name") not in allowed]
        return CheckResult(False, "forbidden sysctls", ", ".join(bad)) if bad else ALLOWED

    return check


def _host_process(meta: Obj, spec: Obj) -> CheckResult:
    def set_(sc: Obj) -> bool:
        return (sc.get("windowsOptions") or {}).get("hostProcess") is True

    bad = [c.get("name", "") for c in _containers(spec) if set_(_sc(c))]
    setters = _setters(set_(_sc(spec)), bad)
    if setters:
        return CheckResult(False, "hostProcess",
                           f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true")
    return ALLOWED


# ---------------------------------------------------------------------------- restricted checks


def _allow_privilege_escalation(windows_exempt: bool) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> CheckResult:
        if windows_exempt and _windows(spec):
            return ALLOWED
        bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
        if bad:
            return CheckResult(False, "allowPrivilegeEscalation != false",
                               f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} must set "
                               "securityContext.allowPrivilegeEscalation=false")
        return ALLOWED

    return check


def _capabilities_restricted(windows_exempt: bool) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> CheckResult:
        if windows_exempt and _windows(spec):
            return ALLOWED
        missing_drop: list[str] = []
        adding: list[str] = []
        caps: set[str] = set()
        for c in _containers(spec):
            capabilities = _sc(c).get("capabilities")
            if not isinstance(capabilities, dict):
                missing_drop.append(c.get("name", ""))
                continue
            if "ALL" not in (capabilities.get("drop") or ()):
                missing_drop.append(c.get("name", ""))
            added = [str(a) for a in capabilities.get("add") or () if a != "NET_BIND_SERVICE"]
            if added:
                adding.append(c.get("name", ""))
                caps.update(added)
        details = []
        if missing_drop:
            details.append(f"{_plural('container', 'containers', len(missing_drop))} {_join_quote(missing_drop)} "
                           'must set securityContext.capabilities.drop=["ALL"]')
        if adding:
            details.append(f"{_plural('container', 'containers', len(adding))} {_join_quote(adding)} must not include "
                           f"{_join_quote(sorted(caps))} in securityContext.capabilities.add")
        return CheckResult(False, "unrestricted capabilities", "; ".join(details)) if details else ALLOWED

    return check


# restrictedVolumes: the inline sources the restricted level allows, and the names it reports
# for the others, in the order Go's switch tests them.
ALLOWED_VOLUME_SOURCES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                          "persistentVolumeClaim", "projected", "secret")
RESTRICTED_VOLUME_SOURCES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
    "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos",
)


def _restricted_volumes(meta: Obj, spec: Obj) -> CheckResult:
    bad: list[str] = []
    types: set[str] = set()
    for v in spec.get("volumes") or ():
        if not isinstance(v, dict) or any(v.get(k) is not None for k in ALLOWED_VOLUME_SOURCES):
            continue
        bad.append(v.get("name", ""))
        types.add(next((k for k in RESTRICTED_VOLUME_SOURCES if v.get(k) is not None), "unknown"))
    if bad:
        return CheckResult(False, "restricted volume types",
                           f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)} {_plural('uses', 'use', len(bad))} "
                           f"{_plural('restricted volume type', 'restricted volume types', len(types))} "
                           f"{_join_quote(sorted(types))}")
    return ALLOWED


def _run_as_non_root(meta: Obj, spec: Obj) -> CheckResult:
    pod_value = _sc(spec).get("runAsNonRoot")
    pod_bad, pod_true = pod_value is False, pod_value is True
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is not None:
            if value is False:
                explicit.append(c.get("name", ""))
        elif not pod_true:
            implicit.append(c.get("name", ""))
    setters = _setters(pod_bad, explicit)
    if setters:
        return CheckResult(False, "runAsNonRoot != true",
                           f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return CheckResult(False, "runAsNonRoot != true",
                           f"pod or {_plural('container', 'containers', len(implicit))} {_join_quote(implicit)} "
                           "must set securityContext.runAsNonRoot=true")
    return ALLOWED


def _run_as_user(meta: Obj, spec: Obj) -> CheckResult:
    def root(sc: Obj) -> bool:
        value = sc.get("runAsUser")
        return value == 0 and value is not False

    bad = [c.get("name", "") for c in _containers(spec) if root(_sc(c))]
    setters = _setters(root(_sc(spec)), bad)
    if setters:
        return CheckResult(False, "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0")
    return ALLOWED


# ---------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Versioned:
    minimum: int  # the minor of the first policy version it applies to
    fn: CheckFn
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    versions: tuple[Versioned, ...] = field(default_factory=tuple)

    def at(self, minor: int) -> Versioned | None:
        """The revision that applies to policy version v1.``minor`` (None: not yet a check then)."""
        found = None
        for v in self.versions:
            if v.minimum <= minor:
                found = v
        return found


CHECKS: tuple[Check, ...] = (
    Check("allowPrivilegeEscalation", RESTRICTED, (Versioned(8, _allow_privilege_escalation(False)),
                                                   Versioned(25, _allow_privilege_escalation(True)))),
    Check("appArmorProfile", BASELINE, (Versioned(0, _app_armor),)),
    Check("capabilities_baseline", BASELINE, (Versioned(0, _capabilities_baseline),)),
    Check("capabilities_restricted", RESTRICTED, (
        Versioned(22, _capabilities_restricted(False), ("capabilities_baseline",)),
        Versioned(25, _capabilities_restricted(True), ("capabilities_baseline",)))),
    Check("hostNamespaces", BASELINE, (Versioned(0, _host_namespaces),)),
    Check("hostPathVolumes", BASELINE, (Versioned(0, _host_path_volumes),)),
    Check("hostPorts", BASELINE, (Versioned(0, _host_ports),)),
    Check("privileged", BASELINE, (Versioned(0, _privileged),)),
    Check("procMount", BASELINE, (Versioned(0, _proc_mount),)),
    Check("restrictedVolumes", RESTRICTED, (Versioned(0, _restricted_volumes, ("hostPathVolumes",)),)),
    Check("runAsNonRoot", RESTRICTED, (Versioned(0, _run_as_non_root),)),
    Check("runAsUser", RESTRICTED, (Versioned(23, _run_as_user),)),
    Check("seLinuxOptions", BASELINE, (Versioned(0, _se_linux(SELINUX_TYPES_1_0)),
                                       Versioned(31, _se_linux(SELINUX_TYPES_1_31)))),
    Check("seccompProfile_baseline", BASELINE, (Versioned(0, _seccomp_baseline_1_0), Versioned(19, _seccomp(False)))),
    Check("seccompProfile_restricted", RESTRICTED, (
        Versioned(19, _seccomp(True), ("seccompProfile_baseline",)),
        Versioned(25, _seccomp(True), ("seccompProfile_baseline",)))),
    Check("sysctls", BASELINE, (Versioned(0, _sysctls(SYSCTLS_1_0)), Versioned(27, _sysctls(SYSCTLS_1_27)),
                                Versioned(29, _sysctls(SYSCTLS_1_29)), Versioned(32, _sysctls(SYSCTLS_1_32)))),
    Check("windowsHostProcess", BASELINE, (Versioned(0, _host_process),)),
)
# The newest policy version any check has a revision for: later versions (and latest) are it.
MAX_VERSION = max(v.minimum for c in CHECKS for v in c.versions)
# Baseline checks first, then restricted, each sorted by ID (Go's byte order), as the evaluator runs them.
ORDERED = sorted(CHECKS, key=lambda c: (c.level != BASELINE, c.id))
_cache: dict[tuple[str, int], tuple[CheckFn, ...]] = {}


def checks_for(lv: LevelVersion) -> tuple[CheckFn, ...]:
    """The checks a level and version runs, in order."""
    if lv.level == PRIVILEGED:
        return ()
    minor = min(lv.version, MAX_VERSION)
    key = (lv.level, minor)
    fns = _cache.get(key)
    if fns is None:
        applicable = {c.id: (c, v) for c in ORDERED if (v := c.at(minor)) is not None
                      and (c.level == BASELINE or lv.level == RESTRICTED)}
        overridden = {o for c, v in applicable.values() if c.level == RESTRICTED for o in v.overrides}
        fns = _cache[key] = tuple(v.fn for c, v in applicable.values() if c.id not in overridden)
    return fns


def check_fn(check_id: str, version: int = LATEST) -> CheckFn:
    """One check's revision for a policy version (for tests and tools)."""
    check = next(c for c in CHECKS if c.id == check_id)
    revision = check.at(min(version, MAX_VERSION))
    if revision is None:
        raise KeyError(f"{check_id} has no revision for v1.{version}")
    return revision.fn


@dataclass(frozen=True)
class Result:
    """AggregateCheckResult: the reasons (and details) of every check that forbade."""

    reasons: tuple[str, ...] = ()
    details: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.reasons

    def reason(self) -> str:
        return ", ".join(self.reasons)

    def detail(self) -> str:
        return ", ".join(f"{r} ({d})" if d else r for r, d in zip(self.reasons, self.details, strict=True))


def evaluate(lv: LevelVersion, meta: Obj | None, spec: Obj | None) -> Result:
    """EvaluatePod + AggregateCheckResults."""
    meta = meta if isinstance(meta, dict) else {}
    spec = spec if isinstance(spec, dict) else {}
    reasons: list[str] = []
    details: list[str] = []
    for fn in checks_for(lv):
        r = fn(meta, spec)
        if not r.allowed:
            reasons.append(r.reason or "unknown forbidden reason")
            details.append(r.detail)
    return Result(tuple(reasons), tuple(details))


# ---------------------------------------------------------------------------- objects with pods


# DefaultPodSpecExtractor's kinds: (group, resource) → where their pod template is.
POD_TEMPLATE_RESOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "replicationcontrollers"): ("spec", "template"),
    ("", "podtemplates"): ("template",),
    ("apps", "replicasets"): ("spec", "template"),
    ("apps", "deployments"): ("spec", "template"),
    ("apps", "statefulsets"): ("spec", "template"),
    ("apps", "daemonsets"): ("spec", "template"),
    ("batch", "jobs"): ("spec", "template"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template"),
}


def pod_template(group: str, resource: str, obj: Obj) -> tuple[Obj, Obj] | None:
    """The metadata and spec of a workload's pod template (None when it has none)."""
    path = POD_TEMPLATE_RESOURCES.get((group, resource))
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    return node.get("metadata") or {}, node.get("spec") or {}


def significant_pod_update(new: Obj, old: Obj) -> bool:
    """isSignificantPodUpdate: only what a pod may change and a check reads, its images."""
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    for key in ("containers", "initContainers"):
        a, b = ns.get(key) or [], os_.get(key) or []
        if len(a) != len(b) or any(x.get("image") != y.get("image") for x, y in zip(a, b, strict=True)):
            return True
    olds = {c.get("name"): c for c in os_.get("ephemeralContainers") or ()}
    for c in ns.get("ephemeralContainers") or ():
        previous = olds.get(c.get("name"))
        if previous is None or previous.get("image") != c.get("image"):
            return True
    return False


# ---------------------------------------------------------------------------- a new enforce level


MAX_PODS_TO_CHECK = 3000


def existing_pods_warnings(namespace: str, enforce: LevelVersion, pods: list[Obj],
                           exempt_runtime_classes: Iterable[str] = ()) -> list[str]:
    """EvaluatePodsInNamespace: the warnings for a namespace given a stricter enforce level.

    Pods of an exempt runtime class are skipped; one pod per controller goes first (the
    replicas of one template would all say the same); the same reasons are reported once,
    with the first pod's name by name order and how many others share them.
    """
    first: list[Obj] = []
    rest: list[Obj] = []
    seen: set[str] = set()
    exempt = set(exempt_runtime_classes)
    for pod in pods:
        if (pod.get("spec") or {}).get("runtimeClassName") in exempt:
            continue
        owner = next((r for r in (pod.get("metadata") or {}).get("ownerReferences") or () if r.get("controller")), None)
        if owner is None:
            first.append(pod)
        elif owner.get("uid") in seen:
            rest.append(pod)
        else:
            seen.add(owner.get("uid"))
            first.append(pod)
    ordered = first + rest
    total = len(ordered)
    ordered = ordered[:MAX_PODS_TO_CHECK]
    counts: dict[str, tuple[str, int]] = {}
    order: list[str] = []
    for pod in ordered:
        r = evaluate(enforce, pod.get("metadata"), pod.get("spec"))
        if r.allowed:
            continue
        name = str((pod.get("metadata") or {}).get("name", ""))
        reason = r.reason()
        if reason not in counts:
            order.append(reason)
            counts[reason] = (name, 1)
        else:
            first_name, n = counts[reason]
            counts[reason] = (min(first_name, name), n + 1)
    warnings = []
    if len(ordered) < total:
        warnings.append(f"new PodSecurity enforce level only checked against the first {len(ordered)} of {total} "
                        "existing pods")
    if order:
        warnings.append(f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level "{enforce}"')
    decorated = []
    for reason in order:
        name, n = counts[reason]
        if n == 1:
            decorated.append(f"{name}: {reason}")
        elif n == 2:
            decorated.append(f"{name} (and 1 other pod): {reason}")
        else:
            decorated.append(f"{name} (and {n - 1} other pods): {reason}")
    return warnings + sorted(decorated)


def enforce_tightened(new: Policy, old: Policy) -> bool:
    """Whether a namespace update's enforce level asks for its existing pods to be checked."""
    if new.enforce == old.enforce or new.enforce.level == PRIVILEGED:
        return False
    return not (new.enforce.version == old.enforce.version and _compare_levels(new.enforce.level, old.enforce.level) < 1)
