"""``/metrics``: the store's file in Prometheus' text format, under the names its users know.

kube-apiserver reports the size of its storage's database as ``apiserver_storage_size_bytes``;
etcd, which kubelite's store stands in for, reports ``etcd_mvcc_db_total_size_in_bytes`` (the
file) and ``etcd_mvcc_db_total_size_in_use_in_bytes`` (its live pages): the difference is
what compaction freed and is not yet given back, which dashboards and alerts built for etcd
already watch. Only these gauges are served so far; values are written as Go's Prometheus
client writes them (shortest form, exponent from 1e6 on).
"""

from __future__ import annotations

from decimal import Decimal

from kubelite.store import StoreHealth

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_GAUGES = (
    ("apiserver_storage_size_bytes", "[STABLE] Size of the storage database file physically allocated in bytes.",
     '{storage_cluster_id="etcd-0"}', "size_bytes"),
    ("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.",
     "", "size_bytes"),
    ("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.",
     "", "in_use_bytes"),
)


def go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64): the shortest digits, %e when the exponent is < -4 or >= 6."""
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    exp10 = len(digits) - 1 + exponent
    if -4 <= exp10 < 6:
        return format(Decimal(repr(float(value))).normalize(), "f")
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


def render(health: StoreHealth) -> str:
    """The gauges the store can fill (none while it cannot tell its file's size)."""
    out: list[str] = []
    for name, help_text, labels, field in _GAUGES:
        value = getattr(health, field)
        if value is None:
            continue
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{labels} {go_float(value)}"]
    return "".join(line + "\n" for line in out)
