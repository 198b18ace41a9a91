"""The objects that make cluster DNS a system workload, as kubeadm installs CoreDNS.

``kubelite up`` creates them (ServiceAccount, Service, Deployment, in that order) and waits
for :func:`probe` before it calls the cluster ready. They mirror kubeadm's CoreDNS addon
(cmd/kubeadm/app/phases/addons/dns/manifests.go): the Service ``kube-dns`` at the tenth
address of the service CIDR, the Deployment ``coredns`` with the ``k8s-app=kube-dns``
label tools look for, the same probes and ports, and ``dnsPolicy: Default`` so the DNS
server itself resolves through the node's resolvers, not through itself. Differences: the
image is our built-in ``kubelite/dns`` configured by flags (no Corefile ConfigMap), one
replica (memory matters on one machine). The RBAC objects are kubeadm's: the ClusterRole
``system:coredns`` (list and watch what DNS serves) bound to the ``coredns`` ServiceAccount.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket

import dns.message
import dns.rdatatype

from kubelite.api.types import Obj

NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}
IMAGE = "kubelite/dns"


def cluster_dns_ip(service_cidr: str) -> str:
    """The tenth address of the service CIDR (10.96.0.10 for 10.96.0.0/12), as kubeadm picks it."""
    net = ipaddress.ip_network(service_cidr, strict=False)
    return str(net.network_address + 10)


def service_account() -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": NAMESPACE}}


def service(cluster_ip: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": NAMESPACE,
            "labels": {**LABELS, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "selector": dict(LABELS),
            "clusterIP": cluster_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }


def deployment(zone: str = "cluster.local", *, replicas: int = 1, image: str = IMAGE) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{
                        "name": "coredns",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["--zone", zone],
                        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                        "ports": [
                            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
                            {"containerPort": 8080, "name": "liveness-probe", "protocol": "TCP"},
                            {"containerPort": 8181, "name": "readiness-probe", "protocol": "TCP"},
                        ],
                        "livenessProbe": {
                            "httpGet": {"path": "/health", "port": "liveness-probe", "scheme": "HTTP"},
                            "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1,
                            "failureThreshold": 5,
                        },
                        # kubeadm probes every 10 s (the default); every second here, so that a
                        # new cluster is answering names within its 2-second start.
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "readiness-probe", "scheme": "HTTP"},
                                           "periodSeconds": 1},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": True,
                        },
                    }],
                    "dnsPolicy": "Default",
                },
            },
        },
    }


def cluster_role() -> Obj:
    """kubeadm's ``system:coredns``: what the DNS server lists and watches, nothing more."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    }


def cluster_role_binding() -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "system:coredns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
        "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}],
    }


def objects(cluster_ip: str, zone: str = "cluster.local") -> list[Obj]:
    """Everything cluster DNS needs, in creation order."""
    return [cluster_role(), cluster_role_binding(), service_account(), service(cluster_ip), deployment(zone)]


async def probe(server_ip: str, port: int = 53, within: float = 1.0, *, zone: str = "cluster.local",
                sock: socket.socket | None = None) -> bool:
    """True when the server at ``server_ip:port`` resolves ``kubernetes.default.svc.<zone>`` over UDP.

    The kube-dns ClusterIP only exists inside the node's network namespace: pass a UDP ``sock``
    created there (it is closed afterwards), as the agent's relay creates its listeners.
    """
    q = dns.message.make_query(f"kubernetes.default.svc.{zone}", dns.rdatatype.A)
    q.id = secrets.randbits(16)
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server_ip else socket.AF_INET
    with sock or socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (server_ip, port))
            await loop.sock_sendall(sock, q.to_wire())
            async with asyncio.timeout(within):
                while True:
                    data = await loop.sock_recv(sock, 65535)
                    with contextlib.suppress(Exception):
                        r = dns.message.from_wire(data)
                        if r.id == q.id:
                            return r.rcode() == 0 and any(rrset.rdtype == dns.rdatatype.A for rrset in r.answer)
        except (TimeoutError, OSError):
            return False
