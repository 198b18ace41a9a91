"""The per-kind printers: kube-apiserver's column definitions and row cells, kind by kind.

A port of the handlers in Kubernetes' ``pkg/printers/internalversion/printers.go`` for the
kinds kubelite serves. kube-apiserver always prints "wide" (``GenerateOptions{Wide: true}``)
and lets kubectl drop the priority-1 columns, so every row here carries every cell.

Go prints the *internal* types, decoded from storage with defaulting applied; the objects
here are the stored v1 JSON, so where a field would have been defaulted (a Service's type, a
port's protocol, a Deployment's replicas, a Secret's type) the default is read in its place.
Column descriptions are the API's own doc strings, taken from the bundled OpenAPI schemas so
that they stay word for word what kube-apiserver sends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubelite.api import schema
from kubelite.api.printers.format import (
    NONE,
    UNKNOWN,
    format_label_selector,
    format_labels,
    human_duration,
    parse_time,
    rfc3339_utc,
    selector_string,
    since,
)
from kubelite.api.resource import format_quantity, parse_quantity, quantity_format
from kubelite.api.types import Obj

Row = dict[str, Any]


@dataclass(frozen=True)
class Printer:
    columns: tuple[Obj, ...]
    row: Callable[[Obj, datetime], Row]
    # The order a list's rows are printed in, when the printer sorts (FlowSchemas do).
    order: Callable[[Obj], Any] | None = None


def _doc(definition: str, prop: str) -> str:
    props = schema.definitions()[f"io.k8s.{definition}"]["properties"]
    return str(props[prop].get("description", ""))


def _col(name: str, type_: str, description: str, priority: int = 0, format_: str = "") -> Obj:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


def _meta_doc(prop: str) -> str:
    return _doc("apimachinery.pkg.apis.meta.v1.ObjectMeta", prop)


def _name_col(priority: int = 0) -> Obj:
    return _col("Name", "string", _meta_doc("name"), priority, "name")


def _age_col() -> Obj:
    return _col("Age", "string", _meta_doc("creationTimestamp"))


def _containers_cols(selector_doc: str) -> list[Obj]:
    return [
        _col("Containers", "string", "Names of each container in the template.", 1),
        _col("Images", "string", "Images referenced by each container in the template.", 1),
        _col("Selector", "string", selector_doc, 1),
    ]


def _age(obj: Obj, now: datetime) -> str:
    return since(obj.get("metadata", {}).get("creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _cells(*cells: Any) -> Row:
    return {"cells": list(cells)}


def _layout_containers(containers: list[Obj]) -> tuple[str, str]:
    """``layoutContainerCells``: container names and images, each comma-joined."""
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


# --- Pod ---------------------------------------------------------------------------------

_POD_SUCCEEDED = {
    "type": "Completed",
    "status": "True",
    "reason": "Succeeded",
    "message": "The pod has completed successfully.",
}
_POD_FAILED = {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
# pkg/util/node.NodeUnreachablePodReason: the node controller's mark on pods of a lost node.
_NODE_LOST = "NodeLost"


def _restartable(container: Obj | None) -> bool:
    """A sidecar: an init container with ``restartPolicy: Always``."""
    return container is not None and container.get("restartPolicy") == "Always"


def _later(current: datetime | None, candidate: Any) -> datetime | None:
    """Keep the later of a running maximum and a ``finishedAt``, as ``Time.Before`` does."""
    t = parse_time(candidate)
    if t is None:
        return current
    return t if current is None or current < t else current


def _last_finished(status: Obj) -> Any:
    return ((status.get("lastState") or {}).get("terminated") or {}).get("finishedAt")


def _first_condition_true(conditions: list[Obj], type_: str) -> bool:
    """The first condition of the type decides, as ``isPodInitializedConditionTrue`` reads it."""
    for c in conditions:
        if c.get("type") == type_:
            return bool(c.get("status") == "True")
    return False


def _has_true_condition(conditions: list[Obj], type_: str) -> bool:
    """Any condition of the type that is True, as ``hasPodReadyCondition`` reads it."""
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def _terminated_reason(terminated: Obj, prefix: str) -> str:
    if terminated.get("reason"):
        reason: str = terminated["reason"]
        return prefix + reason
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _pod_row(pod: Obj, now: datetime) -> Row:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    meta = pod.get("metadata") or {}
    conditions = status.get("conditions") or []
    init_specs = spec.get("initContainers") or []

    total = len(spec.get("containers") or [])
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    row: Row = {}
    if phase == "Succeeded":
        row["conditions"] = [dict(_POD_SUCCEEDED)]
    elif phase == "Failed":
        row["conditions"] = [dict(_POD_FAILED)]

    by_name = {c.get("name"): c for c in init_specs}
    total += sum(1 for c in init_specs if _restartable(c))

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        last_restart = _later(last_restart, _last_finished(cs))
        sidecar = _restartable(by_name.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar_restart = _later(last_sidecar_restart, _last_finished(cs))
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _first_condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # Reversed so that the first container's state is the one left in `reason`.
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, _last_finished(cs))
            state = cs.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated, "")
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # A container that exited 0 while another still runs: the pod is not "Completed".
        if reason == "Completed" and has_running:
            reason = "Running" if _has_true_condition(conditions, "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == _NODE_LOST:
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"

    # podIP wins over podIPs when both are set, as the v1-to-internal conversion decides.
    pod_ips = status.get("podIPs") or [{}]
    pod_ip = status.get("podIP") or pod_ips[0].get("ip") or NONE
    gates = spec.get("readinessGates") or []
    gates_text = NONE
    if gates:
        true_gates = 0
        for gate in gates:
            for c in conditions:
                if c.get("type") == gate.get("conditionType"):
                    true_gates += c.get("status") == "True"
                    break
        gates_text = f"{true_gates}/{len(gates)}"

    row["cells"] = [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod, now),
        pod_ip,
        spec.get("nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        gates_text,
    ]
    return row


# --- Service, Endpoints, EndpointSlice ----------------------------------------------------

_LOAD_BALANCER_WIDTH = 16


def _load_balancer_ips(svc: Obj) -> str:
    """``loadBalancerStatusStringer`` in wide mode: distinct IPs/hostnames, sorted."""
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    found = {i.get("ip") or i.get("hostname") for i in ingress} - {None, ""}
    return ",".join(sorted(str(x) for x in found))


def _external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    type_ = spec.get("type") or "ClusterIP"
    if type_ in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else NONE
    if type_ == "LoadBalancer":
        lb = _load_balancer_ips(svc)
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if type_ == "ExternalName":
        return str(spec.get("externalName", ""))
    return UNKNOWN


def _port_string(ports: list[Obj]) -> str:
    pieces = []
    for p in ports:
        protocol = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            pieces.append(f"{p.get('port', 0)}:{p['nodePort']}/{protocol}")
        else:
            pieces.append(f"{p.get('port', 0)}/{protocol}")
    return ",".join(pieces)


def _service_row(svc: Obj, now: datetime) -> Row:
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return _cells(
        _name(svc),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else NONE,
        _external_ip(svc),
        _port_string(spec.get("ports") or []) or NONE,
        _age(svc, now),
        format_labels(spec.get("selector")),
    )


_MAX_LISTED = 3


def _join_host_port(host: str, port: int) -> str:
    """``net.JoinHostPort``: brackets around hosts containing a colon (IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _format_endpoints(ep: Obj) -> str:
    """``formatEndpoints``: the first three ``ip:port``, then ``+ N more...``."""
    subsets = ep.get("subsets") or []
    if not subsets:
        return NONE
    listed: list[str] = []
    count = 0
    for ss in subsets:
        addresses = ss.get("addresses") or []
        # Headless Services may have no ports: list the bare IPs.
        targets = [None] if not ss.get("ports") else [p.get("port", 0) for p in ss["ports"]]
        for port in targets:
            count += len(addresses)
            for addr in addresses:
                if len(listed) == _MAX_LISTED:
                    break
                ip = addr.get("ip", "")
                listed.append(ip if port is None else _join_host_port(ip, port))
    text = ",".join(listed)
    return f"{text} + {count - _MAX_LISTED} more..." if count > _MAX_LISTED else text


def _list_with_more(items: list[str]) -> str:
    """``listWithMoreString`` over all items: three shown, the rest counted, ``<unset>`` if none."""
    text = ",".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        return f"{text} + {len(items) - _MAX_LISTED} more..."
    return text or "<unset>"


def _endpoints_row(ep: Obj, now: datetime) -> Row:
    return _cells(_name(ep), _format_endpoints(ep), _age(ep, now))


def _slice_port(p: Obj) -> str:
    if p.get("port") is not None:
        return str(p["port"])
    if p.get("name") is not None:
        return str(p["name"])
    return "*"


def _endpoint_slice_row(es: Obj, now: datetime) -> Row:
    ports = [_slice_port(p) for p in es.get("ports") or []]
    addresses = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return _cells(
        _name(es),
        es.get("addressType", ""),
        _list_with_more(ports),
        _list_with_more(addresses),
        _age(es, now),
    )


# --- Simple kinds -------------------------------------------------------------------------


def _namespace_row(ns: Obj, now: datetime) -> Row:
    return _cells(_name(ns), (ns.get("status") or {}).get("phase") or "Active", _age(ns, now))


def _configmap_row(cm: Obj, now: datetime) -> Row:
    return _cells(_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), _age(cm, now))


def _secret_row(secret: Obj, now: datetime) -> Row:
    # stringData is merged into data on conversion; count keys once.
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return _cells(_name(secret), secret.get("type") or "Opaque", len(keys), _age(secret, now))


def _service_account_row(sa: Obj, now: datetime) -> Row:
    return _cells(_name(sa), len(sa.get("secrets") or []), _age(sa, now))


def _lease_row(lease: Obj, now: datetime) -> Row:
    return _cells(_name(lease), (lease.get("spec") or {}).get("holderIdentity") or "", _age(lease, now))


def _ip_address_row(ip: Obj, now: datetime) -> Row:
    parent = (ip.get("spec") or {}).get("parentRef")
    parent_text = NONE
    if parent is not None:
        resource, group = parent.get("resource", ""), parent.get("group", "")
        parent_text = (f"{resource}.{group}" if group else resource).lower()
        if parent.get("namespace"):
            parent_text += "/" + parent["namespace"]
        parent_text += "/" + parent.get("name", "")
    # Kubernetes prints an age cell although the table defines no AGE column; kubectl
    # ignores cells beyond the columns, so the extra cell is harmless and kept for fidelity.
    return _cells(_name(ip), parent_text, _age(ip, now))


def _service_cidr_row(cidr: Obj, now: datetime) -> Row:
    return _cells(_name(cidr), ",".join((cidr.get("spec") or {}).get("cidrs") or []), _age(cidr, now))


# --- Node ---------------------------------------------------------------------------------

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def _node_roles(node: Obj) -> str:
    roles: set[str] = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith(_ROLE_PREFIX):
            if key[len(_ROLE_PREFIX) :]:
                roles.add(key[len(_ROLE_PREFIX) :])
        elif key == _ROLE_LABEL and value:
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def _node_address(node: Obj, type_: str) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == type_:
            return str(a.get("address", ""))
    return NONE


def _node_row(node: Obj, now: datetime) -> Row:
    status = node.get("status") or {}
    info = status.get("nodeInfo") or {}
    # The last Ready condition wins, as Go's map of conditions by type keeps the last one.
    ready = None
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            ready = c
    states = [] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if not states:
        states.append("Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    return _cells(
        _name(node),
        ",".join(states),
        _node_roles(node),
        _age(node, now),
        info.get("kubeletVersion", ""),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        info.get("osImage") or UNKNOWN,
        info.get("kernelVersion") or UNKNOWN,
        info.get("containerRuntimeVersion") or UNKNOWN,
    )


# --- Event (core/v1 and events.k8s.io/v1 share one printer, as they share storage) ---------


def _core_event_view(ev: Obj) -> Obj:
    """An events.k8s.io/v1 Event in core/v1 field names (``Convert_v1_Event_To_core_Event``)."""
    return {
        "metadata": ev.get("metadata") or {},
        "involvedObject": ev.get("regarding") or {},
        "source": ev.get("deprecatedSource") or {},
        "message": ev.get("note", ""),
        "firstTimestamp": ev.get("deprecatedFirstTimestamp"),
        "lastTimestamp": ev.get("deprecatedLastTimestamp"),
        "count": ev.get("deprecatedCount", 0),
        "eventTime": ev.get("eventTime"),
        "series": ev.get("series"),
        "reportingController": ev.get("reportingController", ""),
        "reportingInstance": ev.get("reportingInstance", ""),
        "type": ev.get("type", ""),
        "reason": ev.get("reason", ""),
    }


def _event_row(ev: Obj, now: datetime) -> Row:
    first = since(ev.get("firstTimestamp"), now)
    if parse_time(ev.get("firstTimestamp")) is None:
        first = since(ev.get("eventTime"), now)
    last = first if parse_time(ev.get("lastTimestamp")) is None else since(ev.get("lastTimestamp"), now)
    count = ev.get("count") or 0
    if ev.get("series") is not None:
        last = since(ev["series"].get("lastObservedTime"), now)
        count = ev["series"].get("count", 0)
    elif count == 0:
        # Events of the new API that happened once carry no count.
        count = 1
    involved = ev.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingController") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    return _cells(
        last,
        ev.get("type", ""),
        ev.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {instance}" if instance else component,
        str(ev.get("message", "")).strip(),
        first,
        count,
        _name(ev),
    )


def _events_k8s_io_row(ev: Obj, now: datetime) -> Row:
    return _event_row(_core_event_view(ev), now)


# --- Deployment, ReplicaSet ---------------------------------------------------------------


def _template_containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    return list((((spec.get("template") or {}).get("spec")) or {}).get("containers") or [])


def _deployment_row(d: Obj, now: datetime) -> Row:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    try:
        selector = selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    names, images = _layout_containers(_template_containers(d))
    return _cells(
        _name(d),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(d, now),
        names,
        images,
        selector,
    )


def _replicaset_row(rs: Obj, now: datetime) -> Row:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _layout_containers(_template_containers(rs))
    return _cells(
        _name(rs),
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(rs, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    )


# --- Job, CronJob ---------------------------------------------------------------------------


def _has_true_job_condition(job: Obj, type_: str) -> bool:
    """hasJobCondition: a condition of that type with status True."""
    return any(c.get("type") == type_ and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _job_row(job: Obj, now: datetime) -> Row:
    """printJob: the first terminal-ish state wins (Complete, Failed, Terminating, Suspended,
    FailureTarget), else Running; Duration runs from startTime to completionTime (or now)."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif int(spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or now) - start)
    if _has_true_job_condition(job, "Complete"):
        state = "Complete"
    elif _has_true_job_condition(job, "Failed"):
        state = "Failed"
    elif (job.get("metadata") or {}).get("deletionTimestamp"):
        state = "Terminating"
    elif _has_true_job_condition(job, "Suspended"):
        state = "Suspended"
    elif _has_true_job_condition(job, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _layout_containers(_template_containers(job))
    return _cells(_name(job), state, completions, duration, _age(job, now), names, images,
                  format_label_selector(spec.get("selector")))


def _cronjob_row(cj: Obj, now: datetime) -> Row:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    last = status.get("lastScheduleTime")
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _layout_containers(_template_containers({"spec": job_spec}))
    # printBoolPtr: a nil pointer prints <unset>; the API server defaults suspend, so it is rare.
    suspend = spec.get("suspend")
    return _cells(
        _name(cj),
        spec.get("schedule", ""),
        spec.get("timeZone") if spec.get("timeZone") is not None else NONE,
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(status.get("active") or []),
        NONE if not last else since(last, now),
        _age(cj, now),
        names,
        images,
        format_label_selector(job_spec.get("selector")),
    )


# --- StatefulSet, DaemonSet, ControllerRevision --------------------------------------------


def _statefulset_row(sts: Obj, now: datetime) -> Row:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    names, images = _layout_containers(_template_containers(sts))
    return _cells(
        _name(sts), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", _age(sts, now), names, images
    )


def _daemonset_row(ds: Obj, now: datetime) -> Row:
    spec, status = ds.get("spec") or {}, ds.get("status") or {}
    names, images = _layout_containers(_template_containers(ds))
    node_selector = (((spec.get("template") or {}).get("spec")) or {}).get("nodeSelector")
    return _cells(
        _name(ds),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        format_labels(node_selector),
        _age(ds, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    )


def _controller_revision_row(cr: Obj, now: datetime) -> Row:
    """The controller prints as ``kind.group/name`` (formatResourceName of the owner's GroupKind)."""
    controller = NONE
    for ref in (cr.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            kind = f"{ref.get('kind', '')}.{group}" if group else str(ref.get("kind", ""))
            controller = f"{kind.lower()}/{ref.get('name', '')}" if kind else str(ref.get("name", ""))
            break
    return _cells(_name(cr), controller, cr.get("revision", 0), _age(cr, now))


# --- ReplicationController, PodTemplate, ComponentStatus ------------------------------------


def _replication_controller_row(rc: Obj, now: datetime) -> Row:
    spec, status = rc.get("spec") or {}, rc.get("status") or {}
    names, images = _layout_containers(_template_containers(rc))
    return _cells(
        _name(rc),
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(rc, now),
        names,
        images,
        format_labels(spec.get("selector")),
    )


def _pod_template_row(pt: Obj, now: datetime) -> Row:
    template = pt.get("template") or {}
    names, images = _layout_containers(list((template.get("spec") or {}).get("containers") or []))
    return _cells(_name(pt), names, images, format_labels((template.get("metadata") or {}).get("labels")))


def _component_status_row(cs: Obj, now: datetime) -> Row:
    status, message, error = "Unknown", "", ""
    for condition in cs.get("conditions") or []:
        if condition.get("type") == "Healthy":
            status = "Healthy" if condition.get("status") == "True" else "Unhealthy"
            message, error = condition.get("message", ""), condition.get("error", "")
            break
    return _cells(_name(cs), status, message, error)


# --- scheduling, storage, flow control, aggregation --------------------------------------------


def _priority_class_row(pc: Obj, now: datetime) -> Row:
    return _cells(_name(pc), int(pc.get("value", 0)), bool(pc.get("globalDefault", False)), _age(pc, now),
                  pc.get("preemptionPolicy") or "")


def _csi_driver_row(d: Obj, now: datetime) -> Row:
    spec = d.get("spec") or {}
    tokens = spec.get("tokenRequests")
    modes = ",".join(spec.get("volumeLifecycleModes") or []) or NONE
    return _cells(
        _name(d),
        bool(spec.get("attachRequired", True)),
        bool(spec.get("podInfoOnMount", False)),
        bool(spec.get("storageCapacity", False)),
        "<unset>" if tokens is None else ",".join(t.get("audience", "") for t in tokens),
        bool(spec.get("requiresRepublish", False)),
        modes,
        _age(d, now),
    )


def _csi_node_row(n: Obj, now: datetime) -> Row:
    return _cells(_name(n), len((n.get("spec") or {}).get("drivers") or []), _age(n, now))


def _csi_storage_capacity_row(c: Obj, now: datetime) -> Row:
    capacity = c.get("capacity")
    return _cells(_name(c), c.get("storageClassName", ""), "<unset>" if capacity is None else str(capacity))


def _volume_attachment_row(va: Obj, now: datetime) -> Row:
    spec = va.get("spec") or {}
    return _cells(
        _name(va),
        spec.get("attacher", ""),
        (spec.get("source") or {}).get("persistentVolumeName") or "",
        spec.get("nodeName", ""),
        bool((va.get("status") or {}).get("attached", False)),
        _age(va, now),
    )


# --- persistent storage (printPersistentVolume, printPersistentVolumeClaim, printStorageClass) ---------

_ACCESS_MODE_SHORT = (
    ("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP"),
)
_BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class",
)


def _access_modes(modes: list[str] | None) -> str:
    """helper.GetAccessModesAsString: short names in a fixed order, whatever the object's order."""
    present = set(modes or [])
    return ",".join(short for mode, short in _ACCESS_MODE_SHORT if mode in present)


def _storage_quantity(resources: Obj | None) -> str:
    value = (resources or {}).get("storage")
    return _canonical(value) if value is not None else "0"


def _volume_class(obj: Obj) -> str:
    """GetPersistentVolume(Claim)Class: the beta annotation wins over spec.storageClassName."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if _BETA_CLASS_ANNOTATION in annotations:
        return str(annotations[_BETA_CLASS_ANNOTATION])
    return str((obj.get("spec") or {}).get("storageClassName") or "")


def _terminating_phase(obj: Obj) -> str:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return str((obj.get("status") or {}).get("phase") or "")


def _persistent_volume_row(pv: Obj, now: datetime) -> Row:
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    return _cells(
        _name(pv),
        _storage_quantity(spec.get("capacity")),
        _access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "",
        _terminating_phase(pv),
        claim,
        _volume_class(pv),
        spec.get("volumeAttributesClassName") or "<unset>",
        (pv.get("status") or {}).get("reason") or "",
        _age(pv, now),
        spec.get("volumeMode") or "<unset>",
    )


def _persistent_volume_claim_row(pvc: Obj, now: datetime) -> Row:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    capacity = access = ""
    if spec.get("volumeName"):
        # Go reads the status capacity's quantity even when absent: its zero prints "0".
        access = _access_modes(status.get("accessModes"))
        capacity = _storage_quantity(status.get("capacity"))
    return _cells(
        _name(pvc),
        _terminating_phase(pvc),
        spec.get("volumeName") or "",
        capacity,
        access,
        _volume_class(pvc),
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(pvc, now),
        spec.get("volumeMode") or "<unset>",
    )


def is_default_class(sc: Obj) -> bool:
    """storageutil.IsDefaultAnnotation: either the GA or the beta annotation says "true"."""
    annotations = (sc.get("metadata") or {}).get("annotations") or {}
    return any(annotations.get(a) == "true" for a in _DEFAULT_CLASS_ANNOTATIONS)


def _storage_class_row(sc: Obj, now: datetime) -> Row:
    name = _name(sc) + (" (default)" if is_default_class(sc) else "")
    return _cells(
        name,
        sc.get("provisioner", ""),
        sc.get("reclaimPolicy") or "Delete",
        sc.get("volumeBindingMode") or "Immediate",
        bool(sc.get("allowVolumeExpansion", False)),
        _age(sc, now),
    )


def _flow_schema_row(fs: Obj, now: datetime) -> Row:
    spec = fs.get("spec") or {}
    method = (spec.get("distinguisherMethod") or {}).get("type") if spec.get("distinguisherMethod") else None
    dangling = next((str(c.get("status", "")) for c in (fs.get("status") or {}).get("conditions") or []
                     if c.get("type") == "Dangling"), "?")
    return _cells(
        _name(fs),
        (spec.get("priorityLevelConfiguration") or {}).get("name", ""),
        int(spec.get("matchingPrecedence", 0)),
        method or NONE,
        _age(fs, now),
        dangling,
    )


def _flow_schema_order(fs: Obj) -> tuple[int, str]:
    """FlowSchemaSequence: by matching precedence, then by name."""
    return int((fs.get("spec") or {}).get("matchingPrecedence", 0)), _name(fs)


def _priority_level_row(pl: Obj, now: datetime) -> Row:
    spec = pl.get("spec") or {}
    limited = spec.get("limited")
    shares: Any = NONE
    queues: Any = NONE
    hand: Any = NONE
    length: Any = NONE
    if isinstance(limited, dict):
        shares = limited.get("nominalConcurrencyShares", 0)
        queuing = (limited.get("limitResponse") or {}).get("queuing")
        if isinstance(queuing, dict):
            queues, hand, length = (queuing.get(k, 0) for k in ("queues", "handSize", "queueLengthLimit"))
    return _cells(_name(pl), spec.get("type", ""), shares, queues, hand, length, _age(pl, now))


def _api_service_row(svc: Obj, now: datetime) -> Row:
    spec = svc.get("spec") or {}
    ref = spec.get("service")
    service = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if isinstance(ref, dict) else "Local"
    available = "Unknown"
    for c in (svc.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            status = str(c.get("status", ""))
            available = f"{status} ({c['reason']})" if status != "True" and c.get("reason") else status
            break
    return _cells(_name(svc), service, available, _age(svc, now))


# --- The table of printers ----------------------------------------------------------------

# Doc strings of extensions/v1beta1 types, which printers.go cites and the bundled (v1-only)
# schemas do not carry.
_EXT_RS_SPEC_REPLICAS = (
    "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero "
    "and unspecified. Defaults to 1. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
)
_EXT_RS_STATUS_REPLICAS = (
    "Replicas is the most recently oberved number of replicas. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
)
_EXT_RS_STATUS_READY = "The number of ready replicas for this replica set."
_EXT_RS_SELECTOR = (
    "Selector is a label query over pods that should match the replica count. If the selector is empty, "
    "it is defaulted to the labels present on the pod template. Label keys and values that must match in "
    "order to be controlled by this replica set. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
)
_EXT_DEPLOY_UPDATED = (
    "Total number of non-terminated pods targeted by this deployment that have the desired template spec."
)
_EXT_DEPLOY_AVAILABLE = (
    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."
)
_EXT_DEPLOY_SELECTOR = (
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones "
    "affected by this deployment."
)


@functools.cache
def printers() -> dict[tuple[str, str], Printer]:
    """Printers by (API group, kind), built once on first use (the schemas load lazily)."""
    core, event = "api.core.v1", "api.core.v1.Event"
    storage, flow = "api.storage.v1", "api.flowcontrol.v1"

    def p(row: Callable[[Obj, datetime], Row], *columns: Obj) -> Printer:
        return Printer(tuple(columns), row)

    event_printer = p(
        _event_row,
        _col("Last Seen", "string", _doc(event, "lastTimestamp")),
        _col("Type", "string", _doc(event, "type")),
        _col("Reason", "string", _doc(event, "reason")),
        _col("Object", "string", _doc(event, "involvedObject")),
        _col("Subobject", "string", _doc(f"{core}.ObjectReference", "fieldPath"), 1),
        _col("Source", "string", _doc(event, "source"), 1),
        _col("Message", "string", _doc(event, "message")),
        _col("First Seen", "string", _doc(event, "firstTimestamp"), 1),
        _col("Count", "string", _doc(event, "count"), 1),
        _name_col(priority=1),
    )
    return {
        ("", "Namespace"): p(
            _namespace_row, _name_col(), _col("Status", "string", "The status of the namespace"), _age_col()
        ),
        ("", "Pod"): p(
            _pod_row,
            _name_col(),
            _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", "string", "The aggregate status of the containers in this pod."),
            _col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last "
                "container in this pod has restarted.",
            ),
            _age_col(),
            _col("IP", "string", _doc(f"{core}.PodStatus", "podIP"), 1),
            _col("Node", "string", _doc(f"{core}.PodSpec", "nodeName"), 1),
            _col("Nominated Node", "string", _doc(f"{core}.PodStatus", "nominatedNodeName"), 1),
            _col("Readiness Gates", "string", _doc(f"{core}.PodSpec", "readinessGates"), 1),
        ),
        ("", "Service"): p(
            _service_row,
            _name_col(),
            _col("Type", "string", _doc(f"{core}.ServiceSpec", "type")),
            _col("Cluster-IP", "string", _doc(f"{core}.ServiceSpec", "clusterIP")),
            _col("External-IP", "string", _doc(f"{core}.ServiceSpec", "externalIPs")),
            _col("Port(s)", "string", _doc(f"{core}.ServiceSpec", "ports")),
            _age_col(),
            _col("Selector", "string", _doc(f"{core}.ServiceSpec", "selector"), 1),
        ),
        ("", "Endpoints"): p(
            _endpoints_row,
            _name_col(),
            _col("Endpoints", "string", _doc(f"{core}.Endpoints", "subsets")),
            _age_col(),
        ),
        ("", "ConfigMap"): p(
            _configmap_row, _name_col(), _col("Data", "string", _doc(f"{core}.ConfigMap", "data")), _age_col()
        ),
        ("", "Secret"): p(
            _secret_row,
            _name_col(),
            _col("Type", "string", _doc(f"{core}.Secret", "type")),
            _col("Data", "string", _doc(f"{core}.Secret", "data")),
            _age_col(),
        ),
        ("", "ServiceAccount"): p(
            _service_account_row,
            _name_col(),
            _col("Secrets", "string", _doc(f"{core}.ServiceAccount", "secrets")),
            _age_col(),
        ),
        ("", "Event"): event_printer,
        ("events.k8s.io", "Event"): Printer(event_printer.columns, _events_k8s_io_row),
        ("", "Node"): p(
            _node_row,
            _name_col(),
            _col("Status", "string", "The status of the node"),
            _col("Roles", "string", "The roles of the node"),
            _age_col(),
            _col("Version", "string", _doc(f"{core}.NodeSystemInfo", "kubeletVersion")),
            _col("Internal-IP", "string", _doc(f"{core}.NodeStatus", "addresses"), 1),
            _col("External-IP", "string", _doc(f"{core}.NodeStatus", "addresses"), 1),
            _col("OS-Image", "string", _doc(f"{core}.NodeSystemInfo", "osImage"), 1),
            _col("Kernel-Version", "string", _doc(f"{core}.NodeSystemInfo", "kernelVersion"), 1),
            _col("Container-Runtime", "string", _doc(f"{core}.NodeSystemInfo", "containerRuntimeVersion"), 1),
        ),
        ("apps", "Deployment"): p(
            _deployment_row,
            _name_col(),
            _col("Ready", "string", "Number of the pod with ready state"),
            _col("Up-to-date", "string", _EXT_DEPLOY_UPDATED),
            _col("Available", "string", _EXT_DEPLOY_AVAILABLE),
            _age_col(),
            *_containers_cols(_EXT_DEPLOY_SELECTOR),
        ),
        ("batch", "Job"): p(
            _job_row,
            _name_col(),
            _col("Status", "string", "Status of the job."),
            _col("Completions", "string", _doc("api.batch.v1.JobStatus", "succeeded")),
            _col("Duration", "string", "Time required to complete the job."),
            _age_col(),
            *_containers_cols(_doc("api.batch.v1.JobSpec", "selector")),
        ),
        # kube-apiserver still describes these columns with batch/v1beta1's doc strings; only
        # timeZone's differs from v1's (the beta note was dropped from v1 at GA).
        ("batch", "CronJob"): p(
            _cronjob_row,
            _name_col(),
            _col("Schedule", "string", _doc("api.batch.v1.CronJobSpec", "schedule")),
            _col("Timezone", "string", _doc("api.batch.v1.CronJobSpec", "timeZone")
                 + " This is beta field and must be enabled via the `CronJobTimeZone` feature gate."),
            _col("Suspend", "boolean", _doc("api.batch.v1.CronJobSpec", "suspend")),
            _col("Active", "integer", _doc("api.batch.v1.CronJobStatus", "active")),
            _col("Last Schedule", "string", _doc("api.batch.v1.CronJobStatus", "lastScheduleTime")),
            _age_col(),
            *_containers_cols(_doc("api.batch.v1.JobSpec", "selector")),
        ),
        ("apps", "ReplicaSet"): p(
            _replicaset_row,
            _name_col(),
            _col("Desired", "integer", _EXT_RS_SPEC_REPLICAS),
            _col("Current", "integer", _EXT_RS_STATUS_REPLICAS),
            _col("Ready", "integer", _EXT_RS_STATUS_READY),
            _age_col(),
            *_containers_cols(_EXT_RS_SELECTOR),
        ),
        ("apps", "StatefulSet"): p(
            _statefulset_row,
            _name_col(),
            _col("Ready", "string", "Number of the pod with ready state"),
            _age_col(),
            *_containers_cols("")[:2],
        ),
        ("apps", "DaemonSet"): p(
            _daemonset_row,
            _name_col(),
            _col("Desired", "integer", _doc("api.apps.v1.DaemonSetStatus", "desiredNumberScheduled")),
            _col("Current", "integer", _doc("api.apps.v1.DaemonSetStatus", "currentNumberScheduled")),
            _col("Ready", "integer", _doc("api.apps.v1.DaemonSetStatus", "numberReady")),
            _col("Up-to-date", "integer", _doc("api.apps.v1.DaemonSetStatus", "updatedNumberScheduled")),
            _col("Available", "integer", _doc("api.apps.v1.DaemonSetStatus", "numberAvailable")),
            _col("Node Selector", "string", _doc(f"{core}.PodSpec", "nodeSelector")),
            _age_col(),
            *_containers_cols(_doc("api.apps.v1.DaemonSetSpec", "selector")),
        ),
        ("apps", "ControllerRevision"): p(
            _controller_revision_row,
            _name_col(),
            _col("Controller", "string", "Controller of the object"),
            _col("Revision", "string", _doc("api.apps.v1.ControllerRevision", "revision")),
            _age_col(),
        ),
        ("discovery.k8s.io", "EndpointSlice"): p(
            _endpoint_slice_row,
            _name_col(),
            _col("AddressType", "string", _doc("api.discovery.v1.EndpointSlice", "addressType")),
            _col("Ports", "string", _doc("api.discovery.v1.EndpointSlice", "ports")),
            _col("Endpoints", "string", _doc("api.discovery.v1.EndpointSlice", "endpoints")),
            _age_col(),
        ),
        ("coordination.k8s.io", "Lease"): p(
            _lease_row,
            _name_col(),
            _col("Holder", "string", _doc("api.coordination.v1.LeaseSpec", "holderIdentity")),
            _age_col(),
        ),
        ("networking.k8s.io", "IPAddress"): p(
            _ip_address_row,
            _name_col(),
            _col("ParentRef", "string", _doc("api.networking.v1.IPAddressSpec", "parentRef")),
        ),
        ("networking.k8s.io", "ServiceCIDR"): p(
            _service_cidr_row,
            _name_col(),
            _col("CIDRs", "string", _doc("api.networking.v1.ServiceCIDRSpec", "cidrs")),
            _age_col(),
        ),
        ("", "ReplicationController"): p(
            _replication_controller_row,
            _name_col(),
            _col("Desired", "integer", _doc(f"{core}.ReplicationControllerSpec", "replicas")),
            _col("Current", "integer", _doc(f"{core}.ReplicationControllerStatus", "replicas")),
            _col("Ready", "integer", _doc(f"{core}.ReplicationControllerStatus", "readyReplicas")),
            _age_col(),
            *_containers_cols(_doc(f"{core}.ReplicationControllerSpec", "selector")),
        ),
        ("", "PodTemplate"): p(
            _pod_template_row,
            _name_col(),
            _col("Containers", "string", "Names of each container in the template."),
            _col("Images", "string", "Images referenced by each container in the template."),
            _col("Pod Labels", "string", "The labels for the pod template."),
        ),
        ("", "ComponentStatus"): p(
            _component_status_row,
            _name_col(),
            _col("Status", "string", "Status of the component conditions"),
            _col("Message", "string", "Message of the component conditions"),
            _col("Error", "string", "Error of the component conditions"),
        ),
        ("scheduling.k8s.io", "PriorityClass"): p(
            _priority_class_row,
            _name_col(),
            _col("Value", "integer", _doc("api.scheduling.v1.PriorityClass", "value")),
            _col("Global-Default", "boolean", _doc("api.scheduling.v1.PriorityClass", "globalDefault")),
            _age_col(),
            _col("PreemptionPolicy", "string", _doc("api.scheduling.v1.PriorityClass", "preemptionPolicy")),
        ),
        ("storage.k8s.io", "CSIDriver"): p(
            _csi_driver_row,
            _name_col(),
            _col("AttachRequired", "boolean", _doc(f"{storage}.CSIDriverSpec", "attachRequired")),
            _col("PodInfoOnMount", "boolean", _doc(f"{storage}.CSIDriverSpec", "podInfoOnMount")),
            _col("StorageCapacity", "boolean", _doc(f"{storage}.CSIDriverSpec", "storageCapacity")),
            _col("TokenRequests", "string", _doc(f"{storage}.CSIDriverSpec", "tokenRequests")),
            _col("RequiresRepublish", "boolean", _doc(f"{storage}.CSIDriverSpec", "requiresRepublish")),
            _col("Modes", "string", _doc(f"{storage}.CSIDriverSpec", "volumeLifecycleModes")),
            _age_col(),
        ),
        ("", "PersistentVolume"): p(
            _persistent_volume_row,
            _name_col(),
            _col("Capacity", "string", _doc(f"{core}.PersistentVolumeSpec", "capacity")),
            _col("Access Modes", "string", _doc(f"{core}.PersistentVolumeSpec", "accessModes")),
            _col("Reclaim Policy", "string", _doc(f"{core}.PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
            _col("Status", "string", _doc(f"{core}.PersistentVolumeStatus", "phase")),
            _col("Claim", "string", _doc(f"{core}.PersistentVolumeSpec", "claimRef")),
            _col("StorageClass", "string", "StorageClass of the pv"),
            _col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            _col("Reason", "string", _doc(f"{core}.PersistentVolumeStatus", "reason")),
            _age_col(),
            _col("VolumeMode", "string", _doc(f"{core}.PersistentVolumeSpec", "volumeMode"), 1),
        ),
        ("", "PersistentVolumeClaim"): p(
            _persistent_volume_claim_row,
            _name_col(),
            _col("Status", "string", _doc(f"{core}.PersistentVolumeClaimStatus", "phase")),
            _col("Volume", "string", _doc(f"{core}.PersistentVolumeClaimSpec", "volumeName")),
            _col("Capacity", "string", _doc(f"{core}.PersistentVolumeClaimStatus", "capacity")),
            _col("Access Modes", "string", _doc(f"{core}.PersistentVolumeClaimStatus", "accessModes")),
            _col("StorageClass", "string", "StorageClass of the pvc"),
            _col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            _age_col(),
            _col("VolumeMode", "string", _doc(f"{core}.PersistentVolumeClaimSpec", "volumeMode"), 1),
        ),
        ("storage.k8s.io", "StorageClass"): p(
            _storage_class_row,
            _name_col(),
            _col("Provisioner", "string", _doc(f"{storage}.StorageClass", "provisioner")),
            _col("ReclaimPolicy", "string", _doc(f"{storage}.StorageClass", "reclaimPolicy")),
            _col("VolumeBindingMode", "string", _doc(f"{storage}.StorageClass", "volumeBindingMode")),
            _col("AllowVolumeExpansion", "string", _doc(f"{storage}.StorageClass", "allowVolumeExpansion")),
            _age_col(),
        ),
        ("storage.k8s.io", "CSINode"): p(
            _csi_node_row,
            _name_col(),
            _col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"),
            _age_col(),
        ),
        ("storage.k8s.io", "CSIStorageCapacity"): p(
            _csi_storage_capacity_row,
            _name_col(),
            _col("StorageClassName", "string", _doc(f"{storage}.CSIStorageCapacity", "storageClassName")),
            _col("Capacity", "string", _doc(f"{storage}.CSIStorageCapacity", "capacity")),
        ),
        ("storage.k8s.io", "VolumeAttachment"): p(
            _volume_attachment_row,
            _name_col(),
            _col("Attacher", "string", _doc(f"{storage}.VolumeAttachmentSpec", "attacher"), format_="name"),
            _col("PV", "string", _doc(f"{storage}.VolumeAttachmentSource", "persistentVolumeName")),
            _col("Node", "string", _doc(f"{storage}.VolumeAttachmentSpec", "nodeName")),
            _col("Attached", "boolean", _doc(f"{storage}.VolumeAttachmentStatus", "attached")),
            _age_col(),
        ),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"): Printer(
            (
                _name_col(),
                _col("PriorityLevel", "string", _doc(f"{flow}.PriorityLevelConfigurationReference", "name")),
                _col("MatchingPrecedence", "string", _doc(f"{flow}.FlowSchemaSpec", "matchingPrecedence")),
                _col("DistinguisherMethod", "string", _doc(f"{flow}.FlowSchemaSpec", "distinguisherMethod")),
                _age_col(),
                _col("MissingPL", "string", "references a broken or non-existent PriorityLevelConfiguration"),
            ),
            _flow_schema_row,
            _flow_schema_order,
        ),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"): p(
            _priority_level_row,
            _name_col(),
            _col("Type", "string", _doc(f"{flow}.PriorityLevelConfigurationSpec", "type")),
            _col("NominalConcurrencyShares", "string",
                 _doc(f"{flow}.LimitedPriorityLevelConfiguration", "nominalConcurrencyShares")),
            _col("Queues", "string", _doc(f"{flow}.QueuingConfiguration", "queues")),
            _col("HandSize", "string", _doc(f"{flow}.QueuingConfiguration", "handSize")),
            _col("QueueLengthLimit", "string", _doc(f"{flow}.QueuingConfiguration", "queueLengthLimit")),
            _age_col(),
        ),
        ("apiregistration.k8s.io", "APIService"): p(
            _api_service_row,
            _name_col(),
            _col("Service", "string", "The reference to the service that hosts this API endpoint."),
            _col("Available", "string", "Whether this service is available."),
            _age_col(),
        ),
        # printRole/printClusterRole: name and creation time, as the default printer.
        ("rbac.authorization.k8s.io", "Role"): p(
            _default_row, _name_col(), _col("Created At", "date", _meta_doc("creationTimestamp"))
        ),
        ("rbac.authorization.k8s.io", "ClusterRole"): p(
            _default_row, _name_col(), _col("Created At", "date", _meta_doc("creationTimestamp"))
        ),
        ("rbac.authorization.k8s.io", "RoleBinding"): p(
            _binding_row, _name_col(), _col("Role", "string", "Role indicates which role is being bound."),
            _age_col(), *_binding_subject_cols(),
        ),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"): p(
            _binding_row, _name_col(), _col("Role", "string", "Role indicates which role is being bound."),
            _age_col(), *_binding_subject_cols(),
        ),
        # printLimitRange: kube-apiserver's own columns are the default ones.
        ("", "LimitRange"): p(
            _default_row, _name_col(), _col("Created At", "date", _meta_doc("creationTimestamp"))
        ),
        ("", "ResourceQuota"): p(
            _resource_quota_row,
            _name_col(),
            _age_col(),
            _col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
            _col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use "
                 "independent of contention on the node."),
        ),
        ("certificates.k8s.io", "CertificateSigningRequest"): p(
            _csr_row,
            _name_col(),
            _age_col(),
            _col("SignerName", "string", _doc("api.certificates.v1.CertificateSigningRequestSpec", "signerName")),
            # kube-apiserver describes Requestor with the doc of spec.request (sic).
            _col("Requestor", "string", _doc("api.certificates.v1.CertificateSigningRequestSpec", "request")),
            _col("RequestedDuration", "string", _doc("api.certificates.v1.CertificateSigningRequestSpec",
                                                     "expirationSeconds")),
            _col("Condition", "string", _doc("api.certificates.v1.CertificateSigningRequestStatus", "conditions")),
        ),
        ("networking.k8s.io", "NetworkPolicy"): p(
            _network_policy_row,
            _name_col(),
            _col("Pod-Selector", "string", _doc("api.networking.v1.NetworkPolicySpec", "podSelector")),
            _age_col(),
        ),
        ("policy", "PodDisruptionBudget"): p(
            _pdb_row,
            _name_col(),
            _col("Min Available", "string", "The minimum number of pods that must be available, "
                 "either as an absolute number or a percentage."),
            _col("Max Unavailable", "string", "The maximum number of pods that may be unavailable, "
                 "either as an absolute number or a percentage."),
            _col("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
            _age_col(),
        ),
    }


def _resource_quota_row(rq: Obj, now: datetime) -> Row:
    """printResourceQuota: ``name: used/hard`` per resource, limits.* in LIMIT, the rest in REQUEST."""
    status = rq.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        text = f"{name}: {_canonical(used.get(name, '0'))}/{_canonical(hard[name])}"
        (limits if name.startswith("limits.") else requests).append(text)
    return _cells(_name(rq), _age(rq, now), ", ".join(requests), ", ".join(limits))


def _canonical(text: Any) -> str:
    try:
        return format_quantity(parse_quantity(text), quantity_format(text))
    except ValueError:
        return str(text)


def _csr_condition(csr: Obj) -> str:
    """extractCSRStatus: the verdict (Denied over Approved over Pending), then Failed and Issued."""
    status = csr.get("status") or {}
    types = {c.get("type") for c in status.get("conditions") or []}
    text = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        text += ",Failed"
    if status.get("certificate"):
        text += ",Issued"
    return text


def _csr_row(csr: Obj, now: datetime) -> Row:
    spec = csr.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    duration = human_duration(timedelta(seconds=seconds)) if isinstance(seconds, int) else NONE
    return _cells(_name(csr), _age(csr, now), spec.get("signerName") or NONE, spec.get("username") or "",
                  duration, _csr_condition(csr))


def _network_policy_row(np: Obj, now: datetime) -> Row:
    """printNetworkPolicy: the pod selector as metav1.FormatLabelSelector writes it."""
    return _cells(_name(np), format_label_selector((np.get("spec") or {}).get("podSelector") or {}), _age(np, now))


def _pdb_row(pdb: Obj, now: datetime) -> Row:
    """printPodDisruptionBudget: an unset bound prints N/A, an IntOrString as it was given."""
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
    bounds = ["N/A" if spec.get(k) is None else str(spec[k]) for k in ("minAvailable", "maxUnavailable")]
    return _cells(_name(pdb), *bounds, int(status.get("disruptionsAllowed") or 0), _age(pdb, now))


def _binding_subject_cols() -> list[Obj]:
    return [
        _col("Users", "string", "Users in the roleBinding", 1),
        _col("Groups", "string", "Groups in the roleBinding", 1),
        _col("ServiceAccounts", "string", "ServiceAccounts in the roleBinding", 1),
    ]


def _binding_row(binding: Obj, now: datetime) -> Row:
    """printRoleBinding: ``Kind/name`` of the role, then the subjects by kind (rbac.SubjectsStrings)."""
    ref = binding.get("roleRef") or {}
    users, groups, sas = [], [], []
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), str(subject.get("name", ""))
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            ns = subject.get("namespace")
            sas.append(f"{ns}/{name}" if ns else name)
    return _cells(_name(binding), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(binding, now),
                  ", ".join(users), ", ".join(groups), ", ".join(sas))


def _default_row(obj: Obj, now: datetime) -> Row:
    return _cells(_name(obj), rfc3339_utc((obj.get("metadata") or {}).get("creationTimestamp")))


@functools.cache
def default_printer() -> Printer:
    """``rest.NewDefaultTableConvertor``: name and RFC 3339 creation time, for other kinds."""
    return Printer(
        (_name_col(), _col("Created At", "date", _meta_doc("creationTimestamp"))),
        _default_row,
    )
