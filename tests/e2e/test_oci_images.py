"""Real images in a real cluster: pulls from a loopback registry, loads, pull secrets, back-off.

A ``kubelite up`` (default ``--images=auto``) with its node agent, a Debian docker-registry on
127.0.0.1 (one open, one behind htpasswd) holding images built by tests/imagefixture.py, and
the real kubectl. What the kubelet's image manager shows is checked through the API as a user
sees it: events (``Pulling``, ``Pulled``, ``Failed``), the waiting reasons ErrImagePull /
ImagePullBackOff / ErrImageNeverPull with the registry's reason, ``imageID``; and the pods of
pulled images run with runc (their filesystem, config, exec, a Service over two of them).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import imagefixture as fx
from tests import waiting as polling
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]
USER, PASSWORD = "puller", "pull-pass"




@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    fx.require_tools("skopeo", "umoci", "docker-registry", "htpasswd")
    base = tmp_path_factory.mktemp("oci")
    with fx.registry(base / "open") as open_reg, fx.registry(base / "private", user=USER, password=PASSWORD) as priv:
        c = new_cluster(base)
        try:
            c.start(agent=True, timeout=60)
            yield c, open_reg, priv, base
        finally:
            c.stop(timeout=60)
            assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def apply(cluster: Cluster, *objs: Obj) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs), check=True)


def pod(name: str, image: str, policy: str = "IfNotPresent", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": image, "imagePullPolicy": policy}], **spec}}


def get_pod(cluster: Cluster, name: str) -> Obj:
    res = cluster.kubectl("get", "pod", name, "-o", "json", check=True)
    out: Obj = json.loads(res.stdout)
    return out


def status(p: Obj) -> Obj:
    statuses = (p.get("status") or {}).get("containerStatuses") or [{}]
    out: Obj = statuses[0]
    return out


def waiting(p: Obj) -> Obj:
    out: Obj = (status(p).get("state") or {}).get("waiting") or {}
    return out


wait_for = functools.partial(polling.wait_for, timeout=60.0, interval=0.2)


def events(cluster: Cluster, name: str) -> list[tuple[str, str, str]]:
    res = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json", check=True)
    items = sorted(json.loads(res.stdout)["items"], key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    return [(e["type"], e["reason"], e["message"]) for e in items]


def has_event(cluster: Cluster, name: str, reason: str, contains: str = "") -> tuple[str, str, str] | None:
    return next((e for e in events(cluster, name) if e[1] == reason and contains in e[2]), None)


def test_pull_from_registry_events_and_image_id(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, reg, _, base = env
    # `kubelite up` said what it found for real images.
    assert any(line.strip().startswith("✓ images: --images=auto, runtime ") or "images: --images=auto, runtime " in line
               for line in cluster.output), cluster.output
    ref = reg.push(fx.build_layout(base / "web", "v1", fx.ImageSpec(files={"/www/index.html": "hello"})), "v1", "e2e/web:v1")
    apply(cluster, pod("pulled", ref))
    pulled = wait_for("Pulled event", lambda: has_event(cluster, "pulled", "Pulled", "Successfully pulled image"))
    assert pulled[2].startswith(f'Successfully pulled image "{ref}" in ') and "including waiting). Image size: " in pulled[2]
    assert has_event(cluster, "pulled", "Pulling") == ("Normal", "Pulling", f'Pulling image "{ref}"')
    p = wait_for("imageID", lambda: (q := get_pod(cluster, "pulled")) and status(q).get("imageID") and q)
    image_id = status(p)["imageID"]
    assert image_id.startswith(f"{reg.host}/e2e/web@sha256:") and status(p)["image"] == ref
    store_index = json.loads((cluster.data_dir / "imagestore" / "images.json").read_text())
    assert store_index["images"][ref]["digest"] == image_id.split("@")[1]
    # A second pod of the image: no pull, the kubelet's "already present" event.
    apply(cluster, pod("second", ref))
    wait_for("already present", lambda: has_event(cluster, "second", "Pulled", "already present on machine"))
    assert has_event(cluster, "second", "Pulling") is None


def test_missing_tag_err_image_pull_then_back_off(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, reg, _, _ = env
    ref = f"{reg.host}/e2e/web:no-such-tag"
    apply(cluster, pod("missing", ref))
    first = wait_for("ErrImagePull", lambda: (w := waiting(get_pod(cluster, "missing"))).get("reason") == "ErrImagePull" and w)
    assert "manifest unknown" in first["message"]
    back_off = wait_for("ImagePullBackOff", lambda: (w := waiting(get_pod(cluster, "missing"))).get("reason")
                        == "ImagePullBackOff" and w, timeout=20)
    assert back_off["message"].startswith(f'Back-off pulling image "{ref}": ErrImagePull: ')
    assert "manifest unknown" in back_off["message"]
    table = cluster.kubectl("get", "pod", "missing", check=True).stdout
    assert "ImagePullBackOff" in table or "ErrImagePull" in table
    failed = has_event(cluster, "missing", "Failed", "Failed to pull image")
    assert failed is not None and "manifest unknown" in failed[2]
    assert has_event(cluster, "missing", "Failed", "Error: ErrImagePull") is not None
    assert wait_for("BackOff event", lambda: has_event(cluster, "missing", "BackOff", f'Back-off pulling image "{ref}"'))


def test_private_registry_needs_the_pull_secret(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, _, priv, base = env
    ref = priv.push(fx.build_layout(base / "private", "v1", fx.ImageSpec(files={"/private": "yes"})), "v1", "team/app:v1")
    apply(cluster, fx.dockerconfigjson_secret("regcred", priv.host, USER, PASSWORD))
    apply(cluster, pod("nosecret", ref), pod("withsecret", ref, imagePullSecrets=[{"name": "regcred"}]))
    w = wait_for("unauthorized", lambda: (w := waiting(get_pod(cluster, "nosecret"))).get("reason") == "ErrImagePull" and w)
    assert "unauthorized" in w["message"]
    wait_for("pulled with the secret", lambda: has_event(cluster, "withsecret", "Pulled", "Successfully pulled image"))
    assert not any(p.name.startswith("auth-") for p in (cluster.data_dir / "imagestore" / "tmp").iterdir())


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=120)


def test_loaded_image_runs_without_a_registry(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, _, _, base = env
    layout = fx.build_layout(base / "demo", "v1", fx.ImageSpec(files={"/demo.txt": "demo"}))
    archive = fx.docker_archive(layout, "v1", "kubelite.test/demo:1.0", base / "demo.tar")
    res = kubelite("image", "load", "--name", cluster.name, "--data-dir", str(cluster.data_dir), str(archive))
    assert res.returncode == 0, res.stderr
    listed = kubelite("image", "ls", "--name", cluster.name, "--data-dir", str(cluster.data_dir)).stdout
    assert listed.splitlines()[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert any(line.split()[:2] == ["kubelite.test/demo", "1.0"] for line in listed.splitlines())
    # kubelite.test resolves nowhere: only the store can answer.
    apply(cluster, pod("loaded-ifnotpresent", "kubelite.test/demo:1.0"), pod("loaded-never", "kubelite.test/demo:1.0", "Never"))
    for name in ("loaded-ifnotpresent", "loaded-never"):
        def present(n: str = name) -> Any:
            return has_event(cluster, n, "Pulled", 'Container image "kubelite.test/demo:1.0" already present')

        def image_id(n: str = name) -> str:
            return str(status(get_pod(cluster, n)).get("imageID") or "")

        wait_for(f"{name} already present", present)
        assert has_event(cluster, name, "Pulling") is None
        assert wait_for("imageID", image_id).startswith("kubelite.test/demo@sha256:")
    # Never with an image that is not there: ErrImageNeverPull, the kubelet's text.
    apply(cluster, pod("never-absent", "kubelite.test/absent:1", "Never"))
    w = wait_for("ErrImageNeverPull", lambda: (w := waiting(get_pod(cluster, "never-absent"))).get("reason")
                 == "ErrImageNeverPull" and w)
    assert w["message"] == 'Container image "kubelite.test/absent:1" is not present with pull policy of Never'
    # Always on the loaded image: the pull fails, and the message says what to do.
    apply(cluster, pod("loaded-always", "kubelite.test/demo:1.0", "Always"))
    w = wait_for("ErrImagePull", lambda: (w := waiting(get_pod(cluster, "loaded-always"))).get("reason")
                 in ("ErrImagePull", "ImagePullBackOff") and w)
    assert "set imagePullPolicy: IfNotPresent" in w["message"]


def test_auto_import_directory(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, _, _, base = env
    layout = fx.build_layout(base / "dropped", "v1", fx.ImageSpec(files={"/dropped": "1"}))
    tmp = fx.docker_archive(layout, "v1", "kubelite.test/dropped:1", base / "dropped.tar")
    shutil.copy(tmp, cluster.data_dir / "images" / ".dropped.tar.partial")
    os.rename(cluster.data_dir / "images" / ".dropped.tar.partial", cluster.data_dir / "images" / "dropped.tar")
    apply(cluster, pod("dropped", "kubelite.test/dropped:1", "Never"))
    wait_for("imported", lambda: has_event(cluster, "dropped", "Pulled", "already present"), timeout=30)


def test_catalog_images_still_resolve_offline(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, _, _, _ = env
    started = time.monotonic()
    apply(cluster, {**pod("catalog", "busybox", "Always"),
                    "spec": {"restartPolicy": "Never", "containers": [
                        {"name": "c", "image": "busybox", "command": ["sh", "-c", "echo catalog"]}]}})
    wait_for("Succeeded", lambda: get_pod(cluster, "catalog")["status"].get("phase") == "Succeeded", timeout=30)
    assert time.monotonic() - started < 15
    assert has_event(cluster, "catalog", "Pulling") is None


def test_pod_runs_the_images_filesystem(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, reg, _, base = env
    ref = reg.push(fx.build_layout(base / "run", "v1", fx.ImageSpec(
        files={"/baked.txt": "baked-in"}, entrypoint=["/bin/sh", "-c"], cmd=["cat /baked.txt; ls /root /etc/os-release"],
        workdir="/tmp")), "v1", "e2e/run:v1")
    apply(cluster, pod("runs", ref))
    wait_for("done", lambda: get_pod(cluster, "runs")["status"].get("phase") in ("Succeeded", "Failed"))
    logs = cluster.kubectl("logs", "runs", check=True).stdout
    assert "baked-in" in logs and "No such file" in logs


def pod_output(cluster: Cluster, name: str) -> str:
    wait_for(f"{name} done", lambda: get_pod(cluster, name)["status"].get("phase") in ("Succeeded", "Failed"))
    return str(cluster.kubectl("logs", name, check=True).stdout)


def test_entrypoint_cmd_env_workdir_as_kubernetes_combines_them(
        env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, reg, _, base = env
    ref = reg.push(fx.build_layout(base / "ep", "v1", fx.ImageSpec(
        files={"/srv/baked.txt": "baked"}, entrypoint=["/bin/echo", "ep"], cmd=["cmd"], workdir="/srv",
        env=["PATH=/bin", "GREETING=from-image"])), "v1", "e2e/ep:v1")

    def run(name: str, **container: Any) -> str:
        p = pod(name, ref)
        p["spec"]["containers"][0].update(container)
        apply(cluster, p)
        return pod_output(cluster, name).strip()

    assert run("ep-default") == "ep cmd"  # Entrypoint + Cmd
    assert run("ep-args", args=["a"]) == "ep a"  # Entrypoint + args (Cmd dropped)
    assert run("ep-command", command=["/bin/echo", "c"]) == "c"  # command alone (Cmd dropped)
    assert run("ep-both", command=["/bin/echo", "c"], args=["d"]) == "c d"
    out = run("ep-env", command=["sh", "-c", "pwd; echo $GREETING $OVERRIDE; cat baked.txt; echo; "
                                              f"test -e /etc/os-release || echo no-os-release; "
                                              f"test -e {cluster.data_dir} || echo no-data-dir"],
              env=[{"name": "OVERRIDE", "value": "from-pod"}])
    assert out.splitlines() == ["/srv", "from-image from-pod", "baked", "no-os-release", "no-data-dir"]
    env_override = run("ep-env2", command=["sh", "-c", "echo $GREETING"], env=[{"name": "GREETING", "value": "pod"}])
    assert env_override == "pod"


def test_service_over_two_pods_of_an_image_with_exec_and_readiness(
        env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, reg, _, base = env
    ref = reg.push(fx.build_layout(base / "httpd", "v1", fx.ImageSpec(files={"/www/.keep": ""})), "v1", "e2e/httpd:v1")
    server = {"name": "web", "image": ref, "imagePullPolicy": "IfNotPresent",
              "command": ["sh", "-c", "hostname > /www/index.html; exec httpd -f -p 8080 -h /www"],
              "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}
    for name in ("web-a", "web-b"):
        apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "oci-web"}},
                        "spec": {"terminationGracePeriodSeconds": 1, "containers": [server]}})
    apply(cluster, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "oci-web"},
                    "spec": {"selector": {"app": "oci-web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    def is_ready(name: str) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in get_pod(cluster, name)["status"].get("conditions") or [])

    wait_for("web-a ready", lambda: is_ready("web-a"))
    wait_for("web-b ready", lambda: is_ready("web-b"))
    assert cluster.kubectl("exec", "web-a", "--", "cat", "/www/index.html", check=True).stdout.strip() == "web-a"
    # By ClusterIP: a static busybox may have no working name service in a bare image.
    ip = cluster.kubectl("get", "svc", "oci-web", "-o", "jsonpath={.spec.clusterIP}", check=True).stdout.strip()
    client = pod("oci-client", ref)
    client["spec"]["containers"][0]["command"] = [
        "sh", "-c", f"for i in $(seq 40); do wget -qO- http://{ip}/; done"]
    apply(cluster, client)
    answers = set(pod_output(cluster, "oci-client").split())
    assert answers == {"web-a", "web-b"}


def test_invalid_image_name(env: tuple[Cluster, fx.Registry, fx.Registry, pathlib.Path]) -> None:
    cluster, _, _, _ = env
    apply(cluster, pod("invalid", "Example/App:1"))
    w = wait_for("InvalidImageName", lambda: (w := waiting(get_pod(cluster, "invalid"))).get("reason")
                 == "InvalidImageName" and w)
    assert w["message"] == ('Failed to apply default image tag "Example/App:1": couldn\'t parse image name '
                            '"Example/App:1": invalid reference format: repository name (Example/App) must be lowercase')
    assert has_event(cluster, "invalid", "InspectFailed") is not None
