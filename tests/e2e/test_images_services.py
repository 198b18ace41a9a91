"""The database and key-value images end to end: real MariaDB and Redis servers in pods of a real cluster.

A real ``kubelite up`` (with its node agent) runs pods of the ``mariadb``, ``mysql`` and
``redis`` images as the official images' manifests use them: the database and user named in
the environment exist and answer over the pod network, a readiness probe gates Ready, a
missing root password fails as the official entrypoint says, and Redis answers ``PING``
from another pod. The host's own MariaDB data directory is never touched.
"""

from __future__ import annotations

import functools
import json
import pathlib
import pwd
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import waiting
from tests.conftest import require
from tests.e2e.conftest import netns_names, require_root_netns
from tests.integration.cluster import Cluster, kubectl_binary, new_cluster

Obj = dict[str, Any]


wait_for = functools.partial(waiting.wait_for, timeout=60.0, interval=0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root_netns()
    require(kubectl_binary() is not None, "kubectl is not installed")
    require(shutil.which("mariadbd") is not None, "MariaDB is not installed (apt-get install mariadb-server)")
    require(shutil.which("redis-server") is not None, "Redis is not installed (apt-get install redis-server)")
    c = new_cluster(tmp_path_factory.mktemp("images"))
    try:
        c.start(agent=True, timeout=60)
        yield c
    finally:
        c.stop(timeout=60)
        assert [ns for ns in netns_names() if ns.startswith(f"{c.name}-")] == []


def apply(cluster: Cluster, *objs: Obj) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs), check=True)


def get_pod(cluster: Cluster, name: str) -> Obj | None:
    res = cluster.kubectl("get", "pod", name, "-o", "json")
    return json.loads(res.stdout) if res.returncode == 0 else None


def ready(pod: Obj | None) -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def wait_ready(cluster: Cluster, name: str, timeout: float = 90.0) -> Obj:
    pod: Obj = wait_for(f"pod {name} Ready", lambda: (p := get_pod(cluster, name)) and ready(p) and p, timeout=timeout)
    return pod


def run_to_completion(cluster: Cluster, name: str, image: str, args: list[str], timeout: float = 60.0) -> str:
    """Run a one-off client pod and return its output (it must succeed)."""
    apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image, "args": args}]}})
    phase = wait_for(f"pod {name} done", lambda: (((get_pod(cluster, name) or {}).get("status") or {}).get("phase")
                                                    in ("Succeeded", "Failed")) and get_pod(cluster, name), timeout=timeout)
    logs = cluster.kubectl("logs", name, check=True).stdout
    assert phase["status"]["phase"] == "Succeeded", logs
    return logs


def db_pod(name: str, image: str, env: dict[str, str], probe: Obj, data_volume: bool = False) -> Obj:
    container: Obj = {
        "name": "db", "image": image, "ports": [{"containerPort": 3306, "name": "mysql"}],
        "env": [{"name": k, "value": v} for k, v in env.items()], "readinessProbe": probe,
    }
    spec: Obj = {"terminationGracePeriodSeconds": 10, "containers": [container]}
    if data_volume:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/var/lib/mysql"}]
        spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def host_datadir() -> list[str]:
    path = pathlib.Path("/var/lib/mysql")
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def test_mariadb_creates_the_database_and_user_and_becomes_ready(cluster: Cluster) -> None:
    before = host_datadir()
    env = {"MARIADB_ROOT_PASSWORD": "root-pw", "MYSQL_DATABASE": "shop", "MYSQL_USER": "app", "MYSQL_PASSWORD": "app-pw"}
    probe = {"tcpSocket": {"port": "mysql"}, "periodSeconds": 1}
    apply(cluster, db_pod("maria", "mariadb:10.11", env, probe))
    pod = wait_ready(cluster, "maria")
    ip = pod["status"]["podIP"]
    # Another pod of the image runs the client (the entrypoint passes other commands through).
    out = run_to_completion(cluster, "maria-client", "mariadb:10.11", [
        "mariadb", "-h", ip, "-uapp", "-papp-pw", "shop", "-N", "-e",
        "CREATE TABLE t (v INT); INSERT INTO t VALUES (42); SELECT v FROM t; SELECT CURRENT_USER(); SHOW GRANTS",
    ])
    lines = out.split("\n")
    assert lines[:2] == ["42", "app@%"]
    assert "GRANT ALL PRIVILEGES ON `shop`.* TO `app`@`%`" in out
    # root reaches the server from other pods too (MYSQL_ROOT_HOST defaults to %), with its password.
    out = run_to_completion(cluster, "maria-root", "mariadb:10.11",
                            ["mariadb", "-h", ip, "-uroot", "-proot-pw", "-N", "-e", "SELECT @@hostname"])
    assert out.strip() == "maria"
    logs = cluster.kubectl("logs", "maria", check=True).stdout
    assert "[Note] [Entrypoint]: Creating database shop" in logs
    assert "[Note] [Entrypoint]: MariaDB init process done. Ready for start up." in logs
    assert host_datadir() == before
    assert not pathlib.Path("/run/mysqld/mysqld.sock").exists()


def test_mysql_image_checks_its_variables_and_keeps_data_in_a_volume(cluster: Cluster) -> None:
    apply(cluster, db_pod("nopw", "mysql:8.0", {"MYSQL_DATABASE": "x"}, {"tcpSocket": {"port": 3306}}))

    def crashed() -> Obj | None:
        statuses = ((get_pod(cluster, "nopw") or {}).get("status") or {}).get("containerStatuses") or [{}]
        last: Obj | None = (statuses[0].get("lastState", {}).get("terminated")
                            or statuses[0].get("state", {}).get("terminated"))
        return last

    assert wait_for("the entrypoint to refuse", crashed)["exitCode"] == 1
    logs = cluster.kubectl("logs", "nopw", "--previous").stdout or cluster.kubectl("logs", "nopw").stdout
    assert "[ERROR] [Entrypoint]: Database is uninitialized and password option is not specified" in logs
    assert "    - MYSQL_RANDOM_ROOT_PASSWORD" in logs

    # The usual exec probe; the data directory is an emptyDir, so it outlives a container restart.
    env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_DATABASE": "keep"}
    probe = {"exec": {"command": ["mysqladmin", "ping", "-h", "127.0.0.1"]}, "periodSeconds": 1}
    apply(cluster, db_pod("mysql", "mysql:8.0", env, probe, data_volume=True))
    wait_ready(cluster, "mysql")
    cluster.kubectl("exec", "mysql", "--", "mariadb", "-uroot", "-ppw", "keep", "-e",
                    "CREATE TABLE t (v INT); INSERT INTO t VALUES (7)", check=True)
    # The server's exit ends the container's PID namespace, this exec included (137), as with runc.
    cluster.kubectl("exec", "mysql", "--", "mysqladmin", "-uroot", "-ppw", "shutdown")
    wait_for("the container to restart", lambda: (p := get_pod(cluster, "mysql"))
             and p["status"]["containerStatuses"][0]["restartCount"] == 1 and ready(p))
    out = cluster.kubectl("exec", "mysql", "--", "mariadb", "-uroot", "-ppw", "keep", "-N", "-e", "SELECT v FROM t",
                          check=True).stdout
    assert out.strip() == "7"
    logs = cluster.kubectl("logs", "mysql", check=True).stdout
    assert "Initializing database files" not in logs  # the second start found the database


def test_redis_answers_ping_from_another_pod(cluster: Cluster) -> None:
    apply(cluster, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "redis"},
        "spec": {"containers": [{"name": "redis", "image": "redis:7", "ports": [{"containerPort": 6379}],
                                 "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 1},
                                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "emptyDir": {}}]},
    })
    ip = wait_ready(cluster, "redis")["status"]["podIP"]
    out = run_to_completion(cluster, "redis-client", "redis:7", ["redis-cli", "-h", ip, "ping"])
    assert out.strip() == "PONG"
    # The image's defaults: the working directory is the /data volume, the server runs as redis.
    out = cluster.kubectl("exec", "redis", "--", "redis-cli", "config", "get", "dir", check=True).stdout
    assert out.split() == ["dir", "/data"]
    status = cluster.kubectl("exec", "redis", "--", "cat", "/proc/1/status", check=True).stdout
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == str(pwd.getpwnam("redis").pw_uid)
