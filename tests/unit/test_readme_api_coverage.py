"""The README's "API coverage" table agrees with what kubelite.api.registry serves: every
served resource is in it as served, with kubectl's short names and scope, and nothing is
called served (outside the rows issue 15 adds, marked "(15)") that the registry lacks."""

from __future__ import annotations

import pathlib

from kubelite.api.registry import RESOURCES

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _rows() -> dict[tuple[str, str], list[str]]:
    text = README.read_text()
    section = text.split("\n## API coverage\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[tuple[str, str], list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[0] in ("NAME", "---"):
            continue
        rows[(cells[0], cells[2])] = cells
    return rows


def test_every_served_resource_is_in_the_table() -> None:
    rows = _rows()
    assert len(rows) == 60  # kube-apiserver 1.33's GA resources
    for rt in RESOURCES:
        cells = rows.get((rt.plural, rt.group_version))
        assert cells is not None, rt.qualified
        assert cells[5].startswith("served"), rt.qualified
        assert cells[1] == ",".join(rt.short_names), rt.qualified
        assert cells[3] == str(rt.namespaced).lower() and cells[4] == rt.kind, rt.qualified


def test_nothing_else_is_called_served() -> None:
    served = {(rt.plural, rt.group_version) for rt in RESOURCES}
    for key, cells in _rows().items():
        if cells[5].startswith("served") and not cells[5].startswith("served (15)"):
            assert key in served, key
