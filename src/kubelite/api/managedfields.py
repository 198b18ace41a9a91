"""Field ownership: ``metadata.managedFields``, as kube-apiserver's field manager keeps it.

Every write records which manager set which fields, so that server-side apply can tell a
conflict from a harmless re-apply and ``kubectl get -o yaml --show-managed-fields`` shows what a
real cluster shows. Kubernetes does this with structured-merge-diff over typed values; here a
field set is a plain ``set`` of paths, each path a tuple of serialized path elements exactly as
they appear in ``fieldsV1`` (``f:spec``, ``k:{"name":"nginx"}``, ``v:"a-finalizer"``), so the
trie encoding is a direct fold and set algebra is Python's own.

Trade-off: Go compares against a typed zero object, in which value-type structs (``spec``,
``template``...) and a few non-``omitempty`` lists (``containers``) always exist; a dict does not
say which fields those are, so :data:`ALWAYS_PRESENT` lists them by name. Getting it wrong only
changes whether such a field carries its own ``.`` marker in an Update entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api.schema import deref

Path = tuple[str, ...]
FieldSet = set[Path]

# Fields a Go object always has even when unset: value-type structs (serialized as {}) and lists
# without omitempty (serialized as null). Only consulted where the schema declares the field.
ALWAYS_PRESENT = frozenset(
    {
        "metadata",
        "spec",
        "status",
        "template",
        "strategy",
        "resources",
        "containers",
        "loadBalancer",
        "daemonEndpoints",
        "kubeletEndpoint",
        "nodeInfo",
        "involvedObject",
        "source",
        "regarding",
        "deprecatedSource",
    }
)

# Paths the field manager never records (stripMetaManager).
STRIPPED: frozenset[Path] = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        ("f:metadata", "f:name"),
        ("f:metadata", "f:namespace"),
        ("f:metadata", "f:creationTimestamp"),
        ("f:metadata", "f:selfLink"),
        ("f:metadata", "f:uid"),
        ("f:metadata", "f:clusterName"),
        ("f:metadata", "f:generation"),
        ("f:metadata", "f:managedFields"),
        ("f:metadata", "f:resourceVersion"),
    }
)

# List-map key fields whose schema default fills an element that omits them. Kubernetes'
# published OpenAPI v3 carries these defaults; our schema data (from swagger 2) lacks them.
KEY_DEFAULTS = {"protocol": "TCP"}

MAX_UPDATE_MANAGERS = 10
OLD_UPDATES_MANAGER = "ancient-changes"
_ABSENT: Any = object()


# --- the schema as structured-merge-diff sees it -----------------------------------------


@dataclass(frozen=True)
class Shape:
    """How a schema node merges: atomic or granular; for lists, set or map (with key fields)."""

    atomic: bool
    list_type: str  # "atomic" | "set" | "map" ("" for non-lists)
    keys: tuple[str, ...]
    props: dict[str, Any]
    extra: dict[str, Any] | None
    items: dict[str, Any] | None


_UNTYPED = Shape(atomic=False, list_type="atomic", keys=(), props={}, extra=None, items=None)
_shapes: dict[int, tuple[dict[str, Any], Shape]] = {}


def shape(node: dict[str, Any] | None) -> Shape:
    """The merge shape of a schema node (cached; the node is kept alive so its id stays unique)."""
    if node is None:
        return _UNTYPED
    hit = _shapes.get(id(node))
    if hit is not None:
        return hit[1]
    target = deref(node)

    def ext(name: str) -> Any:
        return node[name] if name in node else target.get(name)

    items = target.get("items") if isinstance(target.get("items"), dict) else None
    extra = target.get("additionalProperties")
    list_type = ""
    keys: tuple[str, ...] = ()
    if target.get("type") == "array" or items is not None:
        list_type = ext("x-kubernetes-list-type") or ""
        if list_type == "map":
            keys = tuple(ext("x-kubernetes-list-map-keys") or ())
        elif not list_type:
            strategy = ext("x-kubernetes-patch-strategy") or ""
            merge_key = ext("x-kubernetes-patch-merge-key") or ""
            if "merge" in strategy.split(","):
                list_type, keys = ("map", (merge_key,)) if merge_key else ("set", ())
            else:
                list_type = "atomic"
        atomic = list_type == "atomic"
    else:
        atomic = ext("x-kubernetes-map-type") == "atomic"
    result = Shape(
        atomic=atomic,
        list_type=list_type,
        keys=keys,
        props=target.get("properties") or {},
        extra=extra if isinstance(extra, dict) else None,
        items=items,
    )
    _shapes[id(node)] = (node, result)
    return result


def child_schema(sh: Shape, key: str) -> dict[str, Any] | None:
    child = sh.props.get(key)
    return child if child is not None else sh.extra


def _compact(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def item_element(item: Any, sh: Shape, index: int) -> str:
    """The path element of a list item: ``k:{...}`` by its key fields, ``v:...`` by value."""
    if sh.list_type == "map" and isinstance(item, dict):
        key: dict[str, Any] = {}
        for k in sorted(sh.keys):
            if k in item:
                key[k] = item[k]
            elif k in KEY_DEFAULTS:
                key[k] = KEY_DEFAULTS[k]
            else:
                return f"i:{index}"
        return "k:" + _compact(key)
    if sh.list_type == "set":
        return "v:" + _compact(item)
    return f"i:{index}"


# --- field sets ---------------------------------------------------------------------------


def fields_of(obj: dict[str, Any], schema: dict[str, Any] | None) -> FieldSet:
    """The fields an object (an applied configuration) sets, as ToFieldSet computes them:
    leaves, atomic values, list items, free-form map keys, empty maps and nulls; a struct field
    is implied by its children rather than recorded itself."""
    out: FieldSet = set()
    _collect(obj, schema, (), out)
    return out


def _collect(v: Any, node: dict[str, Any] | None, path: Path, out: FieldSet) -> None:
    sh = shape(node)
    if isinstance(v, dict):
        if sh.atomic:
            out.add(path)
            return
        for k, x in v.items():
            p = (*path, "f:" + k)
            _collect(x, child_schema(sh, k), p, out)
            if x is None or (isinstance(x, dict) and not x) or k not in sh.props:
                out.add(p)
    elif isinstance(v, list):
        if sh.list_type == "atomic":
            out.add(path)
            return
        for i, item in enumerate(v):
            p = (*path, item_element(item, sh, i))
            _collect(item, sh.items, p, out)
            out.add(p)
    else:
        out.add(path)


def recursive_difference(s: FieldSet, remove: Iterable[Path]) -> FieldSet:
    """``s`` without the paths in ``remove`` and everything under them."""
    prefixes = set(remove)
    if not prefixes:
        return set(s)
    return {p for p in s if not any(p[:n] in prefixes for n in range(1, len(p) + 1))}


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): ``.spec.ports[port=80,protocol="TCP"].targetPort``."""
    out = []
    for pe in path:
        kind, body = pe[:2], pe[2:]
        if kind == "f:":
            out.append("." + body)
        elif kind == "k:":
            fields = json.loads(body)
            out.append("[" + ",".join(f"{k}={_value_string(v)}" for k, v in fields.items()) + "]")
        elif kind == "v:":
            out.append(f"[={_value_string(json.loads(body))}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


def _value_string(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return _compact(v)


# --- fieldsV1 -----------------------------------------------------------------------------


def _value_rank(v: Any) -> tuple[int, Any]:
    """structured-merge-diff's total order of values: numbers, strings, bools, lists, maps, null."""
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, _compact(v))
    if isinstance(v, dict):
        return (4, _compact(v))
    return (5, 0)


def _element_order(pe: str) -> tuple[Any, ...]:
    kind, body = pe[:2], pe[2:]
    if kind == "f:":
        return (0, body)
    if kind == "k:":
        return (1, tuple((k, _value_rank(v)) for k, v in json.loads(body).items()))
    if kind == "v:":
        return (2, _value_rank(json.loads(body)))
    return (3, int(body) if body.isdigit() else 0)


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Encode a field set as the fieldsV1 trie (``.`` marks a member that also has children),
    children in the order structured-merge-diff serializes them."""
    root: dict[str, Any] = {}
    members: set[Path] = set()
    for p in paths:
        if not p:
            continue
        members.add(p)
        node = root
        for pe in p:
            node = node.setdefault(pe, {})
    return _ordered(root, (), members)


def _ordered(node: dict[str, Any], path: Path, members: set[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if path and node and path in members:
        out["."] = {}
    for pe in sorted(node, key=_element_order):
        out[pe] = _ordered(node[pe], (*path, pe), members)
    return out


def from_fields_v1(trie: dict[str, Any]) -> FieldSet:
    """Decode a fieldsV1 trie into a field set."""
    out: FieldSet = set()
    _unfold(trie, (), out)
    return out


def _unfold(node: dict[str, Any], path: Path, out: FieldSet) -> None:
    if not isinstance(node, dict):
        raise ValueError("fieldsV1 nodes must be objects")
    if path and (not node or "." in node):
        out.add(path)
    for pe, child in node.items():
        if pe != ".":
            _unfold(child, (*path, pe), out)


# --- comparing two objects ----------------------------------------------------------------


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def without(self, ignored: Iterable[Path]) -> Comparison:
        ig = list(ignored)
        return Comparison(
            recursive_difference(self.added, ig),
            recursive_difference(self.modified, ig),
            recursive_difference(self.removed, ig),
        )


def compare(lhs: dict[str, Any] | None, rhs: dict[str, Any], schema: dict[str, Any] | None) -> Comparison:
    """What changed from ``lhs`` to ``rhs`` (typed.Compare): every path added, modified or removed,
    new maps and list items themselves included. ``lhs=None`` compares with an empty object."""
    res = Comparison()
    _cmp({} if lhs is None else lhs, rhs, schema, (), res)
    return res


def _cmp(lv: Any, rv: Any, node: dict[str, Any] | None, path: Path, res: Comparison) -> None:
    sh = shape(node)
    if (isinstance(lv, dict) and isinstance(rv, dict)) or _one_side(lv, rv, dict):
        lm = lv if isinstance(lv, dict) else {}
        rm = rv if isinstance(rv, dict) else {}
        if sh.atomic or (not lm and not rm):
            _leaf(lv, rv, path, res)
        else:
            for k in {**lm, **rm}:
                _cmp_child(lm, rm, k, sh, path, res)
    elif (isinstance(lv, list) and isinstance(rv, list)) or _one_side(lv, rv, list):
        ll = lv if isinstance(lv, list) else []
        rl = rv if isinstance(rv, list) else []
        if sh.list_type == "atomic" or (not ll and not rl):
            _leaf(lv, rv, path, res)
        else:
            left = {item_element(x, sh, i): x for i, x in enumerate(ll)}
            right = {item_element(x, sh, i): x for i, x in enumerate(rl)}
            for pe in {**left, **right}:
                p = (*path, pe)
                a, b = left.get(pe, _ABSENT), right.get(pe, _ABSENT)
                _cmp(a, b, sh.items, p, res)
                _mark(a, b, p, res)
    else:
        if isinstance(lv, (dict, list)) and isinstance(rv, (dict, list)):
            # A map became a list or the reverse: all of the old goes, all of the new comes.
            _cmp(lv, _ABSENT, node, path, res)
            _cmp(_ABSENT, rv, node, path, res)
        _leaf(lv, rv, path, res)


def _one_side(lv: Any, rv: Any, kind: type) -> bool:
    """One side has a value of ``kind`` and the other nothing or null."""
    return (isinstance(lv, kind) and (rv is _ABSENT or rv is None)) or (
        isinstance(rv, kind) and (lv is _ABSENT or lv is None)
    )


def _cmp_child(
    lm: dict[str, Any], rm: dict[str, Any], k: str, sh: Shape, path: Path, res: Comparison
) -> None:
    child = child_schema(sh, k)
    a, b = lm.get(k, _ABSENT), rm.get(k, _ABSENT)
    if k in ALWAYS_PRESENT and k in sh.props:
        filler: Any = {} if shape(child).list_type == "" else None
        a = filler if a is _ABSENT else a
        b = filler if b is _ABSENT else b
    p = (*path, "f:" + k)
    _cmp(a, b, child, p, res)
    _mark(a, b, p, res)


def _mark(a: Any, b: Any, p: Path, res: Comparison) -> None:
    if a is _ABSENT and b is not _ABSENT:
        res.added.add(p)
    elif b is _ABSENT and a is not _ABSENT:
        res.removed.add(p)


def _leaf(lv: Any, rv: Any, path: Path, res: Comparison) -> None:
    if lv is _ABSENT and rv is _ABSENT:
        return
    if lv is _ABSENT:
        res.added.add(path)
    elif rv is _ABSENT:
        res.removed.add(path)
    elif not _equal(lv, rv):
        res.modified.add(path)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


# --- managedFields entries ----------------------------------------------------------------


@dataclass
class Entry:
    """One managedFields entry, decoded."""

    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: FieldSet

    @property
    def ident(self) -> tuple[str, str, str, str]:
        """BuildManagerIdentifier: appliers are one entry whatever apiVersion they used."""
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = to_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def describe(self) -> str:
        """printManager: how a conflict names this manager."""
        s = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            s += f" with subresource {json.dumps(self.subresource, ensure_ascii=False)}"
        if self.operation == "Update":
            return f"{s} using {self.api_version}"
        return s


def decode(managed: Any) -> list[Entry]:
    """Decode ``metadata.managedFields``; raises ValueError on malformed entries."""
    if managed is None:
        return []
    if not isinstance(managed, list):
        raise ValueError("managedFields must be a list")
    out: list[Entry] = []
    for e in managed:
        if not isinstance(e, dict) or e.get("fieldsType") != "FieldsV1":
            raise ValueError(f"only FieldsV1 is supported, got {e!r}")
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            raise ValueError(f"unsupported operation {op!r}")
        out.append(
            Entry(
                manager=str(e.get("manager", "")),
                operation=op,
                api_version=str(e.get("apiVersion", "")),
                subresource=str(e.get("subresource", "")),
                time=e.get("time"),
                fields=from_fields_v1(e.get("fieldsV1") or {}),
            )
        )
    return out


def encode(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Encode entries in Kubernetes' order: appliers first, then oldest first, then by name."""
    live = [e for e in entries if e.fields]
    live.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    return [e.encode() for e in live]


def set_managed_fields(obj: dict[str, Any], entries: Iterable[Entry]) -> None:
    encoded = encode(entries)
    meta = obj.setdefault("metadata", {})
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def _without_managed(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None or "managedFields" not in obj.get("metadata", {}):
        return obj
    out = dict(obj)
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return out


def reset_fields(subresource: str) -> tuple[Path, ...]:
    """Fields a write through this endpoint does not own: the main resource resets status, the
    status subresource resets spec (the strategies' GetResetFields, for the kinds served)."""
    if subresource == "status":
        return (("f:spec",),)
    if subresource:
        return ()
    return (("f:status",),)


# --- Update / Create / Patch --------------------------------------------------------------


def default_manager(user_agent: str) -> str:
    """The manager of a request without ``fieldManager``: the User-Agent up to its first '/'."""
    return user_agent.split("/", 1)[0]


def _is_reset(managed: Any) -> bool:
    return isinstance(managed, list) and len(managed) == 1 and managed[0] == {}


def update_managed_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    now: str,
    schema: dict[str, Any] | None,
    operation: str = "Update",
    subresource: str = "",
) -> None:
    """Record a create (``old=None``), update or non-apply patch in ``new``'s managedFields.

    Call it on the final object (after defaulting and admission), like FieldManager.Update:
    fields that changed (all set fields on create) become ``manager``'s and leave every other
    manager; removed fields leave everyone; the entry's time moves only if it took something.
    Managed fields sent in ``new`` replace the live ones (``[{}]`` clears them); an object
    whose managed fields are empty stays untracked by updates, as in Kubernetes.
    """
    meta = new.setdefault("metadata", {})
    sent = meta.get("managedFields")
    old_managed = (old or {}).get("metadata", {}).get("managedFields")
    entries: list[Entry]
    if subresource:
        entries = _decode_or_empty(old_managed)
    elif _is_reset(sent):
        entries = []
    else:
        try:
            entries = decode(sent)
        except ValueError:
            entries = []
        if not any(e.fields for e in entries):
            entries = _decode_or_empty(old_managed)
    meta.pop("managedFields", None)
    if not entries and old is not None:
        return  # skipNonAppliedManager: nothing tracked yet, and updates do not start it

    ignored = reset_fields(subresource)
    if old is None and not entries:
        created = _created_entry(new, schema, ignored)
        if created is not None:
            if created[0]:
                meta["managedFields"] = [{
                    "manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
                    "fieldsType": "FieldsV1", "fieldsV1": orjson.loads(created[0]),
                    **({"subresource": subresource} if subresource else {}),
                }]
            return
    diff = compare(_without_managed(old), new, schema).without(ignored)
    taken = diff.added | diff.modified
    for e in entries:
        e.fields = (e.fields - taken) - diff.removed
    mine = recursive_difference(taken, ignored) - STRIPPED
    if mine:
        me = Entry(manager, operation, api_version, subresource, now, mine)
        prev = next((e for e in entries if e.ident == me.ident), None)
        if prev is None:
            entries.append(me)
        else:
            prev.fields |= mine
            prev.time = now
            prev.api_version = api_version
    set_managed_fields(new, cap_update_managers([e for e in entries if e.fields]))


# A create's entry depends only on the object's skeleton (see _skeleton): objects made
# from one template (a ReplicaSet's pods, a client's ConfigMaps) share it, so the field
# walk, which is most of a create's cost, runs once per shape. Bounded; cleared when full.
_CREATED_CACHE_SIZE = 1024
_created: dict[tuple[int, tuple[Path, ...], Any], tuple[dict[str, Any] | None, bytes]] = {}


def _skeleton(v: Any) -> Any:
    """What ``compare(None, v)`` reads of ``v``: every map key and the nesting, whether a
    leaf is null (a filler compares with null), and lists whole (their items' path elements
    are made of values)."""
    if isinstance(v, dict):
        return tuple([(k, _skeleton(x)) for k, x in v.items()])
    if isinstance(v, list):
        return orjson.dumps(v)
    return v is None


def _created_entry(
    new: dict[str, Any], schema: dict[str, Any] | None, ignored: tuple[Path, ...]
) -> tuple[bytes] | None:
    """The fieldsV1 (as JSON; empty when nothing is owned) of a create's entry, or None
    when the object cannot be keyed (the slow path then computes it)."""
    try:
        key = (id(schema), ignored, _skeleton(new))
        hash(key)
    except (TypeError, orjson.JSONEncodeError):
        return None
    hit = _created.get(key)
    if hit is None or hit[0] is not schema:  # the schema is kept so that its id stays its own
        diff = compare(None, new, schema)
        mine = recursive_difference(diff.added | diff.modified, ignored) - STRIPPED
        if len(_created) >= _CREATED_CACHE_SIZE:
            _created.clear()
        hit = _created[key] = (schema, orjson.dumps(to_fields_v1(mine)) if mine else b"")
    return (hit[1],)


def _decode_or_empty(managed: Any) -> list[Entry]:
    try:
        return decode(managed)
    except ValueError:
        return []


def cap_update_managers(entries: list[Entry], limit: int = MAX_UPDATE_MANAGERS) -> list[Entry]:
    """Fold the oldest Update entries into per-version ``ancient-changes`` entries beyond ``limit``."""
    updaters = sorted(
        (e for e in entries if e.operation == "Update"), key=lambda e: (e.time or "", e.manager)
    )
    count = len(updaters)
    if count <= limit:
        return entries
    first_by_version: dict[str, Entry] = {}
    buckets: dict[str, Entry] = {}
    dropped: list[int] = []
    for e in updaters:
        if count <= limit:
            break
        first = first_by_version.get(e.api_version)
        if first is None:
            first_by_version[e.api_version] = e
            continue
        bucket = buckets.get(e.api_version)
        if bucket is None:
            bucket = first
            bucket.manager, bucket.subresource = OLD_UPDATES_MANAGER, ""
            buckets[e.api_version] = bucket
        bucket.fields |= e.fields
        bucket.time = e.time
        dropped.append(id(e))
        count -= 1
    return [e for e in entries if id(e) not in dropped]


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Paths in structured-merge-diff's iteration order: at each level the paths ending there
    first, then the deeper ones, each group sorted."""
    return iter(sorted(paths, key=lambda p: [(i + 1 < len(p), _element_order(pe)) for i, pe in enumerate(p)]))
