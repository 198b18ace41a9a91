"""Strategic merge patch, applied the way kube-apiserver applies it.

``kubectl apply`` (client-side), ``kubectl edit``, ``kubectl patch`` and most controllers send
``application/strategic-merge-patch+json``: a JSON merge patch whose lists merge element-wise
when the schema says so (``x-kubernetes-patch-strategy: merge`` with a merge key), plus the
directives ``$patch``, ``$retainKeys``, ``$setElementOrder/<list>`` and
``$deleteFromPrimitiveList/<list>``. The semantics (including where new list elements land and
the error texts kubectl prints) follow apimachinery's ``strategicpatch`` package, driven by the
OpenAPI extensions of :mod:`kubelite.api.schema` instead of Go struct tags.

Trade-off: Go decodes the patched map into a typed struct, which silently drops leftovers such as
directives nested inside newly added values and ``null`` fields; objects here stay plain dicts, so
those leftovers are stripped explicitly when a patch value is taken over as is.
The original is copied once up front and then merged in place; the patch is only read.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubelite.api.errors import StatusError, bad_request
from kubelite.api.schema import deref

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_LIST_OF_LISTS = "lists of lists are not supported"

# mergepatch errors the API server turns into 400 (interpretStrategicMergePatchError); the rest
# reach kube-apiserver's clients as a bare 500 with the Go error text as message (a 400 here,
# see PatchError.status_error).
_BAD_REQUEST = {ERR_PRIMITIVE_LIST, ERR_RETAIN_KEYS, ERR_SET_ELEMENT_ORDER}


class PatchError(Exception):
    """A patch the server cannot apply; ``code`` is the HTTP status kube-apiserver answers with."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is None:
            code = 400 if message in _BAD_REQUEST else 422 if message == ERR_LIST_OF_LISTS else 500
        self.code = code

    def status_error(self) -> StatusError:
        if self.code == 400:
            return bad_request(self.message)
        if self.code == 422:
            # apierrors.NewGenericServerResponse(422, ...): the Go text itself is not shown.
            return StatusError(
                422, "Invalid", "the server rejected our request due to an error in our request"
            )
        # kube-apiserver answers the other mergepatch errors as a bare 500 (ErrorToAPIStatus of
        # a plain error); the patch is the client's mistake, so it is a 400 here, same text.
        return bad_request(self.message)


# --- Go formatting, for error texts that embed values ------------------------------------


def _go_float(f: float) -> str:
    """Go's ``%v`` of a float64: shortest digits, exponent form when the exponent is < -4 or >= 6."""
    if f != f or f in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(f)]
    if f == 0:
        return "0"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    point = len(ds) + exp  # position of the decimal point relative to the digit string
    x = point - 1
    s = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{s}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{s}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return s + ds + "0" * (point - len(ds))
    return f"{s}{ds[:point]}.{ds[point:]}"


def go_v(v: Any) -> str:
    """Go's ``%v`` of a decoded JSON value (maps print sorted: ``map[a:1 b:[x y]]``)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + " ".join(go_v(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_v(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _go_s(v: Any) -> str:
    """Go's ``%s``: strings as is, other values as ``%!s(type=value)``."""
    if isinstance(v, str):
        return v
    if v is None:
        return "%!s(<nil>)"
    return f"%!s({_go_type(v)}={go_v(v)})"


def _go_type(v: Any) -> str:
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    return "%!s(<nil>)"


def _bad_arg_type(expected: str, actual: Any) -> PatchError:
    return PatchError(f"expected a {expected}, but received a {_go_type(actual)}")


def _no_merge_key(m: dict[str, Any], key: str) -> PatchError:
    return PatchError(f"map: {go_v(m)} does not contain declared merge key: {key}")


def _bad_patch_type(directive: Any, m: dict[str, Any]) -> PatchError:
    return PatchError(f"unknown patch type: {_go_s(directive)} in map: {go_v(m)}")


# --- schema lookups -----------------------------------------------------------------------


def _child(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The schema of field ``key`` of an object (declared property, else map values)."""
    if schema is None:
        return None
    node = deref(schema)
    props = node.get("properties")
    if props and key in props:
        child: dict[str, Any] = props[key]
        return child
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _items(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    items = deref(schema).get("items")
    return items if isinstance(items, dict) else None


def _ext(schema: dict[str, Any] | None, name: str) -> Any:
    """An extension of a field: on the field's own node first (next to its ``allOf``), then
    on the referenced definition."""
    if schema is None:
        return None
    if name in schema:
        return schema[name]
    return deref(schema).get(name)


def patch_meta(schema: dict[str, Any] | None) -> tuple[str, str]:
    """(patch strategy without retainKeys, merge key) of a field, as extractRetainKeysPatchStrategy."""
    raw = _ext(schema, "x-kubernetes-patch-strategy") or ""
    strategies = [s for s in raw.split(",") if s] if raw else []
    key = _ext(schema, "x-kubernetes-patch-merge-key") or ""
    if len(strategies) == 1:
        return ("" if strategies[0] == "retainKeys" else strategies[0]), key
    if len(strategies) == 2:
        if strategies[0] == "retainKeys":
            return strategies[1], key
        if strategies[1] == "retainKeys":
            return strategies[0], key
    if strategies:
        raise PatchError(f"unexpected patch strategy: [{' '.join(strategies)}]")
    return "", key


# --- values -------------------------------------------------------------------------------


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


_DROP = object()


def _clean(v: Any) -> Any:
    """A copy of a patch value taken over as is: maps carrying ``$patch`` vanish (removeDirectives),
    other directive keys and null fields go (what decoding into Go structs drops)."""
    if isinstance(v, dict):
        if DIRECTIVE in v:
            return _DROP
        out = {}
        for k, x in v.items():
            if x is None or _is_directive_key(k):
                continue
            c = _clean(x)
            if c is not _DROP:
                out[k] = c
        return out
    if isinstance(v, list):
        return [c for c in (_clean(x) for x in v) if c is not _DROP]
    return v


def _is_directive_key(k: str) -> bool:
    return k == RETAIN_KEYS or k.startswith((SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST))


def _kind(v: Any) -> type | None:
    """The Go dynamic type class of a decoded JSON value (int64 and float64 differ, as in Go)."""
    return None if v is None else type(v)


def _same(a: Any, b: Any) -> bool:
    """Go ``==`` on interface{} holding scalars: same dynamic type and value."""
    return type(a) is type(b) and a == b


def _extract_key(key: str, prefix: str, error: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise PatchError(error)
    return rest


def _element_kind(*lists: list[Any]) -> type | None:
    """sliceElementType: the one element type of the given lists."""
    found = False
    kind: type | None = None
    for lst in lists:
        for v in lst:
            t = _kind(v)
            if not found:
                if t is list:
                    raise PatchError(ERR_LIST_OF_LISTS)
                found, kind = True, t
            elif t is not kind:
                raise PatchError(f"list element types are not identical: {go_v(list(lists))}")
    if not found:
        raise PatchError("no elements in any of the given slices")
    return kind


# --- the merge ----------------------------------------------------------------------------


def apply_strategic_merge_patch(
    original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any] | None
) -> dict[str, Any]:
    """The object ``original`` becomes once ``patch`` is applied; neither input is modified.

    ``schema`` is the kind's OpenAPI schema (``schema_for(...)``); ``None`` merges maps and
    replaces lists everywhere. Raises :class:`PatchError`.
    """
    if not isinstance(patch, dict):
        what = "array" if isinstance(patch, list) else "string" if isinstance(patch, str) else "number"
        raise PatchError(
            f"json: cannot unmarshal {what} into Go value of type map[string]interface {{}}", 400
        )
    return _merge_map(_copy(original), patch, schema)


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any] | None
) -> dict[str, Any]:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            replaced = _clean({k: v for k, v in patch.items() if k != DIRECTIVE})
            assert isinstance(replaced, dict)
            return replaced
        if directive == "delete":
            return {}
        raise _bad_patch_type(directive, patch)

    if RETAIN_KEYS in patch:
        _apply_retain_keys(original, patch)
    handled = _merge_ordered_lists(original, patch, schema)

    for key, pv in patch.items():
        if key in handled or key == RETAIN_KEYS or key.startswith(SET_ELEMENT_ORDER):
            continue
        is_delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST, ERR_PRIMITIVE_LIST)
        if pv is None:
            original.pop(key, None)
            continue
        if key not in original or _kind(original[key]) is not _kind(pv):
            if not is_delete_list:
                _set_cleaned(original, key, pv)
            continue
        ov = original[key]
        child = _child(schema, key)
        if isinstance(ov, dict):
            strategy, _ = patch_meta(child)
            if strategy == "replace":
                _set_cleaned(original, key, pv)
            else:
                original[key] = _merge_map(ov, pv, child)
        elif isinstance(ov, list):
            strategy, merge_key = patch_meta(child)
            original[key] = _merge_list_field(ov, pv, child, strategy, merge_key, is_delete_list)
        else:
            original[key] = pv
    return original


def _set_cleaned(target: dict[str, Any], key: str, value: Any) -> None:
    cleaned = _clean(value)
    if cleaned is _DROP:
        target.pop(key, None)
    else:
        target[key] = cleaned


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """``$retainKeys``: clear the fields of ``original`` not listed; every patched field must be listed."""
    listed = patch[RETAIN_KEYS]
    if not isinstance(listed, list):
        raise PatchError(ERR_RETAIN_KEYS)
    keep = {k for k in listed if isinstance(k, str)}
    for k, v in patch.items():
        if (
            v is None
            or k in (RETAIN_KEYS, DIRECTIVE)
            or k.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER))
        ):
            continue
        if k not in keep:
            raise PatchError(ERR_RETAIN_KEYS)
    for k in [k for k in original if k not in keep]:
        del original[k]


def _merge_ordered_lists(
    original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any] | None
) -> set[str]:
    """Process ``$setElementOrder/<list>`` with its list (mergePatchIntoOriginal); returns the
    list keys done, which the main merge then skips."""
    handled: set[str] = set()
    for key, order in patch.items():
        if not key.startswith(SET_ELEMENT_ORDER):
            continue
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        field = _extract_key(key, SET_ELEMENT_ORDER, ERR_SET_ELEMENT_ORDER)
        found_original, found_patch = field in original, field in patch
        original_list: list[Any] = []
        patch_list: list[Any] = []
        if found_original:
            if not isinstance(original[field], list):
                raise _bad_arg_type("[]interface {}", original[field])
            original_list = original[field]
        if found_patch:
            if not isinstance(patch[field], list):
                raise _bad_arg_type("[]interface {}", patch[field])
            patch_list = patch[field]
        child = _child(schema, field)
        strategy, merge_key = patch_meta(child)
        _validate_order(patch_list, order, merge_key)

        if found_original and found_patch:
            merged = _merge_list_field(original_list, patch_list, child, strategy, merge_key, False)
        elif found_patch:
            merged = _clean(patch_list)
        elif found_original:
            merged = original_list
        else:
            handled.add(field)
            continue
        if merge_key:
            in_order = [v for v in merged if _find(order, merge_key, _merge_value(v, merge_key)) is not None]
            server_only = [v for v in merged if _find(order, merge_key, _merge_value(v, merge_key)) is None]
        else:
            in_order = [v for v in merged if _index(order, v, "") >= 0]
            server_only = [v for v in merged if _index(order, v, "") < 0]
        kind = _element_kind(original_list, patch_list)
        original[field] = _normalize_order(in_order, server_only, order, original_list, merge_key, kind)
        handled.add(field)
    return handled


def _merge_value(item: Any, merge_key: str) -> Any:
    if not isinstance(item, dict):
        raise _bad_arg_type("map[string]interface {}", item)
    if merge_key not in item:
        raise _no_merge_key(item, merge_key)
    return item[merge_key]


def _validate_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch list must follow ``$setElementOrder``'s relative order (deletions aside)."""
    if not order or not patch_list:
        return
    if merge_key:
        for v in patch_list:
            if not isinstance(v, dict):
                raise _bad_arg_type("map[string]interface {}", v)
        items = [v for v in patch_list if v.get(DIRECTIVE) != "delete"]
    else:
        items = patch_list
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        if isinstance(items[pi], dict) and DIRECTIVE in items[pi]:
            pi += 1
            continue
        if merge_key:
            equal = _same(_merge_value(items[pi], merge_key), _merge_value(order[oi], merge_key))
        else:
            equal = _same(items[pi], order[oi])
        if equal:
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise PatchError(
            f"The order in patch list:\n{go_v(patch_list)}\n doesn't match {SET_ELEMENT_ORDER} list:\n{go_v(order)}\n"
        )


def _merge_list_field(
    original: list[Any],
    patch: list[Any],
    schema: dict[str, Any] | None,
    strategy: str,
    merge_key: str,
    is_delete_list: bool,
) -> list[Any]:
    """mergeSliceHandler: merge when the strategy says so (or for a deletion list), else replace."""
    if strategy != "merge" and not is_delete_list:
        cleaned = _clean(patch)
        assert isinstance(cleaned, list)
        return cleaned
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind is not dict:
        if is_delete_list:
            return [v for v in original if not any(_same(v, d) for d in patch)]
        merged: list[Any] = []
        for v in original + patch:
            if not any(_same(v, m) for m in merged):
                merged.append(v)
        in_patch = [v for v in merged if any(_same(v, p) for p in patch)]
        server_only = [v for v in merged if not any(_same(v, p) for p in patch)]
        return _normalize_order(in_patch, server_only, patch, original, "", kind)

    if not merge_key:
        raise PatchError(f"cannot merge lists without merge key for {_schema_name(schema)}")
    items_schema = _items(schema)
    original, patch = _apply_list_directives(original, patch, merge_key)
    merged = list(original)
    for item in patch:
        value = _merge_value(item, merge_key)
        i = _find(merged, merge_key, value)
        if i is None:
            merged.append(_clean(item))
        else:
            merged[i] = _merge_map(merged[i], item, items_schema)
    in_patch = [v for v in merged if _find(patch, merge_key, _merge_value(v, merge_key)) is not None]
    server_only = [v for v in merged if _find(patch, merge_key, _merge_value(v, merge_key)) is None]
    return _normalize_order(in_patch, server_only, patch, original, merge_key, kind)


def _schema_name(schema: dict[str, Any] | None) -> str:
    items = _items(schema)
    if items is not None:
        ref = items.get("$ref") or next((a.get("$ref") for a in items.get("allOf", []) if "$ref" in a), None)
        if ref:
            return str(ref).rsplit("/", 1)[-1]
    return ""


def _apply_list_directives(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """mergeSliceWithSpecialElements: ``$patch: delete`` removes by merge key, ``$patch: replace``
    makes the patch's other elements the whole list."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [o for o in original if not (merge_key in o and _same(o[merge_key], item[merge_key]))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace:
        cleaned = _clean(plain)
        assert isinstance(cleaned, list)
        return cleaned, []
    return original, plain


def _find(items: list[Any], merge_key: str, value: Any) -> int | None:
    for i, v in enumerate(items):
        if not isinstance(v, dict):
            raise PatchError(f"value for key {i} is not a map")
        if merge_key in v and _same(v[merge_key], value):
            return i
    return None


def _index(items: list[Any], item: Any, merge_key: str) -> int:
    """Position of ``item`` in ``items``, compared by merge key value (maps) or by value."""
    if merge_key:
        key = item.get(merge_key) if isinstance(item, dict) else None
        for i, v in enumerate(items):
            if _same(v.get(merge_key) if isinstance(v, dict) else None, key):
                return i
        return -1
    for i, v in enumerate(items):
        if not isinstance(v, (dict, list)) and _same(v, item):
            return i
    return -1


def _sort_by(items: list[Any], order: list[Any], merge_key: str, kind: type | None) -> list[Any]:
    """normalizeSliceOrder: Go's stable insertion sort with its "unknown sorts first" comparator."""
    to_delete: list[Any] = []
    if kind is dict:
        for v in items + order:
            _merge_value(v, merge_key)
        to_delete = [v for v in items if v.get(DIRECTIVE) == "delete"]
        items = [v for v in items if v.get(DIRECTIVE) != "delete"]
    out = list(items)

    def less(a: Any, b: Any) -> bool:
        ia = _index(order, a, merge_key)
        if ia >= 0:
            ib = _index(order, b, merge_key)
            if ib >= 0:
                return ia < ib
        return True

    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out + to_delete


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: type | None,
) -> list[Any]:
    """normalizeElementOrder: patch items in patch order, server-only items in live order, then
    interleaved: a server-only item goes first only when the live list puts it before the next
    patch item (so a brand-new element lands before the server-only ones that follow it)."""
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    left = _sort_by(server_only, server_order, merge_key, kind)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key)
            ri = _index(server_order, right[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out
