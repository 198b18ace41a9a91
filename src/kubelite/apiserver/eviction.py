"""The eviction subresource: a pod deleted only if its PodDisruptionBudget allows it.

kube-apiserver's ``registry/core/pod/storage/eviction.go``, step by step: a pod that is not
running (Pending, Succeeded, Failed) or already terminating is deleted without looking at
budgets (it is no disruption); otherwise the one budget whose selector matches the pod must
have observed its latest generation and allow a disruption, which is then spent by a
compare-and-swap update of the budget's status (``disruptionsAllowed`` down by one, the pod
recorded in ``disruptedPods`` so that the disruption controller does not count it as
available meanwhile), and only then is the pod deleted. A pod matched by more than one budget
is refused, as in Kubernetes. The messages and the 429s with their ``DisruptionBudget``
causes are eviction.go's, since ``kubectl drain`` shows them and retries on them.

This is registry code: it reads and writes through the generic registry and knows nothing
of HTTP; the handler decodes the Eviction body and encodes the answer.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from kubelite.api import errors
from kubelite.api.errors import StatusError
from kubelite.api.labels import SelectorError, selector_from_label_selector
from kubelite.api.registry import ResourceType, lookup
from kubelite.api.types import Obj
from kubelite.apiserver import objects

# eviction.go's MaxDisruptedPodSize: evictions approved but not yet seen by the controller.
MAX_DISRUPTED_POD_SIZE = 2000
# eviction.go retries a pod delete that lost a race on the pod this many times (EvictionsRetry).
_RETRIES = 20
EVICTION_API_VERSIONS = ("policy/v1", "policy/v1beta1")
_TOO_MANY = "Cannot evict pod as it would violate the pod's disruption budget."
MANAGER = "kube-apiserver"


def _pods() -> ResourceType:
    rt = lookup("", "v1", "pods")
    assert rt is not None
    return rt


def _pdbs() -> ResourceType:
    rt = lookup("policy", "v1", "poddisruptionbudgets")
    assert rt is not None
    return rt


class EvictionStorage(Protocol):
    """What eviction needs of the generic registry."""

    async def get_object(self, rt: ResourceType, namespace: str | None, name: str) -> Obj: ...

    async def list_objects(self, rt: ResourceType, namespace: str | None) -> list[Obj]: ...

    async def delete_named(self, rt: ResourceType, namespace: str | None, name: str,
                            opts: Obj) -> tuple[Obj, int]: ...

    async def update_status(self, rt: ResourceType, namespace: str | None, name: str,
                            compute: Any, *, manager: str, dry_run: bool) -> Obj: ...


def too_many_requests(message: str, retry_after: int, cause: str) -> StatusError:
    """errors.NewTooManyRequests with a DisruptionBudget cause, as eviction.go builds it."""
    details: Obj = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    headers: dict[str, str] = {}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return StatusError(429, "TooManyRequests", message, details, headers)


def still_processing(pdb_name: str) -> StatusError:
    """createTooManyRequestsError: the budget's status is older than its spec."""
    return too_many_requests(_TOO_MANY, 10, f"The disruption budget {pdb_name} is still being processed by the server.")


def can_ignore_pdb(pod: Obj) -> bool:
    """A pod that is not running, or already terminating, is no disruption to budget for."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def _should_enforce_resource_version(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _rv_unset(opts: Obj) -> bool:
    return not (opts.get("preconditions") or {}).get("resourceVersion")


def _with_rv(opts: Obj, rv: str) -> Obj:
    out = copy.deepcopy(opts)
    out.setdefault("preconditions", {})["resourceVersion"] = rv
    return out


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def matching_budgets(pod: Obj, pdbs: list[Obj]) -> list[Obj]:
    """getPodDisruptionBudgets: an invalid, missing or empty selector matches nothing."""
    labels = pod["metadata"].get("labels") or {}
    out = []
    for pdb in pdbs:
        try:
            selector = selector_from_label_selector((pdb.get("spec") or {}).get("selector"))
        except SelectorError:
            continue
        if selector.empty or not selector.matches(labels):
            continue
        out.append(pdb)
    return out


def _set_disruption_allowed_condition(status: Obj) -> None:
    """pdbhelper.UpdateDisruptionAllowedCondition (meta.SetStatusCondition semantics)."""
    allowed = int(status.get("disruptionsAllowed") or 0) > 0
    wanted = {
        "type": "DisruptionAllowed",
        "status": "True" if allowed else "False",
        "reason": "SufficientPods" if allowed else "InsufficientPods",
        "message": "",
        "observedGeneration": status.get("observedGeneration", 0),
    }
    conditions = list(status.get("conditions") or [])
    for i, c in enumerate(conditions):
        if c.get("type") == "DisruptionAllowed":
            when = c.get("lastTransitionTime") if c.get("status") == wanted["status"] else objects.now_rfc3339()
            conditions[i] = {**c, **wanted, "lastTransitionTime": when}
            break
    else:
        conditions.append({**wanted, "lastTransitionTime": objects.now_rfc3339()})
    status["conditions"] = conditions


def check_and_decrement(pdb: Obj, pod_name: str, dry_run: bool) -> Obj:
    """The budget with one disruption spent on ``pod_name``, or the error that refuses it."""
    meta, status = pdb["metadata"], pdb.setdefault("status", {})
    name = meta["name"]
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        raise still_processing(name)
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise errors.forbidden_error("poddisruptionbudget", name, "pdb disruptions allowed is negative", "policy")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
        raise errors.forbidden_error(
            "poddisruptionbudget", name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller", "policy",
        )
    if allowed == 0:
        raise too_many_requests(
            _TOO_MANY, 0,
            f"The disruption budget {name} needs {int(status.get('desiredHealthy') or 0)} healthy pods "
            f"and has {int(status.get('currentHealthy') or 0)} currently",
        )
    status["disruptionsAllowed"] = allowed - 1
    if status["disruptionsAllowed"] == 0:
        _set_disruption_allowed_condition(status)
    if not dry_run:
        status["disruptedPods"] = {**(status.get("disruptedPods") or {}), pod_name: objects.now_rfc3339()}
    return pdb


SUCCESS: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
MORE_THAN_ONE: Obj = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
    "code": 500,
}


async def evict(storage: EvictionStorage, namespace: str, name: str, delete_options: Obj) -> Obj:
    """EvictionREST.Create after the body was checked: the Status to answer, or a StatusError.

    ``delete_options`` already carries the request's dry run (propagateDryRun)."""
    pods = _pods()
    dry_run = bool(delete_options.get("dryRun"))
    rv_unset = _rv_unset(delete_options)
    pod: Obj | None = None
    for _attempt in range(_RETRIES):
        pod = await storage.get_object(pods, namespace, name)
        if not can_ignore_pdb(pod):
            break
        opts = delete_options
        if _should_enforce_resource_version(pod) and rv_unset:
            # Not racing another PDB-impacting process: the pod must still be the one we read.
            opts = _with_rv(opts, pod["metadata"]["resourceVersion"])
        try:
            await storage.delete_named(pods, namespace, name, opts)
        except StatusError as e:
            if e.code == 409 and rv_unset:
                continue
            raise
        return dict(SUCCESS)
    else:
        raise errors.conflict("pods", name, "too many concurrent writers")
    assert pod is not None

    budgets = matching_budgets(pod, await storage.list_objects(_pdbs(), namespace))
    if len(budgets) > 1:
        return dict(MORE_THAN_ONE)
    with_rv = False
    pdb_name = ""
    if budgets:
        pdb = budgets[0]
        pdb_name = pdb["metadata"]["name"]
        status = pdb.get("status") or {}
        desired = int(status.get("desiredHealthy") or 0)
        if not pod_ready(pod) and int(status.get("currentHealthy") or 0) >= desired and desired > 0:
            # An unready pod does not count as healthy: deleting it spends nothing, as long
            # as it does not become ready meanwhile (hence the resourceVersion precondition).
            with_rv = True
        else:
            await storage.update_status(
                _pdbs(), namespace, pdb_name, lambda current: check_and_decrement(current, name, dry_run),
                manager=MANAGER, dry_run=dry_run,
            )
    opts = _with_rv(delete_options, pod["metadata"]["resourceVersion"]) if with_rv else delete_options
    try:
        await storage.delete_named(pods, namespace, name, opts)
    except StatusError as e:
        if e.code == 409 and with_rv and rv_unset:
            raise still_processing(pdb_name) from None
        raise
    return dict(SUCCESS)
