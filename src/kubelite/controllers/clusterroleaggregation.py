"""The clusterrole-aggregation controller: ``admin``, ``edit``, ``view`` and any ClusterRole with
an ``aggregationRule`` hold the rules of the ClusterRoles their selectors match.

As kube-controller-manager's: a CRD's installer labels its ClusterRole
``rbac.authorization.k8s.io/aggregate-to-view: "true"`` and every user bound to ``view``
may read the new kind. Any change of any ClusterRole re-checks every aggregated one (there
are a handful); the rules are written only when they differ, in the order of the matched
roles' names, each rule once.
"""

from __future__ import annotations

import logging

from kubelite.api import bootstrappolicy
from kubelite.api.types import EventType, Obj
from kubelite.client import CLUSTERROLES, ApiError
from kubelite.controllers.base import Context, Controller

log = logging.getLogger(__name__)


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    service_account = "clusterrole-aggregation-controller"
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.roles = ctx.informer(CLUSTERROLES)
        self.roles.add_handler(self._on_role)

    def _on_role(self, kind: EventType, role: Obj, old: Obj | None) -> None:
        for r in self.roles.list():
            if r.get("aggregationRule"):
                self.queue.add(r["metadata"]["name"])

    async def reconcile(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None or not role.get("aggregationRule"):
            return
        rules = bootstrappolicy.aggregated_rules(role, self.roles.list())
        if rules == (role.get("rules") or []):
            return
        try:
            await self.client.patch(CLUSTERROLES, key, {"rules": rules})
        except ApiError as e:
            if not e.not_found:
                raise
