"""Pods whose containers are real OCI images, through `kubelite up` and kubectl (issue 16).

The image is an unpacked root built from busybox-static (``tests/e2e/ociroot.py``), given
to the agent through its image catalog (an entry with ``rootfs``; ``KUBELITE_IMAGE_CATALOG``):
the stand-in for the image store until that lands. Everything else is the real path: the
pod worker, the shim, runc, the pod's network namespace, the API's streaming subresources.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubelite.cli.supervisor import component_pids
from tests import waiting
from tests.conftest import require
from tests.e2e import ociroot
from tests.e2e.conftest import netns_names, require_root_netns
from tests.e2e.test_streaming import _run_in_pty
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]
BB = "localhost/kubelite-test/bb:1"
BB_APP = "localhost/kubelite-test/bb-app:1"
WEB = "localhost/kubelite-test/web:1"
BB_NOUSER = "localhost/kubelite-test/bb-nouser:1"


wait_for = functools.partial(waiting.wait_for, timeout=60.0, interval=0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(shutil.which("runc") is not None, "needs runc (Debian: apt-get install runc)")
    base = tmp_path_factory.mktemp("ocipods")
    root = ociroot.build_rootfs(ociroot.busybox_deb(base / "cache"), base / "rootfs")
    common = {"rootfs": str(root), "env": {"PATH": "/bin", "GREETING": "from-image"}}
    catalog = {
        BB: {**common, "cmd": ["sh", "-c", "cat /baked/hello.txt; pwd; echo $GREETING; exec sleep 3600"],
             "workdir": "/app"},
        BB_APP: {**common, "cmd": ["sleep", "3600"], "user": "app"},
        BB_NOUSER: {**common, "cmd": ["sleep", "3600"], "user": "nosuchuser"},
        WEB: {**common, "workdir": "/www",
              "cmd": ["sh", "-c", "hostname > index.html; exec httpd -f -p 8080 -h /www"]},
    }
    catalog_file = base / "catalog.yaml"
    catalog_file.write_text(yaml.safe_dump(catalog))
    c = new_cluster(base)
    try:
        c.start(agent=True, timeout=60, env={"KUBELITE_IMAGE_CATALOG": str(catalog_file)})
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def apply(cluster: Cluster, *objs: Obj) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs), check=True)


def pod(name: str, containers: list[Obj], **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": spec.pop("labels", {})},
            "spec": {"terminationGracePeriodSeconds": 2, **spec, "containers": containers}}


def get_pod(cluster: Cluster, name: str) -> Obj | None:
    res = cluster.kubectl("get", "pod", name, "-o", "json")
    return json.loads(res.stdout) if res.returncode == 0 else None


def status(cluster: Cluster, name: str, container: str = "c") -> Obj:
    p = get_pod(cluster, name) or {}
    return next((s for s in (p.get("status") or {}).get("containerStatuses") or [] if s["name"] == container), {})


def ready(cluster: Cluster, name: str) -> Obj | None:
    p = get_pod(cluster, name)
    conditions = ((p or {}).get("status") or {}).get("conditions") or []
    return p if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


def waiting_state(cluster: Cluster, name: str) -> Obj | None:
    state: Obj | None = (status(cluster, name).get("state") or {}).get("waiting")
    return state


def terminated(cluster: Cluster, name: str, container: str = "c") -> Obj:
    state: Obj = wait_for(f"{name} terminated",
                          lambda: (status(cluster, name, container).get("state") or {}).get("terminated"), timeout=60)
    return state


def logs(cluster: Cluster, name: str) -> list[str]:
    return cluster.kubectl("logs", name, check=True).stdout.splitlines()


def test_the_image_runs_with_its_config_and_its_own_filesystem(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    apply(cluster, pod("img", [{"name": "c", "image": BB}]),
          pod("override", [{"name": "c", "image": BB, "command": ["sh", "-c"], "args": ["echo $GREETING $MINE; pwd"],
                            "env": [{"name": "GREETING", "value": "from-pod"}, {"name": "MINE", "value": "x"}],
                            "workingDir": "/baked"}], restartPolicy="Never"),
          pod("args", [{"name": "c", "image": BB, "args": ["sh", "-c", "echo args-only"]}], restartPolicy="Never"))
    wait_for("img Ready", lambda: ready(cluster, "img"))
    assert wait_for("img logs", lambda: len(logs(cluster, "img")) == 3 and logs(cluster, "img")) == [
        ociroot.BAKED_TEXT, "/app", "from-image"]
    st = status(cluster, "img")
    assert st["image"] == BB and st["imageID"].startswith("localhost/kubelite-test/bb@sha256:")
    assert terminated(cluster, "override")["exitCode"] == 0
    assert logs(cluster, "override") == ["from-pod x", "/baked"]
    assert terminated(cluster, "args")["exitCode"] == 0
    assert logs(cluster, "args") == ["args-only"]
    # The host's files are not there: its os-release, the data dir, /root's contents.
    script = f"test -e /etc/os-release || echo no-os-release; test -e {cluster.data_dir} || echo no-data-dir; ls -A /root | wc -l"
    out = cluster.kubectl("exec", "img", "--", "sh", "-c", script, check=True).stdout.split()
    assert out == ["no-os-release", "no-data-dir", "0"]
    # exec -i, an exit code, a missing command, and kubectl cp (tar inside the container).
    res = cluster.kubectl("exec", "-i", "img", "--", "sh", input="cat /baked/hello.txt; exit 4\n")
    assert (res.returncode, res.stdout.strip()) == (4, ociroot.BAKED_TEXT)
    res = cluster.kubectl("exec", "img", "--", "nosuch")
    assert res.returncode != 0 and 'exec: "nosuch": executable file not found in $PATH' in res.stderr
    cluster.kubectl("cp", f"img:{ociroot.BAKED}", str(tmp_path / "copied.txt"), check=True)
    assert (tmp_path / "copied.txt").read_text().strip() == ociroot.BAKED_TEXT
    (tmp_path / "up.txt").write_text("uploaded\n")
    cluster.kubectl("cp", str(tmp_path / "up.txt"), "img:/tmp/up.txt", check=True)
    assert cluster.kubectl("exec", "img", "--", "cat", "/tmp/up.txt", check=True).stdout == "uploaded\n"


def test_exec_with_a_terminal(cluster: Cluster) -> None:
    """`kubectl exec -it sh` from a real terminal: a shell on a terminal in the container, its size set."""
    wait_for("img Ready", lambda: ready(cluster, "img"))
    argv = [kubectl_binary() or "kubectl", "--kubeconfig", str(cluster.kubeconfig), "exec", "-it", "img", "--", "sh"]
    out = _run_in_pty(argv, {**os.environ, "TERM": "xterm"},
                      [(b"# ", b"tty; stty size; echo $GREETING-$((6*7))\r"), (b"from-image-42", b"exit\r")])
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text and "33 101" in text and "from-image-42" in text, text


def test_a_service_over_two_image_pods_answers_from_both_and_port_forward(cluster: Cluster) -> None:
    web = {"name": "c", "image": WEB, "ports": [{"containerPort": 8080}],
           "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
           "livenessProbe": {"exec": {"command": ["cat", "/www/index.html"]}, "periodSeconds": 2}}
    apply(cluster, pod("web-1", [web], labels={"app": "ociweb"}), pod("web-2", [web], labels={"app": "ociweb"}),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ociweb"},
           "spec": {"selector": {"app": "ociweb"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    for name in ("web-1", "web-2"):
        wait_for(f"{name} Ready", lambda name=name: ready(cluster, name))  # type: ignore[misc]
    svc = json.loads(cluster.kubectl("get", "svc", "ociweb", "-o", "json", check=True).stdout)
    ip = svc["spec"]["clusterIP"]
    script = f"for i in $(seq 30); do wget -qO- http://{ip}/index.html; done"
    apply(cluster, pod("fetch", [{"name": "c", "image": BB, "command": ["sh", "-c", script]}], restartPolicy="Never"))
    assert terminated(cluster, "fetch")["exitCode"] == 0
    assert set(logs(cluster, "fetch")) == {"web-1", "web-2"}
    assert status(cluster, "web-1")["restartCount"] == 0  # its exec liveness probe (runc exec) keeps passing
    proc = subprocess.Popen([kubectl_binary() or "kubectl", "--kubeconfig", str(cluster.kubeconfig),
                             "port-forward", "pod/web-1", ":8080"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.read().decode().strip() == "web-1"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def test_security_context_is_enforced_inside(cluster: Cluster) -> None:
    script = "id -u; grep CapEff /proc/self/status; touch /x 2>/dev/null && echo WROTE; true"
    sc = {"runAsUser": 1000, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
          "allowPrivilegeEscalation": False}
    apply(cluster, pod("sec", [{"name": "c", "image": BB, "command": ["sh", "-c", script], "securityContext": sc}],
                       restartPolicy="Never"),
          pod("nonroot", [{"name": "c", "image": BB, "securityContext": {"runAsNonRoot": True}}]),
          pod("nonroot-name", [{"name": "c", "image": BB_APP, "securityContext": {"runAsNonRoot": True}}]),
          pod("caps", [{"name": "c", "image": BB, "command": ["sh", "-c", "grep CapEff /proc/self/status"]}],
              restartPolicy="Never"),
          pod("nouser", [{"name": "c", "image": BB_NOUSER}]))
    assert terminated(cluster, "sec")["exitCode"] == 0
    assert [line.split() for line in logs(cluster, "sec")] == [["1000"], ["CapEff:", "0000000000000000"]]
    assert terminated(cluster, "caps")["exitCode"] == 0
    assert logs(cluster, "caps")[0].split() == ["CapEff:", "00000000a80425fb"]  # containerd's default set
    for name, message in (("nonroot", "container has runAsNonRoot and image will run as root"),
                          ("nonroot-name", "container has runAsNonRoot and image has non-numeric user (app), "
                                           "cannot verify user is non-root")):
        waiting = wait_for(f"{name} refused", functools.partial(waiting_state, cluster, name))
        uid = (get_pod(cluster, name) or {})["metadata"]["uid"]
        assert waiting == {"reason": "CreateContainerConfigError",
                           "message": f'{message} (pod: "{name}_default({uid})", container: c)'}
    # An image user its /etc/passwd does not know: the container cannot be created.
    waiting = wait_for("nouser refused", functools.partial(waiting_state, cluster, "nouser"))
    assert waiting == {"reason": "CreateContainerError",
                       "message": "unable to find user nosuchuser: no matching entries in passwd file"}


def test_no_new_privs_and_runtime_default_seccomp_unless_the_pod_asks(cluster: Cluster) -> None:
    """The defaults catalog containers have (test_catalog_isolation), on the image path too:
    one rule (ocispec.process_security) for both; a Localhost profile is refused on both."""
    script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"

    def probe(name: str, **sc: Any) -> Obj:
        return pod(name, [{"name": "c", "image": BB, "command": ["sh", "-c", script],
                           **({"securityContext": sc} if sc else {})}], restartPolicy="Never")

    apply(cluster, probe("nnp-plain"), probe("nnp-escalate", allowPrivilegeEscalation=True),
          probe("nnp-unconfined", seccompProfile={"type": "Unconfined"}),
          probe("nnp-privileged", privileged=True),
          probe("nnp-localhost", seccompProfile={"type": "Localhost", "localhostProfile": "profiles/audit.json"}))
    seen = {}
    for name in ("nnp-plain", "nnp-escalate", "nnp-unconfined", "nnp-privileged"):
        assert terminated(cluster, name)["exitCode"] == 0
        seen[name] = [line.split() for line in logs(cluster, name)]
    assert seen == {
        "nnp-plain": [["NoNewPrivs:", "1"], ["Seccomp:", "2"]],
        "nnp-escalate": [["NoNewPrivs:", "0"], ["Seccomp:", "2"]],
        "nnp-unconfined": [["NoNewPrivs:", "1"], ["Seccomp:", "0"]],
        "nnp-privileged": [["NoNewPrivs:", "0"], ["Seccomp:", "0"]],
    }
    waiting = wait_for("nnp-localhost refused", functools.partial(waiting_state, cluster, "nnp-localhost"))
    assert waiting == {"reason": "CreateContainerError",
                       "message": "seccomp profile type Localhost is not supported by kubelite (use RuntimeDefault)"}
    # runc exec runs in the container's confinement too.
    apply(cluster, pod("nnp-exec", [{"name": "c", "image": BB, "command": ["sleep", "3600"]}]))
    wait_for("nnp-exec Ready", lambda: ready(cluster, "nnp-exec"))
    out = cluster.kubectl("exec", "nnp-exec", "--", "sh", "-c", script, check=True).stdout
    assert [line.split() for line in out.splitlines()] == [["NoNewPrivs:", "1"], ["Seccomp:", "2"]]
    cluster.kubectl("delete", "pod", "nnp-plain", "nnp-escalate", "nnp-unconfined", "nnp-privileged",
                    "nnp-localhost", "nnp-exec", "--wait=false", check=True)


def test_a_memory_empty_dir_is_a_tmpfs_in_an_image_container(cluster: Cluster) -> None:
    script = "stat -f -c %T /mem; stat -c %A /mem; df -k /mem | tail -1; echo hi > /mem/f && cat /mem/f"
    apply(cluster, pod("mem", [{"name": "c", "image": BB, "command": ["sh", "-c", script],
                                "securityContext": {"runAsUser": 1000},
                                "volumeMounts": [{"name": "mem", "mountPath": "/mem"}]}],
                       restartPolicy="Never",
                       volumes=[{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}}]))
    assert terminated(cluster, "mem")["exitCode"] == 0
    fs, mode, df, written = logs(cluster, "mem")
    assert (fs, mode, written) == ("tmpfs", "drwxrwxrwx", "hi")
    assert df.split()[1] == "4096"  # sizeLimit, in KiB
    uid = (get_pod(cluster, "mem") or {})["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "mem", "--wait=true", check=True)

    def pod_mounts() -> list[str]:
        with open("/proc/self/mountinfo") as f:
            return [line for line in f if f"/{uid}/volumes/" in line]

    wait_for("the tmpfs unmounted", lambda: not pod_mounts())


def test_a_memory_limit_ends_in_oomkilled(cluster: Cluster) -> None:
    apply(cluster, pod("oom", [{"name": "c", "image": BB, "command": ["tail", "/dev/zero"],
                                "resources": {"limits": {"memory": "32Mi"}}}], restartPolicy="Never"))
    state = terminated(cluster, "oom")
    assert (state["reason"], state["exitCode"]) == ("OOMKilled", 137)


def test_restarts_and_graceful_termination(cluster: Cluster) -> None:
    apply(cluster, pod("crash", [{"name": "c", "image": BB, "command": ["sh", "-c", "echo once; exit 3"]}]),
          pod("trap", [{"name": "c", "image": BB, "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}],
              terminationGracePeriodSeconds=30))
    last = wait_for("crash restarted", lambda: status(cluster, "crash").get("restartCount", 0) >= 1
                    and status(cluster, "crash"), timeout=30)
    assert last["lastState"]["terminated"]["exitCode"] == 3
    wait_for("trap Ready", lambda: ready(cluster, "trap"))
    apply(cluster, pod("hooks", [{"name": "c", "image": BB, "lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "echo from-post-start > /tmp/hook"]}}}}]))
    wait_for("hooks Ready", lambda: ready(cluster, "hooks"))
    assert cluster.kubectl("exec", "hooks", "--", "cat", "/tmp/hook", check=True).stdout == "from-post-start\n"
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "trap", "--wait=true", check=True)
    assert time.monotonic() - started < 15  # the container handled SIGTERM: no 30 s grace period waited out


def test_pods_are_readopted_after_an_agent_restart(cluster: Cluster) -> None:
    wait_for("img Ready", lambda: ready(cluster, "img"))
    before = status(cluster, "img")["containerID"]
    [pid] = component_pids(cluster.kubeconfig, "agent")
    os.kill(pid, signal.SIGKILL)
    wait_for("agent restarted", lambda: [p for p in component_pids(cluster.kubeconfig, "agent") if p != pid])
    apply(cluster, pod("after", [{"name": "c", "image": BB}]))
    wait_for("a new pod Ready", lambda: ready(cluster, "after"))
    st = status(cluster, "img")
    assert (st["containerID"], st["restartCount"]) == (before, 0)
    assert cluster.kubectl("exec", "img", "--", "cat", ociroot.BAKED, check=True).stdout.strip() == ociroot.BAKED_TEXT


def test_lifecycle_hooks_and_unprivileged_defaults_in_image_containers(cluster: Cluster) -> None:
    """Exec hooks run through runc exec in the image's container: postStart before the
    container counts as running, preStop before SIGTERM, both reaching a handler pod (a
    catalog agnhost netexec, which logs every /echo). And what conformance expects of an
    unprivileged container with a writable root: no CAP_NET_ADMIN, files can be written."""
    apply(cluster, pod("handler", [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
                                    "args": ["netexec", "--http-port=8080"]}]))
    handler_ip = wait_for("handler Ready", lambda: ready(cluster, "handler"))["status"]["podIP"]
    fetch = f"wget -q -O- http://{handler_ip}:8080/echo?msg="
    trap = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    apply(cluster, pod("oci-hooks", [{"name": "c", "image": BB, "command": trap, "lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", f"{fetch}oci-poststart; sleep 1; echo done > /tmp/hook"]}},
        "preStop": {"exec": {"command": ["sh", "-c", f"{fetch}oci-prestop"]}}}}], terminationGracePeriodSeconds=15),
        pod("unpriv", [{"name": "c", "image": BB, "securityContext": {
            "privileged": False, "readOnlyRootFilesystem": False},
            "command": ["sh", "-c", "ip link add dummy1 type dummy || true; touch /checkfile && echo wrote"]}],
            restartPolicy="Never"))
    wait_for("oci-hooks running", lambda: "running" in (status(cluster, "oci-hooks").get("state") or {}))
    assert cluster.kubectl("exec", "oci-hooks", "--", "cat", "/tmp/hook", check=True).stdout == "done\n"

    def echoed(msg: str) -> bool:
        return f"GET /echo?msg={msg}&" in cluster.kubectl("logs", "handler", check=True).stdout

    assert echoed("oci-poststart") and not echoed("oci-prestop")
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "oci-hooks", "--grace-period=15", check=True)
    assert time.monotonic() - started < 12  # the TERM trap ended it: the hook came first, quickly
    wait_for("the preStop request", lambda: echoed("oci-prestop"), timeout=10)
    assert terminated(cluster, "unpriv")["exitCode"] == 0
    # (stderr and stdout are separate streams: their lines may come in either order)
    assert sorted(logs(cluster, "unpriv")) == ["ip: RTNETLINK answers: Operation not permitted", "wrote"]
    cluster.kubectl("delete", "pod", "handler", "unpriv", "--wait=false", check=True)
