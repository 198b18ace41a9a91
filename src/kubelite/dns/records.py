"""The records of the Kubernetes DNS specification (schema 1.0.1), answered from caches.

This is CoreDNS's kubernetes plugin as pure code: :class:`ClusterState` holds compact
copies of Services, EndpointSlices, Namespaces (and, in ``pods verified`` mode, pod IPs)
with the indexes lookups need, and :class:`Resolver` turns a question into an
:class:`Answer` — records plus the response code — without any I/O. The server renders an
Answer once and serves the bytes until the state changes.

Behaviour follows CoreDNS (which the specification's examples come from), in particular:
- a name that does not exist is NXDOMAIN, a name that exists without records of the asked
  type is NOERROR with no answer (NODATA); both carry the zone's SOA in the authority
  section (``ns.dns.<zone>. hostmaster.<zone>.``);
- a namespace that does not exist makes every name under it NXDOMAIN; ``<ns>.svc.<zone>``,
  ``svc.<zone>`` and the apex exist (NODATA);
- a headless Service answers with its ready endpoints, and is NXDOMAIN without any;
- endpoints are named by their ``hostname`` or, without one, by their dashed IP;
- SRV for ``_<port>._<proto>.<svc>...`` per matching port (all ports for the bare name);
  priority 0, weights sharing 100; targets' addresses in the additional section;
- PTR for ClusterIPs, then for ready endpoints; a reverse name we do not know falls
  through to the upstream resolvers (``fallthrough in-addr.arpa ip6.arpa``);
- ExternalName is a CNAME; an A/AAAA question also gets the target's records, looked up
  inside the zone here or, outside it, by the forwarder (``Answer.chase``);
- ``<a>-<b>-<c>-<d>.<ns>.pod.<zone>`` in ``pods insecure`` mode (kubeadm's default) for
  any address, in ``verified`` mode only for a pod with that IP in that namespace.
Where CoreDNS has quirks that contradict DNS itself they are not copied: a TXT (or any
other type) question for a name that does not exist is NXDOMAIN here, not NODATA.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV

from kubelite.api import types as k8s
from kubelite.api.types import Obj
from kubelite.dns.wire import NOERROR, NXDOMAIN, RR

A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV = (dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.CNAME, dns.rdatatype.SOA,
                                          dns.rdatatype.PTR, dns.rdatatype.TXT, dns.rdatatype.AAAA, dns.rdatatype.SRV)
IN = dns.rdataclass.IN
SCHEMA_VERSION = "1.0.1"
DEFAULT_TTL = 5  # the kubernetes plugin's default (kubeadm's Corefile says `ttl 30`)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MAX_CNAME_CHAIN = 8


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str
    port: int  # -1: the object declares no ports (CoreDNS's sentinel: no SRV, still addresses)


NO_PORTS = (Port("", "", -1),)


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]
    headless: bool
    external_name: str
    ports: tuple[Port, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    hostname: str  # the EndpointSlice's hostname, "" when it has none

    @property
    def dns_name(self) -> str:
        return self.hostname or self.ip.replace(".", "-").replace(":", "-")


@dataclass(frozen=True, slots=True)
class Slice:
    namespace: str
    service: str
    endpoints: tuple[Endpoint, ...]  # ready ones only
    ports: tuple[Port, ...]


def _ports(items: Iterable[k8s.ServicePort] | Iterable[k8s.EndpointPort]) -> tuple[Port, ...]:
    out = tuple(
        Port(str(p.get("name") or "").lower(), str(p.get("protocol") or "TCP").lower(),
             -1 if (number := p.get("port")) is None else int(number))
        for p in items
    )
    return out or NO_PORTS


def service_from(obj: k8s.Service) -> Service:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    headless = kind != "ExternalName" and spec.get("clusterIP") == "None"
    return Service(
        namespace=str(meta.get("namespace", "")).lower(),
        name=str(meta.get("name", "")).lower(),
        cluster_ips=() if headless or kind == "ExternalName" else tuple(ip for ip in ips if ip and ip != "None"),
        headless=headless,
        external_name=str(spec.get("externalName") or "").lower().rstrip(".") if kind == "ExternalName" else "",
        ports=_ports(spec.get("ports") or ()),
    )


def slice_from(obj: k8s.EndpointSlice) -> Slice | None:
    """The ready endpoints of an IP EndpointSlice that belongs to a Service (else None)."""
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or obj.get("addressType") not in ("IPv4", "IPv6"):
        return None
    endpoints: list[Endpoint] = []
    for ep in obj.get("endpoints") or ():
        # A nil ready condition means "unknown", which consumers treat as ready (API docs).
        if (ep.get("conditions") or {}).get("ready") is False:
            continue
        hostname = str(ep.get("hostname") or "").lower()
        endpoints.extend(Endpoint(str(a), hostname) for a in ep.get("addresses") or ())
    return Slice(str(meta.get("namespace", "")).lower(), str(service).lower(), tuple(endpoints),
                 _ports(obj.get("ports") or ()))


def pod_ips(obj: k8s.Pod) -> tuple[str, ...]:
    status = obj.get("status") or {}
    ips: list[str | None] = [p.get("ip") for p in status.get("podIPs") or ()] or [status.get("podIP")]
    return tuple(str(ip) for ip in ips if ip)


class ClusterState:
    """Compact, indexed copies of what DNS needs; every change bumps ``generation``."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], Slice] = {}  # (namespace, slice name)
        self.slices_by_service: dict[tuple[str, str], dict[str, Slice]] = {}
        self.namespaces: set[str] = set()
        self.pods: dict[tuple[str, str], tuple[str, ...]] = {}  # (namespace, pod) -> IPs
        self.pods_by_ip: dict[str, dict[str, int]] = {}  # IP -> namespace -> number of pods
        self.services_by_ip: dict[str, set[tuple[str, str]]] = {}
        self.slices_by_ip: dict[str, set[tuple[str, str]]] = {}
        self.generation = 0
        self.modified = int(time.time())
        self.listeners: list[Callable[[], None]] = []

    def _changed(self) -> None:
        self.generation += 1
        self.modified = int(time.time())
        for fn in self.listeners:
            fn()

    @staticmethod
    def _index(index: dict[str, set[tuple[str, str]]], ips: Iterable[str], key: tuple[str, str], add: bool) -> None:
        for ip in ips:
            if add:
                index.setdefault(ip, set()).add(key)
            else:
                keys = index.get(ip)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[ip]

    # -------------------------------------------------------------- services

    def set_service(self, obj: Obj) -> None:
        svc = service_from(cast(k8s.Service, obj))
        key = (svc.namespace, svc.name)
        old = self.services.get(key)
        if old == svc:
            return
        if old is not None:
            self._index(self.services_by_ip, old.cluster_ips, key, False)
        self.services[key] = svc
        self._index(self.services_by_ip, svc.cluster_ips, key, True)
        self._changed()

    def delete_service(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")).lower(), str(meta.get("name", "")).lower())
        old = self.services.pop(key, None)
        if old is not None:
            self._index(self.services_by_ip, old.cluster_ips, key, False)
            self._changed()

    # -------------------------------------------------------------- endpoint slices

    def set_slice(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")).lower(), str(meta.get("name", "")))
        new = slice_from(cast(k8s.EndpointSlice, obj))
        old = self.slices.get(key)
        if old == new:
            return
        self._drop_slice(key)
        if new is not None:
            self.slices[key] = new
            self.slices_by_service.setdefault((new.namespace, new.service), {})[key[1]] = new
            self._index(self.slices_by_ip, (e.ip for e in new.endpoints), key, True)
        self._changed()

    def delete_slice(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if self._drop_slice((str(meta.get("namespace", "")).lower(), str(meta.get("name", "")))):
            self._changed()

    def _drop_slice(self, key: tuple[str, str]) -> bool:
        old = self.slices.pop(key, None)
        if old is None:
            return False
        by_svc = self.slices_by_service.get((old.namespace, old.service))
        if by_svc is not None:
            by_svc.pop(key[1], None)
            if not by_svc:
                del self.slices_by_service[(old.namespace, old.service)]
        self._index(self.slices_by_ip, (e.ip for e in old.endpoints), key, False)
        return True

    # -------------------------------------------------------------- namespaces, pods

    def set_namespace(self, obj: Obj) -> None:
        name = str((obj.get("metadata") or {}).get("name", "")).lower()
        if name not in self.namespaces:
            self.namespaces.add(name)
            self._changed()

    def delete_namespace(self, obj: Obj) -> None:
        name = str((obj.get("metadata") or {}).get("name", "")).lower()
        if name in self.namespaces:
            self.namespaces.discard(name)
            self._changed()

    def set_pod(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")).lower(), str(meta.get("name", "")))
        ips = pod_ips(cast(k8s.Pod, obj))
        if self.pods.get(key) == ips:
            return
        self._drop_pod(key)
        if ips:
            self.pods[key] = ips
            for ip in ips:
                per_ns = self.pods_by_ip.setdefault(ip, {})
                per_ns[key[0]] = per_ns.get(key[0], 0) + 1
        self._changed()

    def delete_pod(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if self._drop_pod((str(meta.get("namespace", "")).lower(), str(meta.get("name", "")))):
            self._changed()

    def _drop_pod(self, key: tuple[str, str]) -> bool:
        ips = self.pods.pop(key, None)
        if ips is None:
            return False
        for ip in ips:
            per_ns = self.pods_by_ip.get(ip, {})
            left = per_ns.get(key[0], 0) - 1
            if left > 0:
                per_ns[key[0]] = left
            else:
                per_ns.pop(key[0], None)
                if not per_ns:
                    self.pods_by_ip.pop(ip, None)
        return True


@dataclass
class Answer:
    """Records for one question. ``chase``: a CNAME target outside the zone to be resolved
    upstream, whose records go after ``answer`` (the server does that, and may not)."""

    rcode: int = NOERROR
    answer: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    chase: dns.name.Name | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    """One thing a name stands for (CoreDNS's msg.Service): an address with a port, or a CNAME."""

    host: str
    port: int
    target: str  # the name an SRV record points at
    cname: bool = False


class _NameError(Exception):
    pass


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def reverse_ip(labels: list[str]) -> str | None:
    """The address a complete in-addr.arpa / ip6.arpa name stands for (labels lower-cased)."""
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        ip = _ip(".".join(reversed(labels[:4])))
        return str(ip) if ip is not None else None
    if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        if len(nibbles) != 32:
            return None
        ip = _ip(":".join(nibbles[i:i + 4] for i in range(0, 32, 4)))
        return str(ip) if ip is not None else None
    return None


class Resolver:
    def __init__(self, state: ClusterState, zone: str = "cluster.local", *, ttl: int = DEFAULT_TTL,
                 pods: str = "insecure") -> None:
        if pods not in ("insecure", "verified", "disabled"):
            raise ValueError(f"pods mode must be insecure, verified or disabled, not {pods!r}")
        self.state = state
        self.zone = zone.lower().strip(".")
        self.zone_labels = self.zone.split(".")
        self.zone_name = dns.name.from_text(self.zone)
        self.ttl = ttl
        self.pods = pods
        self._ns_name = dns.name.from_text("ns.dns." + self.zone)
        self._mbox = dns.name.from_text("hostmaster." + self.zone)

    # -------------------------------------------------------------- where a name belongs

    def in_zone(self, labels: list[str]) -> bool:
        n = len(self.zone_labels)
        return len(labels) >= n and labels[len(labels) - n:] == self.zone_labels

    @staticmethod
    def in_reverse_zone(labels: list[str]) -> bool:
        return labels[-2:] in (["in-addr", "arpa"], ["ip6", "arpa"])

    # -------------------------------------------------------------- the zone

    def soa(self) -> RR:
        ttl = min(300, self.ttl)
        rd = dns.rdtypes.ANY.SOA.SOA(IN, SOA, self._ns_name, self._mbox, self.state.modified & 0xFFFFFFFF,
                                     7200, 1800, 86400, self.ttl)
        return (self.zone_name, ttl, rd)

    def _negative(self, rcode: int) -> Answer:
        return Answer(rcode, authority=[self.soa()])

    def resolve(self, labels: list[str], qtype: int) -> Answer:
        """Answer a question for a name inside the cluster zone (labels lower-cased, no root)."""
        return self._resolve(labels, qtype, 0)

    def _resolve(self, labels: list[str], qtype: int, depth: int) -> Answer:
        owner = dns.name.Name([lb.encode("latin-1") for lb in labels] + [b""])
        rel = labels[:len(labels) - len(self.zone_labels)]
        if not rel:
            return self._apex(owner, qtype)
        if rel == ["dns-version"]:
            if qtype == TXT:
                return Answer(answer=[(owner, 28800, dns.rdtypes.ANY.TXT.TXT(IN, TXT, [SCHEMA_VERSION.encode()]))])
            return self._negative(NOERROR)
        if rel == ["ns", "dns"]:
            if qtype in (A, AAAA):
                return self._addresses(owner, qtype, [_Item(ip, -1, "") for ip in self._dns_ips()])
            return self._negative(NOERROR)
        try:
            items = self._items(rel)
        except _NameError:
            return self._negative(NXDOMAIN)
        if qtype in (A, AAAA):
            return self._addresses(owner, qtype, items, depth)
        if qtype == SRV:
            return self._srv(owner, items)
        if qtype == CNAME:
            cnames = [i for i in items if i.cname]
            if cnames:
                return Answer(answer=[(owner, self.ttl, self._cname(cnames[0].host))])
        return self._negative(NOERROR)

    def _apex(self, owner: dns.name.Name, qtype: int) -> Answer:
        if qtype == SOA:
            return Answer(answer=[self.soa()])
        if qtype == NS:
            ns = (owner, self.ttl, dns.rdtypes.ANY.NS.NS(IN, NS, self._ns_name))
            extra = self._addresses(self._ns_name, A, [_Item(ip, -1, "") for ip in self._dns_ips()]).answer
            return Answer(answer=[ns], additional=extra)
        return self._negative(NOERROR)

    def _dns_ips(self) -> tuple[str, ...]:
        svc = self.state.services.get(("kube-system", "kube-dns"))
        return svc.cluster_ips if svc else ()

    def _cname(self, target: str) -> dns.rdata.Rdata:
        return dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, dns.name.from_text(target))

    def _fqdn(self, *labels: str) -> str:
        return ".".join((*labels, self.zone)) + "."

    def _items(self, rel: list[str]) -> list[_Item]:
        """What a name inside the zone stands for; raises _NameError when it does not exist."""
        kind = rel[-1]
        if kind not in ("svc", "pod"):
            raise _NameError
        if len(rel) == 1:
            return []
        namespace = rel[-2]
        if namespace not in self.state.namespaces:
            raise _NameError
        if len(rel) == 2:
            return []
        if kind == "pod":
            return self._pod(rel[:-2], namespace)
        service, extra = rel[-3], rel[:-3]
        endpoint = port = proto = ""
        if len(extra) == 1:
            endpoint = extra[0]
        elif len(extra) == 2:
            port, proto = extra[0].removeprefix("_"), extra[1].removeprefix("_")
        elif extra:
            raise _NameError
        svc = self.state.services.get((namespace, service))
        if svc is None:
            raise _NameError
        items: list[_Item] = []
        if svc.external_name:
            if not endpoint and _ip(svc.external_name) is None:
                items.append(_Item(svc.external_name, -1, "", cname=True))
        elif svc.headless or endpoint:
            for sl in self.state.slices_by_service.get((namespace, service), {}).values():
                for ep in sl.endpoints:
                    if endpoint and endpoint != ep.dns_name:
                        continue
                    for p in sl.ports:
                        if (port and port != p.name) or (proto and proto != p.protocol):
                            continue
                        items.append(_Item(ep.ip, p.port, self._fqdn(ep.dns_name, service, namespace, "svc")))
        else:
            for p in svc.ports:
                if (port and port != p.name) or (proto and proto != p.protocol):
                    continue
                items.extend(_Item(ip, p.port, self._fqdn(service, namespace, "svc")) for ip in svc.cluster_ips)
                if not svc.cluster_ips:
                    items.append(_Item("", p.port, ""))  # a ClusterIP Service still waiting for its IP
        if not items:
            raise _NameError
        return items

    def _pod(self, rest: list[str], namespace: str) -> list[_Item]:
        if self.pods == "disabled" or len(rest) != 1:
            raise _NameError
        label = rest[0]
        text = label.replace("-", ".") if label.count("-") == 3 and "--" not in label else label.replace("-", ":")
        ip = _ip(text)
        if ip is None:
            raise _NameError
        if self.pods == "verified" and namespace not in self.state.pods_by_ip.get(str(ip), {}):
            raise _NameError
        return [_Item(str(ip), -1, "")]

    def _addresses(self, owner: dns.name.Name, qtype: int, items: list[_Item], depth: int = 0) -> Answer:
        out = Answer()
        seen: set[str] = set()
        for item in items:
            if item.cname:
                target = dns.name.from_text(item.host)
                if target == owner or depth >= MAX_CNAME_CHAIN:
                    continue
                cname = (owner, self.ttl, self._cname(item.host))
                target_labels = [lb.decode("latin-1").lower() for lb in target.labels[:-1]]
                if self.in_zone(target_labels):
                    inner = self._resolve(target_labels, qtype, depth + 1)
                    if inner.answer:  # CoreDNS adds the CNAME only when the target resolves
                        out.answer += [cname, *inner.answer]
                else:
                    out.answer.append(cname)
                    out.chase = target
                continue
            ip = _ip(item.host)
            if ip is None or item.host in seen or (ip.version == 4) != (qtype == A):
                continue
            seen.add(item.host)
            rd: dns.rdata.Rdata = (dns.rdtypes.IN.A.A(IN, A, item.host) if qtype == A
                                   else dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, item.host))
            out.answer.append((owner, self.ttl, rd))
        if not out.answer:
            out.authority = [self.soa()]
        return out

    def _srv(self, owner: dns.name.Name, items: list[_Item]) -> Answer:
        items = [i for i in items if not i.cname]
        out = Answer()
        if items:
            weight = max(1, 100 // len(items))
            seen_srv: set[tuple[str, int]] = set()
            seen_addr: set[tuple[str, str]] = set()
            for item in items:
                if item.port == -1 or not item.target:
                    continue
                if (item.target, item.port) not in seen_srv:
                    seen_srv.add((item.target, item.port))
                    target = dns.name.from_text(item.target)
                    out.answer.append((owner, self.ttl, dns.rdtypes.IN.SRV.SRV(IN, SRV, 0, weight, item.port, target)))
                ip = _ip(item.host)
                if ip is not None and (item.target, item.host) not in seen_addr:
                    seen_addr.add((item.target, item.host))
                    rd: dns.rdata.Rdata = (dns.rdtypes.IN.A.A(IN, A, item.host) if ip.version == 4
                                           else dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, item.host))
                    out.additional.append((dns.name.from_text(item.target), self.ttl, rd))
        if not out.answer:
            out.authority = [self.soa()]
        return out

    # -------------------------------------------------------------- reverse zones

    def reverse(self, labels: list[str], qtype: int) -> Answer | None:
        """PTR for a ClusterIP or a ready endpoint; None when the upstream resolvers should answer."""
        if qtype != PTR:
            return None
        ip = reverse_ip(labels)
        if ip is None:
            return None
        owner = dns.name.Name([lb.encode("latin-1") for lb in labels] + [b""])
        targets: list[str] = []
        for ns, name in sorted(self.state.services_by_ip.get(ip, ())):
            targets.append(self._fqdn(name, ns, "svc"))
            break  # CoreDNS answers with the first Service that has the address
        if not targets:
            for key in sorted(self.state.slices_by_ip.get(ip, ())):
                sl = self.state.slices[key]
                for ep in sl.endpoints:
                    if ep.ip == ip:
                        target = self._fqdn(ep.dns_name, sl.service, sl.namespace, "svc")
                        if target not in targets:
                            targets.append(target)
        if not targets:
            return None
        return Answer(answer=[(owner, self.ttl, dns.rdtypes.ANY.PTR.PTR(IN, PTR, dns.name.from_text(t)))
                              for t in targets])
