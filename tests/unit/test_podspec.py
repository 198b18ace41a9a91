"""The kubelet's PodSpec rules (kubelite.node.podspec), checked against Kubernetes' behaviour."""

from __future__ import annotations

import decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kubelite.api.resource import parse_quantity
from kubelite.client import Client, Informer
from kubelite.node import podspec
from kubelite.node.podconfig import PodConfigurer

Obj = dict[str, Any]


def make_pod(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1", "labels": {"app": "web", "tier": "x"},
                     "annotations": {"note": 'say "hi"'}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1",
                 "serviceAccountName": "default", **spec},
    }


def svc(name: str, ns: str, ip: str, *ports: Obj) -> Obj:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": list(ports)}}


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443, "protocol": "TCP"})


# ---------------------------------------------------------------------------------- expansion


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "alpha"),
    ("x-$(A)-$(B)", "x-alpha-beta"),
    ("$$(A)", "$(A)"),  # escaped
    ("$$$(A)", "$alpha"),
    ("$(MISSING)", "$(MISSING)"),
    ("$(A", "$(A"),  # unterminated
    ("$A", "$A"),
    ("cost $", "cost $"),
    ("$(A)$(A)", "alphaalpha"),
    ("$()", "$()"),
])
def test_expand(text: str, expected: str) -> None:
    assert podspec.expand(text, {"A": "alpha"}, {"B": "beta"}) == expected


def test_expand_first_context_wins() -> None:
    assert podspec.expand("$(X)", {"X": "container"}, {"X": "service"}) == "container"


# ---------------------------------------------------------------------------------- service links


def test_service_env_docker_link_variables() -> None:
    redis = svc("redis-primary", "shop", "10.96.4.7", {"name": "", "port": 6379, "protocol": "TCP"},
                {"name": "metrics", "port": 9121, "protocol": "UDP"})
    env = podspec.service_env([KUBERNETES, redis], "shop", True)
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == "10.96.4.7"
    assert env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["REDIS_PRIMARY_SERVICE_PORT_METRICS"] == "9121"
    assert env["REDIS_PRIMARY_PORT"] == "tcp://10.96.4.7:6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP"] == "tcp://10.96.4.7:6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_PROTO"] == "tcp"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_PORT"] == "6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_ADDR"] == "10.96.4.7"
    assert env["REDIS_PRIMARY_PORT_9121_UDP"] == "udp://10.96.4.7:9121"
    assert "REDIS_PRIMARY_SERVICE_PORT_" not in env  # the unnamed first port has no named variable
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"


def test_service_env_skips_headless_external_and_other_namespaces() -> None:
    headless = svc("db", "shop", "None", {"port": 5432})
    external = {"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "x.example"}}
    other = svc("api", "elsewhere", "10.96.9.9", {"port": 80})
    env = podspec.service_env([KUBERNETES, headless, external, other], "shop", True)
    assert not any(k.startswith(("DB_", "EXT_", "API_")) for k in env)


def test_service_env_links_disabled_keeps_master_service() -> None:
    web = svc("web", "shop", "10.96.1.1", {"port": 80})
    env = podspec.service_env([KUBERNETES, web], "shop", False)
    assert "WEB_SERVICE_HOST" not in env
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_service_env_namespace_service_named_kubernetes_wins() -> None:
    own = svc("kubernetes", "shop", "10.96.7.7", {"port": 8443})
    for order in ([KUBERNETES, own], [own, KUBERNETES]):
        assert podspec.service_env(order, "shop", True)["KUBERNETES_SERVICE_HOST"] == "10.96.7.7"


def test_service_env_ipv6() -> None:
    env = podspec.service_env([svc("v6", "shop", "fd00::5", {"port": 80})], "shop", True)
    assert env["V6_PORT"] == "tcp://[fd00::5]:80"


# ---------------------------------------------------------------------------------- container env


def env_of(container: Obj, pod: Obj | None = None, service_vars: dict[str, str] | None = None,
           configmaps: dict[str, dict[str, str]] | None = None, secrets: dict[str, dict[str, str]] | None = None,
           ) -> dict[str, str]:
    p = pod or make_pod()
    return podspec.container_env(
        p, container, service_vars=service_vars or {}, configmaps=(configmaps or {}).get,
        secrets=(secrets or {}).get, pod_ips=["10.244.0.9"], host_ips=["10.244.0.1"],
        allocatable={"cpu": "8", "memory": "16Gi"},
    ).env


def test_env_order_precedence_and_expansion() -> None:
    c = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"prefix": "S_", "secretRef": {"name": "sec"}}],
        "env": [
            {"name": "MODE", "value": "debug"},  # overrides envFrom's MODE
            {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(PORT)/$(MODE)"},
            {"name": "LATER", "value": "$(NEXT)"},  # defined after: not expanded
            {"name": "NEXT", "value": "n"},
            {"name": "WEB_SERVICE_HOST", "value": "mine"},  # a container variable beats the service one
        ],
    }
    env = env_of(c, service_vars={"WEB_SERVICE_HOST": "10.96.1.1", "WEB_SERVICE_PORT": "80"},
                 configmaps={"cfg": {"MODE": "prod", "PORT": "8080"}}, secrets={"sec": {"TOKEN": "t0k"}})
    assert env["MODE"] == "debug"
    assert env["URL"] == "http://10.96.1.1:8080/debug"
    assert env["LATER"] == "$(NEXT)"
    assert env["S_TOKEN"] == "t0k"
    assert env["WEB_SERVICE_HOST"] == "mine"
    assert env["WEB_SERVICE_PORT"] == "80"


def test_env_value_from() -> None:
    c = {
        "name": "c",
        "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},  # node allocatable
            {"name": "CPU_CORES", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},  # rounded up
            {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        ],
    }
    env = env_of(c, configmaps={"cfg": {"k": "v"}}, secrets={"sec": {"pw": "hunter2"}})
    assert env == {"NAME": "web-0", "NS": "shop", "IP": "10.244.0.9", "HOST_IP": "10.244.0.1", "NODE": "n1",
                   "APP": "web", "MEM": "64", "CPU": "250", "CPU_LIMIT": "8", "CPU_CORES": "1", "K": "v",
                   "PW": "hunter2"}


def test_env_missing_references() -> None:
    missing_cm = {"name": "c", "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}
    with pytest.raises(podspec.EnvError, match=r'^configmap "nope" not found$'):
        env_of(missing_cm)
    missing_key = {"name": "c", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(podspec.EnvError, match=r"^couldn't find key k in Secret shop/s$"):
        env_of(missing_key, secrets={"s": {}})
    with pytest.raises(podspec.EnvError, match=r'^secret "s" not found$'):
        env_of({"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]})
    optional = {"name": "c",
                "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}],
                "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
                        {"name": "J", "valueFrom": {"secretKeyRef": {"name": "s", "key": "x", "optional": True}}}]}
    assert env_of(optional, secrets={"s": {}}) == {}


def test_env_from_invalid_keys_are_reported_and_skipped() -> None:
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}
    no_secrets: dict[str, dict[str, str]] = {}
    result = podspec.container_env(make_pod(), c, service_vars={}, configmaps={"cfg": {"OK": "1", "BAD=KEY": "2"}}.get,
                                   secrets=no_secrets.get, pod_ips=[], host_ips=[], allocatable={})
    assert result.env == {"OK": "1"}
    assert result.invalid_keys == {"configMap shop/cfg": ["BAD=KEY"]}


def test_downward_labels_and_annotations_format() -> None:
    pod = make_pod()
    assert podspec.field_ref_value(pod, "metadata.labels") == 'app="web"\ntier="x"'
    assert podspec.field_ref_value(pod, "metadata.annotations") == 'note="say \\"hi\\""'
    assert podspec.field_ref_value(pod, "metadata.annotations['missing']") == ""


@pytest.mark.parametrize(("text", "value"), [
    ("1", "1"), ("250m", "0.25"), ("1Gi", "1073741824"), ("64Mi", "67108864"), ("1k", "1000"), ("1e3", "1000"),
])
def test_parse_quantity(text: str, value: str) -> None:
    assert parse_quantity(text) == decimal.Decimal(value)


# ---------------------------------------------------------------------------------- command and args


@pytest.mark.parametrize(("container", "argv"), [
    ({}, ["/entry", "--flag", "default-cmd"]),  # image ENTRYPOINT + CMD
    ({"command": ["/bin/app"]}, ["/bin/app"]),  # command drops the image CMD
    ({"args": ["x", "y"]}, ["/entry", "--flag", "x", "y"]),  # args replace CMD only
    ({"command": ["/bin/app"], "args": ["a"]}, ["/bin/app", "a"]),
    ({"args": ["$(GREETING)", "$$(GREETING)", "$(NOPE)"]}, ["/entry", "--flag", "hello", "$(GREETING)", "$(NOPE)"]),
])
def test_command_and_args(container: Obj, argv: list[str]) -> None:
    assert podspec.container_argv(container, ["/entry", "--flag"], ["default-cmd"], {"GREETING": "hello"}) == argv


def test_image_cmd_is_not_expanded() -> None:
    assert podspec.container_argv({}, [], ["echo", "$(X)"], {"X": "1"}) == ["echo", "$(X)"]


# ---------------------------------------------------------------------------------- hosts, hostname, resolv.conf


def test_hosts_file_plain() -> None:
    assert podspec.hosts_file(make_pod(), ["10.244.0.9"]) == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.244.0.9\tweb-0\n"
    )


def test_hosts_file_subdomain_and_aliases() -> None:
    pod = make_pod(hostname="db", subdomain="headless",
                   hostAliases=[{"ip": "1.2.3.4", "hostnames": ["foo.local", "bar.local"]}, {"ip": "::2", "hostnames": ["v6"]}])
    text = podspec.hosts_file(pod, ["10.244.0.9"])
    assert text.endswith(
        "10.244.0.9\tdb.headless.shop.svc.cluster.local\tdb\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "1.2.3.4\tfoo.local\tbar.local\n"
        "::2\tv6\n"
    )


def test_hosts_file_of_a_host_network_pod_is_the_nodes() -> None:
    pod = make_pod(hostNetwork=True, hostAliases=[{"ip": "1.2.3.4", "hostnames": ["foo.local"]}])
    node = "127.0.0.1\tlocalhost\n192.0.2.7\tthe-node\n"
    assert podspec.hosts_file(pod, ["10.244.0.9"], node) == (
        "# Kubernetes-managed hosts file (host network).\n" + node +
        "\n# Entries added by HostAliases.\n1.2.3.4\tfoo.local\n")
    # Not "# Kubernetes-managed hosts file." (what conformance looks for to tell the two apart).
    assert "# Kubernetes-managed hosts file." not in podspec.hosts_file(make_pod(hostNetwork=True), [], node)
    assert podspec.hosts_file(make_pod(), ["10.244.0.9"], node).startswith("# Kubernetes-managed hosts file.\n")


def test_hostname_truncation_and_fqdn() -> None:
    long = make_pod()
    long["metadata"]["name"] = "a" * 62 + "-b"
    assert podspec.pod_hostname(long) == ("a" * 62, "")
    fqdn = make_pod(hostname="h", subdomain="s", setHostnameAsFQDN=True)
    assert podspec.uts_hostname(fqdn) == "h.s.shop.svc.cluster.local"
    assert podspec.uts_hostname(make_pod(hostname="h", subdomain="s")) == "h"


HOST = podspec.parse_resolv_conf("# generated\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch lan corp\noptions edns0\n")


def test_resolv_conf_cluster_first() -> None:
    assert podspec.resolv_conf(make_pod(dnsPolicy="ClusterFirst"), cluster_dns="10.96.0.10", host=HOST) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_resolv_conf_default_and_host_network() -> None:
    expected = "search lan corp\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions edns0\n"
    assert podspec.resolv_conf(make_pod(dnsPolicy="Default"), cluster_dns="10.96.0.10", host=HOST) == expected
    # ClusterFirst on the host network falls back to Default; ClusterFirstWithHostNet does not.
    assert podspec.resolv_conf(make_pod(hostNetwork=True), cluster_dns="10.96.0.10", host=HOST) == expected
    assert "nameserver 10.96.0.10" in podspec.resolv_conf(
        make_pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), cluster_dns="10.96.0.10", host=HOST)


def test_resolv_conf_none_and_dns_config_merge() -> None:
    none = make_pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["a.b"],
                                                  "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]})
    assert podspec.resolv_conf(none, cluster_dns="10.96.0.10", host=HOST) == (
        "search a.b\nnameserver 1.1.1.1\noptions ndots:2 rotate\n"
    )
    merged = make_pod(dnsConfig={"nameservers": ["10.96.0.10", "9.9.9.9"], "searches": ["x.y"],
                                 "options": [{"name": "ndots", "value": "1"}]})
    assert podspec.resolv_conf(merged, cluster_dns="10.96.0.10", host=HOST) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local x.y\n"
        "nameserver 10.96.0.10\nnameserver 9.9.9.9\n"
        "options ndots:1\n"
    )



def test_cluster_dns_is_the_kube_dns_service_else_the_node_flag() -> None:
    """The kubelet's --cluster-dns is the fallback while kube-dns is not known: the cluster's
    own (`up` passes the tenth address of its service CIDR), not 10.96.0.10 whatever the range."""
    cache: dict[str, Obj] = {}
    services = SimpleNamespace(get=cache.get)
    client = SimpleNamespace(config=SimpleNamespace(ca_data=b""))

    def configurer(**kw: Any) -> PodConfigurer:
        return PodConfigurer(cast(Client, client), cast(Informer, services), node_ip="10.245.0.1", host_resolv=HOST,
                             image_catalog=None, allocatable=dict, event=lambda *_: None, **kw)

    assert configurer().cluster_dns() == "10.96.0.10"
    assert configurer(cluster_dns="10.128.0.10").cluster_dns() == "10.128.0.10"
    cache["kube-system/kube-dns"] = svc("kube-dns", "kube-system", "10.128.0.53")
    assert configurer(cluster_dns="10.128.0.10").cluster_dns() == "10.128.0.53"

# ---------------------------------------------------------------------------------- back-off


def test_backoff_doubles_caps_and_resets() -> None:
    b = podspec.Backoff()
    key = "u/c"
    assert not b.in_backoff_since(key, 100.0, 100.0)  # first failure: restart at once
    b.next(key, 100.0)
    assert b.get(key) == 10
    assert b.in_backoff_since(key, 100.0, 105.0)
    assert not b.in_backoff_since(key, 100.0, 110.5)
    delays = []
    for t in range(1, 8):
        b.next(key, 100.0 + t)
        delays.append(b.get(key))
    assert delays == [20, 40, 80, 160, 300, 300, 300]
    b.next(key, 107 + 601)  # ten minutes without a restart: forgotten
    assert b.get(key) == 10


def test_crashloop_message_and_go_durations() -> None:
    pod = make_pod()
    assert podspec.crashloop_message(10, "c", pod) == "back-off 10s restarting failed container=c pod=web-0_shop(u-1)"
    assert [podspec.go_duration(s) for s in (10, 80, 160, 300, 3600)] == ["10s", "1m20s", "2m40s", "5m0s", "1h0m0s"]


def test_restart_policy() -> None:
    assert podspec.should_restart("Always", 0)
    assert podspec.should_restart("OnFailure", 1) and not podspec.should_restart("OnFailure", 0)
    assert not podspec.should_restart("Never", 1)


# ---------------------------------------------------------------------------------- phase and conditions


def running(name: str, ready: bool = True) -> Obj:
    return {"name": name, "state": {"running": {"startedAt": "t"}}, "lastState": {}, "ready": ready}


def terminated(name: str, code: int) -> Obj:
    return {"name": name, "state": {"terminated": {"exitCode": code}}, "lastState": {}, "ready": False}


def waiting(name: str, reason: str, last_code: int | None = None) -> Obj:
    last = {"terminated": {"exitCode": last_code}} if last_code is not None else {}
    return {"name": name, "state": {"waiting": {"reason": reason}}, "lastState": last, "ready": False}


def two(**spec: Any) -> Obj:
    return make_pod(containers=[{"name": "a"}, {"name": "b"}], **spec)


@pytest.mark.parametrize(("spec", "init", "regular", "phase"), [
    ({}, [], [waiting("a", "ContainerCreating"), waiting("b", "ContainerCreating")], "Pending"),
    ({}, [], [running("a"), waiting("b", "ContainerCreating")], "Pending"),
    ({}, [], [running("a"), running("b")], "Running"),
    ({}, [], [running("a"), waiting("b", "CrashLoopBackOff", 1)], "Running"),
    ({}, [], [terminated("a", 0), terminated("b", 0)], "Running"),  # Always: restarting
    ({"restartPolicy": "Never"}, [], [terminated("a", 0), terminated("b", 0)], "Succeeded"),
    ({"restartPolicy": "Never"}, [], [terminated("a", 0), terminated("b", 1)], "Failed"),
    ({"restartPolicy": "OnFailure"}, [], [terminated("a", 0), terminated("b", 1)], "Running"),
    ({"restartPolicy": "OnFailure"}, [], [terminated("a", 0), terminated("b", 0)], "Succeeded"),
    ({"restartPolicy": "Never", "initContainers": [{"name": "i"}]}, [terminated("i", 1)],
     [waiting("a", "PodInitializing"), waiting("b", "PodInitializing")], "Failed"),
    ({"initContainers": [{"name": "i"}]}, [running("i")],
     [waiting("a", "PodInitializing"), waiting("b", "PodInitializing")], "Pending"),
    ({"initContainers": [{"name": "i"}]}, [waiting("i", "CrashLoopBackOff", 1)],
     [waiting("a", "PodInitializing"), waiting("b", "PodInitializing")], "Pending"),
])
def test_pod_phase(spec: Obj, init: list[Obj], regular: list[Obj], phase: str) -> None:
    assert podspec.pod_phase(two(**spec), init, regular) == phase


def test_pod_phase_terminal_override() -> None:
    pod = two()
    assert podspec.pod_phase(pod, [], [terminated("a", 143), terminated("b", 0)], terminal=True) == "Failed"
    assert podspec.pod_phase(pod, [], [terminated("a", 0), terminated("b", 0)], terminal=True) == "Succeeded"


def conds(pod: Obj, phase: str, init: list[Obj], regular: list[Obj], **kw: Any) -> dict[str, Obj]:
    out = podspec.pod_conditions(pod, phase, init, regular, sandbox_ready=True, now="T1", **kw)
    return {c["type"]: c for c in out}


def test_conditions_not_ready_messages() -> None:
    pod = make_pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}], initContainers=[{"name": "i"}, {"name": "j"}])
    c = conds(pod, "Pending", [terminated("i", 0), running("j", False)], [])
    assert c["Initialized"] == {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                                "message": "containers with incomplete status: [j]", "lastProbeTime": None,
                                "lastTransitionTime": "T1"}
    assert c["ContainersReady"]["message"] == "containers with unknown status: [a b c]"
    c = conds(pod, "Running", [terminated("i", 0), terminated("j", 0)], [running("a"), running("b", False), running("c", False)])
    assert c["Initialized"]["status"] == "True"
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "ContainersNotReady"
    assert c["Ready"]["message"] == "containers with unready status: [b c]"
    assert list(c) == ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"]


def test_conditions_terminal_and_transition_times() -> None:
    pod = make_pod()
    pod["status"] = {"conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "T0"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "T0"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": "T0"},
    ]}
    c = conds(pod, "Running", [], [running("c")])
    assert c["Ready"]["lastTransitionTime"] == "T0"  # unchanged status keeps its time
    assert c["PodScheduled"]["lastTransitionTime"] == "T0"  # not ours: kept as is
    done = conds(pod, "Succeeded", [], [terminated("c", 0)])
    assert (done["Ready"]["status"], done["Ready"]["reason"], done["Ready"]["lastTransitionTime"]) == ("False", "PodCompleted", "T1")
    assert done["Initialized"]["reason"] == "PodCompleted"
    assert conds(pod, "Failed", [], [terminated("c", 1)])["ContainersReady"]["reason"] == "PodFailed"
    unready = conds(pod, "Running", [], [running("c")], force_unready=True)
    assert unready["Ready"]["status"] == "False"


def test_readiness_gates() -> None:
    pod = make_pod(readinessGates=[{"conditionType": "example.com/lb"}])
    assert conds(pod, "Running", [], [running("c")])["Ready"] == {
        "type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady",
        "message": 'corresponding condition of pod readiness gate "example.com/lb" does not exist.',
        "lastProbeTime": None, "lastTransitionTime": "T1",
    }
    pod["status"] = {"conditions": [{"type": "example.com/lb", "status": "True"}]}
    assert conds(pod, "Running", [], [running("c")])["Ready"]["status"] == "True"
