"""Services in the API, as the lecture uses them and as a real cluster answers."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.cluster import Cluster, Raw

pytestmark = pytest.mark.integration

# The lecture's definition file, byte for byte as a user writes it.
LECTURE_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  type: ClusterIP
  ports:
    - targetPort: 80
      port: 80
  selector:
    app: myapp
    type: back-end
"""


def ns_of(cluster: Cluster) -> str:
    ns = f"svc-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns, check=True)
    return ns


def svc_manifest(name: str, **spec: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})


def test_lecture_service_file(cluster: Cluster) -> None:
    ns = ns_of(cluster)
    res = cluster.kubectl("create", "-n", ns, "-f", "-", input=LECTURE_SERVICE, check=True)
    assert res.stdout.strip() == "service/backend created"
    lines = cluster.kubectl("get", "services", "-n", ns, check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    name, typ, ip, ext, ports, _age = lines[1].split()
    assert (name, typ, ext, ports) == ("backend", "ClusterIP", "<none>", "80/TCP")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    wide = cluster.kubectl("get", "svc", "backend", "-n", ns, "-o", "wide", check=True).stdout.splitlines()
    assert wide[0].split()[-1] == "SELECTOR" and wide[1].split()[-1] == "app=myapp,type=back-end"
    got = json.loads(cluster.kubectl("get", "svc", "backend", "-n", ns, "-o", "json", check=True).stdout)
    spec = got["spec"]
    assert spec["clusterIPs"] == [ip] and spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["sessionAffinity"] == "None" and spec["internalTrafficPolicy"] == "Cluster"
    desc = cluster.kubectl("describe", "service", "backend", "-n", ns, check=True).stdout
    for line in ("Name:", "Namespace:", "Selector:                 app=myapp,type=back-end",
                 "Type:                     ClusterIP", f"IP:                       {ip}", "TargetPort:               80/TCP",
                 "Session Affinity:         None"):
        assert line in desc, (line, desc)
    # The IP is recorded as an IPAddress object owned by the Service.
    ipobj = json.loads(cluster.kubectl("get", "ipaddress", ip, "-o", "json", check=True).stdout)
    assert ipobj["spec"]["parentRef"] == {"group": "", "resource": "services", "namespace": ns, "name": "backend"}


INVALID = [
    (dict(ports=[{"port": 70000, "targetPort": 80}]),
     'The Service "bad" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive'),
    (dict(ports=[{"port": 80, "nodePort": 30080}]),
     "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    (dict(ports=[{"port": 80, "protocol": "FOO"}]),
     'spec.ports[0].protocol: Unsupported value: "FOO": supported values: "SCTP", "TCP", "UDP"'),
    (dict(ports=[{"port": 80}, {"port": 81}]),
     "spec.ports[0].name: Required value"),
    (dict(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]),
     'spec.ports[1].name: Duplicate value: "a"'),
    (dict(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
     "spec.ports[1]: Duplicate value:"),
    (dict(ports=[{"port": 80, "targetPort": "http_port"}]),
     'spec.ports[0].targetPort: Invalid value: "http_port"'),
    (dict(ports=[{"port": 80}], clusterIP="10.1.2.3.4"),
     'spec.clusterIPs[0]: Invalid value: "10.1.2.3.4"'),
    (dict(ports=[{"port": 80}], type="ExternalName"),
     "spec.externalName: Required value"),
    (dict(ports=[{"port": 80}], sessionAffinity="ClientIP",
          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"),
    (dict(ports=[{"port": 80}], selector={"bad key!": "x"}),
     'spec.selector: Invalid value: "bad key!"'),
    (dict(ports=[{"port": 80}], type="Magic"),
     'spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
]


@pytest.mark.parametrize(("spec", "message"), INVALID, ids=[m[:40] for _, m in INVALID])
def test_validation_messages(cluster: Cluster, spec: dict[str, object], message: str) -> None:
    res = cluster.kubectl("create", "-f", "-", input=svc_manifest("bad", **spec))
    assert res.returncode == 1
    assert message in res.stderr, res.stderr


def test_several_errors_reported_at_once(cluster: Cluster) -> None:
    res = cluster.kubectl("create", "-f", "-", input=svc_manifest("bad", ports=[{"port": 0}, {"port": 70000}]))
    assert res.returncode == 1
    assert "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive" in res.stderr
    assert "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive" in res.stderr


def test_cluster_ip_requests_and_immutability(cluster: Cluster) -> None:
    ns = ns_of(cluster)

    def create(name: str, ip: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl("create", "-n", ns, "-f", "-", input=svc_manifest(name, ports=[{"port": 80}], clusterIP=ip))

    assert create("a", "10.96.200.7").returncode == 0
    res = create("b", "10.96.200.7")
    assert res.returncode == 1
    assert ('spec.clusterIPs: Invalid value: []string{"10.96.200.7"}: failed to allocate IP 10.96.200.7: '
            "provided IP is already allocated") in res.stderr
    res = create("c", "10.200.0.5")
    assert res.returncode == 1
    assert ("failed to allocate IP 10.200.0.5: provided IP is not in the valid range. "
            "The range of valid IPs is 10.96.0.0/12") in res.stderr
    res = cluster.kubectl("patch", "svc", "a", "-n", ns, "--type", "merge",
                          "-p", '{"spec":{"clusterIP":"10.96.200.8","clusterIPs":["10.96.200.8"]}}')
    assert res.returncode == 1 and "spec.clusterIPs[0]: Invalid value: []string{\"10.96.200.8\"}: may not change once set" in res.stderr
    # A deleted Service's IP can be requested again at once.
    cluster.kubectl("delete", "svc", "a", "-n", ns, check=True)
    assert create("d", "10.96.200.7").returncode == 0


def test_node_ports(cluster: Cluster) -> None:
    ns = ns_of(cluster)
    res = cluster.kubectl("create", "-n", ns, "-f", "-",
                          input=svc_manifest("np", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert res.returncode == 0, res.stderr
    res = cluster.kubectl("create", "-n", ns, "-f", "-",
                          input=svc_manifest("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated" in res.stderr
    res = cluster.kubectl("create", "-n", ns, "-f", "-",
                          input=svc_manifest("np3", type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    assert ("spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
            "The range of valid ports is 30000-32767") in res.stderr
    cluster.kubectl("create", "-n", ns, "-f", "-", input=svc_manifest("auto", type="NodePort", ports=[{"port": 80}]),
                    check=True)
    got = json.loads(cluster.kubectl("get", "svc", "auto", "-n", ns, "-o", "json", check=True).stdout)
    assert 30000 <= got["spec"]["ports"][0]["nodePort"] <= 32767
    lb = cluster.kubectl("create", "-n", ns, "-f", "-", input=svc_manifest("lb", type="LoadBalancer", ports=[{"port": 80}]))
    assert lb.returncode == 0, lb.stderr
    row = cluster.kubectl("get", "svc", "lb", "-n", ns, check=True).stdout.splitlines()[1].split()
    assert row[1] == "LoadBalancer" and row[3] == "<pending>" and row[4].startswith("80:")


def test_type_changes_allocate_and_release(cluster: Cluster) -> None:
    ns = ns_of(cluster)
    cluster.kubectl("create", "-n", ns, "-f", "-",
                    input=svc_manifest("t", type="ExternalName", externalName="example.com"), check=True)
    got = json.loads(cluster.kubectl("get", "svc", "t", "-n", ns, "-o", "json", check=True).stdout)
    assert "clusterIP" not in got["spec"]
    row = cluster.kubectl("get", "svc", "t", "-n", ns, check=True).stdout.splitlines()[1].split()
    assert row[1:4] == ["ExternalName", "<none>", "example.com"]
    # ExternalName -> ClusterIP allocates an IP.
    cluster.kubectl("patch", "svc", "t", "-n", ns, "--type", "merge",
                    "-p", '{"spec":{"type":"ClusterIP","externalName":null,"ports":[{"port":80}]}}', check=True)
    got = json.loads(cluster.kubectl("get", "svc", "t", "-n", ns, "-o", "json", check=True).stdout)
    ip = got["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    # ClusterIP -> NodePort keeps the IP and adds a node port.
    cluster.kubectl("patch", "svc", "t", "-n", ns, "--type", "merge", "-p", '{"spec":{"type":"NodePort"}}', check=True)
    got = json.loads(cluster.kubectl("get", "svc", "t", "-n", ns, "-o", "json", check=True).stdout)
    assert got["spec"]["clusterIP"] == ip and got["spec"]["ports"][0]["nodePort"] >= 30000
    # NodePort -> ExternalName releases both.
    cluster.kubectl("patch", "svc", "t", "-n", ns, "--type", "merge",
                    "-p", '{"spec":{"type":"ExternalName","externalName":"example.org"}}', check=True)
    got = json.loads(cluster.kubectl("get", "svc", "t", "-n", ns, "-o", "json", check=True).stdout)
    assert "clusterIP" not in got["spec"]
    assert cluster.kubectl("get", "ipaddress", ip).returncode == 1


def test_kubectl_create_service_and_expose(cluster: Cluster) -> None:
    ns = ns_of(cluster)
    for args, typ in [(["clusterip", "c1", "--tcp=80:8080"], "ClusterIP"),
                      (["nodeport", "n1", "--tcp=80:8080"], "NodePort"),
                      (["loadbalancer", "l1", "--tcp=80:8080"], "LoadBalancer"),
                      (["externalname", "e1", "--external-name=example.com"], "ExternalName")]:
        res = cluster.kubectl("create", "service", *args, "-n", ns, check=True)
        assert res.stdout.strip() == f"service/{args[1]} created"
        assert cluster.kubectl("get", "svc", args[1], "-n", ns, check=True).stdout.splitlines()[1].split()[1] == typ
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod), check=True)
    res = cluster.kubectl("expose", "pod", "web", "-n", ns, "--port=8080", "--target-port=80", check=True)
    assert res.stdout.strip() == "service/web exposed"
    got = json.loads(cluster.kubectl("get", "svc", "web", "-n", ns, "-o", "json", check=True).stdout)
    assert got["spec"]["selector"] == {"app": "web"}
    assert got["spec"]["ports"] == [{"port": 8080, "protocol": "TCP", "targetPort": 80}]
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                       "template": {"metadata": {"labels": {"app": "api"}},
                                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deploy), check=True)
    res = cluster.kubectl("expose", "deployment", "api", "-n", ns, "--port=80", check=True)
    assert res.stdout.strip() == "service/api exposed"
    got = json.loads(cluster.kubectl("get", "svc", "api", "-n", ns, "-o", "json", check=True).stdout)
    assert got["spec"]["selector"] == {"app": "api"} and got["spec"]["type"] == "ClusterIP"


def test_service_lifecycle_status_collection(cluster: Cluster) -> None:
    ns = ns_of(cluster)
    raw = Raw(cluster)
    for i in range(3):
        cluster.kubectl("create", "-n", ns, "-f", "-",
                        input=json.dumps({"apiVersion": "v1", "kind": "Service",
                                          "metadata": {"name": f"s{i}", "labels": {"grp": "x" if i else "y"}},
                                          "spec": {"ports": [{"port": 80}]}}), check=True)
    all_ns = cluster.kubectl("get", "services", "-A", check=True).stdout
    assert all(f"s{i}" in all_ns for i in range(3)) and "kubernetes" in all_ns
    status, body = raw.json("PATCH", f"/api/v1/namespaces/{ns}/services/s0/status",
                            {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Test",
                                                        "message": "set", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
                             "spec": {"ports": [{"port": 9999}]}},
                            "application/merge-patch+json")
    assert status == 200, body
    assert body["status"]["conditions"][0]["type"] == "Ready"
    assert body["spec"]["ports"][0]["port"] == 80  # the status subresource leaves spec alone
    cluster.kubectl("delete", "svc", "-n", ns, "-l", "grp=x", check=True)
    left = cluster.kubectl("get", "svc", "-n", ns, "-o", "name", check=True).stdout.split()
    assert left == ["service/s0"]
    status, body = raw.request("DELETE", f"/api/v1/namespaces/{ns}/services")
    assert status == 200, body
    assert cluster.kubectl("get", "svc", "-n", ns, "-o", "name", check=True).stdout.split() == []


def test_concurrent_creates_get_distinct_ips_and_survive_kill_9(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start()
    raw = Raw(c)

    def create(i: int) -> str:
        status, body = raw.json("POST", "/api/v1/namespaces/default/services",
                                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"c{i}"},
                                 "spec": {"ports": [{"port": 80}]}})
        assert status == 201, body
        return str(body["spec"]["clusterIP"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ips = list(pool.map(create, range(100)))
    assert len(set(ips)) == 100
    before = dict(zip([f"c{i}" for i in range(100)], ips, strict=True))
    c.stop(signal.SIGKILL)
    c.start()
    raw = Raw(c)
    _status, body = raw.request("GET", "/api/v1/namespaces/default/services")
    after = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in body["items"]}
    assert all(after[n] == ip for n, ip in before.items())
    with ThreadPoolExecutor(max_workers=16) as pool:
        new_ips = list(pool.map(create, range(100, 150)))
    assert not set(new_ips) & set(ips)
    assert len(set(new_ips)) == 50


def test_exhausted_range_gives_kubernetes_error(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start(extra=["--service-cidr", "10.97.0.0/28"])
    created = 0
    last = None
    for i in range(20):
        last = c.kubectl("create", "service", "clusterip", f"s{i}", "--tcp=80:80")
        if last.returncode != 0:
            break
        created += 1
    # 14 usable addresses, one of which is the kubernetes Service's.
    assert created == 13
    assert last is not None
    assert "Internal error occurred: failed to allocate a serviceIP: range is full" in last.stderr
    assert c.kubectl("get", "svc", check=True).returncode == 0


def test_bad_service_cidr_is_a_clear_error(tmp_path: object) -> None:
    import subprocess
    import sys

    from tests.integration.cluster import free_port

    res = subprocess.run([sys.executable, "-m", "kubelite", "up", "--data-dir", str(tmp_path), "--api-port",
                          str(free_port()), "--service-cidr", "nonsense"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "invalid --service-cidr 'nonsense'" in res.stderr
