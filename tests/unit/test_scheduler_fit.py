"""NodeResourcesFit, NodePorts and the preemption verdict, against kube-scheduler 1.33's rules and texts."""

from __future__ import annotations

import decimal
from typing import Any

from kubelite.controllers import defaultpreemption, nodeports, noderesources
from kubelite.controllers.scheduler import fit_error, resolvable_reasons

Obj = dict[str, Any]
D = decimal.Decimal


def preemption_reasons(pod: Obj, node: Obj, pods: list[Obj]) -> list[str]:
    victims, reasons = defaultpreemption.select_victims(pod, node, pods, resolvable_reasons)
    assert victims is None
    return reasons


def node(**allocatable: str) -> Obj:
    alloc = {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "110", **allocatable}
    return {"metadata": {"name": "n1"}, "status": {"allocatable": alloc,
                                                  "conditions": [{"type": "Ready", "status": "True"}]}}


def container(name: str = "c", **requests: str) -> Obj:
    return {"name": name, "resources": {"requests": requests} if requests else {}}


def with_ports(*ports: Obj) -> Obj:
    return {"name": "c", "ports": list(ports)}


def pod(*containers: Obj, init: list[Obj] | None = None, priority: int = 0, **spec: Any) -> Obj:
    s: Obj = {"containers": list(containers) or [container()], "priority": priority, **spec}
    if init:
        s["initContainers"] = init
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": s}


def test_requests_sum_containers_and_take_the_largest_init_container() -> None:
    # The example in kube-scheduler's computePodResourceRequest.
    p = pod(container("c1", cpu="2", memory="1G"), container("c2", cpu="1", memory="1G"),
            init=[container("i1", cpu="2", memory="1G"), container("i2", cpu="2", memory="3G")])
    assert noderesources.pod_requests(p) == {"cpu": D(3), "memory": D(3 * 10**9)}


def test_sidecars_add_to_the_pod_and_run_beside_later_init_containers() -> None:
    p = pod(container("main", cpu="1"),
            init=[container("side", cpu="500m"), container("setup", cpu="2")])
    p["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    # steady state 1 + 0.5; while "setup" runs: 2 + 0.5 next to the sidecar.
    assert noderesources.pod_requests(p) == {"cpu": D("2.5")}


def test_overhead_comes_on_top() -> None:
    p = pod(container(cpu="100m"), overhead={"cpu": "250m", "memory": "120Mi"})
    assert noderesources.pod_requests(p) == {"cpu": D("0.35"), "memory": D(120 * 2**20)}


def test_a_pod_too_big_for_the_node_gets_kube_schedulers_message() -> None:
    p = pod(container(cpu="100"))
    reasons = resolvable_reasons(p, node(), [])
    assert reasons == ["Insufficient cpu"]
    msg = fit_error(p, 1, reasons, preemption_reasons(p, node(), []))
    assert msg == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
                   "1 No preemption victims found for incoming pod.")


def test_what_is_already_scheduled_counts_against_allocatable() -> None:
    held = [pod(container(cpu="1500m", memory="3Gi"))]
    assert resolvable_reasons(pod(container(cpu="500m", memory="1Gi")), node(), held) == []
    assert resolvable_reasons(pod(container(cpu="501m", memory="1Gi")), node(), held) == ["Insufficient cpu"]
    assert resolvable_reasons(pod(container(cpu="1", memory="2Gi", **{"ephemeral-storage": "11Gi"})), node(),
                              held) == ["Insufficient cpu", "Insufficient memory", "Insufficient ephemeral-storage"]


def test_a_pod_requesting_nothing_fits_a_full_node_but_counts_against_pods() -> None:
    full = [pod(container(cpu="2"))]
    assert resolvable_reasons(pod(), node(), full) == []
    assert resolvable_reasons(pod(), node(pods="1"), full) == ["Too many pods"]
    # A node that reports no allocatable pods takes none (as in kube-scheduler).
    bare = {"metadata": {"name": "n"}, "status": {}}
    assert resolvable_reasons(pod(), bare, []) == ["Too many pods"]


def test_extended_resources() -> None:
    p = pod(container(**{"example.com/gpu": "1"}))
    assert resolvable_reasons(p, node(), []) == ["Insufficient example.com/gpu"]
    assert resolvable_reasons(p, node(**{"example.com/gpu": "1"}), []) == []
    assert resolvable_reasons(p, node(**{"example.com/gpu": "1"}), [p]) == ["Insufficient example.com/gpu"]


def test_host_port_conflicts() -> None:
    web = pod(with_ports({"containerPort": 80, "hostPort": 8080}))
    assert nodeports.host_ports(web) == [("TCP", "0.0.0.0", 8080)]
    assert resolvable_reasons(web, node(), [web]) == [
        "node(s) didn't have free ports for the requested pod ports"]
    udp = pod(with_ports({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}))
    assert resolvable_reasons(udp, node(), [web]) == []
    on_ip = pod(with_ports({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}))
    other_ip = pod(with_ports({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}))
    assert resolvable_reasons(on_ip, node(), [other_ip]) == []
    assert resolvable_reasons(on_ip, node(), [web]) != []  # 0.0.0.0 overlaps every address
    assert resolvable_reasons(pod(with_ports({"containerPort": 80})), node(), [web]) == []


def named(pod: Obj, name: str, start: str = "") -> Obj:
    pod["metadata"] = {**pod["metadata"], "name": name}
    pod["status"] = {"startTime": start}
    return pod


def test_preemption_picks_the_fewest_least_important_victims() -> None:
    big = pod(container(cpu="1500m"), priority=100)
    held = [named(pod(container(cpu="500m"), priority=p), f"p{p}-{i}") for i, p in enumerate((1, 2, 3, 200))]
    victims, reasons = defaultpreemption.select_victims(big, node(), held, resolvable_reasons)
    # 2 CPUs, 0.5 held by a pod of higher priority: the new pod needs 1.5, so every lower one
    # must go (the reprieve gives none back).
    assert reasons == [] and victims is not None
    assert sorted(v["metadata"]["name"] for v in victims) == ["p1-0", "p2-1", "p3-2"]
    small = pod(container(cpu="600m"), priority=100)
    victims, _ = defaultpreemption.select_victims(small, node(), held, resolvable_reasons)
    # Nothing free, 0.6 needed: the most important lower pod (priority 3) is given back
    # first and fits; then neither of the others can come back (kube-scheduler's reprieve
    # is greedy by importance, not a search for the fewest victims).
    assert victims is not None and [v["metadata"]["name"] for v in victims] == ["p2-1", "p1-0"]
    a = defaultpreemption.Candidate("a", [held[2]])
    b = defaultpreemption.Candidate("b", [held[0], held[1]])
    assert defaultpreemption.pick([a, b]) is b  # lower highest priority wins over fewer victims
    assert defaultpreemption.pick([]) is None


def test_preemption_eligibility() -> None:
    p = pod(priority=100)
    assert defaultpreemption.ineligible({**p, "spec": {**p["spec"], "preemptionPolicy": "Never"}}, None, False) == (
        "not eligible due to preemptionPolicy=Never.")
    victim = pod(priority=0)
    victim["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    victim["status"] = {"conditions": [defaultpreemption.disruption_condition("default-scheduler", "t")]}
    assert defaultpreemption.ineligible(p, [victim], False) == (
        "not eligible due to a terminating pod on the nominated node.")
    assert defaultpreemption.ineligible(p, [victim], True) is None  # the nominated node is out anyway
    assert defaultpreemption.ineligible(p, None, False) is None
    assert victim["status"]["conditions"][0]["message"] == (
        "default-scheduler: preempting to accommodate a higher priority pod")


def test_preemption_verdicts() -> None:
    big = pod(container(cpu="2"), priority=100)
    low, same = pod(container(cpu="1"), priority=0), pod(container(cpu="1"), priority=100)
    assert preemption_reasons(big, node(), [same]) == ["No preemption victims found for incoming pod"]
    # Even without the lower-priority pod the node is too small: the filter's reasons again.
    assert preemption_reasons(big, node(), [low, same]) == ["Insufficient cpu"]
    two = [
        ("Insufficient cpu", "No preemption victims found for incoming pod"),
        ("node(s) didn't match Pod's node affinity/selector", "Preemption is not helpful for scheduling"),
    ]
    msg = fit_error(big, 2, [r for r, _ in two], [v for _, v in two])
    assert msg == ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node "
                   "affinity/selector. preemption: 0/2 nodes are available: 1 No preemption victims found "
                   "for incoming pod, 1 Preemption is not helpful for scheduling.")


def test_room_a_preemption_made_is_kept_for_the_nominated_pod() -> None:
    from kubelite.controllers.scheduler import nominated_to

    def named(p: Obj, uid: str, nominated: str = "") -> Obj:
        p["metadata"] = {"name": uid, "namespace": "ns", "uid": uid}
        if nominated:
            p["status"] = {"nominatedNodeName": nominated}
        return p

    n = node(**{"example.com/fakecpu": "1000"})
    running = [named(pod(container(**{"example.com/fakecpu": "450"}), priority=3), "rs3")]
    preemptor = named(pod(container(**{"example.com/fakecpu": "500"}), priority=4), "rs4", nominated="n1")
    low = named(pod(container(**{"example.com/fakecpu": "200"}), priority=1), "rs1")
    pending = [preemptor, low]
    # Without the nominated pod the low one would fit into the room its eviction made ...
    assert resolvable_reasons(low, n, running) == []
    # ... with it (its priority is higher) it does not; the preemptor itself and pods of its
    # priority or above are not held back by it.
    assert nominated_to("n1", low, pending) == [preemptor]
    assert resolvable_reasons(low, n, running + nominated_to("n1", low, pending)) != []
    assert nominated_to("n1", preemptor, pending) == []
    assert nominated_to("n2", low, pending) == []
    higher = named(pod(container(**{"example.com/fakecpu": "10"}), priority=9), "x")
    assert nominated_to("n1", higher, pending) == []
