"""Two clusters side by side, one with the default CIDRs and one with others, both with DNS.

Two clusters on one machine, with the same or different CIDRs, is a promise of ours. A cluster
with ``--service-cidr 10.128.0.0/16 --pod-cidr 10.245.0.0/24`` once never got DNS: the
``kubernetes`` Service's endpoint (where pods reach the API server, through the node agent's
relay on the node's gateway) was the default pod CIDR's gateway 10.244.0.1, which does not
exist in that cluster, so the ``coredns`` pod's informers never synced and it stayed unready.

Each cluster here answers a Service's name from a pod, through its own kube-dns ClusterIP, and
its pods' resolv.conf and the ``kubernetes`` Service's endpoint are inside its own ranges.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]
ZONE = "cluster.local"

# (--service-cidr, --pod-cidr) of each cluster; None: up's defaults.
CIDRS: dict[str, tuple[str, str] | None] = {
    "default": None,
    "other": ("10.128.0.0/16", "10.245.0.0/24"),
}
# What each cluster's ranges make of the well-known addresses.
EXPECTED = {
    "default": {"dns": "10.96.0.10", "kubernetes": "10.96.0.1", "gateway": "10.244.0.1", "pods": "10.244.0."},
    "other": {"dns": "10.128.0.10", "kubernetes": "10.128.0.1", "gateway": "10.245.0.1", "pods": "10.245.0."},
}


def start(cluster: Cluster, cidrs: tuple[str, str] | None, errors: list[BaseException]) -> None:
    extra = ["--service-cidr", cidrs[0], "--pod-cidr", cidrs[1]] if cidrs else []
    try:
        # `up` says it is ready even when cluster DNS is not (after 30 s, with a warning).
        cluster.start(agent=True, timeout=45, extra=extra)
    except BaseException as e:  # reported by the test, not lost in the thread
        errors.append(e)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cluster]]:
    require_root_netns()
    require(shutil.which("nft") is not None, "nft (nftables) is not installed")
    require(shutil.which("busybox") is not None, "busybox is not installed")
    require(kubectl_binary() is not None, "kubectl is not installed")
    base = tmp_path_factory.mktemp("cidrs")
    clusters = {key: new_cluster(base) for key in CIDRS}
    try:
        # Started at once: both run side by side, each in namespaces of its own.
        errors: list[BaseException] = []
        threads = [threading.Thread(target=start, args=(c, CIDRS[key], errors)) for key, c in clusters.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for cluster in clusters.values():
            cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                 "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bb"},
                 "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}},
            ]))
        for cluster in clusters.values():
            cluster.kubectl("wait", "--for=condition=Ready", "pod/bb", "--timeout=20s", check=True)
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.stop(timeout=60)
            subprocess.run([sys.executable, "-m", "kubelite", "down", "--name", cluster.name,
                            "--data-dir", str(cluster.data_dir)], capture_output=True)
        for cluster in clusters.values():
            assert not [n for n in netns_names() if n.startswith(f"{cluster.name}-")]


def get(cluster: Cluster, *args: str) -> Obj:
    result: Obj = json.loads(cluster.kubectl("get", "-o", "json", *args, check=True).stdout)
    return result


def nslookup(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    """busybox nslookup's (name, address) pairs, asked from the pod ``bb``."""
    out = cluster.kubectl("exec", "bb", "--", "nslookup", name).stdout
    pairs, current = [], ""
    for line in out.splitlines():
        if line.startswith("Name:"):
            current = line.split(None, 1)[1]
        elif line.startswith("Address:") and current:
            pairs.append((current, line.split(None, 1)[1]))
    return pairs


@pytest.mark.parametrize("key", list(CIDRS))
def test_cluster_dns_answers_in_each_cluster(clusters: dict[str, Cluster], key: str) -> None:
    cluster, expected = clusters[key], EXPECTED[key]
    assert f" ✓ cluster DNS answers at {expected['dns']}" in "".join(cluster.output), "".join(cluster.output)
    # Pods reach the API server at their own node's gateway, through the agent's relay.
    slice_ = get(cluster, "endpointslice", "kubernetes")
    assert [e["addresses"] for e in slice_["endpoints"]] == [[expected["gateway"]]]
    assert get(cluster, "service", "kubernetes")["spec"]["clusterIP"] == expected["kubernetes"]
    coredns = get(cluster, "-n", "kube-system", "pods", "-l", "k8s-app=kube-dns")["items"]
    assert [c["ready"] for p in coredns for c in p["status"]["containerStatuses"]] == [True]
    bb = get(cluster, "pod", "bb")
    assert bb["status"]["podIP"].startswith(expected["pods"])
    resolv = cluster.kubectl("exec", "bb", "--", "cat", "/etc/resolv.conf", check=True).stdout
    assert f"nameserver {expected['dns']}" in resolv.splitlines()
    web = get(cluster, "service", "web")["spec"]["clusterIP"]
    assert nslookup(cluster, "web") == [(f"web.default.svc.{ZONE}", web)]
    assert nslookup(cluster, f"kubernetes.default.svc.{ZONE}") == [
        (f"kubernetes.default.svc.{ZONE}", expected["kubernetes"])]

