"""JSON patches within kube-apiserver's limits: operation count, copy budget, error texts (issue 20)."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from kubelite.api import jsonpatching
from kubelite.api.errors import StatusError


def doubling_bomb(levels: int) -> list[dict[str, Any]]:
    """Each operation copies the whole ``/d`` into itself: the object doubles at every step."""
    return [{"op": "copy", "from": "/d", "path": f"/d/x{i}"} for i in range(levels)]


def test_applies_ordinary_operations_and_leaves_the_input_alone() -> None:
    doc = {"metadata": {"name": "a"}, "data": {"k": "v"}}
    out = jsonpatching.apply(doc, [
        {"op": "add", "path": "/data/n", "value": "1"},
        {"op": "copy", "from": "/data/k", "path": "/data/c"},
        {"op": "move", "from": "/data/n", "path": "/data/m"},
        {"op": "remove", "path": "/data/k"},
        {"op": "test", "path": "/data/c", "value": "v"},
    ])
    assert out == {"metadata": {"name": "a"}, "data": {"c": "v", "m": "1"}}
    assert doc == {"metadata": {"name": "a"}, "data": {"k": "v"}}
    assert jsonpatching.apply(doc, [{"op": "replace", "path": "", "value": {"x": 1}}]) == {"x": 1}


def test_more_than_10000_operations_is_kube_apiservers_413() -> None:
    ops = [{"op": "test", "path": "/a", "value": 1}]
    assert jsonpatching.apply({"a": 1}, ops * 10000) == {"a": 1}
    with pytest.raises(StatusError) as e:
        jsonpatching.apply({"a": 1}, ops * 10001)
    assert (e.value.code, e.value.reason) == (413, "RequestEntityTooLarge")
    assert e.value.message == (
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    )


def test_copies_stop_at_3_mib_before_the_memory_is_spent() -> None:
    """Forty doublings of 1 KiB would be a terabyte; the copy that passes 3 MiB is refused,
    and the peak memory stays within a few times the budget."""
    doc = {"d": {"s": "x" * 1024}}
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(StatusError) as e:
            jsonpatching.apply(doc, doubling_bomb(40))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10
    assert peak < 8 * jsonpatching.MAX_COPY_BYTES, peak
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    # json-patch's AccumulatedCopySizeError, counted as each copy's JSON: 1034, 2075, 4157, ...
    prefix = ("the server rejected our request due to an error in our request: "
              "Unable to complete the copy, the accumulated size increase of copy is ")
    assert e.value.message.startswith(prefix) and e.value.message.endswith(", exceeding the limit 3145728")
    accumulated = int(e.value.message[len(prefix):].split(",")[0])
    assert 3145728 < accumulated < 2 * 3145728


def test_copies_within_the_budget_apply() -> None:
    doc = {"d": {"s": "x" * 1024}}
    out = jsonpatching.apply(doc, doubling_bomb(10))  # 1 MiB copied in all
    assert len(out["d"]) == 11


@pytest.mark.parametrize(("ops", "code", "message"), [
    ({"op": "add"}, 400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    ("x", 400, "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
    ([5], 400, "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
    ([["a"]], 400, "json: cannot unmarshal array into Go value of type jsonpatch.Operation"),
    ([{"op": "bogus", "path": "/a"}], 422,
     "the server rejected our request due to an error in our request: Unknown operation 'bogus'"),
    ([{"op": "remove", "path": "/nope"}], 422,
     "the server rejected our request due to an error in our request: can't remove a non-existent object 'nope'"),
])
def test_malformed_patches_are_4xx(ops: Any, code: int, message: str) -> None:
    with pytest.raises(StatusError) as e:
        jsonpatching.apply({"a": 1}, ops)
    assert (e.value.code, e.value.message) == (code, message)
