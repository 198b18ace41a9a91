"""Which crashed runs' pods a new `kubelite up` keeps for its agent to adopt (issue 20, point 5).

The same node coming back keeps its running pods, as a restarted kubelet does; a node that
is not coming back (no agent now, another cluster name in the same data dir, another pod
CIDR) is removed whole, as `kubelite down` removes it.
"""

from __future__ import annotations

from kubelite.cli.main import node_comes_back

RUN = {"pid": 4242, "name": "dev", "agent": True, "podCIDR": "10.244.0.0/24"}


def test_the_same_node_comes_back() -> None:
    assert node_comes_back(RUN, "dev", agent=True, pod_cidr="10.244.0.0/24")
    # A run file written before the node's settings were recorded.
    assert node_comes_back({"pid": 4242, "name": "dev"}, "dev", agent=True, pod_cidr="10.244.0.0/24")


def test_a_node_that_does_not_come_back() -> None:
    assert not node_comes_back(RUN, "dev", agent=False, pod_cidr="10.244.0.0/24")  # --no-agent now
    assert not node_comes_back(RUN, "other", agent=True, pod_cidr="10.244.0.0/24")
    assert not node_comes_back(RUN, "dev", agent=True, pod_cidr="10.245.0.0/24")
    assert not node_comes_back({**RUN, "agent": False}, "dev", agent=True, pod_cidr="10.244.0.0/24")
