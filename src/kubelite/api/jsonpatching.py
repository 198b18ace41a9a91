"""RFC 6902 JSON patches applied within kube-apiserver's limits (its patch handler's jsonPatcher).

A JSON patch is the one patch type whose result can be far larger than its request: each
``copy`` operation may duplicate the whole object, so twenty operations in a few hundred bytes
double it twenty times. The body limit (3 MiB) bounds what is sent, not what it makes, and a
size check on the result comes too late: the memory is already spent. kube-apiserver bounds
both while applying: at most 10,000 operations (``maxJSONPatchOperations``, a 413), and at most
3 MiB copied in all by one patch (json-patch's ``AccumulatedCopySizeLimit``, set from
``--json-patch-max-copy-bytes``, a 422), counted as each copy's value serialized, before the
copy is made. ``add`` and ``replace`` only insert values the body carries, so with copies
bounded the patched object never exceeds the current one plus twice the request limit;
the result is then bounded like any decoded object (``decoding.bounded``).

Errors keep the texts of kube-apiserver and json-patch (gopkg.in/evanphx/json-patch.v4).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson

from kubelite.api import errors

MAX_JSON_PATCH_OPERATIONS = 10000  # patch.go's maxJSONPatchOperations
MAX_COPY_BYTES = 3 * 1024 * 1024  # genericapiserver's JSONPatchMaxCopyBytes default


class CopySizeError(jsonpatch.JsonPatchException):  # type: ignore[misc]
    """json-patch's AccumulatedCopySizeError: a JsonPatchException, answered as the others are."""

    def __init__(self, accumulated: int) -> None:
        super().__init__(
            f"Unable to complete the copy, the accumulated size increase of copy is {accumulated}, "
            f"exceeding the limit {MAX_COPY_BYTES}"
        )


_GO_KINDS = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}


def apply(doc: Any, ops: Any) -> Any:
    """``doc`` (left unchanged) patched by ``ops``, or kube-apiserver's error as a StatusError:
    413 for too many operations, 400 for operations that are not objects, 422 for operations
    that do not apply (json-patch's errors, the copy budget's among them)."""
    if not isinstance(ops, list):
        raise errors.bad_request(
            f"json: cannot unmarshal {_GO_KINDS.get(type(ops), 'object')} into Go value of type jsonpatch.Patch"
        )
    try:
        return _apply(doc, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise errors.StatusError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
        ) from None
    except (TypeError, KeyError, ValueError, AttributeError) as e:  # e.g. a path that is not a string
        raise errors.bad_request(f"unable to apply patch: {e}") from None


def _apply(doc: Any, ops: list[Any]) -> Any:
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise errors.bad_request(
                f"json: cannot unmarshal {_GO_KINDS.get(type(op), 'object')} into Go value of type jsonpatch.Operation"
            )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.too_large(
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}"
        )
    if any(op is None for op in ops):
        raise jsonpatch.InvalidJsonPatch("Unexpected kind: unknown")  # Go decodes null as an empty operation
    jsonpatch.JsonPatch(ops)  # every operation well-formed before any is applied, as DecodePatch checks them
    obj = copy.deepcopy(doc)
    copied = 0
    for op in ops:
        if op.get("op") == "copy" and isinstance(op.get("from"), str):
            copied += _size_at(obj, op["from"])
            if copied > MAX_COPY_BYTES:
                raise CopySizeError(copied)
        # One operation at a time, in place: what was copied so far is all the memory spent.
        obj = jsonpatch.JsonPatch([op]).apply(obj, in_place=True)
    return obj


def _size_at(obj: Any, pointer: str) -> int:
    """The serialized size of the value at ``pointer``; 0 when there is none (the copy then
    fails on its own, with json-patch's error)."""
    try:
        value = jsonpatch.JsonPointer(pointer).resolve(obj)
    except (jsonpatch.JsonPointerException, TypeError, KeyError, IndexError):
        return 0
    try:
        return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        return MAX_COPY_BYTES + 1  # too deep to serialize: far beyond what may be stored anyway
