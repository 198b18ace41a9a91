"""A workload controller's pod creates and deletes, each with its event on the owner.

Kubernetes' ReplicaSet, DaemonSet and Job controllers share ``RealPodControl``
(pkg/controller/controller_utils.go) so that ``kubectl describe`` shows the same events for
all of them: ``SuccessfulCreate`` "Created pod: NAME", ``FailedCreate`` "Error creating: ...",
``SuccessfulDelete`` "Deleted pod: NAME", ``FailedDelete`` "Error deleting: ...". What each
controller does about a failure (its expectations, whether to retry) stays with it: the
errors are raised.
"""

from __future__ import annotations

from kubelite.api.types import Obj
from kubelite.client import PODS, ApiError, Client
from kubelite.client.events import EventRecorder


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


class PodControl:
    def __init__(self, client: Client, recorder: EventRecorder) -> None:
        self.client = client
        self.recorder = recorder

    async def create(self, owner: Obj, pod: Obj) -> Obj:
        """``pod`` created in ``owner``'s namespace. A refusal because the namespace is being
        deleted is raised without an event (every create there fails until it is gone)."""
        try:
            out: Obj = await self.client.create(PODS, pod, _meta(owner)["namespace"])
        except ApiError as e:
            if not e.namespace_terminating:
                await self.recorder.event(owner, "Warning", "FailedCreate",
                                          f"Error creating: {e.status.get('message', e)}")
            raise
        await self.recorder.event(owner, "Normal", "SuccessfulCreate", f"Created pod: {_meta(out)['name']}")
        return out

    async def delete(self, owner: Obj, pod: Obj) -> None:
        """Deletes ``pod``. NotFound (it is gone already) is raised without an event."""
        name = _meta(pod)["name"]
        try:
            await self.client.delete(PODS, name, _meta(pod).get("namespace"))
        except ApiError as e:
            if not e.not_found:
                await self.recorder.event(owner, "Warning", "FailedDelete",
                                          f"Error deleting: {e.status.get('message', e)}")
            raise
        await self.recorder.event(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")
