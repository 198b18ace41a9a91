"""Pod IP allocation: order, reuse, persistence and exhaustion of the host-local IPAM."""

from __future__ import annotations

import json
import pathlib

import pytest

from kubelite.node.ipam import IPAM, IPAMError


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "agent" / "ipam.json"


def test_addresses_start_after_the_gateway_and_go_in_order(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/24", path)
    assert str(ipam.gateway) == "10.244.0.1"
    assert [ipam.allocate(uid) for uid in "abc"] == ["10.244.0.2", "10.244.0.3", "10.244.0.4"]
    assert ipam.allocations == {"a": "10.244.0.2", "b": "10.244.0.3", "c": "10.244.0.4"}


def test_allocate_is_idempotent_per_uid(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/24", path)
    first = ipam.allocate("a")
    assert ipam.allocate("a") == first
    assert ipam.get("a") == first
    assert ipam.get("b") is None
    assert ipam.allocate("b") == "10.244.0.3"


def test_a_freed_address_is_reused_last(path: pathlib.Path) -> None:
    # /29: .0 network, .1 gateway, .2-.6 pods, .7 broadcast.
    ipam = IPAM("10.244.0.0/29", path)
    for uid in "abc":
        ipam.allocate(uid)
    ipam.release("a")
    assert ipam.allocate("d") == "10.244.0.5"
    assert ipam.allocate("e") == "10.244.0.6"
    # Wraps around past the broadcast address, the gateway and the network address.
    assert ipam.allocate("f") == "10.244.0.2"


def test_never_hands_out_an_allocated_address_and_exhaustion_is_an_error(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/29", path)
    got = [ipam.allocate(f"pod-{i}") for i in range(5)]
    assert sorted(got) == [f"10.244.0.{i}" for i in range(2, 7)]
    with pytest.raises(IPAMError) as e:
        ipam.allocate("one-too-many")
    # host-local's message: the range is the CIDR's usable addresses, the gateway included.
    assert str(e.value) == (
        "failed to allocate for range 0: no IP addresses available in range set: 10.244.0.1-10.244.0.6"
    )
    assert ipam.get("one-too-many") is None
    ipam.release("pod-2")
    assert ipam.allocate("one-too-many") == "10.244.0.4"


def test_smallest_cidr_has_one_pod_address(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/30", path)
    assert ipam.allocate("a") == "10.244.0.2"
    with pytest.raises(IPAMError):
        ipam.allocate("b")


def test_cidrs_that_cannot_hold_a_gateway_and_a_pod_are_refused(path: pathlib.Path) -> None:
    with pytest.raises(IPAMError, match="too small"):
        IPAM("10.244.0.0/31", path)
    with pytest.raises(ValueError, match="host bits set"):
        IPAM("10.244.0.1/24", path)


def test_release_of_unknown_uid_is_a_no_op(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/24", path)
    ipam.release("nobody")
    assert not path.exists()  # nothing changed, nothing written


def test_state_survives_a_restart(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/24", path)
    for uid in "abc":
        ipam.allocate(uid)
    ipam.release("c")

    again = IPAM("10.244.0.0/24", path)
    assert again.allocations == {"a": "10.244.0.2", "b": "10.244.0.3"}
    # The round-robin position is kept too: the freed .4 is not handed out next.
    assert again.allocate("d") == "10.244.0.5"


def test_file_is_plain_json_and_no_temporary_files_stay(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/24", path)
    ipam.allocate("a")
    ipam.allocate("b")
    ipam.release("a")
    assert json.loads(path.read_text()) == {
        "cidr": "10.244.0.0/24",
        "last": "10.244.0.3",
        "allocations": {"b": "10.244.0.3"},
    }
    assert [p.name for p in path.parent.iterdir()] == ["ipam.json"]


def test_retain_frees_everything_else(path: pathlib.Path) -> None:
    ipam = IPAM("10.244.0.0/24", path)
    for uid in "abc":
        ipam.allocate(uid)
    ipam.retain({"b", "unknown"})
    assert ipam.allocations == {"b": "10.244.0.3"}
    assert IPAM("10.244.0.0/24", path).allocations == {"b": "10.244.0.3"}


def test_a_different_pod_cidr_on_the_same_state_is_refused(path: pathlib.Path) -> None:
    IPAM("10.244.0.0/24", path).allocate("a")
    with pytest.raises(IPAMError, match=r"holds allocations for pod CIDR 10.244.0.0/24, not 10.244.1.0/24"):
        IPAM("10.244.1.0/24", path)


def test_without_autosave_changes_reach_the_file_only_when_written(path: pathlib.Path) -> None:
    # The node network's group commit: allocate under its lock, write once for many changes.
    ipam = IPAM("10.244.0.0/24", path, autosave=False)
    before = ipam.generation
    ipam.allocate("a")
    ipam.allocate("b")
    assert ipam.generation == before + 2
    assert not path.exists()
    ipam.write(ipam.snapshot())
    assert IPAM("10.244.0.0/24", path).allocations == {"a": "10.244.0.2", "b": "10.244.0.3"}
    ipam.release("a")
    assert IPAM("10.244.0.0/24", path).allocations == {"a": "10.244.0.2", "b": "10.244.0.3"}


@pytest.mark.parametrize("content", ["", '{"cidr": "10.244.0.0/24", "allocations": {"a": '])
def test_a_file_cut_short_by_a_machine_crash_starts_empty(path: pathlib.Path, content: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(content)
    ipam = IPAM("10.244.0.0/24", path)
    assert ipam.allocations == {}
    assert ipam.allocate("b") == "10.244.0.2"
