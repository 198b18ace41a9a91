"""``v1 componentstatuses``: the health of the control plane's parts, computed on every read.

kube-apiserver never stores ComponentStatus objects: its REST storage (pkg/registry/core/
componentstatus) probes each component when asked and answers get and list only (``kubectl
get cs``). kubelite answers the same three names a kubeadm cluster does. ``etcd-0`` is the
store: its health is the store's own ``health()``, the check behind ``/readyz/etcd``. The
scheduler and the controller-manager run in kubelite's controllers process, which exposes no
health port for the API server to probe; they are reported Healthy, as a cluster whose
components answer their /healthz would be.
"""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.store import Store

Obj = dict[str, Any]
COMPONENTS = ("scheduler", "controller-manager", "etcd-0")
# The Warning kube-apiserver sends with every request for the kind (deprecated since 1.19).
DEPRECATION_WARNING = "v1 ComponentStatus is deprecated in v1.19+"


def component_status(name: str, healthy: bool, message: str, error: str = "") -> Obj:
    condition: Obj = {"type": "Healthy", "status": "True" if healthy else "False", "message": message}
    if error:
        condition["error"] = error
    return {
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name, "creationTimestamp": None},
        "conditions": [condition],
    }


async def _probe(store: Store, name: str) -> Obj:
    if name == "etcd-0":
        try:
            failure = (await store.health()).error
        except Exception as e:  # an unreachable store is an unhealthy component, not a 500
            failure = str(e) or type(e).__name__
        if failure:
            return component_status(name, False, "", failure)
    return component_status(name, True, "ok")


async def list_statuses(store: Store) -> list[Obj]:
    return [await _probe(store, name) for name in COMPONENTS]


async def get_status(store: Store, name: str) -> Obj:
    if name not in COMPONENTS:
        # kube-apiserver's storage returns a plain error here, which it answers as a 500.
        raise errors.StatusError(500, "Unknown", f"Component not found: {name}")
    return await _probe(store, name)
