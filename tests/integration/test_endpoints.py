"""EndpointSlices and Endpoints follow pods, against a real ``kubelite up`` and the real kubectl.

No node agent runs pods here, so the tests play the kubelet the way Kubernetes' own
controller tests do: a Node object, pods bound to it, and pod status (IP, Ready) written
through the ``pods/<name>/status`` subresource.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from kubelite.client import ENDPOINTS, ENDPOINTSLICES, NAMESPACES, NODES, PODS, SERVICES, ApiError, Client
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
T = TypeVar("T")
SLICE_LABEL = "kubernetes.io/service-name"


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Client]:
    client = Client.from_kubeconfig(cluster.kubeconfig)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def ns(api: Client) -> str:
    name = f"ep-{uuid.uuid4().hex[:6]}"
    await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
async def node(api: Client) -> str:
    name = f"node-{uuid.uuid4().hex[:6]}"
    await api.create(NODES, {"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
    return name


async def wait_for(fn: Callable[[], Awaitable[T | None]], within: float = 10.0, what: str = "") -> T:
    """Poll until ``fn`` returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        last = await fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {json.dumps(last, default=str)[:2000]}")
        await asyncio.sleep(0.05)


async def slices_of(api: Client, ns: str, svc: str) -> list[Obj]:
    items: list[Obj] = (await api.list(ENDPOINTSLICES, ns, label_selector=f"{SLICE_LABEL}={svc}"))["items"]
    return items


async def endpoints_of(api: Client, ns: str, svc: str) -> Obj | None:
    try:
        return await api.get(ENDPOINTS, svc, ns)
    except ApiError as e:
        if e.not_found:
            return None
        raise


def by_pod(slices: list[Obj]) -> dict[str, Obj]:
    return {(e.get("targetRef") or {}).get("name", "?"): e for s in slices for e in s.get("endpoints") or []}


async def make_service(api: Client, ns: str, name: str, **spec: Any) -> Obj:
    spec.setdefault("selector", {"app": name})
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": 8080}])
    if spec["selector"] is None:
        del spec["selector"]
    return await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                       "metadata": {"name": name, "labels": {"tier": "web"}}, "spec": spec}, ns)


async def make_pod(api: Client, ns: str, name: str, node: str, app: str, *, ports: list[Obj] | None = None,
                   **spec: Any) -> Obj:
    return await api.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox", "ports": ports or []}], **spec},
    }, ns)


async def set_status(api: Client, ns: str, name: str, ip: str | None, ready: bool) -> Obj:
    status: Obj = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    return await api.patch(PODS, name, {"status": status}, ns, subresource="status")


async def test_slices_and_endpoints_follow_pods(cluster: Cluster, api: Client, ns: str, node: str) -> None:
    svc = await make_service(api, ns, "web")

    # Nothing selected yet: exactly one empty slice, and Endpoints without subsets.
    async def placeholder() -> list[Obj] | None:
        got = await slices_of(api, ns, "web")
        return got if got and all(s.get("endpoints") is None for s in got) else None
    slices = await wait_for(placeholder, what="placeholder slice")
    assert len(slices) == 1
    s = slices[0]
    assert s["endpoints"] is None and s["ports"] is None and s["addressType"] == "IPv4"
    assert s["metadata"]["generateName"] == "web-" and s["metadata"]["name"].startswith("web-")
    assert s["metadata"]["labels"] == {"tier": "web", "kubernetes.io/service-name": "web",
                                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                 "uid": svc["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]
    ep = await wait_for(lambda: endpoints_of(api, ns, "web"), what="Endpoints")
    assert "subsets" not in ep and "ownerReferences" not in ep["metadata"]
    assert ep["metadata"]["labels"] == {"tier": "web", "endpoints.kubernetes.io/managed-by": "endpoint-controller"}

    # Pods without an IP are not endpoints.
    pa = await make_pod(api, ns, "a", node, "web")
    await make_pod(api, ns, "b", node, "web")
    await set_status(api, ns, "a", "10.244.7.1", ready=False)

    async def condition(pod: str, want: Obj) -> dict[str, Obj] | None:
        eps = by_pod(await slices_of(api, ns, "web"))
        return eps if pod in eps and eps[pod]["conditions"] == want else None

    eps = await wait_for(lambda: condition("a", {"ready": False, "serving": False, "terminating": False}),
                         what="unready endpoint")
    assert set(eps) == {"a"}
    assert eps["a"] == {"addresses": ["10.244.7.1"], "conditions": {"ready": False, "serving": False,
                                                                     "terminating": False},
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": "a", "uid": pa["metadata"]["uid"]},
                        "nodeName": node, "zone": "zone-a"}
    slices = await slices_of(api, ns, "web")
    assert len(slices) == 1 and slices[0]["metadata"]["name"] == s["metadata"]["name"]  # the same slice, reused
    assert slices[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert "endpoints.kubernetes.io/last-change-trigger-time" in slices[0]["metadata"]["annotations"]

    async def not_ready_addresses() -> Obj | None:
        ep = await endpoints_of(api, ns, "web")
        return ep if ep and ep.get("subsets") and ep["subsets"][0].get("notReadyAddresses") else None
    ep = await wait_for(not_ready_addresses, what="notReadyAddresses")
    assert ep["subsets"] == [{"notReadyAddresses": [{"ip": "10.244.7.1", "nodeName": node, "targetRef": {
        "kind": "Pod", "namespace": ns, "name": "a", "uid": pa["metadata"]["uid"]}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]

    # Ready, then a second pod ready too.
    await set_status(api, ns, "a", "10.244.7.1", ready=True)
    await set_status(api, ns, "b", "10.244.7.2", ready=True)
    ready = {"ready": True, "serving": True, "terminating": False}
    await wait_for(lambda: condition("a", ready), what="ready a")
    await wait_for(lambda: condition("b", ready), what="ready b")

    async def both_ready() -> Obj | None:
        ep = await endpoints_of(api, ns, "web")
        ips = [a["ip"] for sub in (ep or {}).get("subsets") or [] for a in sub.get("addresses") or []]
        return ep if ips == ["10.244.7.1", "10.244.7.2"] else None
    await wait_for(both_ready, what="two ready addresses")
    lines = cluster.kubectl("get", "endpoints", "web", "-n", ns, check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert lines[1].split()[:2] == ["web", "10.244.7.1:8080,10.244.7.2:8080"]

    # Deleting a pod bound to a node leaves it terminating: serving, not ready, not in Endpoints.
    await api.delete(PODS, "a", ns)
    await wait_for(lambda: condition("a", {"ready": False, "serving": True, "terminating": True}),
                   what="terminating endpoint")

    async def only_b() -> Obj | None:
        ep = await endpoints_of(api, ns, "web")
        subsets = (ep or {}).get("subsets") or []
        ips = [a["ip"] for sub in subsets for k in ("addresses", "notReadyAddresses") for a in sub.get(k) or []]
        return ep if ips == ["10.244.7.2"] else None
    await wait_for(only_b, what="terminating pod out of Endpoints")

    # Gone for good: out of the slice.
    await api.delete(PODS, "a", ns, grace_period_seconds=0)

    async def a_gone() -> dict[str, Obj] | None:
        eps = by_pod(await slices_of(api, ns, "web"))
        return eps if set(eps) == {"b"} else None
    await wait_for(a_gone, what="deleted pod out of the slice")
    assert len(await slices_of(api, ns, "web")) == 1

    # A pod relabelled out of the selector leaves.
    await api.patch(PODS, "b", {"metadata": {"labels": {"app": "other"}}}, ns)
    await wait_for(placeholder, what="back to the empty slice")

    # The Service goes: its Endpoints go too (they have no owner to be collected with).
    await api.delete(SERVICES, "web", ns)

    async def ep_gone() -> bool:
        return await endpoints_of(api, ns, "web") is None
    await wait_for(ep_gone, what="Endpoints deleted with the Service")


async def test_multiport_named_ports(api: Client, ns: str, node: str) -> None:
    """Reference section 7: ports named svc1/svc2 resolve per pod, so pods split by port set."""
    await make_service(api, ns, "multi", ports=[
        {"name": "svc1", "port": 80, "targetPort": "http"},
        {"name": "svc2", "port": 81, "targetPort": "metrics"},
    ])
    await make_pod(api, ns, "pod1", node, "multi", ports=[{"name": "http", "containerPort": 100}])
    await make_pod(api, ns, "pod2", node, "multi", ports=[{"name": "http", "containerPort": 101},
                                                          {"name": "metrics", "containerPort": 201}])
    await make_pod(api, ns, "pod3", node, "multi", ports=[{"name": "other", "containerPort": 102}])
    for i, p in enumerate(("pod1", "pod2", "pod3"), 1):
        await set_status(api, ns, p, f"10.244.8.{i}", ready=True)

    async def split() -> list[Obj] | None:
        got = [s for s in await slices_of(api, ns, "multi") if s.get("endpoints")]
        return got if len(got) == 3 else None
    slices = await wait_for(split, what="three slices")
    got = sorted((sorted(e["targetRef"]["name"] for e in s["endpoints"]), s["ports"]) for s in slices)
    # pod3 resolves neither name: it is an endpoint with no ports, in a slice of its own.
    assert got == [
        (["pod1"], [{"name": "svc1", "port": 100, "protocol": "TCP"}]),
        (["pod2"], [{"name": "svc1", "port": 101, "protocol": "TCP"},
                    {"name": "svc2", "port": 201, "protocol": "TCP"}]),
        (["pod3"], None),
    ]
    assert len(await slices_of(api, ns, "multi")) == 3  # no placeholder next to them

    async def subsets() -> list[Obj] | None:
        ep = await endpoints_of(api, ns, "multi")
        subs = (ep or {}).get("subsets") or []
        return subs if len(subs) == 2 else None
    subs = await wait_for(subsets, what="two subsets")
    assert sorted(([a["ip"] for a in s["addresses"]], [(p["name"], p["port"]) for p in s["ports"]])
                  for s in subs) == [
        (["10.244.8.1"], [("svc1", 100)]),
        (["10.244.8.2"], [("svc1", 101), ("svc2", 201)]),
    ]


async def test_publish_not_ready_addresses(api: Client, ns: str, node: str) -> None:
    await make_service(api, ns, "pub", publishNotReadyAddresses=True, clusterIP="None")
    await make_pod(api, ns, "u", node, "pub", hostname="u-host", subdomain="pub")
    await set_status(api, ns, "u", "10.244.9.1", ready=False)

    async def published() -> dict[str, Obj] | None:
        eps = by_pod(await slices_of(api, ns, "pub"))
        return eps if "u" in eps else None
    eps = await wait_for(published, what="unready endpoint")
    assert eps["u"]["conditions"] == {"ready": True, "serving": False, "terminating": False}
    assert eps["u"]["hostname"] == "u-host"
    slices = await slices_of(api, ns, "pub")
    assert slices[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""

    async def addresses() -> list[Obj] | None:
        ep = await endpoints_of(api, ns, "pub")
        subs = (ep or {}).get("subsets") or []
        return subs if subs and subs[0].get("addresses") else None
    subs = await wait_for(addresses, what="unready pod as a ready address")
    assert subs[0]["addresses"][0]["hostname"] == "u-host" and "notReadyAddresses" not in subs[0]
    ep = await endpoints_of(api, ns, "pub")
    assert ep is not None and ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""

    # Terminating, and still published.
    await api.delete(PODS, "u", ns)
    await wait_for(lambda: _cond(api, ns, "pub", "u", {"ready": True, "serving": False, "terminating": True}),
                   what="terminating but ready")
    await api.delete(PODS, "u", ns, grace_period_seconds=0)


async def _cond(api: Client, ns: str, svc: str, pod: str, want: Obj) -> bool:
    eps = by_pod(await slices_of(api, ns, svc))
    return pod in eps and eps[pod]["conditions"] == want


async def test_hostname_only_for_matching_subdomain(api: Client, ns: str, node: str) -> None:
    await make_service(api, ns, "hl", clusterIP="None")
    await make_pod(api, ns, "h1", node, "hl", hostname="one", subdomain="hl")
    await make_pod(api, ns, "h2", node, "hl", hostname="two", subdomain="elsewhere")
    await set_status(api, ns, "h1", "10.244.10.1", ready=True)
    await set_status(api, ns, "h2", "10.244.10.2", ready=True)

    async def both() -> dict[str, Obj] | None:
        eps = by_pod(await slices_of(api, ns, "hl"))
        return eps if set(eps) == {"h1", "h2"} else None
    eps = await wait_for(both, what="two endpoints")
    assert eps["h1"]["hostname"] == "one" and "hostname" not in eps["h2"]


async def test_services_left_alone(api: Client, ns: str, node: str) -> None:
    # A Service without selector keeps the Endpoints its user writes; ExternalName gets nothing.
    await make_service(api, ns, "manual", selector=None)
    manual = await api.create(ENDPOINTS, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
                                          "subsets": [{"addresses": [{"ip": "192.0.2.1"}],
                                                       "ports": [{"port": 80, "protocol": "TCP"}]}]}, ns)
    await api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                                "spec": {"type": "ExternalName", "externalName": "example.com",
                                         "selector": {"app": "ext"}}}, ns)
    await make_pod(api, ns, "e", node, "ext")
    await set_status(api, ns, "e", "10.244.11.1", ready=True)
    # A selecting Service created afterwards is a marker that the controllers have caught up.
    await make_service(api, ns, "marker")
    await wait_for(lambda: slices_of(api, ns, "marker"), what="marker slice")
    await wait_for(lambda: endpoints_of(api, ns, "marker"), what="marker Endpoints")
    assert await slices_of(api, ns, "manual") == []
    assert await slices_of(api, ns, "ext") == []
    assert await endpoints_of(api, ns, "ext") is None
    now = await endpoints_of(api, ns, "manual")
    assert now is not None and now["metadata"]["resourceVersion"] == manual["metadata"]["resourceVersion"]
    # The API server's own kubernetes Service is never touched either.
    kube = await api.list(ENDPOINTSLICES, "default", label_selector=f"{SLICE_LABEL}=kubernetes")
    assert [s["metadata"]["name"] for s in kube["items"]] == ["kubernetes"]


async def test_many_pods_split_across_slices(cluster: Cluster, api: Client, ns: str, node: str) -> None:
    await make_service(api, ns, "big")
    names = [f"p{i:03d}" for i in range(150)]
    sem = asyncio.Semaphore(20)

    async def one(i: int, name: str) -> None:
        async with sem:
            await make_pod(api, ns, name, node, "big")
            await set_status(api, ns, name, f"10.244.{20 + i // 200}.{i % 200 + 1}", ready=True)
    await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))

    async def all_in() -> list[Obj] | None:
        slices = await slices_of(api, ns, "big")
        eps = by_pod(slices)
        return slices if len(eps) == 150 and all(e["conditions"]["ready"] for e in eps.values()) else None
    slices = await wait_for(all_in, within=20, what="150 endpoints")
    assert all(len(s.get("endpoints") or []) <= 100 for s in slices)
    assert sum(len(s.get("endpoints") or []) for s in slices) == 150
    # Every pod exactly once.
    assert sorted(e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []) == names

    async def ep_all() -> Obj | None:
        ep = await endpoints_of(api, ns, "big")
        n = sum(len(s.get("addresses") or []) for s in (ep or {}).get("subsets") or [])
        return ep if n == 150 else None
    await wait_for(ep_all, within=20, what="150 addresses")
    row = cluster.kubectl("get", "endpoints", "big", "-n", ns, check=True).stdout.splitlines()[1]
    assert row.startswith("big ") and ":8080 + 147 more..." in row, row


async def test_managed_slices_are_restored(api: Client, ns: str, node: str) -> None:
    await make_service(api, ns, "keep")
    await make_pod(api, ns, "k", node, "keep")
    await set_status(api, ns, "k", "10.244.12.1", ready=True)

    async def one_endpoint() -> list[Obj] | None:
        slices = await slices_of(api, ns, "keep")
        return slices if len(slices) == 1 and set(by_pod(slices)) == {"k"} else None
    [s] = await wait_for(one_endpoint, what="slice with the pod")

    # Someone empties the slice's endpoints: the controller puts them back.
    s["endpoints"] = [{"addresses": ["192.0.2.99"], "conditions": {"ready": True}}]
    await api.update(ENDPOINTSLICES, s)
    [restored] = await wait_for(one_endpoint, what="slice restored after modification")
    assert restored["metadata"]["name"] == s["metadata"]["name"]

    # Someone deletes it: a new one appears.
    await api.delete(ENDPOINTSLICES, s["metadata"]["name"], ns)

    async def recreated() -> list[Obj] | None:
        got = await one_endpoint()
        return got if got and got[0]["metadata"]["name"] != s["metadata"]["name"] else None
    await wait_for(recreated, what="slice recreated after deletion")

    # Someone deletes the Endpoints: recreated too.
    await api.delete(ENDPOINTS, "keep", ns)

    async def ep_back() -> Obj | None:
        ep = await endpoints_of(api, ns, "keep")
        return ep if ep and ep.get("subsets") else None
    await wait_for(ep_back, what="Endpoints recreated")
