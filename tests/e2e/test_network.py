"""The node's pod network against the real kernel: namespaces, bridge, veths, traffic."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.linux.netns import BRIDGE, in_netns, open_connection_in, start_server_in
from kubelite.node.ipam import IPAMError
from kubelite.node.network import NodeNetwork, cleanup_cluster
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns

CIDR = "10.244.0.0/24"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def read(path: str | pathlib.Path) -> str:
    return pathlib.Path(path).read_text()


def links(netns: str) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in json.loads(ip("-n", netns, "-j", "addr", "show"))}


def v4_addresses(link: dict[str, Any]) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == "inet"}


def read_sysctl_in(netns_path: str, path: str) -> str:
    with in_netns(netns_path), open(path) as f:
        return f.read().strip()


def host_snapshot(own_cluster: str) -> tuple[str, str, list[str]]:
    """The host's links and addresses, and the network namespaces of our cluster.

    Other tests and benchmarks may run at the same time on this machine, each with clusters
    of their own: their namespaces come and go and are not ours to compare. Every namespace
    a cluster makes is named with its name as prefix, so that is what we compare.
    """
    ours = [n for n in netns_names() if n.startswith(f"{own_cluster}-")]
    return ip("-o", "link", "show"), ip("-o", "addr", "show"), ours


@pytest.fixture
async def net(cluster_name: str, tmp_path: pathlib.Path) -> AsyncIterator[NodeNetwork]:
    require_root_netns()
    network = NodeNetwork(cluster_name, CIDR, tmp_path / "agent")
    try:
        await network.setup()
        yield network
    finally:
        await network.teardown()


async def echo_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one line with the line and the client's address as the server saw it."""
    line = await reader.readline()
    writer.write(f"{line.decode().strip()} from {writer.get_extra_info('peername')[0]}\n".encode())
    await writer.drain()
    writer.close()


async def talk(netns_path: str, host: str, port: int, text: str) -> str:
    reader, writer = await asyncio.wait_for(open_connection_in(netns_path, host, port), 5)
    try:
        writer.write(f"{text}\n".encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()


async def test_setup_creates_node_namespace_with_bridge_and_forwarding(net: NodeNetwork) -> None:
    host_forwarding = read_sysctl_in("/proc/self/ns/net", "/proc/sys/net/ipv4/ip_forward")
    assert net.netns in netns_names()
    node_links = links(net.netns)
    assert set(node_links) == {"lo", BRIDGE}
    assert "UP" in node_links["lo"]["flags"]
    assert "UP" in node_links[BRIDGE]["flags"]
    assert v4_addresses(node_links[BRIDGE]) == {"10.244.0.1/24"}
    assert net.gateway == "10.244.0.1"
    assert read_sysctl_in(net.netns_path, "/proc/sys/net/ipv4/ip_forward") == "1"
    # The node routes pod-to-pod traffic back out of the bridge: it must not send redirects.
    assert read_sysctl_in(net.netns_path, "/proc/sys/net/ipv4/conf/all/send_redirects") == "0"
    assert read_sysctl_in(net.netns_path, f"/proc/sys/net/ipv4/conf/{BRIDGE}/send_redirects") == "0"
    # br_netfilter, where loaded, must not switch DNATed frames past the node's routing.
    for table in ("iptables", "ip6tables", "arptables"):
        with in_netns(net.netns_path):
            loaded = os.path.exists(f"/proc/sys/net/bridge/bridge-nf-call-{table}")  # noqa: ASYNC240 - a /proc check
        if loaded:
            assert read_sysctl_in(net.netns_path, f"/proc/sys/net/bridge/bridge-nf-call-{table}") == "0"
    # The sysctl was written in the node namespace only.
    assert read_sysctl_in("/proc/self/ns/net", "/proc/sys/net/ipv4/ip_forward") == host_forwarding

    await net.setup()  # idempotent
    assert set(links(net.netns)) == {"lo", BRIDGE}
    assert v4_addresses(links(net.netns)[BRIDGE]) == {"10.244.0.1/24"}


async def test_pods_get_distinct_ips_and_reach_each_other_and_the_gateway(net: NodeNetwork) -> None:
    a = await net.add_pod(str(uuid.uuid4()))
    b = await net.add_pod(str(uuid.uuid4()))
    assert (a.ip, b.ip) == ("10.244.0.2", "10.244.0.3")
    assert a.netns in netns_names() and b.netns in netns_names()

    pod_links = links(a.netns)
    assert set(pod_links) == {"lo", "eth0"}
    # A /32 with an on-link default route: every packet goes through the node's IP layer.
    assert v4_addresses(pod_links["eth0"]) == {"10.244.0.2/32"}
    assert a.prefixlen == 32
    assert "UP" in pod_links["lo"]["flags"]
    node_links = links(net.netns)
    assert node_links[a.host_veth]["master"] == BRIDGE
    assert "UP" in node_links[a.host_veth]["flags"]
    assert pod_links["eth0"]["mtu"] == node_links[a.host_veth]["mtu"] == node_links[BRIDGE]["mtu"]
    routes = json.loads(ip("-n", a.netns, "-j", "route", "show", "default"))
    assert [(r["gateway"], r["dev"], r.get("flags")) for r in routes] == [("10.244.0.1", "eth0", ["onlink"])]
    assert json.loads(ip("-n", a.netns, "-j", "route", "show", "table", "main")) == routes

    # TCP pod to pod, pod to node (gateway), node to pod: the server sees the real source IP.
    server = await start_server_in(a.netns_path, echo_peer, "0.0.0.0", 8080)
    node_server = await start_server_in(net.netns_path, echo_peer, net.gateway, 10250)
    try:
        assert await talk(b.netns_path, a.ip, 8080, "hello") == f"hello from {b.ip}"
        assert await talk(a.netns_path, net.gateway, 10250, "hi") == f"hi from {a.ip}"
        assert await talk(net.netns_path, a.ip, 8080, "probe") == f"probe from {net.gateway}"
    finally:
        server.close()
        node_server.close()
        await server.wait_closed()
        await node_server.wait_closed()

    # A pod's loopback is its own: a host listener on 127.0.0.1 is out of its reach.
    host_server = await asyncio.start_server(echo_peer, "127.0.0.1", 0)
    try:
        port = host_server.sockets[0].getsockname()[1]
        assert await talk("/proc/self/ns/net", "127.0.0.1", port, "host") == "host from 127.0.0.1"
        with pytest.raises(ConnectionRefusedError):
            await open_connection_in(b.netns_path, "127.0.0.1", port)
    finally:
        host_server.close()
        await host_server.wait_closed()

    require(shutil.which("busybox") is not None, "busybox (for ping) is not installed")
    for target in (b.ip, net.gateway):
        ping = await asyncio.create_subprocess_exec(
            *["ip", "netns", "exec", a.netns, "busybox", "ping", "-c1", "-W1", target],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await ping.communicate()
        assert ping.returncode == 0, output.decode()


async def test_add_pod_is_idempotent(net: NodeNetwork) -> None:
    uid = str(uuid.uuid4())
    first = await net.add_pod(uid)
    inode = os.stat(first.netns_path).st_ino
    again = await net.add_pod(uid)
    assert again == first
    assert os.stat(first.netns_path).st_ino == inode  # the same namespace, not a new one
    assert [n for n in netns_names() if n.startswith(f"{net.cluster}-")] == sorted([net.netns, first.netns])


async def test_add_pod_repairs_a_half_made_pod(net: NodeNetwork) -> None:
    uid = str(uuid.uuid4())
    pod = await net.add_pod(uid)
    ip("-n", net.netns, "link", "del", pod.host_veth)  # as if the agent died mid-way
    assert await net.add_pod(uid) == pod
    assert v4_addresses(links(pod.netns)["eth0"]) == {f"{pod.ip}/32"}
    assert links(net.netns)[pod.host_veth]["master"] == BRIDGE


def leave_only_the_mount_point(path: str) -> None:
    """What an agent killed between pyroute2's two steps (create the file, mount the namespace
    on it) leaves: an empty file where the namespace should be."""
    if os.path.exists(path):
        ip("netns", "delete", os.path.basename(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "x"):
        pass


async def test_add_pod_remakes_a_pod_whose_namespace_is_only_its_mount_point(net: NodeNetwork) -> None:
    uid = str(uuid.uuid4())
    pod = await net.add_pod(uid)
    await asyncio.to_thread(leave_only_the_mount_point, pod.netns_path)
    assert await net.add_pod(uid) == pod
    assert v4_addresses(links(pod.netns)["eth0"]) == {f"{pod.ip}/32"}
    assert links(net.netns)[pod.host_veth]["master"] == BRIDGE


async def test_setup_remakes_a_node_namespace_that_is_only_its_mount_point(
    cluster_name: str, tmp_path: pathlib.Path
) -> None:
    # Before, every later start failed: the path existed, so setup entered it (EINVAL).
    require_root_netns()
    network = NodeNetwork(cluster_name, CIDR, tmp_path)
    await asyncio.to_thread(leave_only_the_mount_point, network.netns_path)
    try:
        await network.setup()
        assert "UP" in links(network.netns)[BRIDGE]["flags"]
        pod = await network.add_pod(str(uuid.uuid4()))
        assert v4_addresses(links(pod.netns)["eth0"]) == {f"{pod.ip}/32"}
    finally:
        await network.teardown()


async def test_remove_pod_deletes_everything_and_its_ip_is_not_reused_at_once(
    net: NodeNetwork, tmp_path: pathlib.Path
) -> None:
    a = await net.add_pod(str(uuid.uuid4()))
    await net.remove_pod(a.uid)
    assert a.netns not in netns_names()
    assert a.host_veth not in links(net.netns)
    assert a.uid not in net.pods()
    assert a.uid not in json.loads(read(tmp_path / "agent" / "ipam.json"))["allocations"]
    b = await net.add_pod(str(uuid.uuid4()))
    assert b.ip == "10.244.0.3"
    await net.remove_pod(a.uid)  # idempotent


async def test_concurrent_pods_get_distinct_ips_and_survive_garbage_collection(
    net: NodeNetwork, tmp_path: pathlib.Path
) -> None:
    uids = [str(uuid.uuid4()) for _ in range(12)]
    adding = [asyncio.create_task(net.add_pod(uid)) for uid in uids]
    await asyncio.sleep(0)  # the adds have started: IPs allocated, namespaces maybe not yet
    net.pods()  # must not collect the allocations of pods being made
    pods = await asyncio.gather(*adding)
    assert len({p.ip for p in pods}) == len(uids)
    assert set(json.loads(read(tmp_path / "agent" / "ipam.json"))["allocations"]) == set(uids)
    assert set(net.pods()) == set(uids)
    assert {p.host_veth for p in pods} <= set(links(net.netns))

    # One pod's operations keep their order even when issued together.
    again = pods[0].uid
    await asyncio.gather(net.remove_pod(again), net.add_pod(again))
    assert again in net.pods()

    await asyncio.gather(*(net.remove_pod(uid) for uid in uids))
    assert net.pods() == {}
    assert set(links(net.netns)) == {"lo", BRIDGE}
    assert [n for n in netns_names() if n.startswith(f"{net.cluster}-")] == [net.netns]


async def test_remove_pod_while_a_process_holds_the_namespace(net: NodeNetwork) -> None:
    pod = await net.add_pod(str(uuid.uuid4()))
    holder = await asyncio.create_subprocess_exec(
        *["ip", "netns", "exec", pod.netns, "sh", "-c", "echo in; exec sleep 30"],
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"in\n"
        await net.remove_pod(pod.uid)
        # The namespace lives on in the process, but it is cut from the bridge.
        assert pod.netns not in netns_names()
        assert pod.host_veth not in links(net.netns)
        assert "eth0" not in read(f"/proc/{holder.pid}/net/dev")
    finally:
        holder.kill()
        await holder.wait()


async def test_restart_reports_the_same_pods_and_forgets_vanished_ones(
    net: NodeNetwork, tmp_path: pathlib.Path
) -> None:
    a = await net.add_pod(str(uuid.uuid4()))
    b = await net.add_pod(str(uuid.uuid4()))

    restarted = NodeNetwork(net.cluster, CIDR, tmp_path / "agent")
    await restarted.setup()
    assert restarted.pods() == {a.uid: a, b.uid: b}
    inode = os.stat(a.netns_path).st_ino
    assert await restarted.add_pod(a.uid) == a
    assert os.stat(a.netns_path).st_ino == inode

    ip("netns", "delete", b.netns)
    assert restarted.pods() == {a.uid: a}
    assert set(json.loads(read(tmp_path / "agent" / "ipam.json"))["allocations"]) == {a.uid}
    c = await restarted.add_pod(str(uuid.uuid4()))
    assert c.ip == "10.244.0.4"  # round-robin continues from the saved position


async def test_add_pod_needs_setup(cluster_name: str, tmp_path: pathlib.Path) -> None:
    require_root_netns()
    network = NodeNetwork(cluster_name, CIDR, tmp_path)
    with pytest.raises(RuntimeError, match="setup"):
        await network.add_pod(str(uuid.uuid4()))
    assert not [n for n in netns_names() if n.startswith(f"{cluster_name}-")]


async def test_exhausted_cidr_is_a_clear_error_and_leaves_nothing(
    cluster_name: str, tmp_path: pathlib.Path
) -> None:
    require_root_netns()
    network = NodeNetwork(cluster_name, "10.244.0.0/30", tmp_path)
    try:
        await network.setup()
        only = await network.add_pod(str(uuid.uuid4()))
        assert only.ip == "10.244.0.2"
        with pytest.raises(
            IPAMError, match=r"no IP addresses available in range set: 10.244.0.1-10.244.0.2$"
        ):
            await network.add_pod(str(uuid.uuid4()))
        assert sorted(n for n in netns_names() if n.startswith(f"{cluster_name}-")) == sorted(
            [network.netns, only.netns]
        )
    finally:
        await network.teardown()


async def test_teardown_leaves_the_host_as_it_was(cluster_name: str, tmp_path: pathlib.Path) -> None:
    require_root_netns()
    before = host_snapshot(cluster_name)
    network = NodeNetwork(cluster_name, CIDR, tmp_path)
    await network.setup()
    pods = [await network.add_pod(str(uuid.uuid4())) for _ in range(3)]
    assert all(p.netns in netns_names() for p in pods)
    # Nothing of the cluster is ever in the host namespace, not only after teardown.
    assert host_snapshot(cluster_name)[:2] == before[:2]

    await network.teardown()
    assert host_snapshot(cluster_name) == before
    assert network.pods() == {}
    await network.teardown()  # idempotent
    cleanup_cluster(cluster_name)
    assert host_snapshot(cluster_name) == before


async def test_two_clusters_with_the_same_cidr_coexist(cluster_name: str, tmp_path: pathlib.Path) -> None:
    require_root_netns()
    # A second cluster whose name extends the first's: cleanup by bare prefix would hit it.
    one = NodeNetwork(cluster_name, CIDR, tmp_path / "one")
    two = NodeNetwork(f"{cluster_name}-two", CIDR, tmp_path / "two")
    try:
        await one.setup()
        await two.setup()
        a1 = await one.add_pod(str(uuid.uuid4()))
        a2 = await two.add_pod(str(uuid.uuid4()))
        b2 = await two.add_pod(str(uuid.uuid4()))
        assert a1.ip == a2.ip == "10.244.0.2"

        server = await start_server_in(a1.netns_path, echo_peer, a1.ip, 8080)
        try:
            assert await talk(one.netns_path, a1.ip, 8080, "one") == f"one from {one.gateway}"
            # The same address in the other cluster is another pod, with no listener.
            with pytest.raises(ConnectionRefusedError):
                await asyncio.wait_for(open_connection_in(b2.netns_path, a2.ip, 8080), 5)
        finally:
            server.close()
            await server.wait_closed()

        await one.teardown()
        assert {two.netns, a2.netns, b2.netns} <= set(netns_names())
        assert not [n for n in netns_names() if n.startswith(f"{cluster_name}-") and "-two" not in n]
        assert two.pods() == {a2.uid: a2, b2.uid: b2}
    finally:
        await one.teardown()
        await two.teardown()


async def test_in_netns_returns_to_the_original_namespace_even_on_error(net: NodeNetwork) -> None:
    original = os.stat("/proc/thread-self/ns/net").st_ino
    node = os.stat(net.netns_path).st_ino
    original_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        with in_netns(net.netns_path):
            assert os.stat("/proc/thread-self/ns/net").st_ino == node
            with in_netns(f"/proc/self/fd/{original_fd}"):  # nests
                assert os.stat("/proc/thread-self/ns/net").st_ino == original
            assert os.stat("/proc/thread-self/ns/net").st_ino == node
    finally:
        os.close(original_fd)
    assert os.stat("/proc/thread-self/ns/net").st_ino == original
    with pytest.raises(ZeroDivisionError), in_netns(net.netns_path):
        1 / 0  # noqa: B018
    assert os.stat("/proc/thread-self/ns/net").st_ino == original
    with pytest.raises(FileNotFoundError), in_netns("/run/netns/does-not-exist-kle2e"):
        pass
    assert os.stat("/proc/thread-self/ns/net").st_ino == original
