"""Catalog containers' isolation (issue 18): a root of their own, containerd's capabilities,
no_new_privs and seccomp, on a real agent; ``privileged: true`` keeps the host's view.

The cluster's kubeconfig, pki/ and state database are under the test's data dir, which the
container must not reach; ``/root/.kube`` must not be there (whether or not the host has
one); ``/etc/shadow`` reads empty. Each pod prints what it sees and the test reads its log.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from tests.e2e.test_agent import Node, Obj, condition, node, pod, status_of

__all__ = ["node"]  # the module-scoped fixture, used by name

DEFAULT_CAPS = "00000000a80425fb"  # containerd's default set


def finished(node: Node, name: str) -> Obj:
    return node.wait_pod(name, "finished", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"), timeout=30)


def lines(node: Node, name: str) -> dict[str, str]:
    """``key=value`` lines of the pod's log."""
    p = finished(node, name)
    out = node.log(p, "c")
    assert p["status"]["phase"] == "Succeeded", out
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def probe_script(node: Node) -> str:
    data = node.cluster.data_dir
    secret_paths = {"kubeconfig": node.cluster.kubeconfig, "pki": data / "pki" / "ca.key",
                    "db": data / "state.db", "rootkube": pathlib.Path("/root/.kube/config")}
    assert all(p.exists() for k, p in secret_paths.items() if k != "rootkube")  # hidden, not missing
    checks = [f"if cat {p} >/dev/null 2>&1; then echo {k}=read; else echo {k}=hidden; fi"
              for k, p in secret_paths.items()]
    return "; ".join([
        *checks,
        'echo shadow="$(cat /etc/shadow 2>/dev/null | wc -c)"',
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \\t' | tr : =",
        'echo pids="$(ls /proc | grep -E "^[0-9]+$" | sort -n | tr "\\n" " ")"',
        'echo sleepers="$(ps -o args | grep -c "^sleep 3600")"',
        # Never in the privileged pod: its / is the host's.
        '[ -n "$PRIV" ] || if touch /usr/kubelite-test 2>/dev/null; then echo usr=written; else echo usr=readonly; fi',
        '[ -n "$PRIV" ] || if touch /rootfile 2>/dev/null; then echo root=written; else echo root=readonly; fi',
        "if touch /scratch/f 2>/dev/null; then echo scratch=written; else echo scratch=readonly; fi",
        'echo host="$(cat /host/file 2>/dev/null)"',
        '[ -n "$PRIV" ] || if touch /host-ro/new 2>/dev/null; then echo hostro=written; else echo hostro=readonly; fi',
        # CAP_MKNOD makes a node on a volume, which is nodev: it opens nothing.
        '[ -n "$PRIV" ] || { mknod /scratch/mem c 1 1 && if head -c1 /scratch/mem >/dev/null 2>&1; '
        'then echo mknod=opened; else echo mknod=refused; fi; }',
        'echo config="$(cat /etc/app/key 2>/dev/null)"',
        "true",
    ])


def test_catalog_container_has_its_own_root_and_default_capabilities(node: Node, tmp_path: pathlib.Path) -> None:
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "file").write_text("from the host")
    node.kubectl("create", "configmap", "iso-app", "--from-literal=key=configured")
    volumes = [{"name": "scratch", "emptyDir": {}}, {"name": "host", "hostPath": {"path": str(host_dir)}},
               {"name": "app", "configMap": {"name": "iso-app"}}]
    mounts = [{"name": "scratch", "mountPath": "/scratch"}, {"name": "host", "mountPath": "/host"},
              {"name": "host", "mountPath": "/host-ro", "readOnly": True},
              {"name": "app", "mountPath": "/etc/app"}]
    script = probe_script(node)

    def container(**sc: Any) -> Obj:
        return {"name": "c", "image": "busybox", "command": ["sh", "-c", script], "volumeMounts": mounts,
                "env": [{"name": "PRIV", "value": "1" if sc.get("privileged") else ""}],
                **({"securityContext": sc} if sc else {})}

    node.apply(pod("neighbour", [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
                   terminationGracePeriodSeconds=0))
    node.wait_pod("neighbour", "Running", lambda p: p["status"].get("phase") == "Running")
    node.apply(
        pod("iso", [container()], restartPolicy="Never", volumes=volumes),
        pod("iso-ro", [container(readOnlyRootFilesystem=True)], restartPolicy="Never", volumes=volumes),
        pod("iso-caps", [container(capabilities={"add": ["NET_ADMIN"], "drop": ["CHOWN", "KILL"]},
                                   allowPrivilegeEscalation=True, seccompProfile={"type": "Unconfined"})],
            restartPolicy="Never", volumes=volumes),
        pod("iso-priv", [container(privileged=True)], restartPolicy="Never", volumes=volumes),
    )

    iso = lines(node, "iso")
    assert {k: iso[k] for k in ("kubeconfig", "pki", "db", "rootkube")} == dict.fromkeys(
        ("kubeconfig", "pki", "db", "rootkube"), "hidden")
    assert iso["shadow"] == "0"
    assert (iso["CapEff"], iso["CapBnd"], iso["NoNewPrivs"], iso["Seccomp"]) == (DEFAULT_CAPS, DEFAULT_CAPS, "1", "2")
    # PID 1 and the processes of its own shell only: the neighbour's sleep is not there.
    pids = [int(p) for p in iso["pids"].split()]
    assert pids[0] == 1 and max(pids) < 64 and iso["sleepers"] == "0"
    assert (iso["usr"], iso["root"], iso["scratch"]) == ("readonly", "written", "written")
    assert not pathlib.Path("/rootfile").exists()  # the container's root is its own
    assert (iso["host"], iso["config"], iso["hostro"], iso["mknod"]) == (
        "from the host", "configured", "readonly", "refused")
    assert not (host_dir / "new").exists()

    ro = lines(node, "iso-ro")
    assert (ro["usr"], ro["root"], ro["scratch"], ro["host"]) == ("readonly", "readonly", "written", "from the host")

    caps = lines(node, "iso-caps")
    expected = int(DEFAULT_CAPS, 16) & ~(1 << 0) & ~(1 << 5) | (1 << 12)  # -CHOWN -KILL +NET_ADMIN
    assert (caps["CapEff"], caps["NoNewPrivs"], caps["Seccomp"]) == (f"{expected:016x}", "0", "0")

    priv = lines(node, "iso-priv")
    # The host's files, as before isolation (its /tmp, where the test's data dir is, stays private).
    assert priv["shadow"] == str(os.path.getsize("/etc/shadow"))
    if pathlib.Path("/root/.kube/config").exists():
        assert priv["rootkube"] == "read"
    host_caps = next(line.split()[1] for line in pathlib.Path("/proc/self/status").read_text().splitlines()
                     if line.startswith("CapBnd:"))
    assert (priv["CapEff"], priv["NoNewPrivs"], priv["Seccomp"]) == (host_caps, "0", "0")


def test_exec_is_confined_like_the_container(node: Node) -> None:
    node.apply(pod("iso-exec", [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
                   terminationGracePeriodSeconds=0))
    p = node.wait_pod("iso-exec", "Ready", lambda p: condition(p, "Ready") == "True")
    assert status_of(p, "c")["restartCount"] == 0
    out = node.kubectl("exec", "iso-exec", "--", "sh", "-c",
                       "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; ls -A /root; "
                       "cat /etc/shadow | wc -c; ps -o pid,args")
    assert f"CapEff:\t{DEFAULT_CAPS}" in out and "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    assert ".kube" not in out
    table = out.split("PID", 1)[1].splitlines()[1:]
    ps = [line.split(None, 1) for line in table if line.strip()]
    assert ps[0] == ["1", "sleep 3600"] and len(ps) <= 3  # and the exec's sh and ps
    # (Its terminals: kubectl exec -t needs a terminal of its own; see test_runtime's
    # test_terminals_are_made_in_the_containers_own_devpts.)


def test_escalation_and_seccomp_each_follow_the_pod_and_localhost_is_refused(node: Node) -> None:
    """The same rule as image containers (test_oci_pods): each of allowPrivilegeEscalation and
    seccompProfile alone changes only its own part; a Localhost profile is a CreateContainerError."""
    script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \t' | tr : ="

    def probe(name: str, **sc: Any) -> Obj:
        return pod(name, [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                           "securityContext": sc}], restartPolicy="Never")

    node.apply(probe("nnp-escalate", allowPrivilegeEscalation=True),
               probe("nnp-unconfined", seccompProfile={"type": "Unconfined"}),
               probe("nnp-localhost", seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}))
    escalate, unconfined = lines(node, "nnp-escalate"), lines(node, "nnp-unconfined")
    assert (escalate["NoNewPrivs"], escalate["Seccomp"]) == ("0", "2")
    assert (unconfined["NoNewPrivs"], unconfined["Seccomp"]) == ("1", "0")
    p = node.wait_pod("nnp-localhost", "refused",
                      lambda p: (status_of(p, "c").get("state") or {}).get("waiting", {}).get("reason")
                      == "CreateContainerError")
    assert status_of(p, "c")["state"]["waiting"]["message"] == (
        "seccomp profile type Localhost is not supported by kubelite (use RuntimeDefault)")


def test_run_as_user_reaches_python_images(node: Node) -> None:
    agn = {"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
           "args": ["mounttest", "--file_content=/etc/hostname"], "securityContext": {"runAsUser": 1001}}
    node.apply(pod("iso-agnhost", [agn], restartPolicy="Never"))
    done = finished(node, "iso-agnhost")
    assert done["status"]["phase"] == "Succeeded", node.log(done, "c")
    assert "iso-agnhost" in node.log(done, "c")
