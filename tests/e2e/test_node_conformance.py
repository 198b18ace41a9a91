"""Node behaviours Kubernetes' conformance suite checks (issue 19), with real pods on a real agent.

Each test shows one kubelet or scheduler behaviour on catalog containers: the active
deadline, termination messages (file and log fallback, as a non-root user too), subPathExpr,
a hostPath /etc/hosts, memory-backed emptyDirs, downward API files following label changes, hostPort on the node's
address (in the node's own network namespace), and the scheduler fitting requests against
the allocatable the agent reports. The cluster and agent come from the agent tests' fixture.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

from tests.e2e.test_agent import AGNHOST, Node, Obj, condition, node, pod, status_of, wait_for

__all__ = ["node"]  # the module-scoped fixture, used by name


def events_of(node: Node, name: str) -> set[tuple[str, str, str]]:
    items = json.loads(node.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}",
                                    "-o", "json"))["items"]
    return {(e["type"], e["reason"], e["message"]) for e in items}


def test_active_deadline_fails_the_pod_and_stops_its_containers(node: Node) -> None:
    node.apply(pod("deadline", [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
                   activeDeadlineSeconds=3, terminationGracePeriodSeconds=1))
    node.wait_pod("deadline", "running", lambda p: "running" in status_of(p, "c").get("state", {}))
    failed = node.wait_pod("deadline", "Failed", lambda p: p["status"].get("phase") == "Failed", timeout=15)
    assert failed["status"]["reason"] == "DeadlineExceeded"
    assert failed["status"]["message"] == "Pod was active on the node longer than the specified deadline"
    assert "terminated" in status_of(failed, "c")["state"]
    assert condition(failed, "Ready") == "False"
    wait_for("the DeadlineExceeded event", lambda: (
        "Normal", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
        in events_of(node, "deadline"))


def test_termination_messages_from_the_file_and_from_the_logs(node: Node) -> None:
    containers: list[Obj] = [
        {"name": "file", "image": "busybox", "command": ["sh", "-c", "printf DONE > /dev/termination-log"]},
        # A custom path as a non-root user; under the container's private /tmp, so that its
        # mount point is made there: a missing target elsewhere is created on the host's
        # filesystem (the shim's rule), as /dev/termination-log is, once, in the host's /dev.
        {"name": "custom", "image": "busybox", "securityContext": {"runAsUser": 1000},
         "terminationMessagePath": "/tmp/termination-custom-log",
         "command": ["sh", "-c", "printf 'as 1000' > /tmp/termination-custom-log; exit 2"]},
        {"name": "logs", "image": "busybox", "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo first; echo last words; exit 1"]},
        {"name": "quiet", "image": "busybox", "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo not a failure"]},
        {"name": "unterminated", "image": "busybox", "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo -n DONE; false"]},
    ]
    node.apply(pod("term", containers, restartPolicy="Never"))
    done = node.wait_pod("term", "Failed", lambda p: p["status"].get("phase") == "Failed", timeout=20)
    messages = {name: status_of(done, name)["state"]["terminated"].get("message") for name in
                ("file", "custom", "logs", "quiet", "unterminated")}
    assert messages == {"file": "DONE", "custom": "as 1000", "logs": "first\nlast words\n", "quiet": None,
                        "unterminated": "DONE"}


def test_sub_path_expr_and_its_errors(node: Node) -> None:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    writer = {"name": "c", "image": "busybox", "env": env, "command": ["sh", "-c", "echo hi > /w/file; sleep 3600"],
              "volumeMounts": [{"name": "work", "mountPath": "/w", "subPathExpr": "$(POD_NAME)"}]}
    node.apply(pod("subpath", [writer], terminationGracePeriodSeconds=1,
                   volumes=[{"name": "work", "emptyDir": {}}]))
    p = node.wait_pod("subpath", "Ready", lambda p: condition(p, "Ready") == "True")
    file = node.state_dir / "pods" / p["metadata"]["uid"] / "volumes" / "work" / "subpath" / "file"
    wait_for("the file in the expanded subpath", file.exists)
    assert file.read_text() == "hi\n"

    broken = {**writer, "volumeMounts": [{"name": "work", "mountPath": "/w", "subPathExpr": "$(NOPE)"}]}
    node.apply(pod("subpath-bad", [broken], volumes=[{"name": "work", "emptyDir": {}}]))
    bad = node.wait_pod("subpath-bad", "CreateContainerConfigError", lambda p: (
        status_of(p, "c").get("state", {}).get("waiting") or {}).get("reason") == "CreateContainerConfigError")
    assert status_of(bad, "c")["state"]["waiting"]["message"] == "missing value for NOPE"


def test_a_host_path_etc_hosts_is_the_nodes_file(node: Node) -> None:
    cat = ["sh", "-c", "cat /etc/hosts"]
    node.apply(pod("hosts", [
        {"name": "managed", "image": "busybox", "command": cat},
        {"name": "node", "image": "busybox", "command": cat,
         "volumeMounts": [{"name": "hosts", "mountPath": "/etc/hosts"}]},
    ], restartPolicy="Never", volumes=[{"name": "hosts", "hostPath": {"path": "/etc/hosts", "type": "File"}}]))
    done = node.wait_pod("hosts", "Succeeded", lambda p: p["status"].get("phase") == "Succeeded")
    assert node.log(done, "managed").startswith("# Kubernetes-managed hosts file.")
    assert node.log(done, "node") == pathlib.Path("/etc/hosts").read_text().rstrip("\n")


def mounts_under(path: pathlib.Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split(" ")[4] for line in f]
    return [p for p in points if p.startswith(str(path) + "/")]


def test_a_memory_empty_dir_is_a_tmpfs_unmounted_with_the_pod(node: Node) -> None:
    script = "stat -f -c %T /mem; stat -c %A /mem; df -k /mem | tail -1; echo hi > /mem/f && cat /mem/f"
    obj = pod("mem", [{"name": "c", "image": "busybox", "command": ["sh", "-c", script + "; sleep 3600"],
                       "securityContext": {"runAsUser": 1000},
                       "volumeMounts": [{"name": "mem", "mountPath": "/mem"}]}],
              terminationGracePeriodSeconds=1,
              volumes=[{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}])
    node.apply(obj)
    p = node.wait_pod("mem", "running", lambda p: "running" in status_of(p, "c").get("state", {}))
    wait_for("the container's output", lambda: node.log(p, "c").count("\n") >= 3)
    fs, mode, df, written = node.log(p, "c").splitlines()[:4]
    assert (fs, mode, written) == ("tmpfs", "drwxrwxrwx", "hi")
    assert df.split()[1] == "8192"  # sizeLimit, in KiB: the pod's own tmpfs, not one it sits on
    pod_dir = node.state_dir / "pods" / p["metadata"]["uid"]
    assert mounts_under(pod_dir) == [str(pod_dir / "volumes" / "mem")]
    node.kubectl("delete", "pod", "mem", "--wait=true")
    wait_for("the tmpfs unmounted", lambda: not mounts_under(pod_dir))


def test_busybox_bin_sh_is_busybox_also_on_a_read_only_root(node: Node) -> None:
    # The image's /bin/sh is busybox's ash, whose messages start with its argv[0]; the host's
    # /bin/sh (dash here) says "/bin/sh: 1: cannot create ...".
    write = ["/bin/sh", "-c", "echo test > /file"]
    node.apply(pod("ro-sh", [
        {"name": "ro", "image": "busybox", "command": write, "securityContext": {"readOnlyRootFilesystem": True}},
        {"name": "priv", "image": "busybox", "command": ["/bin/sh", "-c", "cd /nonexistent"],
         "securityContext": {"privileged": True}},
    ], restartPolicy="Never"))
    done = node.wait_pod("ro-sh", "Failed", lambda p: p["status"].get("phase") == "Failed")
    assert node.log(done, "ro") == "/bin/sh: can't create /file: Read-only file system"
    # A privileged container keeps the host's view, but its /bin/sh is still busybox's.
    busybox = subprocess.run(["/bin/sh", "-c", "cd /nonexistent"], executable=shutil.which("busybox"),
                             capture_output=True, text=True).stderr.strip()
    assert node.log(done, "priv") == busybox and "can't cd to /nonexistent" in busybox


def test_agnhost_nettest_hears_a_pre_stop_hook(node: Node) -> None:
    # A busybox pod's preStop hook writes to an agnhost nettest pod on deletion; the counts
    # are read back through the API server's pods/proxy. (Finding peers through the API is
    # the unit tests'; this fixture's agent has no route to the API for pods.)
    server = pod("nettest", [{"name": "c", "image": AGNHOST, "args": ["nettest", "--peers=1"],
                              "ports": [{"containerPort": 8080}]}], terminationGracePeriodSeconds=1)
    node.apply(server)
    ip = node.wait_pod("nettest", "Ready", lambda p: condition(p, "Ready") == "True")["status"]["podIP"]
    hook = {"exec": {"command": ["wget", "-O-", '--post-data={"Source": "prestop"}', f"http://{ip}:8080/write"]}}
    node.apply(pod("tester", [{"name": "c", "image": "busybox", "command": ["sleep", "600"],
                               "lifecycle": {"preStop": hook}}], terminationGracePeriodSeconds=10))
    node.wait_pod("tester", "running", lambda p: "running" in status_of(p, "c").get("state", {}))
    node.kubectl("delete", "pod", "tester", "--wait=true")

    def read() -> Obj:
        return dict(json.loads(node.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/nettest/proxy/read")))

    wait_for("the hook's write", lambda: (read().get("Received") or {}).get("prestop") == 1)
    assert read()["Hostname"] == "nettest"
    assert node.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/nettest/proxy/status") == "running"
    node.kubectl("delete", "pod", "nettest", "--wait=false")


def test_exec_of_the_agnhost_images_own_paths(node: Node) -> None:
    # The real image has /agnhost and /agnhost-2; tests exec them (`/agnhost dns-suffix`).
    node.apply(pod("agn", [{"name": "c", "image": AGNHOST}], terminationGracePeriodSeconds=1))
    node.wait_pod("agn", "running", lambda p: "running" in status_of(p, "c").get("state", {}))
    for path in ("/agnhost", "/agnhost-2"):
        out = node.kubectl("exec", "agn", "--", path, "entrypoint-tester", "x")
        assert out == f"[{path} entrypoint-tester x]\n"
    node.kubectl("delete", "pod", "agn", "--wait=false")


def test_downward_api_files_follow_label_changes(node: Node) -> None:
    c = {"name": "c", "image": "busybox",
         "command": ["sh", "-c", "while true; do cat /info/labels; echo; sleep 0.5; done"],
         "volumeMounts": [{"name": "info", "mountPath": "/info"}]}
    obj = pod("labels", [c], terminationGracePeriodSeconds=1, volumes=[
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}])
    obj["metadata"]["labels"] = {"stage": "one"}
    node.apply(obj)
    p = node.wait_pod("labels", "Ready", lambda p: condition(p, "Ready") == "True")
    wait_for("the first label in the file", lambda: 'stage="one"' in node.log(p, "c"))
    node.kubectl("label", "pod", "labels", "stage=two", "--overwrite")
    wait_for("the changed label in the file", lambda: 'stage="two"' in node.log(p, "c"), timeout=10)


def test_host_port_on_the_node_address(node: Node) -> None:
    web = {"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
           "ports": [{"containerPort": 8080, "hostPort": 18080}]}
    side = {"name": "side", "image": "busybox", "command": ["sleep", "3600"]}
    node.apply(pod("hostport", [web, side], terminationGracePeriodSeconds=1))
    node.wait_pod("hostport", "Ready", lambda p: condition(p, "Ready") == "True")
    node_ip = "10.244.0.1"
    fetch = f"wget -qO- http://{node_ip}:18080/hostname"  # (busybox 1.35 wget -T segfaults)
    node.apply(pod("hp-client", [{"name": "c", "image": "busybox", "command": ["sh", "-c", fetch]}],
                   restartPolicy="Never"))
    done = node.wait_pod("hp-client", "Succeeded", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"))
    assert node.log(done, "c") == "hostport", node.log(done, "c")
    # Hairpin: the pod reaches itself through its own hostPort.
    out = node.cluster.kubectl("exec", "hostport", "-c", "side", "--", "sh", "-c", fetch)
    assert out.returncode == 0 and out.stdout == "hostport", out
    node.kubectl("delete", "pod", "hostport", "--wait=true", "--timeout=20s")
    node.apply(pod("hp-after", [{"name": "c", "image": "busybox", "command": ["sh", "-c", fetch]}],
                   restartPolicy="Never"))
    after = node.wait_pod("hp-after", "done", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"))
    assert after["status"]["phase"] == "Failed"  # the mapping went with the pod


def test_scheduler_fits_requests_to_what_the_agent_reports(node: Node) -> None:
    obj = node.node_object()
    assert obj is not None
    alloc, cap = obj["status"]["allocatable"], obj["status"]["capacity"]
    assert alloc["cpu"] == str(os.cpu_count()) and alloc["pods"] == "110"
    assert int(alloc["memory"].removesuffix("Ki")) == int(cap["memory"].removesuffix("Ki")) - 100 * 1024

    def requesting(name: str, cpu: str) -> Obj:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                     "resources": {"requests": {"cpu": cpu}}}]}}

    # Not Node.apply: these go through the scheduler.
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        requesting("huge", "100"), requesting("small", "100m")]}))
    small = node.wait_pod("small", "Ready", lambda p: condition(p, "Ready") == "True")
    assert small["spec"]["nodeName"] == node.node
    huge = node.wait_pod("huge", "Unschedulable", lambda p: condition(p, "PodScheduled") == "False")
    assert not huge["spec"].get("nodeName") and huge["status"]["phase"] == "Pending"
    message = ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
               "1 No preemption victims found for incoming pod.")
    cond = next(c for c in huge["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (cond["reason"], cond["message"]) == ("Unschedulable", message)
    wait_for("FailedScheduling", lambda: ("Warning", "FailedScheduling", message) in events_of(node, "huge"))
    node.kubectl("delete", "pod", "huge", "small", "--wait=false")


def test_an_extended_resource_patched_into_capacity_is_allocatable(node: Node) -> None:
    # The scheduling conformance tests advertise a fake resource by patching the Node's
    # status.capacity; the agent's next status report makes it allocatable, as the kubelet does.
    def patch_capacity(value: str | None) -> None:
        node.kubectl("patch", "node", node.node, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": {"capacity": {"example.com/fakecpu": value}}}))

    def allocatable() -> Obj:
        return dict(((node.node_object() or {}).get("status") or {}).get("allocatable") or {})

    patch_capacity("1k")
    try:
        wait_for("the fake resource allocatable", lambda: allocatable().get("example.com/fakecpu") == "1k", timeout=45)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fake-res", "namespace": "default"},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                   {"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                    "resources": {"requests": {"example.com/fakecpu": "200"},
                                  "limits": {"example.com/fakecpu": "200"}}}]}}
        node.kubectl("apply", "-f", "-", input=json.dumps(pod))  # through the scheduler
        scheduled = node.wait_pod("fake-res", "scheduled", lambda p: bool(p["spec"].get("nodeName")))
        assert scheduled["spec"]["nodeName"] == node.node
        node.kubectl("delete", "pod", "fake-res", "--wait=false")
    finally:
        patch_capacity(None)
    wait_for("the fake resource gone", lambda: "example.com/fakecpu" not in allocatable(), timeout=45)
