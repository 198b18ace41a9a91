"""The node's allocatable as the kubelet's setter makes it from the stored Node: extended
resources patched into capacity (the scheduling conformance tests' fake resources) become
allocatable, and leave it again when they leave capacity."""

from __future__ import annotations

from kubelite.node.nodestatus import with_extended_resources

OURS = {"cpu": "2", "memory": "1000Ki", "pods": "110"}


def test_a_patched_extended_resource_becomes_allocatable() -> None:
    node = {"status": {"capacity": {**OURS, "example.com/fakecpu": "1k"}, "allocatable": dict(OURS)}}
    assert with_extended_resources(OURS, node) == {**OURS, "example.com/fakecpu": "1k"}


def test_one_removed_from_capacity_is_removed_from_allocatable() -> None:
    node = {"status": {"capacity": dict(OURS), "allocatable": {**OURS, "example.com/fakecpu": "1k",
                                                                 "kubernetes.io/native": "1"}}}
    # None deletes it in the strategic merge patch; a native name is not the setter's to drop.
    assert with_extended_resources(OURS, node) == {**OURS, "example.com/fakecpu": None}


def test_our_own_values_win_and_a_bare_node_changes_nothing() -> None:
    node = {"status": {"capacity": {"cpu": "64"}}}
    assert with_extended_resources(OURS, node) == OURS
    assert with_extended_resources(OURS, {}) == OURS
