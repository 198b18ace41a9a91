"""API discovery documents: how kubectl learns which resources exist.

Two formats are served from the same registry. kubectl 1.27+ first asks ``/api`` and
``/apis`` for the *aggregated* document (apidiscovery.k8s.io: v2beta1 for 1.27-1.29, v2
for newer), one round trip for everything; older clients, and the official Python client,
walk the legacy ``APIVersions`` / ``APIGroupList`` / ``APIResourceList`` documents. All
documents are built once and served as pre-serialized bytes.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

from kubelite.api.registry import GROUP_ORDER, RESOURCES, SUBRESOURCES, ResourceType, by_group_version


def _storage_hash(r: ResourceType) -> str:
    return hashlib.sha256(f"{r.group}/{r.version}/{r.kind}".encode()).digest()[:8].hex()


def _groups() -> list[str]:
    seen = []
    for g in GROUP_ORDER:
        if any(r.group == g for r in RESOURCES) and g:
            seen.append(g)
    for r in RESOURCES:
        if r.group and r.group not in seen:
            seen.append(r.group)
    return seen


def _versions_of(group: str) -> list[str]:
    out: list[str] = []
    for r in RESOURCES:
        if r.group == group and r.version not in out:
            out.append(r.version)
    return out


@functools.cache
def api_versions(server_address: str) -> bytes:
    return orjson.dumps(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    )


def _group_doc(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in _versions_of(group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


@functools.cache
def api_group_list() -> bytes:
    return orjson.dumps(
        {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_doc(g) for g in _groups()]}
    )


@functools.cache
def api_group(group: str) -> bytes | None:
    if group not in _groups():
        return None
    return orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group)})


@functools.cache
def api_resource_list(group_version: str) -> bytes | None:
    resources = by_group_version().get(group_version)
    if not resources:
        return None
    items: list[dict[str, Any]] = []
    for r in resources:
        item: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            item["shortNames"] = list(r.short_names)
        if r.categories:
            item["categories"] = list(r.categories)
        item["storageVersionHash"] = _storage_hash(r)
        items.append(item)
        for sub in r.subresources:
            spec = SUBRESOURCES[sub]
            g, v, k = spec.kind_for(r)
            entry: dict[str, Any] = {
                "name": f"{r.plural}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k,
                "verbs": list(spec.verbs),
            }
            if spec.kind is not None and g != r.group:
                entry["group"], entry["version"] = g, v
            items.append(entry)
    return orjson.dumps(
        {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": items}
    )


def _aggregated_resource(r: ResourceType) -> dict[str, Any]:
    d: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        d["shortNames"] = list(r.short_names)
    if r.categories:
        d["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        spec = SUBRESOURCES[sub]
        g, v, k = spec.kind_for(r)
        entry: dict[str, Any] = {"subresource": sub, "verbs": list(spec.verbs)}
        if k:
            entry["responseKind"] = {"group": g, "version": v, "kind": k}
        subs.append(entry)
    if subs:
        d["subresources"] = subs
    return d


@functools.cache
def aggregated(legacy_core: bool, version: str) -> bytes:
    """The APIGroupDiscoveryList for ``/api`` (legacy_core) or ``/apis``, in v2 or v2beta1."""
    groups = [""] if legacy_core else _groups()
    items = []
    for g in groups:
        versions = []
        for v in _versions_of(g):
            rs = [_aggregated_resource(r) for r in RESOURCES if r.group == g and r.version == v]
            versions.append({"version": v, "resources": rs, "freshness": "Current"})
        meta: dict[str, Any] = {"creationTimestamp": None}
        if g:
            meta["name"] = g
        items.append({"metadata": meta, "versions": versions})
    return orjson.dumps(
        {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {},
            "items": items,
        }
    )


def aggregated_version_wanted(accept: str) -> str | None:
    """Which aggregated discovery version the Accept header asks for first, if any."""
    for part in accept.split(","):
        params = {}
        for p in part.split(";")[1:]:
            k, _, v = p.strip().partition("=")
            params[k] = v
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in ("v2", "v2beta1"):
                return params["v"]
    return None
