"""``/metrics``' store gauges, written as kube-apiserver and etcd write them (issue 20, point 4)."""

from __future__ import annotations

from kubelite.apiserver.metrics import go_float, render
from kubelite.store import StoreHealth


def test_values_are_written_as_gos_prometheus_client_writes_them() -> None:
    assert [go_float(v) for v in (0, 28672, 999999, 1e6, 4636672, 1e9, 0.5, 1.25e-5)] == [
        "0", "28672", "999999", "1e+06", "4.636672e+06", "1e+09", "0.5", "1.25e-05",
    ]


def test_the_store_gauges() -> None:
    text = render(StoreHealth(size_bytes=4636672, in_use_bytes=28672, free_pages=1125))
    assert text == (
        "# HELP apiserver_storage_size_bytes [STABLE] Size of the storage database file physically"
        " allocated in bytes.\n"
        "# TYPE apiserver_storage_size_bytes gauge\n"
        'apiserver_storage_size_bytes{storage_cluster_id="etcd-0"} 4.636672e+06\n'
        "# HELP etcd_mvcc_db_total_size_in_bytes Total size of the underlying database physically allocated"
        " in bytes.\n"
        "# TYPE etcd_mvcc_db_total_size_in_bytes gauge\n"
        "etcd_mvcc_db_total_size_in_bytes 4.636672e+06\n"
        "# HELP etcd_mvcc_db_total_size_in_use_in_bytes Total size of the underlying database logically in use"
        " in bytes.\n"
        "# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge\n"
        "etcd_mvcc_db_total_size_in_use_in_bytes 28672\n"
    )
    # A store that cannot tell its size (closed, or unreachable) has no gauges.
    assert render(StoreHealth(error="closed")) == ""
