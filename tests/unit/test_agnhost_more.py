"""agnhost's sub-commands that conformance runs in volume, entrypoint, logs, proxy and kubectl
tests: mounttest, entrypoint-tester, logs-generator, test-webserver, porter and guestbook, run as the real
processes they are in a container, their output compared with what the Go program prints."""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from kubelite.images.agnhost.mounttest import go_file_mode

AGNHOST = [sys.executable, "-m", "kubelite.images.agnhost"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGNHOST, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    raise AssertionError(f"nothing listens on {port}")


def test_go_file_modes() -> None:
    assert go_file_mode(0o100644) == "-rw-r--r--"
    assert go_file_mode(0o040777) == "drwxrwxrwx"
    assert go_file_mode(0o041777) == "dtrwxrwxrwx"  # sticky /tmp, as Go prints it
    assert go_file_mode(0o020666) == "Dcrw-rw-rw-"  # /dev/null
    assert go_file_mode(0o104755) == "urwxr-xr-x"


def test_mounttest_writes_and_reports_like_the_go_program(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "f"
    out = run("mounttest", f"--new_file_0644={target}", f"--file_perm={target}", f"--file_mode={tmp_path}",
              f"--file_owner={target}", f"--fs_type={tmp_path}")
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert re.fullmatch(rf'mount type of "{tmp_path}": (tmpfs|\d+)', lines[0])
    assert lines[1] == f'content of file "{target}": mount-tester new file'
    assert lines[2] == ""  # the content's own newline, then Printf's
    assert f'mode of file "{tmp_path}": drwx' in out.stdout
    assert f'perms of file "{target}": -rw-r--r--' in out.stdout
    assert f'owner UID of "{target}": {os.getuid()}' in out.stdout
    assert f'owner GID of "{target}": {os.getgid()}' in out.stdout
    assert target.stat().st_mode & 0o777 == 0o644


def test_mounttest_0777_ignores_the_umask_and_fails_on_a_missing_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "g"
    assert run("mounttest", f"--new_file_0777={target}").returncode == 0
    assert target.stat().st_mode & 0o777 == 0o777
    out = run("mounttest", f"--file_content={tmp_path / 'missing'}")
    assert out.returncode == 1
    assert out.stdout == f'error reading file content for "{tmp_path / "missing"}": open {tmp_path / "missing"}: no such file or directory\n'


def test_mounttest_tmpfs_is_named(tmp_path: pathlib.Path) -> None:
    if not pathlib.Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    out = run("mounttest", "--fs_type=/dev/shm")
    assert out.stdout == 'mount type of "/dev/shm": tmpfs\n'


def test_entrypoint_tester_prints_argv_with_the_path_that_ran() -> None:
    assert run("entrypoint-tester", "override", "arguments").stdout == "[/agnhost entrypoint-tester override arguments]\n"
    out = run("--argv0=/agnhost-2", "entrypoint-tester", "a")
    assert (out.returncode, out.stdout) == (0, "[/agnhost-2 entrypoint-tester a]\n")


def test_no_arguments_prints_help_and_an_unknown_command_fails() -> None:
    assert run().returncode == 0
    assert run("nope").returncode == 1


def test_logs_generator_writes_klog_lines_uniformly() -> None:
    start = time.monotonic()
    out = run("logs-generator", "-t", "5", "--run-duration=500ms")
    elapsed = time.monotonic() - start
    lines = out.stderr.splitlines()
    assert out.returncode == 0 and len(lines) == 5, out
    for i, line in enumerate(lines):
        assert re.fullmatch(
            rf"I\d{{4}} \d\d:\d\d:\d\d\.\d{{6}} +\d+ logs_generator\.go:\d+\] {i} (GET|POST|PUT) "
            r"/api/v1/namespaces/(kube-system|default|ns)/pods/[bcdfghjklmnpqrstvwxz2456789]{3,4} \d{3}", line), line
    assert elapsed >= 0.45  # the lines are spread over the duration, not written at once


def test_logs_generator_refuses_zero_lines() -> None:
    out = run("logs-generator", "--run-duration=1s")
    assert out.returncode == 255
    assert "Invalid total number of lines: 0" in out.stderr


def test_test_webserver_serves_files_directories_and_404(tmp_path: pathlib.Path) -> None:
    port = free_port()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.txt").write_text("OK")
    proc = subprocess.Popen([*AGNHOST, "test-webserver", f"--port={port}"], stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}{tmp_path}/results/a.txt") as r:
            assert r.read() == b"OK"
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert r.headers["Cache-Control"] == "private"
        with urllib.request.urlopen(f"{base}{tmp_path}/results") as r:  # redirected to the slash
            assert r.url.endswith("/results/")
            assert '<a href="a.txt">a.txt</a>' in r.read().decode()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}{tmp_path}/nothing")
        assert e.value.code == 404 and e.value.read() == b"404 page not found\n"
    finally:
        proc.kill()
        proc.wait()


def test_porter_answers_each_port_with_its_value_over_http_and_tls() -> None:
    http_port, tls_port = free_port(), free_port()
    env = {**os.environ, f"SERVE_PORT_{http_port}": "foo", f"SERVE_TLS_PORT_{tls_port}": "tls baz"}
    proc = subprocess.Popen([*AGNHOST, "porter"], env=env, stderr=subprocess.PIPE, cwd="/")
    try:
        wait_port(http_port, proc)
        wait_port(tls_port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/anything") as r:
            assert r.read() == b"foo"
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{tls_port}/", context=ctx) as r:
            assert r.read() == b"tls baz"
    finally:
        proc.kill()
        proc.wait()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_answer(url: str, expected: str) -> None:
    answer: tuple[int, str] = (0, "")
    for _ in range(200):
        answer = get(url)
        if answer == (200, expected):
            return
        time.sleep(0.025)
    raise AssertionError(f"{url} answered {answer}, not {expected}")


def test_guestbook_primary_pushes_sets_to_a_registered_replica() -> None:
    # On one host both cannot listen on 6379: each one's --backend-port is the other's port.
    primary_port, replica_port = free_port(), free_port()
    primary = subprocess.Popen([*AGNHOST, "guestbook", f"--http-port={primary_port}",
                                f"--backend-port={replica_port}"], stderr=subprocess.PIPE)
    replica = None
    try:
        wait_port(primary_port, primary)
        p = f"http://127.0.0.1:{primary_port}"
        assert get(f"{p}/get?key=messages") == (200, '{"data":""}')
        assert get(f"{p}/set?key=early&value=before+registration") == (200, '{"message":"Updated"}')
        assert get(f"{p}/set?value=x") == (400, "cannot set with empty key.\n")
        assert get(f"{p}/guestbook?cmd=DELETE") == (400, "unsupported cmd: 'delete'\n")
        assert get(f"{p}/guestbook?cmd=set") == (400, "cannot set with empty key.\n")
        replica = subprocess.Popen([*AGNHOST, "guestbook", f"--http-port={replica_port}",
                                    f"--backend-port={primary_port}", "--replicaof=127.0.0.1"],
                                   stderr=subprocess.PIPE)
        wait_port(replica_port, replica)
        r = f"http://127.0.0.1:{replica_port}"
        # The registration hands the replica the primary's store ...
        wait_answer(f"{r}/get?key=early", '{"data":"before registration"}')
        # ... and later sets reach it through the primary.
        assert get(f"{p}/set?key=messages&value=TestEntry") == (200, '{"message":"Updated"}')
        assert get(f"{r}/get?key=messages") == (200, '{"data":"TestEntry"}')
        assert get(f"{r}/get") == (200, '{"data":{"early":"before registration","messages":"TestEntry"}}')
        assert get(f"{r}/nothing") == (404, "404 page not found\n")
    finally:
        for proc in (primary, replica):
            if proc is not None:
                proc.kill()
                proc.wait()
    assert replica is not None and replica.stderr is not None
    assert "Registered to node: 127.0.0.1" in replica.stderr.read().decode()



def test_nettest_records_writers_and_reports_its_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from kubelite.images.agnhost import common, nettest

    state = nettest.State("server-host", peers=1)
    handler = type("H", (nettest.NettestHandler,), {"state": state, "service": "svc", "namespace": "ns"})
    server = common.GoHTTPServer(0, handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert get(f"{base}/status") == (200, "running")
        # What conformance's PreStop hook sends (busybox wget --post-data), and a body without a source.
        request = urllib.request.Request(f"{base}/write", data=b'{"Source": "prestop"}')
        with urllib.request.urlopen(request) as r:
            assert r.read() == b'{"Hostname":"server-host"}\n'
        urllib.request.urlopen(urllib.request.Request(f"{base}/write", data=b"{}")).close()
        status, body = get(f"{base}/read")
        assert status == 200 and body.startswith('{\n\t"Hostname": "server-host",\n\t"Sent": null,')
        read = json.loads(body)
        assert read["Received"] == {"prestop": 1}
        assert read["Errors"] == ["server-host: Got request with no source"]

        # The peer round: the API's endpoints of the service, each written to.
        class FakeCluster:
            def get(self, path: str) -> object:
                if path == "/version":
                    return {"gitVersion": "v1.33.0"}
                assert path == "/api/v1/namespaces/ns/endpoints/svc"
                return {"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": port}]}]}

        monkeypatch.setattr(nettest, "InCluster", FakeCluster)
        monkeypatch.setattr("kubelite.images.agnhost.nettest.time.sleep", lambda _s: None)
        nettest.contact_others(state, "ns", "svc")
        read = json.loads(get(f"{base}/read")[1])
        assert read["Sent"] == {"server-host": 15} and read["Received"] == {"prestop": 1, "server-host": 15}
        assert read["StillContactingPeers"] is False
        assert get(f"{base}/status") == (200, "pass")
        assert get(f"{base}/nothing") == (404, "404 page not found\n")
    finally:
        server.shutdown()
        server.server_close()
