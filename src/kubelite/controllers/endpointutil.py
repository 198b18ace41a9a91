"""Pure logic shared by the EndpointSlice and Endpoints controllers: pods → endpoints → objects.

Kubernetes keeps this in ``k8s.io/endpointslice`` (the reconciler and its utils) and in
``pkg/controller/endpoint``; here it is one module of functions over plain dicts with no
I/O, so that every rule (which pods count, how a named port resolves, how endpoints are
packed into slices with the least churn, how Endpoints subsets are repacked and
truncated) is unit-tested without a server. The controllers only read caches, call
:func:`plan_slices` / :func:`desired_subsets`, and write what these return.

Where Kubernetes picks an arbitrary element of a Go map (``PopAny``) or orders by an md5 of
Go's ``spew`` dump, we use a stable order instead (pod name; port and subset fields): the
content is the same, only the order of equivalent items may differ from a real cluster.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from kubelite.api.timeutil import format_nano, parse_time
from kubelite.api.types import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Obj,
    ObjectMeta,
    OwnerReference,
    Pod,
    PodSpec,
    Service,
    ServicePort,
)

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ENDPOINTS_MANAGED_BY = "endpoints.kubernetes.io/managed-by"
ENDPOINTS_CONTROLLER_NAME = "endpoint-controller"
LABEL_ZONE = "topology.kubernetes.io/zone"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
MAX_ENDPOINTS_CAPACITY = 1000  # the legacy Endpoints object's limit (endpoints_controller.go maxCapacity)
DEFAULT_MAX_ENDPOINTS_PER_SLICE = 100


# ---------------------------------------------------------------------------------- pods


def _meta(obj: Mapping[str, Any]) -> ObjectMeta:
    return cast(ObjectMeta, obj.get("metadata") or {})


def is_pod_ready(pod: Pod) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def pod_ips(pod: Pod) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip", "") for p in status.get("podIPs") or []]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return [ip for ip in ips if ip]


def is_pod_terminal(pod: Pod) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def should_pod_be_in_endpoints(pod: Pod, include_terminating: bool) -> bool:
    """Terminal pods and pods without an IP never count; terminating ones only if asked."""
    if is_pod_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not _meta(pod).get("deletionTimestamp")


def should_set_hostname(pod: Pod, svc: Service) -> bool:
    spec: PodSpec = pod.get("spec") or {}
    return (bool(spec.get("hostname")) and spec.get("subdomain") == _meta(svc).get("name")
            and _meta(svc).get("namespace") == _meta(pod).get("namespace"))


def selector_of(svc: Service) -> dict[str, str] | None:
    """The Service's selector, or None when it selects nothing.

    An empty map is treated as no selector: in Kubernetes it does not survive storage
    (``omitempty`` and protobuf both drop it), so the controllers see nil.
    """
    sel = (svc.get("spec") or {}).get("selector")
    return dict(sel) if sel else None


def manages(svc: Service) -> bool:
    """Whether the endpoint controllers compute this Service's endpoints at all."""
    return (svc.get("spec") or {}).get("type") != "ExternalName" and selector_of(svc) is not None


def matches(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def selector_index(obj: Obj) -> list[str]:
    """Index Services by each ``ns/key=value`` of their selector: a pod's candidates are few lookups."""
    svc = cast(Service, obj)
    sel = selector_of(svc)
    if sel is None:
        return []
    ns = _meta(svc).get("namespace", "")
    return [f"{ns}/{k}={v}" for k, v in sel.items()]


def pod_label_keys(namespace: str, labels: Mapping[str, str] | None) -> list[str]:
    return [f"{namespace}/{k}={v}" for k, v in (labels or {}).items()]


def pod_endpoints_changed(old: Pod, new: Pod) -> tuple[bool, bool]:
    """(the pod's endpoint may have changed, the set of Services it matches may have changed).

    podEndpointsChanged, plus the phase and nodeName: a pod turning terminal leaves the
    endpoints even if nothing else moved.
    """
    om, nm = _meta(old), _meta(new)
    os_: PodSpec = old.get("spec") or {}
    ns_: PodSpec = new.get("spec") or {}
    labels_changed = (
        (om.get("labels") or {}) != (nm.get("labels") or {})
        or os_.get("hostname") != ns_.get("hostname") or os_.get("subdomain") != ns_.get("subdomain")
    )
    pod_changed = (
        om.get("deletionTimestamp") != nm.get("deletionTimestamp")
        or is_pod_ready(old) != is_pod_ready(new)
        or pod_ips(old) != pod_ips(new)
        or is_pod_terminal(old) != is_pod_terminal(new)
        or os_.get("nodeName") != ns_.get("nodeName")
    )
    return pod_changed, labels_changed


# ---------------------------------------------------------------------------------- ports


def find_port(pod: Pod, svc_port: ServicePort) -> int | None:
    """The container port a Service port's targetPort means for this pod (FindPort)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        # An IntOrString that arrived as a numeric string is still a name in Go; but the
        # API server already turned "80" into 80 when it decoded the Service.
        return int(target)
    protocol = svc_port.get("protocol", "TCP")
    spec: PodSpec = pod.get("spec") or {}
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    for c in spec.get("initContainers") or []:
        if c.get("restartPolicy") != "Always":  # only sidecars serve
            continue
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def is_headless(svc: Service) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def is_service_ip_set(svc: Service) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def slice_ports(svc: Service, pod: Pod) -> list[EndpointPort]:
    """EndpointSlice ports for this pod: one per Service port whose targetPort resolves."""
    out: list[EndpointPort] = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        num = find_port(pod, sp)
        if num is None:
            continue
        port: EndpointPort = {"name": sp.get("name", ""), "port": num, "protocol": sp.get("protocol", "TCP")}
        if sp.get("appProtocol") is not None:
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


PortKey = tuple[tuple[str, int, str, str], ...]


def port_key(ports: Iterable[Mapping[str, Any]] | None) -> PortKey:
    """What slices are grouped by: the set of ports, in a canonical order (NewPortMapKey)."""
    return tuple(sorted(
        (str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or ""),
         str(p.get("appProtocol") or "")) for p in ports or ()
    ))


# ---------------------------------------------------------------------------------- endpoints


def address_types(svc: Service) -> list[str]:
    """getAddressTypesForService: from ipFamilies, else from the ClusterIP, else both."""
    spec = svc.get("spec") or {}
    fams = spec.get("ipFamilies") or []
    out = [t for f, t in (("IPv4", "IPv4"), ("IPv6", "IPv6")) if f in fams]
    if out:
        return out
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        return ["IPv6" if ":" in ip else "IPv4"]
    return ["IPv4", "IPv6"]


def _normal_ip(ip: str) -> tuple[str, bool] | None:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return str(a), a.version == 6


def endpoint_addresses(pod: Pod, address_type: str) -> list[str]:
    out = []
    for ip in pod_ips(pod):
        n = _normal_ip(ip)
        if n is not None and n[1] == (address_type == "IPv6"):
            out.append(n[0])
    return out


def pod_to_endpoint(pod: Pod, node: Obj | None, svc: Service, address_type: str) -> Endpoint:
    meta = _meta(pod)
    spec: PodSpec = pod.get("spec") or {}
    serving = is_pod_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: Endpoint = {
        "addresses": endpoint_addresses(pod, address_type),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    if should_set_hostname(pod, svc):
        ep["hostname"] = spec["hostname"]
    ep["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                       "uid": meta.get("uid", "")}
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    zone = (_meta(node).get("labels") or {}).get(LABEL_ZONE) if node else None
    if zone:
        ep["zone"] = zone
    return ep


EndpointKey = tuple[tuple[str, ...], str, str, str]


def endpoint_key(ep: Endpoint) -> EndpointKey:
    """What identifies an endpoint across syncs (hashEndpoint): addresses, hostname, pod."""
    ref = ep.get("targetRef") or {}
    return (tuple(sorted(ep.get("addresses") or ())), str(ep.get("hostname") or ""),
            str(ref.get("namespace") or ""), str(ref.get("name") or ""))


def _ref_without_rv(ref: Mapping[str, Any] | None) -> Obj | None:
    if ref is None:
        return None
    return {k: v for k, v in ref.items() if k != "resourceVersion"}


def endpoints_equal_beyond_key(a: Endpoint, b: Endpoint) -> bool:
    """EndpointsEqualBeyondHash: node, zone, conditions, target (its resourceVersion aside)."""
    ca, cb = a.get("conditions") or {}, b.get("conditions") or {}
    return (
        a.get("nodeName") == b.get("nodeName") and a.get("zone") == b.get("zone")
        and all(ca.get(k) == cb.get(k) for k in ("ready", "serving", "terminating"))
        and _ref_without_rv(a.get("targetRef")) == _ref_without_rv(b.get("targetRef"))
    )


# ---------------------------------------------------------------------------------- slices


def owned_by(obj: EndpointSlice, svc: Service) -> bool:
    uid = _meta(svc).get("uid")
    return any(o.get("uid") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
               for o in _meta(obj).get("ownerReferences") or [])


def slice_labels(existing: Mapping[str, str] | None, svc: Service) -> tuple[dict[str, str], bool]:
    """setEndpointSliceLabels: the Service's labels plus the reserved ones; and whether they moved."""
    reserved = (LABEL_SERVICE_NAME, LABEL_SLICE_MANAGED_BY, LABEL_HEADLESS)
    current = {k: v for k, v in (existing or {}).items() if k not in reserved}
    wanted = {k: v for k, v in (_meta(svc).get("labels") or {}).items() if k not in reserved}
    changed = current != wanted
    if not is_service_ip_set(svc):
        wanted[LABEL_HEADLESS] = ""
    wanted[LABEL_SERVICE_NAME] = _meta(svc)["name"]
    wanted[LABEL_SLICE_MANAGED_BY] = SLICE_CONTROLLER_NAME
    return wanted, changed


def controller_ref(svc: Service) -> OwnerReference:
    m = _meta(svc)
    return {"apiVersion": "v1", "kind": "Service", "name": m["name"], "uid": m.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def slice_prefix(name: str) -> str:
    # generateName gets 5 random characters; a prefix too long to stay a valid name loses its dash.
    return f"{name}-" if len(name) + 1 <= 253 - 5 else name


def new_slice(svc: Service, ports: list[EndpointPort], address_type: str) -> EndpointSlice:
    m = _meta(svc)
    labels, _ = slice_labels({}, svc)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"generateName": slice_prefix(m["name"]), "namespace": m.get("namespace", ""),
                     "labels": labels, "ownerReferences": [controller_ref(svc)]},
        "addressType": address_type,
        "endpoints": [],
        "ports": ports,
    }


def _is_placeholder_of(existing: EndpointSlice, placeholder: EndpointSlice) -> bool:
    """placeholderSliceCompare: namespace, labels, owners, and the (empty) content."""
    em, pm = _meta(existing), _meta(placeholder)
    return (
        em.get("namespace") == pm.get("namespace")
        and (em.get("labels") or {}) == (pm.get("labels") or {})
        and (em.get("ownerReferences") or []) == (pm.get("ownerReferences") or [])
        and existing.get("addressType") == placeholder.get("addressType")
        and not existing.get("endpoints") and not existing.get("ports")
    )


@dataclass
class SlicePlan:
    """What one sync writes: new slices (generateName), replacements, and deletions."""

    create: list[EndpointSlice] = field(default_factory=list)
    update: list[EndpointSlice] = field(default_factory=list)
    delete: list[EndpointSlice] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def plan_slices(
    svc: Service,
    pods: Iterable[Pod],
    existing: Iterable[EndpointSlice],
    node_of: Callable[[str], Obj | None],
    max_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
) -> SlicePlan:
    """The EndpointSlice reconciler (Reconcile): desired endpoints against existing slices.

    ``existing`` are the slices labelled for this Service and managed by this controller.
    Unchanged slices are never rewritten; changed ones are updated in place, topped up
    with new endpoints before any new slice is created; emptied ones are deleted (or
    recycled when a new slice is needed anyway).
    """
    plan = SlicePlan()
    supported = address_types(svc)
    by_type: dict[str, list[EndpointSlice]] = {}
    obsolete: list[EndpointSlice] = []
    for s in existing:
        if s.get("addressType") in supported:
            by_type.setdefault(s["addressType"], []).append(s)
        else:
            obsolete.append(s)
    pods = sorted(pods, key=lambda p: _meta(p).get("name", ""))
    for at in supported:
        _plan_address_type(plan, svc, pods, by_type.get(at, []), node_of, max_per_slice, at)
    plan.delete += obsolete
    return plan


def _plan_address_type(plan: SlicePlan, svc: Service, pods: list[Pod], existing: list[EndpointSlice],
                       node_of: Callable[[str], Obj | None], max_per_slice: int, address_type: str) -> None:
    publish_not_ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    creates: list[EndpointSlice] = []
    updates: list[EndpointSlice] = []
    deletes: list[EndpointSlice] = []

    existing_by_ports: dict[PortKey, list[EndpointSlice]] = {}
    for s in existing:
        if owned_by(s, svc):
            existing_by_ports.setdefault(port_key(s.get("ports")), []).append(s)
        else:
            deletes.append(s)

    desired: dict[PortKey, dict[EndpointKey, Endpoint]] = {}
    desired_ports: dict[PortKey, list[EndpointPort]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = slice_ports(svc, pod)
        key = port_key(ports)
        group = desired.setdefault(key, {})
        desired_ports.setdefault(key, ports)
        node_name = (pod.get("spec") or PodSpec()).get("nodeName", "")
        node = node_of(node_name) if node_name else None
        if node is None and not publish_not_ready:
            # As Kubernetes: leave the pod out now and retry the Service later.
            plan.errors.append(f"skipping Pod {_meta(pod).get('name')} for Service "
                               f"{_meta(svc).get('namespace')}/{_meta(svc).get('name')}: "
                               f"Node {node_name} Not Found")
            continue
        ep = pod_to_endpoint(pod, node, svc, address_type)
        if ep["addresses"]:
            group[endpoint_key(ep)] = ep

    for key, want in desired.items():
        group_plan = _plan_port_group(svc, existing_by_ports.get(key, []), want, desired_ports[key],
                                      max_per_slice, address_type)
        creates += group_plan[0]
        updates += group_plan[1]
        deletes += group_plan[2]
    for key, slices in existing_by_ports.items():
        if key not in desired:
            deletes += slices

    # A Service always has at least one slice: an empty placeholder when nothing is left.
    if len(existing) == len(deletes) and not creates:
        placeholder = new_slice(svc, [], address_type)
        if len(deletes) == 1 and _is_placeholder_of(deletes[0], placeholder):
            deletes = []
        else:
            creates.append(placeholder)

    # Recycle slices about to be deleted for slices about to be created (finalize).
    kept_deletes = []
    for d in deletes:
        if creates and d.get("addressType") == address_type and owned_by(d, svc):
            s = creates.pop()
            s["metadata"]["name"] = _meta(d)["name"]
            s["metadata"]["resourceVersion"] = _meta(d).get("resourceVersion", "")
            s["metadata"].pop("generateName", None)
            updates.append(s)
        else:
            kept_deletes.append(d)

    plan.create += creates
    plan.update += updates
    plan.delete += kept_deletes


def _plan_port_group(svc: Service, existing: list[EndpointSlice], want: dict[EndpointKey, Endpoint],
                     ports: list[EndpointPort], max_per_slice: int,
                     address_type: str) -> tuple[list[EndpointSlice], list[EndpointSlice], list[EndpointSlice]]:
    """reconcileByPortMapping: keep, fix, top up, then fill the nearest-to-full or create."""
    want = dict(want)
    by_name: dict[str, EndpointSlice] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []

    for s in existing:
        name = _meta(s)["name"]
        by_name[name] = s
        kept: list[Endpoint] = []
        changed = False
        for ep in s.get("endpoints") or []:
            k = endpoint_key(ep)
            got = want.pop(k, None)
            if got is not None:
                kept.append(got)
                if not endpoints_equal_beyond_key(got, ep):
                    changed = True
        labels, labels_changed = slice_labels(_meta(s).get("labels"), svc)
        if changed or len(kept) != len(s.get("endpoints") or []):
            if not kept:
                to_delete.append(name)
            else:
                n = copy.deepcopy(s)
                n["endpoints"] = kept
                n["metadata"]["labels"] = labels
                by_name[name] = n
                to_update.append(name)
        elif labels_changed:
            n = copy.deepcopy(s)
            n["metadata"]["labels"] = labels
            by_name[name] = n
            to_update.append(name)
        else:
            unchanged.append(name)

    remaining = deque(want.values())
    if remaining and to_update:
        # Fill the fullest slices being written anyway first.
        for name in sorted(to_update, key=lambda n: -len(_endpoints(by_name[n]))):
            eps = _endpoints(by_name[name])
            while remaining and len(eps) < max_per_slice:
                eps.append(remaining.popleft())

    creates: list[EndpointSlice] = []
    while remaining:
        target: EndpointSlice | None = None
        if len(remaining) < max_per_slice and unchanged:
            target = _slice_to_fill([by_name[n] for n in unchanged], len(remaining), max_per_slice)
        if target is None:
            target = new_slice(svc, ports, address_type)
        else:
            target = copy.deepcopy(target)
            target["endpoints"] = list(target.get("endpoints") or [])
            by_name[_meta(target)["name"]] = target
        eps = _endpoints(target)
        while remaining and len(eps) < max_per_slice:
            eps.append(remaining.popleft())
        target_name = _meta(target).get("name")
        if target_name:
            to_update.append(target_name)
            unchanged.remove(target_name)
        else:
            creates.append(target)

    return creates, [by_name[n] for n in to_update], [by_name[n] for n in to_delete]


def _endpoints(s: EndpointSlice) -> list[Endpoint]:
    """The slice's endpoint list, to fill in place (a slice read back empty has ``null``)."""
    eps = s.get("endpoints")
    if eps is None:
        eps = s["endpoints"] = []
    return eps


def _slice_to_fill(slices: list[EndpointSlice], n: int, max_per_slice: int) -> EndpointSlice | None:
    """getSliceToFill: the slice that ends closest to full after taking ``n`` endpoints."""
    best, best_diff = None, max_per_slice
    for s in slices:
        diff = max_per_slice - (n + len(s.get("endpoints") or []))
        if 0 <= diff < best_diff:
            best, best_diff = s, diff
            if diff == 0:
                break
    return best


def finish_slice(s: EndpointSlice, trigger_time: str) -> EndpointSlice:
    """What is sent: the trigger-time annotation set (or cleared), empty lists as null.

    Kubernetes stores slices as protobuf, where an empty list and no list are the same
    thing, so an empty slice reads back ``endpoints: null`` and ``ports: null``.
    """
    meta = s["metadata"]
    ann = dict(meta.get("annotations") or {})
    if trigger_time:
        ann[ANNOTATION_TRIGGER_TIME] = trigger_time
    else:
        ann.pop(ANNOTATION_TRIGGER_TIME, None)
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    s["endpoints"] = s.get("endpoints") or None
    s["ports"] = s.get("ports") or None
    return s


# ---------------------------------------------------------------------------------- trigger time


class TriggerTimeTracker:
    """The ``last-change-trigger-time`` annotation: when the change being published happened.

    For a Service seen for the first time, its creation; afterwards the earliest Ready
    transition (or Service creation) that moved since the previous sync.
    """

    def __init__(self) -> None:
        self._states: dict[str, tuple[dt.datetime | None, dict[str, dt.datetime]]] = {}

    def compute(self, key: str, svc: Service, pods: Iterable[Pod]) -> str:
        known = key in self._states
        last_svc, last_pods = self._states.get(key, (None, {}))
        earliest: dt.datetime | None = None
        pod_times: dict[str, dt.datetime] = {}
        for pod in pods:
            ready = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                         None)
            t = parse_time(ready.get("lastTransitionTime")) if ready else None
            if t is None:
                continue
            name = _meta(pod).get("name", "")
            pod_times[name] = t
            prev = last_pods.get(name)
            if prev is None or t > prev:
                earliest = t if earliest is None or t < earliest else earliest
        svc_time = parse_time(_meta(svc).get("creationTimestamp"))
        if svc_time is not None and (last_svc is None or svc_time > last_svc):
            earliest = svc_time if earliest is None or svc_time < earliest else earliest
        self._states[key] = (svc_time, pod_times)
        if not known:
            return format_nano(svc_time) if svc_time else ""
        return format_nano(earliest) if earliest else ""

    def forget(self, key: str) -> None:
        self._states.pop(key, None)


# ---------------------------------------------------------------------------------- slice tracker


class SliceTracker:
    """The generations this controller wrote, to tell a lagging cache from others' changes.

    After a write the informer may still hold the previous version of a slice, or not yet
    hold a created one: a sync computed from that would create duplicates or undo the
    write. Kubernetes' EndpointSliceTracker answers both questions by generation: a sync
    whose cache is older than what was written is retried; a watch event for a generation
    we wrote ourselves is not a reason to sync.
    """

    DELETING = -1

    def __init__(self) -> None:
        self._by_service: dict[str, dict[str, int]] = {}
        self._service_uid: dict[str, str] = {}

    @staticmethod
    def service_key(s: Mapping[str, Any]) -> str:
        m = _meta(s)
        return f"{m.get('namespace', '')}/{(m.get('labels') or {}).get(LABEL_SERVICE_NAME, '')}"

    def should_sync(self, s: Mapping[str, Any]) -> bool:
        g = self._by_service.get(self.service_key(s), {}).get(_meta(s).get("uid", ""))
        return g is None or int(_meta(s).get("generation") or 0) > g

    def stale(self, svc_key: str, svc_uid: str, slices: Iterable[Mapping[str, Any]]) -> bool:
        if self._service_uid.get(svc_key, svc_uid) != svc_uid:
            self._by_service.pop(svc_key, None)  # a recreated Service: old writes are moot
        self._service_uid[svc_key] = svc_uid
        gens = self._by_service.get(svc_key)
        if not gens:
            return False
        seen = set()
        for s in slices:
            uid = _meta(s).get("uid", "")
            seen.add(uid)
            g = gens.get(uid)
            if g is not None and (g == self.DELETING or g > int(_meta(s).get("generation") or 0)):
                return True
        return any(g != self.DELETING and uid not in seen for uid, g in gens.items())

    def update(self, s: Mapping[str, Any]) -> None:
        self._by_service.setdefault(self.service_key(s), {})[_meta(s).get("uid", "")] = int(
            _meta(s).get("generation") or 0)

    def expect_deletion(self, s: Mapping[str, Any]) -> None:
        self._by_service.setdefault(self.service_key(s), {})[_meta(s).get("uid", "")] = self.DELETING

    def handle_deletion(self, s: Mapping[str, Any]) -> bool:
        """Forget a deleted slice; True if we deleted it ourselves.

        Kubernetes ignores the deletion of a slice it never wrote; we resync then too, so
        that a slice deleted by hand after a restart of the controllers comes back.
        """
        g = self._by_service.get(self.service_key(s), {}).pop(_meta(s).get("uid", ""), None)
        return g == self.DELETING

    def forget_service(self, key: str) -> None:
        self._by_service.pop(key, None)
        self._service_uid.pop(key, None)


# ---------------------------------------------------------------------------------- Endpoints (v1)


def endpoint_address(pod: Pod, svc: Service) -> Obj | None:
    """podToEndpointAddressForService: the pod's IP of the Service's first family."""
    fams = (svc.get("spec") or {}).get("ipFamilies") or []
    if fams:
        want_v6 = fams[0] == "IPv6"
    elif is_service_ip_set(svc):
        want_v6 = ":" in svc["spec"]["clusterIP"]
    else:
        want_v6 = ":" in ((pod.get("status") or {}).get("podIP") or "")
    ip = next((i for i in pod_ips(pod) if (":" in i) == want_v6), None)
    if ip is None:
        return None
    meta = _meta(pod)
    addr: Obj = {"ip": ip}
    if should_set_hostname(pod, svc):
        addr["hostname"] = pod["spec"]["hostname"]
    addr["nodeName"] = (pod.get("spec") or PodSpec()).get("nodeName", "")
    addr["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                         "uid": meta.get("uid", "")}
    return addr


def _endpoint_port(sp: ServicePort, num: int) -> Obj:
    p: Obj = {}
    if sp.get("name"):
        p["name"] = sp["name"]
    p["port"] = num
    p["protocol"] = sp.get("protocol", "TCP")
    if sp.get("appProtocol") is not None:
        p["appProtocol"] = sp["appProtocol"]
    return p


_NO_PORT: tuple[str, int, str, str] = ("", -1, "", "")


def desired_subsets(svc: Service, pods: Iterable[Pod]) -> list[Obj]:
    """The Endpoints controller's subsets: per pod and port, then repacked (RepackSubsets).

    Addresses offering the same ports are grouped; an address not ready on any port is
    not ready everywhere; a headless Service without ports lists addresses with no ports.
    """
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    svc_ports = spec.get("ports") or []
    addrs: dict[tuple[str, str], Obj] = {}
    by_port: dict[tuple[str, int, str, str], dict[tuple[str, str], bool]] = {}
    port_objs: dict[tuple[str, int, str, str], Obj] = {}

    def add(addr: Obj, port: Obj | None, ready: bool) -> None:
        akey = (addr["ip"], addr["targetRef"]["uid"])
        addrs.setdefault(akey, addr)
        pkey = port_key([port])[0] if port is not None else _NO_PORT
        if port is not None:
            port_objs[pkey] = port
        readiness = by_port.setdefault(pkey, {})
        readiness[akey] = readiness.get(akey, True) and ready  # not ready trumps ready

    for pod in sorted(pods, key=lambda p: _meta(p).get("name", "")):
        if not should_pod_be_in_endpoints(pod, publish):
            continue
        addr = endpoint_address(pod, svc)
        if addr is None:
            continue
        ready = publish or is_pod_ready(pod)
        if not svc_ports:
            if is_headless(svc):
                add(addr, None, ready)
            continue
        for sp in svc_ports:
            num = find_port(pod, sp)
            if num is not None:
                add(addr, _endpoint_port(sp, num), ready)

    groups: dict[frozenset[tuple[tuple[str, str], bool]], list[tuple[str, int, str, str]]] = {}
    for pkey, readiness in by_port.items():
        groups.setdefault(frozenset(readiness.items()), []).append(pkey)

    subsets: list[Obj] = []
    for members, pkeys in groups.items():
        def order(item: tuple[tuple[str, str], bool]) -> tuple[bytes, str]:
            return item[0][0].encode(), item[0][1]
        ready_addrs = [addrs[a] for a, r in sorted(members, key=order) if r]
        not_ready = [addrs[a] for a, r in sorted(members, key=order) if not r]
        ports = [port_objs[p] for p in sorted(pkeys) if p != _NO_PORT]
        subset: Obj = {}
        if ready_addrs:
            subset["addresses"] = ready_addrs
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports:
            subset["ports"] = ports
        subsets.append(subset)
    subsets.sort(key=_subset_order)
    return subsets


def _subset_order(s: Obj) -> tuple[Any, ...]:
    first = (s.get("addresses") or s.get("notReadyAddresses") or [{}])[0]
    return (port_key(s.get("ports")), first.get("ip", "").encode())


def truncate_subsets(subsets: list[Obj], capacity: int = MAX_ENDPOINTS_CAPACITY) -> bool:
    """truncateEndpoints: keep at most ``capacity`` addresses, ready ones first, in proportion."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= capacity:
        return False
    truncate_ready = total_ready > capacity
    limit, total = (capacity, total_ready) if truncate_ready else (capacity - total_ready, total_not_ready)
    can_add = limit
    for s in subsets:
        field_name = "addresses" if truncate_ready else "notReadyAddresses"
        in_subset = len(s.get(field_name) or [])
        # Go: int(math.Ceil(float64(in)/float64(total) * float64(limit)))
        share = -(-in_subset * limit // total) if total else 0
        share = min(share, can_add)
        kept = (s.get(field_name) or [])[:share]
        if kept:
            s[field_name] = kept
        else:
            s.pop(field_name, None)
        if truncate_ready:
            s.pop("notReadyAddresses", None)
        can_add -= len(kept)
    return True


def endpoints_labels(svc: Service) -> dict[str, str]:
    labels = dict(_meta(svc).get("labels") or {})
    labels[LABEL_ENDPOINTS_MANAGED_BY] = ENDPOINTS_CONTROLLER_NAME
    if is_service_ip_set(svc):
        labels.pop(LABEL_HEADLESS, None)
    else:
        labels[LABEL_HEADLESS] = ""
    return labels


def subsets_equal(a: list[Obj] | None, b: list[Obj] | None) -> bool:
    """Equal, ignoring the target pods' resourceVersions (which move on every pod update)."""
    def strip(subsets: list[Obj] | None) -> list[Obj]:
        out = []
        for s in subsets or []:
            t = {}
            for k in ("addresses", "notReadyAddresses"):
                if s.get(k):
                    t[k] = [{**a, "targetRef": _ref_without_rv(a.get("targetRef"))} if a.get("targetRef") else a
                            for a in s[k]]
            if s.get("ports"):
                t["ports"] = s["ports"]
            out.append(t)
        return out
    return strip(a) == strip(b)


# ---------------------------------------------------------------------------------- pod events


def services_to_sync(old_obj: Mapping[str, Any] | None, new_obj: Mapping[str, Any] | None,
                     lookup: Callable[[str, Mapping[str, str]], set[str]]) -> set[str]:
    """The Services a pod event (raw pods from the informer) concerns (GetServicesToUpdateOnPodChange).

    ``lookup(namespace, labels)`` answers the keys of the Services selecting those labels.
    A relabelled pod concerns the Services it left and joined; when its endpoint changed
    too, also those it stays in.
    """
    old, new = cast(Pod | None, old_obj), cast(Pod | None, new_obj)
    if old is None or new is None:
        pod = new if new is not None else old
        assert pod is not None
        return lookup(_meta(pod).get("namespace", ""), _meta(pod).get("labels") or {})
    if _meta(old).get("resourceVersion") == _meta(new).get("resourceVersion"):
        return set()
    pod_changed, labels_changed = pod_endpoints_changed(old, new)
    ns = _meta(new).get("namespace", "")
    if not labels_changed:
        return lookup(ns, _meta(new).get("labels") or {}) if pod_changed else set()
    now = lookup(ns, _meta(new).get("labels") or {})
    before = lookup(ns, _meta(old).get("labels") or {})
    return now | before if pod_changed else now ^ before
