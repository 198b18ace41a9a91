"""ControllerRevisions: the template history of StatefulSets and DaemonSets (``pkg/controller/history``).

A revision stores the part of its owner a rollout changes as a strategic merge patch,
``{"spec": {"template": {"$patch": "replace", ...}}}``, which is what ``kubectl rollout undo``
sends back to the owner verbatim. Revisions are named ``<owner>-<hash>`` where the hash is
FNV-32 (not 32a, as ``HashControllerRevision`` uses ``fnv.New32``) of the patch's bytes plus
the collision count, rendered with ``SafeEncodeString``. The bytes are canonical JSON with
sorted keys (Go marshals maps sorted, so ``$patch`` comes first there too).

Everything here is pure: building revisions, finding an equal one, numbering, and choosing
the revisions to drop beyond ``revisionHistoryLimit``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import orjson

from kubelite.api.types import Obj
from kubelite.controllers import podutil

HASH_LABEL = "controller.kubernetes.io/hash"  # history.ControllerRevisionHashLabel
REVISION_LABEL = "controller-revision-hash"  # apps.ControllerRevisionHashLabelKey (on pods)


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _fnv32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h * 0x01000193) & 0xFFFFFFFF) ^ b
    return h


def template_patch(owner: Obj) -> Obj:
    """getPatch: the owner's pod template as a replacing strategic merge patch."""
    template = podutil.semantic(copy.deepcopy((owner.get("spec") or {}).get("template") or {}))
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: Obj) -> Obj:
    """The pod template a revision records (ApplyRevision, for the one field it replaces)."""
    template = dict((((revision.get("data") or {}).get("spec")) or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def hash_revision(data: Obj, collision_count: int | None) -> str:
    """HashControllerRevision: FNV-32 of the data's bytes and the collision count."""
    raw = orjson.dumps(podutil.semantic(data), option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        raw += str(collision_count).encode()
    return podutil.safe_encode_string(str(_fnv32(raw)))


def revision_name(prefix: str, hash_: str) -> str:
    """ControllerRevisionName: the owner's name (cut to 223 characters) and the hash."""
    if len(prefix) > 223:
        prefix = prefix[:223]
    return f"{prefix}-{hash_}"


def new_revision(owner: Obj, api_version: str, kind: str, revision: int, collision_count: int | None,
                 name_hash: str | None = None) -> Obj:
    """NewControllerRevision: labelled like the template (so the owner's selector lists it),
    annotated like the owner, controlled by it."""
    data = template_patch(owner)
    hash_ = hash_revision(data, collision_count)
    labels = dict(((((owner.get("spec") or {}).get("template") or {}).get("metadata")) or {}).get("labels") or {})
    labels[HASH_LABEL] = hash_
    meta: Obj = {
        "name": revision_name(_meta(owner)["name"], name_hash or hash_),
        "namespace": _meta(owner).get("namespace", ""),
        "labels": labels,
        "ownerReferences": [podutil.new_controller_ref(owner, api_version, kind)],
    }
    annotations = _meta(owner).get("annotations")
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta, "data": data,
            "revision": revision}


def equal_revision(a: Obj, b: Obj) -> bool:
    """EqualRevision: the same recorded template (semantically)."""
    return bool(podutil.semantic(a.get("data")) == podutil.semantic(b.get("data")))


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """SortControllerRevisions: by revision number, then creation time, then name."""
    return sorted(revisions, key=lambda r: (int(r.get("revision") or 0), podutil.creation_time(r),
                                            str(_meta(r).get("name", ""))))


def next_revision(revisions: list[Obj]) -> int:
    """nextRevision: one more than the highest revision number (1 when there is none)."""
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


def find_equal(revisions: list[Obj], wanted: Obj) -> list[Obj]:
    return [r for r in revisions if equal_revision(r, wanted)]


def revisions_to_drop(revisions: list[Obj], live: set[str], limit: int) -> list[Obj]:
    """truncateHistory: the oldest revisions beyond ``limit`` that no live pod or status uses."""
    candidates = [r for r in sort_revisions(revisions) if _meta(r).get("name") not in live]
    excess = len(candidates) - limit
    return candidates[:excess] if excess > 0 else []
