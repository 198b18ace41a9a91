"""Termination messages and subPathExpr: the kubelet's rules and limits, on files in a temporary directory."""

from __future__ import annotations

import pathlib
import stat

import pytest

from kubelite.node import terminationmessage, volumes
from kubelite.node.runtime import ContainerStatus

SPEC = {"name": "c", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
FALLBACK = {**SPEC, "terminationMessagePolicy": "FallbackToLogsOnError"}


def exited(code: int, reason: str = "Error", message: str = "") -> ContainerStatus:
    return ContainerStatus("exited", None, code, "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", reason, message)


def write_log(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path.write_text("".join(f"2026-01-01T00:00:00.000000000Z stdout F {line}\n" for line in lines))
    return path


def test_the_file_each_instance_writes(tmp_path: pathlib.Path) -> None:
    f = terminationmessage.host_file(tmp_path, "c", 2)
    assert f == tmp_path / "containers" / "c" / "2"
    terminationmessage.prepare(f)
    assert f.read_bytes() == b"" and stat.S_IMODE(f.stat().st_mode) == 0o666
    f.write_text("DONE")
    assert terminationmessage.message(exited(0, "Completed"), SPEC, f, None) == "DONE"


def test_only_the_last_4096_bytes_are_kept(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "msg"
    f.write_bytes(b"x" * 5000 + b"END")
    text = terminationmessage.message(exited(1), SPEC, f, None)
    assert len(text) == 4096 and text.endswith("END")


def test_fallback_to_logs_only_when_the_container_failed_and_left_no_message(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "msg"
    f.write_bytes(b"")
    log = write_log(tmp_path / "0.log", [f"line {i}" for i in range(100)])
    text = terminationmessage.message(exited(1), FALLBACK, f, log)
    assert text.splitlines() == [f"line {i}" for i in range(20, 100)]  # the last 80 lines
    assert terminationmessage.message(exited(0, "Completed"), FALLBACK, f, log) == ""  # succeeded: no fallback
    assert terminationmessage.message(exited(1), SPEC, f, log) == ""  # policy File: no fallback
    f.write_text("my own words")
    assert terminationmessage.message(exited(1), FALLBACK, f, log) == "my own words"
    f.unlink()  # a file that is not there falls back too
    assert terminationmessage.message(exited(1), FALLBACK, f, log).endswith("line 99\n")


def test_the_log_tail_is_at_most_2048_bytes_and_joins_partial_lines(tmp_path: pathlib.Path) -> None:
    log = write_log(tmp_path / "0.log", ["y" * 1500, "z" * 1500])
    assert terminationmessage.log_tail(log) == ("y" * 1500 + "\n" + "z" * 1500 + "\n")[-2048:]
    log.write_text("2026-01-01T00:00:00Z stderr P half \n2026-01-01T00:00:00Z stderr F and half\n")
    assert terminationmessage.log_tail(log) == "half and half\n"


def test_a_start_error_keeps_the_runtimes_message_first(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "msg"
    f.write_text("partial")
    st = exited(128, "StartError", "failed to start")
    assert terminationmessage.message(st, SPEC, f, None) == "failed to start: partial"


def test_a_pods_messages_share_12_kib() -> None:
    spec = {"containers": [{"name": str(i)} for i in range(4)]}
    statuses = [{"state": {"terminated": {"message": "m" * 4000}},
                 "lastState": {"terminated": {"message": "n" * 10}}} for _ in range(4)]
    terminationmessage.trim(spec, statuses)
    assert [len(s["state"]["terminated"]["message"]) for s in statuses] == [3072] * 4
    assert statuses[0]["lastState"]["terminated"]["message"] == "n" * 10


def test_sub_path_expr_expands_the_containers_environment() -> None:
    env = {"POD_NAME": "web-0", "EMPTY": ""}
    assert volumes.sub_path({"subPathExpr": "logs/$(POD_NAME)"}, env) == "logs/web-0"
    assert volumes.sub_path({"subPathExpr": "$$(POD_NAME)"}, env) == "$(POD_NAME)"
    assert volumes.sub_path({"subPath": "plain"}, env) == "plain"
    with pytest.raises(volumes.VolumeError, match=r"^missing value for EMPTY, NOPE$"):
        volumes.sub_path({"subPathExpr": "$(NOPE)/$(EMPTY)"}, env)
    with pytest.raises(volumes.VolumeError, match=r"^error SubPath `/tmp` must not be an absolute path$"):
        volumes.sub_path({"subPathExpr": "$(D)"}, {"D": "/tmp"})
    with pytest.raises(volumes.VolumeError, match=r"^unable to provision SubPath `a/../b`: must not contain '..'$"):
        volumes.sub_path({"subPathExpr": "a/$(D)/b"}, {"D": ".."})


def test_container_mounts_use_the_expanded_sub_path(tmp_path: pathlib.Path) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"automountServiceAccountToken": False,
                                               "volumes": [{"name": "work", "emptyDir": {}}]}}
    c = {"name": "c", "volumeMounts": [{"name": "work", "mountPath": "/w", "subPathExpr": "$(POD_NAME)"}]}
    [(source, target, ro)] = volumes.container_mounts(pod, c, tmp_path, {"POD_NAME": "p"})
    assert (source, target, ro) == (str(tmp_path / "volumes" / "work" / "p"), "/w", False)
    assert pathlib.Path(source).is_dir()
