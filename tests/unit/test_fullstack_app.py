"""The full-stack example's application: manifests, its MySQL and Redis clients, the backend and frontend.

The clients are tested against a real MariaDB server and a real Redis server on loopback
(each on a free port, data in the test's temporary directory), skipped when they are not
installed (a failure on CI); the manifests and the page rendering need nothing.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import require

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "fullstack"
sys.path.insert(0, str(EXAMPLE / "app"))

import backend  # noqa: E402
import configmap  # noqa: E402
import fetch  # noqa: E402
import frontend  # noqa: E402
import minimysql  # noqa: E402
import miniredis  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited: {proc.stdout.read().decode() if proc.stdout else ''}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} does not listen on {port}")


# ------------------------------------------------------------------------------ manifests


def manifests() -> dict[str, list[dict[str, Any]]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(EXAMPLE.glob("*.yaml"))}


def test_the_backend_service_is_the_lectures() -> None:
    assert manifests()["backend-service.yaml"] == [{
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
        "spec": {"type": "ClusterIP", "ports": [{"targetPort": 80, "port": 80}],
                 "selector": {"app": "myapp", "type": "back-end"}},
    }]


def test_every_tier_has_a_service_that_selects_its_pods() -> None:
    objs = [o for docs in manifests().values() for o in docs]
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    assert set(deployments) == set(services) == {"backend", "frontend", "redis", "db"}
    assert deployments["backend"]["spec"]["replicas"] == 3
    for name, svc in services.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items(), name
        assert deployments[name]["spec"]["selector"]["matchLabels"] == labels
        for c in deployments[name]["spec"]["template"]["spec"]["containers"]:
            assert "readinessProbe" in c, name


def test_the_code_configmap_is_generated_from_the_sources() -> None:
    assert (EXAMPLE / "app-code.yaml").read_text() == configmap.render(), (
        "examples/fullstack/app-code.yaml is out of date: run python examples/fullstack/app/configmap.py")
    data = manifests()["app-code.yaml"][0]["data"]
    assert set(data) == set(configmap.FILES)
    for name, text in data.items():
        assert text == (EXAMPLE / "app" / name).read_text()


# ------------------------------------------------------------------------------ MySQL protocol pieces


def test_native_password_scramble() -> None:
    scramble = bytes(range(1, 21))
    stage1 = hashlib.sha1(b"secret").digest()
    token = minimysql.native_password("secret", scramble)
    # The server's check: SHA1(scramble + stored SHA1(SHA1(pw))) XOR token == stage1.
    mask = hashlib.sha1(scramble + hashlib.sha1(stage1).digest()).digest()
    assert bytes(a ^ b for a, b in zip(token, mask, strict=True)) == stage1
    assert minimysql.native_password("", scramble) == b""


@pytest.mark.parametrize(("value", "sql"), [
    (None, "NULL"), (True, "1"), (42, "42"), (1.5, "1.5"), (b"\x00\xff", "X'00ff'"),
    ("it's", "'it\\'s'"), ('a"b\\c\n\r\0\x1a', "'a\\\"b\\\\c\\n\\r\\0\\Z'"),
])
def test_literals_are_escaped(value: minimysql.Value, sql: str) -> None:
    assert minimysql.literal(value) == sql


@pytest.mark.parametrize("n", [0, 250, 251, 65535, 65536, 1 << 24, (1 << 24) + 1])
def test_length_encoded_integers_round_trip(n: int) -> None:
    assert minimysql.Reader(minimysql.lenenc_int(n)).lenenc_int() == n


def test_err_packet() -> None:
    err = minimysql.error_from(b"\xff\x7a\x04#42S02Table 'x.y' doesn't exist")
    assert (err.code, err.sqlstate, err.message) == (1146, "42S02", "Table 'x.y' doesn't exist")


def test_redis_command_encoding() -> None:
    assert miniredis.encode("SET", "k", b"v\r\n", 7) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n7\r\n"


# ------------------------------------------------------------------------------ real servers on loopback


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A MariaDB server on 127.0.0.1:<free port> with a fresh data directory; root has no password."""
    require(shutil.which("mariadbd") is not None and shutil.which("mariadb-install-db") is not None,
            "MariaDB is not installed (apt-get install mariadb-server)")
    base = tmp_path_factory.mktemp("mariadb")
    base.chmod(0o755)
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    common = ["--no-defaults", f"--datadir={base / 'data'}", *as_root]
    subprocess.run(["mariadb-install-db", *common, "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        ["mariadbd", *common, f"--socket={base / 'sock'}", f"--pid-file={base / 'pid'}", f"--port={port}",
         "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc, "mariadbd")
        with minimysql.Connection("127.0.0.1", port, "root") as root:
            root.query("CREATE DATABASE shop")
            root.query("CREATE USER 'app'@'%%' IDENTIFIED BY %s", ("p'w\\d",))  # %% as in DB-API
            root.query("GRANT ALL ON shop.* TO 'app'@'%'")
            # A user of another plugin: the server answers the handshake with an auth switch
            # request, which the client refuses with a clear message (ed25519 is not supported).
            root.query("INSTALL SONAME 'auth_ed25519'")
            root.query("CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('x')")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    require(shutil.which("redis-server") is not None, "Redis is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc, "redis-server")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def test_mysql_queries_and_result_types(mariadb: int) -> None:
    with minimysql.Connection("127.0.0.1", mariadb, "app", "p'w\\d", "shop") as db:
        assert db.server_version.endswith("MariaDB") or "MariaDB" in db.server_version
        db.query("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(300), f DOUBLE, b BLOB, n INT)")
        res = db.query("INSERT INTO t (s, f, b, n) VALUES (%s, %s, %s, %s), (%s, 2, NULL, 7)",
                       ("it's \"x\"\n\\", 1.5, b"\x00\xff", None, "é" * 300))
        assert (res.affected_rows, res.insert_id) == (2, 1)
        res = db.query("SELECT id, s, f, b, n FROM t ORDER BY id")
        assert res.columns == ["id", "s", "f", "b", "n"]
        assert res.rows == [(1, "it's \"x\"\n\\", 1.5, b"\x00\xff", None), (2, "é" * 300, 2.0, None, 7)]
        assert db.query("SELECT 12345678901234, REPEAT('ab', 40000)").rows == [(12345678901234, "ab" * 40000)]
        # Numbers and dates come with the binary charset but are text; binary strings are bytes.
        assert db.query("SELECT TIMESTAMP'2025-01-02 03:04:05', DATE'2025-01-02', 1.50, CAST('x' AS BINARY)").rows \
            == [("2025-01-02 03:04:05", "2025-01-02", "1.50", b"x")]
        assert db.query("SELECT 1 FROM t WHERE 0").rows == []
        with pytest.raises(minimysql.MySQLError) as err:
            db.query("SELECT * FROM missing")
        assert (err.value.code, err.value.sqlstate) == (1146, "42S02")
        assert db.query("SELECT 1").rows == [(1,)]  # the connection survives an SQL error


def test_mysql_authentication(mariadb: int) -> None:
    with pytest.raises(minimysql.MySQLError) as err:
        minimysql.Connection("127.0.0.1", mariadb, "app", "wrong")
    assert err.value.code == 1045 and "Access denied for user 'app'" in err.value.message
    with pytest.raises(minimysql.MySQLError) as err:
        minimysql.Connection("127.0.0.1", mariadb, "app", "p'w\\d", "other")
    assert err.value.code == 1044
    with pytest.raises(minimysql.MySQLError, match="unsupported authentication plugin 'client_ed25519'"):
        minimysql.Connection("127.0.0.1", mariadb, "ed", "x")


def test_redis_replies(redis: int) -> None:
    with miniredis.Connection("127.0.0.1", redis) as r:
        assert r.command("PING") == b"PONG"
        assert r.command("DEL", "k", "l") in (0, 1, 2)
        assert r.command("GET", "k") is None
        assert r.command("SET", "k", b"a\r\nb") == b"OK"
        assert r.command("GET", "k") == b"a\r\nb"
        assert r.command("RPUSH", "l", 1, 2) == 2
        assert r.command("LRANGE", "l", 0, -1) == [b"1", b"2"]
        with pytest.raises(miniredis.RedisError, match="WRONGTYPE"):
            r.command("INCR", "l")


def test_backend_visit_goes_through_redis_and_the_database(mariadb: int, redis: int) -> None:
    env = {"REDIS_ADDRESS": f"127.0.0.1:{redis}", "DB_ADDRESS": f"127.0.0.1:{mariadb}",
           "DB_USER": "app", "DB_PASSWORD": "p'w\\d", "DB_NAME": "shop"}
    with miniredis.Connection("127.0.0.1", redis) as r:
        r.command("DEL", "hits")
    stores = backend.Stores(env)
    first = stores.visit()
    second = stores.visit()
    assert first["pod"] == second["pod"] == backend.POD_NAME
    assert (first["redis"]["hits"], second["redis"]["hits"]) == (1, 2)
    assert second["db"]["visits"] == first["db"]["visits"] + 1
    assert second["db"]["recent"][0]["pod"] == backend.POD_NAME

    # The stores restart (here: the server closes both connections): the next visit reconnects.
    assert stores.db is not None and stores.redis is not None
    with minimysql.Connection("127.0.0.1", mariadb, "root") as root:
        root.query(f"KILL {stores.db.connection_id}")
    with miniredis.Connection("127.0.0.1", redis) as r:
        r.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    third = stores.visit()
    assert third["redis"]["hits"] == 3
    assert third["db"]["visits"] == second["db"]["visits"] + 1

    # A store that is down is an error, not a retry loop.
    broken = backend.Stores({**env, "DB_ADDRESS": f"127.0.0.1:{free_port()}"})
    with pytest.raises(OSError):
        broken.visit()


# ------------------------------------------------------------------------------ frontend and fetch


def test_frontend_page_shows_the_backend_pod_and_the_stores() -> None:
    page = frontend.render({"pod": "backend-7d9c-x2x", "podIP": "10.244.0.7", "redis": {"hits": 12},
                            "db": {"visits": 11, "recent": [{"pod": "backend-<b>", "at": "2025-01-01 10:00:00"}]}})
    assert '<b id="backend-pod">backend-7d9c-x2x</b> (10.244.0.7)' in page
    assert '<b id="redis-hits">12</b>' in page
    assert '<b id="db-visits">11</b>' in page
    assert "<td>backend-&lt;b&gt;</td><td>2025-01-01 10:00:00</td>" in page
    assert "http://backend/" in page
    assert '<b id="error">connection refused &amp; more</b>' in frontend.render_error("connection refused & more")


def test_fetch_names_the_pod_that_answered() -> None:
    assert fetch.answered_by(b'{"pod": "backend-1", "redis": {}}') == "backend-1"
    assert fetch.answered_by(b"web-a\n") == "web-a"


def test_fullstack_images_example_has_the_same_manifests() -> None:
    # examples/fullstack-images runs the same application from the official images.
    images_example = EXAMPLE.parent / "fullstack-images"
    for manifest in sorted(EXAMPLE.glob("*.yaml")):
        copy = images_example / manifest.name
        assert copy.read_text() == manifest.read_text(), f"{copy} differs from {manifest}: copy it again"
