"""Server-side apply (``kubectl apply --server-side``, ``PATCH`` with ``application/apply-patch+yaml``).

The applied configuration says what its manager wants; the server merges it into the live
object by the schema's list and map types (list-maps by their key fields, sets by value,
atomic values whole), drops what the same manager applied last time and no longer mentions
(unless someone else owns it too), and refuses to change fields another manager owns unless
forced. The manager's Apply entry in managedFields becomes exactly the applied field set.

The steps follow structured-merge-diff's ``Updater.Apply`` (merge, prune, ownership update)
and the field manager wrappers around it (stripped metadata, reset status, the
``kubectl`` upgrade path from client-side apply's last-applied annotation); the field-set
machinery lives in :mod:`kubelite.api.managedfields`.
"""

from __future__ import annotations

import json
from typing import Any

from kubelite.api import managedfields as mf
from kubelite.api.errors import StatusError, bad_request
from kubelite.api.managedfields import Entry, FieldSet, Path

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_ABSENT: Any = object()


class ApplyConflict(StatusError):
    """409 Conflict listing the fields other managers own; ``conflicts`` holds (manager, path)."""

    def __init__(self, conflicts: list[tuple[Entry, Path]]) -> None:
        self.conflicts = [(e.manager, mf.path_string(p)) for e, p in conflicts]
        causes = [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {e.describe()}",
                "field": mf.path_string(p),
            }
            for e, p in conflicts
        ]
        super().__init__(409, "Conflict", _conflict_message(conflicts), {"causes": causes})


def _conflict_message(conflicts: list[tuple[Entry, Path]]) -> str:
    if len(conflicts) == 1:
        e, p = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {e.describe()}: {mf.path_string(p)}"
    lines: list[str] = []
    seen: list[int] = []
    for e, _ in conflicts:
        if id(e) in seen:
            continue
        seen.append(id(e))
        lines.append(f"conflicts with {e.describe()}:")
        lines.extend(f"- {mf.path_string(p)}" for e2, p in conflicts if e2 is e)
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def _identifier(e: Entry) -> str:
    """The manager identifier Kubernetes sorts conflicting managers by (JSON of the entry)."""
    d: dict[str, str] = {"manager": e.manager, "operation": e.operation}
    if e.operation != "Apply" and e.api_version:
        d["apiVersion"] = e.api_version
    if e.subresource:
        d["subresource"] = e.subresource
    return json.dumps(d, separators=(",", ":"))


# --- merging an applied configuration -----------------------------------------------------


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def merge(live: Any, config: Any, schema: dict[str, Any] | None) -> Any:
    """The applied configuration merged into the live value (typed.Merge); a null in the
    configuration clears the field."""
    if config is _ABSENT:
        return _copy(live)
    if live is _ABSENT:
        return _copy(config)
    sh = mf.shape(schema)
    if isinstance(live, dict) and isinstance(config, dict) and not sh.atomic:
        out = _copy(live)
        for k, cv in config.items():
            if cv is None:
                out.pop(k, None)
            else:
                out[k] = merge(live.get(k, _ABSENT), cv, mf.child_schema(sh, k))
        return out
    if isinstance(live, list) and isinstance(config, list) and sh.list_type in ("map", "set"):
        return _merge_list(live, config, sh)
    return _copy(config)


def _merge_list(live: list[Any], config: list[Any], sh: mf.Shape) -> list[Any]:
    """Live-only items keep their place, items in both follow the configuration's order, new
    items come where the configuration puts them (mergingWalker.visitListItems)."""
    lpes = [mf.item_element(x, sh, i) for i, x in enumerate(live)]
    rpes = [mf.item_element(x, sh, i) for i, x in enumerate(config)]
    lseen = dict(zip(lpes, live, strict=True))
    rseen = dict(zip(rpes, config, strict=True))
    shared = [pe for pe in rpes if pe in lseen]
    next_shared = shared.pop(0) if shared else None
    done: set[str] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                done.add(pe)
                out.append(merge(lseen[pe], rseen[pe], sh.items))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in rseen and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lpes):
            pe = lpes[li]
            if pe not in rseen:
                out.append(_copy(live[li]))
                li += 1
                continue
            if pe in done:
                li += 1
                continue
        if ri < len(rpes):
            pe = rpes[ri]
            done.add(pe)
            out.append(merge(lseen.get(pe, _ABSENT), rseen[pe], sh.items))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


# --- pruning what the applier stopped applying --------------------------------------------


def _prefixes(paths: FieldSet) -> set[Path]:
    return {p[:n] for p in paths for n in range(1, len(p))}


def _prune(value: Any, schema: dict[str, Any] | None, path: Path, last: FieldSet, owned: FieldSet) -> Any:
    """Remove what ``last`` (the applier's previous set) has and nobody owns any more. A struct
    field counts as owned while anything under it is (EnsureNamedFieldsAreMembers); list items
    and map keys only when owned themselves. Collections emptied here disappear, as they would
    once decoded into Go types."""
    last_pre, owned_pre = _prefixes(last), _prefixes(owned)

    def walk(v: Any, node: dict[str, Any] | None, p: Path) -> Any:
        sh = mf.shape(node)
        if isinstance(v, dict) and not sh.atomic:
            out: dict[str, Any] = {}
            for k, x in v.items():
                cp = (*p, "f:" + k)
                named = k in sh.props
                in_last = cp in last or (named and cp in last_pre)
                in_owned = cp in owned or (named and cp in owned_pre)
                if in_last and not in_owned:
                    continue
                if cp in last_pre:
                    x = walk(x, mf.child_schema(sh, k), cp)
                    if x is _ABSENT:
                        continue
                out[k] = x
            return out if out or not v else _ABSENT
        if isinstance(v, list) and sh.list_type in ("map", "set"):
            items: list[Any] = []
            for i, x in enumerate(v):
                cp = (*p, mf.item_element(x, sh, i))
                if cp in last and cp not in owned:
                    continue
                if cp in last_pre:
                    x = walk(x, sh.items, cp)
                    if x is _ABSENT:
                        continue
                items.append(x)
            return items if items or not v else _ABSENT
        return v

    pruned = walk(value, schema, path)
    return {} if pruned is _ABSENT else pruned


# --- the apply ----------------------------------------------------------------------------


def _without(obj: dict[str, Any], top: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in top}


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    schema: dict[str, Any] | None,
    api_version: str,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` to ``live`` (``None``: create by apply).

    The result carries the new managedFields; it still needs defaulting, validation and the
    usual update checks. When nothing changes the result equals ``live``. Raises
    :class:`ApplyConflict` (409) or a 400 :class:`StatusError` for a malformed configuration.
    """
    meta = applied.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    patch_version = applied.get("apiVersion")
    if isinstance(patch_version, str) and patch_version != api_version:
        raise bad_request(
            "Incorrect version specified in apply patch. "
            f"Specified patch version: {patch_version}, expected: {api_version}"
        )
    ignored = mf.reset_fields(subresource)
    ignored_top = tuple(p[0][2:] for p in ignored)
    config = _without(applied, ignored_top)

    live_meta = (live or {}).get("metadata", {})
    entries = _decode_live(live_meta.get("managedFields"))
    live_obj = None if live is None else {**live, "metadata": _without(live_meta, ("managedFields",))}

    applied_set = mf.recursive_difference(mf.fields_of(config, schema), ignored) - mf.STRIPPED
    me = Entry(manager, "Apply", api_version, subresource, None, applied_set)
    previous = next((e for e in entries if e.ident == me.ident), None)
    others = [e for e in entries if e is not previous]

    new: dict[str, Any] = merge(live_obj if live_obj is not None else _ABSENT, config, schema)
    if previous is not None and previous.fields:
        # The full applied set (metadata.name included) keeps the object's identity owned.
        owned = mf.fields_of(config, schema) | mf.STRIPPED
        for e in others:
            owned |= e.fields
        new = _prune(new, schema, (), previous.fields, owned)

    diff = mf.compare(live_obj, new, schema).without(ignored)
    taken = diff.added | diff.modified
    conflicts = [(e, p) for e in sorted(others, key=_identifier) for p in mf.iter_paths(e.fields & taken)]
    if conflicts and not force:
        if manager == "kubectl" and live_obj is not None:
            allowed = _allowed_by_last_applied(live_obj, schema, api_version)
            conflicts = [(e, p) for e, p in conflicts if p not in allowed]
        if conflicts:
            raise ApplyConflict(conflicts)
    for e in others:
        e.fields = (e.fields - taken) - diff.removed

    changed = live_obj is None or new != live_obj
    me.time = now if changed else (previous.time if previous is not None else None)
    if manager == "kubectl" and LAST_APPLIED in live_meta.get("annotations", {}):
        # Keep client-side apply's record in step, so a later `kubectl apply` diffs correctly.
        new.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = _last_applied(applied)
    mf.set_managed_fields(new, [*others, me])
    return new


def _decode_live(managed: Any) -> list[Entry]:
    try:
        return mf.decode(managed)
    except ValueError:
        return []


def _allowed_by_last_applied(
    live: dict[str, Any], schema: dict[str, Any] | None, api_version: str
) -> FieldSet:
    """Fields ``kubectl`` may take over from client-side apply: those of the last-applied
    annotation whose values still match the live object."""
    raw = live.get("metadata", {}).get("annotations", {}).get(LAST_APPLIED)
    if not raw:
        return set()
    try:
        last = json.loads(raw)
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return set()
    diff = mf.compare(last, live, schema)
    return mf.fields_of(last, schema) - diff.modified - diff.added - diff.removed


def _last_applied(applied: dict[str, Any]) -> str:
    """buildLastApplied: the applied configuration without the annotation, as Go encodes it."""
    obj = _copy(applied)
    annotations = obj.get("metadata", {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del obj["metadata"]["annotations"]
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return text
