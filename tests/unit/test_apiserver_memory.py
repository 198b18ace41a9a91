"""What the API server holds after a burst is over (issue 20, defect 8c).

Stored values are kept in allocations of their own size (orjson's were sized for growth: a
560-byte ConfigMap held 4 KB), and the trimmer gives malloc's free heap back once enough was
freed since its last trim, and not again for nothing.
"""

from __future__ import annotations

import pathlib
import tracemalloc

import orjson
import pytest

from kubelite.apiserver import memtrim
from kubelite.store import SqliteStore

KEYS = 2000


async def test_stored_values_cost_their_size(tmp_path: pathlib.Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    try:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            values = [orjson.dumps({"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 500}}) for i in range(KEYS)]
            size = sum(len(v) for v in values)
            for i, v in enumerate(values):
                await store.create(f"/registry/configmaps/default/cm-{i}", v)
            del values  # the encoder's buffers go: only what the store keeps stays traced
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # Values, keys, KeyValues and history events: well under twice the bytes stored
        # (with the encoder's buffers kept it was 15 times).
        assert held < 2 * size, f"{held} bytes held for {size} bytes of values"
    finally:
        await store.close()


def test_trimmer_trims_after_frees_only(monkeypatch: pytest.MonkeyPatch) -> None:
    held = [0]
    trims: list[int] = []

    def trim() -> None:
        trims.append(held[0])
        held[0] = 1 << 20  # what fragmentation keeps

    monkeypatch.setattr(memtrim, "free_held", lambda: held[0])
    monkeypatch.setattr(memtrim, "trim", trim)
    t = memtrim.Trimmer(threshold=16 << 20)
    held[0] = 8 << 20
    assert not t.check()  # not worth a trim
    held[0] = 40 << 20
    assert t.check() and trims == [40 << 20]
    assert not t.check()  # nothing freed since: no trim for the fragments left
    held[0] = 10 << 20
    assert not t.check()
    held[0] = 20 << 20
    assert t.check()  # 19 MB more than after the last trim
