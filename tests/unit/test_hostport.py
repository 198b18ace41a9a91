"""hostPort mappings and the nftables table that carries them (rendered text; e2e runs it)."""

from __future__ import annotations

from typing import Any

from kubelite.node.hostport import TABLE, HostPorts, PortMapping, mappings, render

Obj = dict[str, Any]


def pod(ports: list[Obj], ip: str = "10.244.0.5", phase: str = "Running", uid: str = "u1") -> Obj:
    return {"metadata": {"uid": uid}, "spec": {"containers": [{"name": "c", "ports": ports}]},
            "status": {"podIP": ip, "phase": phase}}


def test_only_ports_with_a_host_port_of_a_pod_with_an_ip() -> None:
    p = pod([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81},
             {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "10.244.0.1"}])
    assert mappings(p) == [PortMapping("TCP", "", 8080, "10.244.0.5", 80),
                           PortMapping("UDP", "10.244.0.1", 5353, "10.244.0.5", 53)]
    assert mappings(pod([{"containerPort": 80, "hostPort": 8080}], ip="")) == []  # no sandbox yet
    assert mappings(pod([{"containerPort": 80, "hostPort": 8080}], phase="Succeeded")) == []
    assert mappings(pod([{"containerPort": 80, "hostPort": 8080, "hostIP": "0.0.0.0"}]))[0].host_ip == ""


def test_the_table_dnats_the_node_address_and_masquerades_hairpins() -> None:
    text = render([PortMapping("TCP", "", 8080, "10.244.0.5", 80)])
    assert text.startswith(f"add table ip {TABLE}\ndelete table ip {TABLE}\n")
    assert "\t\tfib daddr type local tcp dport 8080 dnat to 10.244.0.5:80\n" in text
    assert "\t\tip saddr 10.244.0.5 ip daddr 10.244.0.5 tcp dport 80 ct status dnat masquerade\n" in text
    assert "type nat hook prerouting priority -105;" in text and "type nat hook output priority -105;" in text
    assert render([PortMapping("UDP", "10.244.0.1", 5353, "10.244.0.6", 53)]).count(
        "ip daddr 10.244.0.1 udp dport 5353 dnat to 10.244.0.6:53") == 1
    # Nothing wanted: the table goes.
    assert render([]) == f"add table ip {TABLE}\ndelete table ip {TABLE}\n"


def test_the_informer_drives_the_wanted_mappings() -> None:
    hp = HostPorts("/run/netns/unused")
    web = pod([{"containerPort": 80, "hostPort": 8080}])
    hp.on_pod("ADDED", web, None)
    assert hp.by_pod == {"u1": [PortMapping("TCP", "", 8080, "10.244.0.5", 80)]}
    hp.on_pod("MODIFIED", pod([{"containerPort": 80, "hostPort": 8080}], phase="Failed"), web)
    assert hp.by_pod == {}
    hp.on_pod("ADDED", web, None)
    hp.on_pod("DELETED", web, None)
    assert hp.by_pod == {}
