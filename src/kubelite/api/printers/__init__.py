"""Server-side printing: the ``meta.k8s.io`` Table objects behind ``kubectl get``.

kubectl does not format resources itself: it asks for ``Accept: application/json;as=Table;
v=v1;g=meta.k8s.io`` and prints the columns and cells the API server chose. So the columns,
their order and priorities, and every cell string must be kube-apiserver's, or ``kubectl
get`` output differs from a real cluster's. This module assembles the Table the way
kube-apiserver's handlers do (``asTable`` in ``endpoints/handlers/response.go``): the kind's
printer fills the rows, then ``includeObject`` decides what each row embeds. The per-kind
printers live in :mod:`kubelite.api.printers.kinds`, value formatting in
:mod:`kubelite.api.printers.format`.

Watch: kube-apiserver sends every watch event's object as a Table of one row, with column
definitions only in the first event (``with_columns=False`` for the others).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubelite.api import registry
from kubelite.api.errors import bad_request, invalid, not_acceptable
from kubelite.api.printers.format import human_duration
from kubelite.api.printers.kinds import default_printer, printers

__all__ = ["INCLUDE_OBJECT_VALUES", "human_duration", "to_table", "validate_include_object"]

TABLE_API_VERSIONS = ("meta.k8s.io/v1", "meta.k8s.io/v1beta1")
# includeObject values; the empty string (parameter absent) means Metadata.
INCLUDE_OBJECT_VALUES = ("Metadata", "Object", "None", "")


def validate_include_object(value: str) -> None:
    """Reject an unknown ``includeObject`` with kube-apiserver's 400 (``ValidateTableOptions``)."""
    if value not in INCLUDE_OBJECT_VALUES:
        err = invalid("includeObject", value, "must be 'Metadata', 'Object', 'None', or empty")
        raise bad_request(f"Unable to convert to Table as requested: {err}")


def to_table(
    group: str,
    kind: str,
    objects: list[dict[str, Any]],
    *,
    now: datetime,
    include_object: str = "Metadata",
    list_meta: dict[str, Any] | None = None,
    with_columns: bool = True,
    api_version: str = "meta.k8s.io/v1",
) -> dict[str, Any]:
    """Render objects of one kind as a Table.

    ``objects`` is a list's items (pass the list's ``metadata`` as ``list_meta``: its
    resourceVersion, continue and remainingItemCount are copied) or a single object (leave
    ``list_meta`` None: the Table carries that object's resourceVersion). ``now`` ages the
    timestamps; pass an aware UTC datetime. ``include_object`` is the ``includeObject`` query
    parameter; ``with_columns=False`` omits the column definitions (``columnDefinitions:
    null``), as on every watch event after the first. ``api_version`` is the Table's
    negotiated group/version (``meta.k8s.io/v1beta1`` for old clients).
    """
    validate_include_object(include_object)
    if api_version not in TABLE_API_VERSIONS:
        raise not_acceptable(f"no Table exists in group version {api_version}")

    printer = printers().get((group, kind))
    chosen = printer or default_printer()
    if chosen.order is not None and list_meta is not None:
        objects = sorted(objects, key=chosen.order)
    rows: list[dict[str, Any]] | None = [chosen.row(obj, now) for obj in objects]
    for row, obj in zip(rows or [], objects, strict=True):
        row["object"] = _row_object(group, kind, obj, include_object, api_version)
    if printer is None and not rows:
        # The default convertor appends to a nil slice: no objects serialise as null.
        rows = None

    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": _table_meta(objects, list_meta),
        # Copies: the definitions are shared by every table of the kind.
        "columnDefinitions": [dict(c) for c in chosen.columns] if with_columns else None,
        "rows": rows,
    }


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def _table_meta(objects: list[dict[str, Any]], list_meta: dict[str, Any] | None) -> dict[str, Any]:
    """ListMeta of the Table: the list's paging fields, or the single object's resourceVersion."""
    if list_meta is not None:
        keys = ("resourceVersion", "continue", "remainingItemCount")
        return {k: list_meta[k] for k in keys if list_meta.get(k) not in (None, "")}
    rv = _meta(objects[0]).get("resourceVersion") if len(objects) == 1 else None
    return {"resourceVersion": rv} if rv else {}


def _row_object(
    group: str, kind: str, obj: dict[str, Any], include_object: str, api_version: str
) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        resource = next((r for r in registry.RESOURCES if r.group == group and r.kind == kind), None)
        if resource is None:
            return obj
        # The object is converted to the resource's version, which sets its kind and apiVersion.
        return {**obj, "apiVersion": resource.api_version, "kind": kind}
    # meta.AsPartialObjectMetadata copies the whole ObjectMeta, managedFields included.
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": _meta(obj)}
