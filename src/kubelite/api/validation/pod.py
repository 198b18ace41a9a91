"""Pod and pod template validation, after ``ValidatePodCreate`` / ``ValidatePodUpdate``.

Pods are the Service's backends, so the checks a user trips over when writing one are
ported with Kubernetes' paths and words: containers and their names, images, ports (whose
names a Service's ``targetPort`` refers to), env vars, probes, volumes and mounts, restart
and DNS policies, and the immutability of a running Pod's spec. Checks of features kubelite
does not run (resource claims, affinity terms, topology spread, Windows and seccomp
options, volume devices) are left out rather than half done.

:func:`validate_pod_spec` is also what Deployments and ReplicaSets use for their template,
with ``spec.template.spec`` paths, as ``ValidatePodTemplateSpec`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubelite.api.defaults import VOLUME_SOURCES
from kubelite.api.errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    required,
)
from kubelite.api.validation.core import object_meta, object_meta_update
from kubelite.api.validation.meta import validate_annotations, validate_labels
from kubelite.api.validation.names import (
    is_config_map_key,
    is_dns1123_subdomain,
    is_valid_label_value,
    name_is_dns_subdomain,
)
from kubelite.api.validation.service import (
    PROTOCOLS,
    inclusive_range_error,
    is_valid_port_name,
    is_valid_port_num,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_ip,
    validate_nonnegative,
    validate_port_num_or_name,
    validate_qualified_name,
)

Obj = Mapping[str, Any]

_MAX_INT32 = 2**31 - 1
_FILE_MODE = "must be a number between 0 and 0777 (octal), both inclusive"
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")  # sorted, as sets.List prints them
_TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
_ENV_FIELD_PATHS = (
    "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
)
_VOLUME_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid")
_ENV_RESOURCES = (
    "limits.cpu", "limits.ephemeral-storage", "limits.memory",
    "requests.cpu", "requests.ephemeral-storage", "requests.memory",
)
_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc", "sleep")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


# -- volumes ----------------------------------------------------------------------------------


def _validate_key_to_path(item: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not item.get("key"):
        errs.append(required(f"{path}.key"))
    if not item.get("path"):
        errs.append(required(f"{path}.path"))
    errs += _local_non_reserved_path(item.get("path") or "", f"{path}.path")
    mode = item.get("mode")
    if mode is not None and not 0 <= mode <= 0o777:
        errs.append(invalid(f"{path}.mode", mode, _FILE_MODE))
    return errs


def _local_descending_path(value: str, path: str) -> list[FieldError]:
    """validateLocalDescendingPath: relative, and no '..' element."""
    errs = []
    if value.startswith("/"):
        errs.append(invalid(path, value, "must be a relative path"))
    if ".." in value.replace("\\", "/").split("/"):
        errs.append(invalid(path, value, "must not contain '..'"))
    return errs


def _local_non_reserved_path(value: str, path: str) -> list[FieldError]:
    errs = _local_descending_path(value, path)
    if value.startswith(".."):
        errs.append(invalid(path, value, "must not start with '..'"))
    return errs


def _validate_mode(source: Obj, path: str) -> list[FieldError]:
    mode = source.get("defaultMode")
    if mode is not None and not 0 <= mode <= 0o777:
        return [invalid(f"{path}.defaultMode", mode, _FILE_MODE)]
    return []


def _validate_volume_source(volume: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for key in VOLUME_SOURCES:
        source = volume.get(key)
        if source is None:
            continue
        if count:
            # Kubernetes misspells this one path.
            errs.append(forbidden(f"{path}.{'downwarAPI' if key == 'downwardAPI' else key}",
                                  "may not specify more than 1 volume type"))
            continue
        count += 1
        sp = f"{path}.{key}"
        if key == "hostPath":
            if not source.get("path"):
                errs.append(required(f"{sp}.path"))
            elif ".." in source["path"].split("/"):
                errs.append(invalid(f"{sp}.path", source["path"], "must not contain '..'"))
        elif key == "secret":
            if not source.get("secretName"):
                errs.append(required(f"{sp}.secretName"))
            errs += _validate_mode(source, sp)
            for i, item in enumerate(source.get("items") or []):
                errs += _validate_key_to_path(item, f"{sp}.items[{i}]")
        elif key == "configMap":
            if not source.get("name"):
                errs.append(required(f"{sp}.name"))
            errs += _validate_mode(source, sp)
            for i, item in enumerate(source.get("items") or []):
                errs += _validate_key_to_path(item, f"{sp}.items[{i}]")
        elif key == "persistentVolumeClaim":
            if not source.get("claimName"):
                errs.append(required(f"{sp}.claimName"))
        elif key == "downwardAPI":
            errs += _validate_mode(source, sp)
            for item in source.get("items") or []:
                errs += _validate_downward_file(item, sp)
    if count == 0:
        errs.append(required(path, "must specify a volume type"))
    return errs


def _validate_downward_file(item: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not item.get("path"):
        errs.append(required(f"{path}.path"))
    errs += _local_non_reserved_path(item.get("path") or "", f"{path}.path")
    if item.get("fieldRef") is not None:
        errs += _validate_field_ref(item["fieldRef"], _VOLUME_FIELD_PATHS, f"{path}.fieldRef")
        if item.get("resourceFieldRef") is not None:
            errs.append(invalid(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif item.get("resourceFieldRef") is None:
        errs.append(required(path, "one of fieldRef and resourceFieldRef is required"))
    mode = item.get("mode")
    if mode is not None and not 0 <= mode <= 0o777:
        errs.append(invalid(f"{path}.mode", mode, _FILE_MODE))
    return errs


def _validate_volumes(volumes: Sequence[Obj], path: str) -> tuple[set[str], list[FieldError]]:
    names: set[str] = set()
    errs: list[FieldError] = []
    for i, volume in enumerate(volumes):
        vp = f"{path}[{i}]"
        el = _validate_volume_source(volume, vp)
        name = volume.get("name") or ""
        if not name:
            el.append(required(f"{vp}.name"))
        else:
            el += validate_dns1123_label(name, f"{vp}.name")
        if name in names:
            el.append(duplicate(f"{vp}.name", name))
        if el:
            errs += el
        else:
            names.add(name)
    return names, errs


# -- containers -------------------------------------------------------------------------------


def _validate_container_ports(ports: Sequence[Obj], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        pp = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs += [invalid(f"{pp}.name", name, m) for m in msgs]
            elif name in names:
                errs.append(duplicate(f"{pp}.name", name))
            else:
                names.add(name)
        container_port = port.get("containerPort") or 0
        if not container_port:
            errs.append(required(f"{pp}.containerPort"))
        else:
            errs += [invalid(f"{pp}.containerPort", container_port, m) for m in is_valid_port_num(container_port)]
        if port.get("hostPort"):
            errs += [invalid(f"{pp}.hostPort", port["hostPort"], m) for m in is_valid_port_num(port["hostPort"])]
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(required(f"{pp}.protocol"))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(f"{pp}.protocol", protocol, PROTOCOLS))
    return errs


def _env_var_name(name: str) -> list[str]:
    """IsRelaxedEnvVarName, the rule since RelaxedEnvironmentVariableValidation went beta (1.32)."""
    if any(not (" " <= ch <= "~") or ch == "=" for ch in name):
        return ["a valid environment variable name must consist only of printable ASCII characters other than '='"]
    return []


def _validate_field_ref(ref: Obj, allowed: Sequence[str], path: str) -> list[FieldError]:
    if not ref.get("apiVersion"):
        return [required(f"{path}.apiVersion")]
    field_path = ref.get("fieldPath") or ""
    if not field_path:
        return [required(f"{path}.fieldPath")]
    base, bracket, rest = field_path.partition("[")
    if bracket and rest.endswith("]") and len(rest) > 3 and rest[0] == "'" and rest[-2] == "'":
        subscript = rest[1:-2]
        if base == "metadata.annotations":
            return validate_qualified_name(subscript.lower(), path)
        if base == "metadata.labels":
            return validate_qualified_name(subscript, path)
        return [invalid(path, base, "does not support subscript")]
    if field_path not in allowed:
        return [not_supported(f"{path}.fieldPath", field_path, sorted(allowed))]
    return []


def _validate_key_selector(ref: Obj, path: str) -> list[FieldError]:
    name = ref.get("name") or ""
    errs = [invalid(f"{path}.name", name, m) for m in name_is_dns_subdomain(name, False)]
    key = ref.get("key") or ""
    if not key:
        errs.append(required(f"{path}.key"))
    else:
        errs += [invalid(f"{path}.key", key, m) for m in is_config_map_key(key)]
    return errs


def _validate_env(env: Sequence[Obj], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(env):
        ep = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            errs.append(required(f"{ep}.name"))
        else:
            errs += [invalid(f"{ep}.name", name, m) for m in _env_var_name(name)]
        source = var.get("valueFrom")
        if source is None:
            continue
        vp = f"{ep}.valueFrom"
        count = 0
        if source.get("fieldRef") is not None:
            count += 1
            errs += _validate_field_ref(source["fieldRef"], _ENV_FIELD_PATHS, f"{vp}.fieldRef")
        if source.get("resourceFieldRef") is not None:
            count += 1
            resource = source["resourceFieldRef"].get("resource") or ""
            if not resource:
                errs.append(required(f"{vp}.resourceFieldRef.resource"))
            elif resource not in _ENV_RESOURCES and not resource.startswith(("requests.hugepages-", "limits.hugepages-")):
                errs.append(not_supported(f"{vp}.resourceFieldRef.resource", resource, _ENV_RESOURCES))
        if source.get("configMapKeyRef") is not None:
            count += 1
            errs += _validate_key_selector(source["configMapKeyRef"], f"{vp}.configMapKeyRef")
        if source.get("secretKeyRef") is not None:
            count += 1
            errs += _validate_key_selector(source["secretKeyRef"], f"{vp}.secretKeyRef")
        if count == 0:
            detail = "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
            errs.append(invalid(vp, "", detail))
        elif var.get("value"):
            errs.append(invalid(vp, "", "may not be specified when `value` is not empty"))
        elif count > 1:
            errs.append(invalid(vp, "", "may not have more than one field specified at a time"))
    return errs


def _validate_env_from(sources: Sequence[Obj], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, source in enumerate(sources):
        sp = f"{path}[{i}]"
        if source.get("prefix"):
            errs += [invalid(f"{sp}.prefix", source["prefix"], m) for m in _env_var_name(source["prefix"])]
        count = 0
        for key in ("configMapRef", "secretRef"):
            ref = source.get(key)
            if ref is None:
                continue
            count += 1
            name = ref.get("name") or ""
            if not name:
                errs.append(required(f"{sp}.{key}.name"))
            else:
                errs += [invalid(f"{sp}.{key}.name", name, m) for m in name_is_dns_subdomain(name, True)]
        if count == 0:
            errs.append(invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif count > 1:
            errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _validate_volume_mounts(mounts: Sequence[Obj], volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    mount_points: set[str] = set()
    for i, mount in enumerate(mounts):
        mp = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            errs.append(required(f"{mp}.name"))
        if name not in volumes:
            errs.append(not_found(f"{mp}.name", name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.append(required(f"{mp}.mountPath"))
        if mount_path in mount_points:
            errs.append(invalid(f"{mp}.mountPath", mount_path, "must be unique"))
        mount_points.add(mount_path)
        # Kubernetes reports sub-path errors on the list's path, not the mount's.
        if mount.get("subPath"):
            errs += _local_descending_path(mount["subPath"], f"{path}.subPath")
        if mount.get("subPathExpr"):
            if mount.get("subPath"):
                errs.append(invalid(f"{mp}.subPathExpr", mount["subPathExpr"], "subPathExpr and subPath are mutually exclusive"))
            errs += _local_descending_path(mount["subPathExpr"], f"{path}.subPathExpr")
    return errs


def _validate_handler(handler: Obj, grace: int | None, path: str, allowed: Sequence[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for key in _HANDLERS:
        action = handler.get(key) if key in allowed else None
        if action is None:
            continue
        if count:
            errs.append(forbidden(f"{path}.{key}", "may not specify more than 1 handler type"))
            continue
        count += 1
        ap = f"{path}.{key}"
        if key == "exec":
            if not action.get("command"):
                errs.append(required(f"{ap}.command"))
        elif key == "httpGet":
            if not action.get("path"):
                errs.append(required(f"{ap}.path"))
            errs += validate_port_num_or_name(action.get("port", 0), f"{ap}.port")
            scheme = action.get("scheme") or ""
            if scheme not in ("HTTP", "HTTPS"):
                errs.append(not_supported(f"{ap}.scheme", scheme, ("HTTP", "HTTPS")))
        elif key == "tcpSocket":
            errs += validate_port_num_or_name(action.get("port", 0), f"{ap}.port")
        elif key == "grpc":
            errs += validate_port_num_or_name(action.get("port") or 0, f"{ap}.port")
        elif key == "sleep":
            seconds = action.get("seconds") or 0
            if grace is not None and (seconds < 0 or seconds > grace):
                detail = f"must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                errs.append(invalid(ap, seconds, detail))
    if count == 0:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _validate_probe(probe: Obj | None, grace: int | None, path: str, kind: str) -> list[FieldError]:
    if probe is None:
        return []
    errs = _validate_handler(probe, grace, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += validate_nonnegative(probe.get(key) or 0, f"{path}.{key}")
    tgps = probe.get("terminationGracePeriodSeconds")
    if tgps is not None and tgps <= 0:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", tgps, "must be greater than 0"))
    if kind == "readiness":
        if tgps is not None:
            errs.append(invalid(f"{path}.terminationGracePeriodSeconds", tgps, "must not be set for readinessProbes"))
    elif probe.get("successThreshold", 0) != 1:
        errs.append(invalid(f"{path}.successThreshold", probe.get("successThreshold", 0), "must be 1"))
    return errs


def _validate_lifecycle(lifecycle: Obj, grace: int | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("postStart", "preStop"):
        if lifecycle.get(key) is not None:
            errs += _validate_handler(lifecycle[key], grace, f"{path}.{key}", ("exec", "httpGet", "tcpSocket", "sleep"))
    return errs


def _validate_probes(c: Obj, grace: int | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if c.get("lifecycle") is not None:
        errs += _validate_lifecycle(c["lifecycle"], grace, f"{path}.lifecycle")
    errs += _validate_probe(c.get("livenessProbe"), grace, f"{path}.livenessProbe", "liveness")
    errs += _validate_probe(c.get("readinessProbe"), grace, f"{path}.readinessProbe", "readiness")
    errs += _validate_probe(c.get("startupProbe"), grace, f"{path}.startupProbe", "startup")
    return errs


def _validate_container_common(c: Obj, volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = c.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs += validate_dns1123_label(name, f"{path}.name")
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    policy = c.get("terminationMessagePolicy") or ""
    if not policy:
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif policy not in _TERMINATION_MESSAGE_POLICIES:
        errs.append(not_supported(f"{path}.terminationMessagePolicy", policy, _TERMINATION_MESSAGE_POLICIES))
    errs += _validate_container_ports(c.get("ports") or [], f"{path}.ports")
    errs += _validate_env(c.get("env") or [], f"{path}.env")
    errs += _validate_env_from(c.get("envFrom") or [], f"{path}.envFrom")
    errs += _validate_volume_mounts(c.get("volumeMounts") or [], volumes, f"{path}.volumeMounts")
    pull = c.get("imagePullPolicy") or ""
    if not pull:
        errs.append(required(f"{path}.imagePullPolicy"))
    elif pull not in _PULL_POLICIES:
        errs.append(not_supported(f"{path}.imagePullPolicy", pull, _PULL_POLICIES))
    return errs


def _host_port_conflicts(containers: Sequence[Obj], path: str, seen: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    for ci, c in enumerate(containers):
        for pi, port in enumerate(c.get("ports") or []):
            if not port.get("hostPort"):
                continue
            key = f"{port.get('protocol') or ''}/{port.get('hostIP') or ''}/{port['hostPort']}"
            if key in seen:
                errs.append(duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key))
            seen.add(key)
    return errs


def _validate_containers(spec: Obj, volumes: set[str], path: str) -> list[FieldError]:
    containers: list[Obj] = spec.get("containers") or []
    if not containers:
        return [required(f"{path}.containers")]
    grace = spec.get("terminationGracePeriodSeconds")
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, c in enumerate(containers):
        cp = f"{path}.containers[{i}]"
        errs += _validate_container_common(c, volumes, cp)
        name = c.get("name") or ""
        if name in names:
            errs.append(duplicate(f"{cp}.name", name))
        names.add(name)
        errs += _validate_probes(c, grace, cp)
        if c.get("restartPolicy") is not None:
            errs.append(forbidden(f"{cp}.restartPolicy", "may not be set for non-init containers"))
    return errs + _host_port_conflicts(containers, f"{path}.containers", set())


def _validate_init_containers(spec: Obj, volumes: set[str], path: str) -> list[FieldError]:
    grace = spec.get("terminationGracePeriodSeconds")
    names = {c.get("name") or "" for c in spec.get("containers") or []}
    errs: list[FieldError] = []
    for i, c in enumerate(spec.get("initContainers") or []):
        cp = f"{path}.initContainers[{i}]"
        errs += _validate_container_common(c, volumes, cp)
        restart = c.get("restartPolicy")
        if restart is not None and restart != "Always":
            errs.append(not_supported(f"{cp}.restartPolicy", restart, ["Always"]))
        name = c.get("name") or ""
        if name in names:
            errs.append(duplicate(f"{cp}.name", name))
        elif name:
            names.add(name)
        # Init containers run one by one, so only their own host ports may collide.
        errs += _host_port_conflicts([c], f"{path}.initContainers", set())
        if restart == "Always":
            errs += _validate_probes(c, grace, cp)
        else:
            for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(key) is not None:
                    errs.append(forbidden(f"{cp}.{key}", "may not be set for init containers without restartPolicy=Always"))
    return errs


# -- the pod spec -----------------------------------------------------------------------------


def _validate_tolerations(tolerations: Sequence[Obj], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in enumerate(tolerations):
        tp = f"{path}[{i}]"
        key, operator, value = t.get("key") or "", t.get("operator") or "", t.get("value") or ""
        effect = t.get("effect") or ""
        if key:
            errs += validate_qualified_name(key, f"{tp}.key")
        if not key and operator != "Exists":
            errs.append(invalid(f"{tp}.operator", operator,
                                'operator must be Exists when `key` is empty, which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(invalid(f"{tp}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if operator in ("Equal", ""):
            msgs = is_valid_label_value(value)
            if msgs:
                errs.append(invalid(f"{tp}.operator", value, ";".join(msgs)))
        elif operator == "Exists":
            if value:
                errs.append(invalid(f"{tp}.operator", value, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{tp}.operator", operator, ["Equal", "Exists"]))
        if effect and effect not in _TOLERATION_EFFECTS:
            errs.append(not_supported(f"{tp}.effect", effect, _TOLERATION_EFFECTS))
    return errs


def _validate_dns_config(spec: Obj, path: str) -> list[FieldError]:
    config = spec.get("dnsConfig")
    if spec.get("dnsPolicy") == "None":
        if config is None:
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not config.get("nameservers"):
            return [required(f"{path}.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    if config is None:
        return []
    errs: list[FieldError] = []
    for i, ns in enumerate(config.get("nameservers") or []):
        errs += validate_ip(ns, f"{path}.nameservers[{i}]")
    for i, search in enumerate(config.get("searches") or []):
        # RelaxedDNSSearchValidation (beta, on in 1.33): "." and underscores are allowed.
        if search != ".":
            name = search.removesuffix(".").replace("_", "a")
            errs += [invalid(f"{path}.searches[{i}]", search.removesuffix("."), m) for m in is_dns1123_subdomain(name)]
    for i, option in enumerate(config.get("options") or []):
        if not option.get("name"):
            errs.append(required(f"{path}.options[{i}]", "must not be empty"))
    return errs


def validate_pod_spec(spec: Obj, path: str, *, is_pod: bool) -> list[FieldError]:
    """ValidatePodSpec for the parts kubelite runs; ``is_pod`` is opts.ResourceIsPod."""
    errs: list[FieldError] = []
    if spec.get("terminationGracePeriodSeconds") is None:
        errs.append(required(f"{path}.terminationGracePeriodSeconds"))
    volumes, volume_errs = _validate_volumes(spec.get("volumes") or [], f"{path}.volumes")
    errs += volume_errs
    errs += _validate_containers(spec, volumes, path)
    errs += _validate_init_containers(spec, volumes, path)
    if spec.get("hostNetwork"):
        for ci, c in enumerate(spec.get("containers") or []):
            for pi, port in enumerate(c.get("ports") or []):
                hp, cp = port.get("hostPort") or 0, port.get("containerPort") or 0
                if (is_pod or hp) and hp != cp:
                    errs.append(invalid(f"{path}.containers[{ci}].ports[{pi}].hostPort", hp,
                                        "must match `containerPort` when `hostNetwork` is true"))
    restart = spec.get("restartPolicy") or ""
    if not restart:
        errs.append(required(f"{path}.restartPolicy"))
    elif restart not in _RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", restart, _RESTART_POLICIES))
    dns = spec.get("dnsPolicy") or ""
    if not dns:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dns not in _DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dns, _DNS_POLICIES))
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for i, secret in enumerate(spec.get("imagePullSecrets") or []):
        if set(secret) - {"name"}:
            errs.append(invalid(f"{path}.imagePullSecrets[{i}]", secret, "only name may be set"))
    errs += _validate_dns_config(spec, f"{path}.dnsConfig")
    for i, gate in enumerate(spec.get("readinessGates") or []):
        errs += validate_qualified_name(gate.get("conditionType") or "", f"{path}.readinessGates[{i}].conditionType")
    if spec.get("serviceAccountName"):
        sa = spec["serviceAccountName"]
        errs += [invalid(f"{path}.serviceAccountName", sa, m) for m in is_dns1123_subdomain(sa)]
    if spec.get("nodeName"):
        errs += [invalid(f"{path}.nodeName", spec["nodeName"], m) for m in is_dns1123_subdomain(spec["nodeName"])]
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= _MAX_INT32:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", deadline, inclusive_range_error(1, _MAX_INT32)))
    if spec.get("hostname"):
        errs += validate_dns1123_label(spec["hostname"], f"{path}.hostname")
    if spec.get("subdomain"):
        errs += validate_dns1123_label(spec["subdomain"], f"{path}.subdomain")
    errs += _validate_tolerations(spec.get("tolerations") or [], f"{path}.tolerations")
    for i, alias in enumerate(spec.get("hostAliases") or []):
        errs += validate_ip(alias.get("ip") or "", f"{path}.hostAliases[{i}].ip")
        for j, host in enumerate(alias.get("hostnames") or []):
            errs += validate_dns1123_subdomain(host, f"{path}.hostAliases[{i}].hostnames[{j}]")
    if spec.get("priorityClassName"):
        pc = spec["priorityClassName"]
        errs += [invalid(f"{path}.priorityClassName", pc, m) for m in is_dns1123_subdomain(pc)]
    preemption = spec.get("preemptionPolicy")
    if preemption is not None and preemption not in ("PreemptLowerPriority", "Never"):
        if not preemption:
            errs.append(required(f"{path}.preemptionPolicy"))
        else:
            errs.append(not_supported(f"{path}.preemptionPolicy", preemption, ["PreemptLowerPriority", "Never"]))
    return errs


def validate_pod_template(template: Obj | None, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec (the labels path is ``<path>.labels``, as in Kubernetes)."""
    if template is None:
        return [required(path)]
    meta: Obj = template.get("metadata") or {}
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    spec: Obj = template.get("spec") or {}
    errs += validate_pod_spec(spec, f"{path}.spec", is_pod=False)
    if spec.get("ephemeralContainers"):
        errs.append(forbidden(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template"))
    return errs


# -- Pod --------------------------------------------------------------------------------------


def _validate_pod_metadata_and_spec(pod: Obj) -> list[FieldError]:
    meta: Obj = pod.get("metadata") or {}
    spec: Obj = pod.get("spec") or {}
    errs = object_meta(meta, namespaced=True, name_validator=name_is_dns_subdomain)
    errs += validate_pod_spec(spec, "spec", is_pod=True)
    if not spec.get("serviceAccountName"):
        for vi, volume in enumerate(spec.get("volumes") or []):
            for si, source in enumerate((volume.get("projected") or {}).get("sources") or []):
                if source.get("serviceAccountToken") is not None:
                    errs.append(forbidden(f"spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken",
                                          "must not be specified when serviceAccountName is not set"))
    for key in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(key) or []):
            image = c.get("image") or ""
            if image != image.strip():
                errs.append(invalid(f"spec.{key}[{i}].image", image, "must not have leading or trailing whitespace"))
    return errs


def _semantic(value: Any) -> Any:
    """Kubernetes' semantic equality: unset, null and empty lists or maps are all the same."""
    if isinstance(value, Mapping):
        return {k: _semantic(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _spec_diff(old: Obj, new: Obj) -> str:
    """A readable stand-in for the cmp.Diff Kubernetes appends (its Go syntax is not reproduced)."""
    lines = ["  core.PodSpec{"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key in old:
                lines.append(f"- \t{key}: {old[key]!r},")
            if key in new:
                lines.append(f"+ \t{key}: {new[key]!r},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def _validate_pod_update(new: Obj, old: Obj) -> list[FieldError]:
    spec: Obj = new.get("spec") or {}
    old_spec: Obj = old.get("spec") or {}
    errs: list[FieldError] = []
    for key in ("containers", "initContainers"):
        containers: list[Obj] = spec.get(key) or []
        if len(containers) != len(old_spec.get(key) or []):
            errs.append(forbidden(f"spec.{key}", "pod updates may not add or remove containers"))
            return errs
        for i, c in enumerate(containers):
            image = c.get("image") or ""
            if not image:
                errs.append(required(f"spec.{key}[{i}].image"))
            if image != image.strip():
                errs.append(invalid(f"spec.{key}[{i}].image", image, "must not have leading or trailing whitespace"))
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if deadline is not None:
        if not 0 <= deadline <= _MAX_INT32:
            errs.append(invalid("spec.activeDeadlineSeconds", deadline, inclusive_range_error(0, _MAX_INT32)))
            return errs
        if old_deadline is not None and old_deadline < deadline:
            errs.append(invalid("spec.activeDeadlineSeconds", deadline, "must be less than or equal to previous value"))
            return errs
    elif old_deadline is not None:
        errs.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
    tolerations: list[Obj] = spec.get("tolerations") or []
    for old_t in old_spec.get("tolerations") or []:
        bare = {k: v for k, v in old_t.items() if k != "tolerationSeconds"}
        if not any({k: v for k, v in t.items() if k != "tolerationSeconds"} == bare for t in tolerations):
            errs.append(forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"))
            break
    else:
        errs += _validate_tolerations(tolerations, "spec.tolerations")
    old_gates = {g.get("name") for g in old_spec.get("schedulingGates") or []}
    for i, gate in enumerate(spec.get("schedulingGates") or []):
        if gate.get("name") not in old_gates:
            errs.append(forbidden(f"spec.schedulingGates[{i}].name",
                                  f"only deletion is allowed, but found new scheduling gate '{gate.get('name')}'"))

    # Everything else must be unchanged: compare with the updatable fields put back to old.
    munged = {k: v for k, v in spec.items()}
    for key in ("containers", "initContainers"):
        if key in munged:
            munged[key] = [{**c, "image": o.get("image")} for c, o in zip(spec[key], old_spec.get(key) or [], strict=True)]
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged.pop(key, None)
        if key in old_spec:
            munged[key] = old_spec[key]
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if _semantic(munged) != _semantic(old_spec):
        detail = "pod updates may not change fields other than " + ",".join(UPDATABLE_POD_SPEC_FIELDS)
        errs.append(forbidden("spec", detail + "\n" + _spec_diff(_semantic(old_spec), _semantic(munged))))
    return errs


def validate_pod(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidatePodCreate on create, ValidatePodUpdate on update (metadata included)."""
    spec: Obj = obj.get("spec") or {}
    if old is None:
        errs = _validate_pod_metadata_and_spec(obj)
        if spec.get("ephemeralContainers"):
            errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
        if spec.get("nodeName") and spec.get("schedulingGates"):
            errs.append(forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
        return errs
    errs = object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
    errs += _validate_pod_metadata_and_spec(obj)
    return errs + _validate_pod_update(obj, old)
