"""YAML bodies: go-yaml's aliasing limit, applied before anything is constructed (issue 20, point 1)."""

from __future__ import annotations

import logging

import pytest
import yaml
from aiohttp.http_exceptions import LineTooLong

from kubelite.api import yamlload
from kubelite.apiserver import httplog


def bomb(levels: int, fan: int = 9) -> str:
    lines = ["a: &a [" + ",".join(["lol"] * fan) + "]"]
    prev = "a"
    for i in range(levels):
        lines.append(f"b{i}: &b{i} [" + ",".join([f"*{prev}"] * fan) + "]")
        prev = f"b{i}"
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [3, 5, 7, 8, 20])
def test_alias_bombs_are_refused(levels: int) -> None:
    with pytest.raises(yamlload.ExcessiveAliasing) as e:
        yamlload.load(bomb(levels))
    assert str(e.value) == "yaml: document contains excessive aliasing"


def test_the_check_runs_before_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    constructed: list[object] = []
    monkeypatch.setattr(yaml.SafeLoader, "construct_object", lambda self, node, deep=False: constructed.append(node))
    with pytest.raises(yamlload.ExcessiveAliasing):
        yamlload.load(bomb(8))
    assert constructed == []


def test_a_self_referencing_anchor_is_refused() -> None:
    with pytest.raises(yamlload.ExcessiveAliasing):
        yamlload.load("&a [*a, *a]")
    with pytest.raises(yamlload.ExcessiveAliasing):
        yamlload.load("a: &a {b: *a}")


def test_ordinary_aliases_load_as_safe_load_does() -> None:
    doc = "base: &base {image: nginx, ports: [80, 443]}\nc1: *base\nc2:\n  <<: *base\n  name: two\n"
    assert yamlload.load(doc) == yaml.safe_load(doc)
    assert yamlload.load(bomb(2)) == yaml.safe_load(bomb(2))  # 81 values from 30: under go-yaml's limit
    assert yamlload.load("") is None
    # Up to 99 % of the decoded nodes may come from aliases while the document is small.
    many = "x: &x [" + ",".join(["1"] * 50) + "]\ny: [" + ",".join(["*x"] * 20) + "]\n"
    assert len(yamlload.load(many)["y"]) == 20


def test_go_yaml_ratio_limits() -> None:
    assert yamlload._allowed_ratio(1000) == 0.99
    assert yamlload._allowed_ratio(400_000) == 0.99
    assert yamlload._allowed_ratio(2_200_000) == pytest.approx(0.545)
    assert yamlload._allowed_ratio(4_000_000) == 0.10
    assert yamlload._allowed_ratio(10**9) == 0.10


def test_unparsable_requests_are_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    httplog.quiet_client_errors()
    httplog.quiet_client_errors()
    logger = logging.getLogger("aiohttp.server")
    assert logger.filters.count(httplog._FILTER) == 1
    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        logger.error("Error handling request from %s", "127.0.0.1", exc_info=LineTooLong("x" * 10, "8190"))
        logger.error("Error handling request from %s", "127.0.0.1", exc_info=RuntimeError("ours"))
    first, second = caplog.records
    assert first.levelno == logging.INFO and first.exc_info is None
    assert first.getMessage().startswith("Error handling request from 127.0.0.1: LineTooLong: ")
    assert second.levelno == logging.ERROR and second.exc_info is not None  # a real server error keeps its traceback
