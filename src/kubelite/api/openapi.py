"""The OpenAPI v3 documents kube-apiserver publishes under ``/openapi/v3``, built from the registry.

kubectl reads them for two things that matter to users: ``kubectl explain`` (the kind's
schema, found by its ``x-kubernetes-group-version-kind``) and the decision whether the server
validates fields itself: kubectl sends ``?fieldValidation=Strict`` only when the PATCH
operation of the kind lists a ``fieldValidation`` parameter; otherwise it falls back to
validating on the client against ``/openapi/v2``, which kubelite does not serve. So every
write operation here carries the same query parameters as kube-apiserver's.

Each document is built once, serialized once with sorted keys (its hash must not change
between calls) and kept as bytes; the hash is the uppercase SHA-512 hex of those bytes, as
kube-openapi computes it, and also serves as the ETag.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

from kubelite.api import schema
from kubelite.api.registry import GROUP_ORDER, RESOURCES, SUBRESOURCES, ResourceType

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PATCH_SCHEMA = _META + "Patch"
# Not a served kind, so not in the schema data, but every PATCH request body names it.
_EXTRA_SCHEMAS: dict[str, Any] = {
    _PATCH_SCHEMA: {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        "type": "object",
    },
}
# What the API server answers in; the OpenAPI documents only describe, clients do not negotiate from them.
_MEDIA = ("application/json", "application/yaml")
_WATCH_MEDIA = ("application/json", "application/json;stream=watch", "application/yaml")
_PATCH_MEDIA = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _query(name: str, type_: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "in": "query",
        "name": name,
        "schema": {"type": type_, "uniqueItems": True},
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "in": "path",
        "name": name,
        "required": True,
        "schema": {"type": "string", "uniqueItems": True},
    }


_PRETTY = _query("pretty", "string", "If 'true', then the output is pretty printed.")
_NAMESPACE = _path_param("namespace", "object name and auth scope, such as for teams and projects")
_DRY_RUN = _query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun "
    "directive will result in an error response and no further processing of the request. Valid values are: "
    "- All: all dry run stages will be processed",
)
_FIELD_MANAGER = _query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must "
    "be less than or 128 characters long, and only contain printable characters, as defined by "
    "https://golang.org/pkg/unicode/#IsPrint.",
)
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are "
    "silently dropped from the object, and will ignore all but the last duplicate field that the decoder "
    "encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the "
    "standard warning response header for each unknown field that is dropped from the object, and for each "
    "duplicate field that is encountered. The request will still succeed if there are no other errors, and "
    "will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will "
    "fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if "
    "any duplicate fields are present. The error returned from the server will contain all unknown and "
    "duplicate fields encountered.",
)
_FORCE = _query(
    "force",
    "boolean",
    'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields owned by other '
    "people. Force flag must be unset for non-apply patch requests.",
)
_WRITE_PARAMS = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
_PATCH_PARAMS = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE]
_DELETE_PARAMS = [
    _DRY_RUN,
    _query(
        "gracePeriodSeconds",
        "integer",
        "The duration in seconds before the object should be deleted. Value must be non-negative integer. The "
        "value zero indicates delete immediately. If this value is nil, the default grace period for the "
        "specified type will be used. Defaults to a per object value if not specified. zero means delete "
        "immediately.",
    ),
    _query(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow "
        "fails with a corrupt object error.",
    ),
    _query(
        "orphanDependents",
        "boolean",
        "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the "
        "dependent objects be orphaned.",
    ),
    _query(
        "propagationPolicy",
        "string",
        "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan' - orphan the "
        "dependents; 'Background' - allow the garbage collector to delete the dependents in the background; "
        "'Foreground' - a cascading policy that deletes all dependents in the foreground.",
    ),
]
_LIST_PARAMS = [
    _query(
        "allowWatchBookmarks", "boolean", 'allowWatchBookmarks requests watch events with type "BOOKMARK".'
    ),
    _query(
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server.",
    ),
    _query(
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    _query(
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    _query("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    _query(
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    _query(
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    _query("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    _query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    _query(
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove "
        "notifications. Specify resourceVersion.",
    ),
]
_LOG_PARAMS = [
    _query(
        "container",
        "string",
        "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
    ),
    _query("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
    _query(
        "insecureSkipTLSVerifyBackend",
        "boolean",
        "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.",
    ),
    _query(
        "limitBytes",
        "integer",
        "If set, the number of bytes to read from the server before terminating the log output.",
    ),
    _query("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
    _query(
        "sinceSeconds",
        "integer",
        "A relative time in seconds before the current time from which to show logs.",
    ),
    _query(
        "stream",
        "string",
        'Specify which container log stream to return to the client. Acceptable values are "All", "Stdout" and "Stderr".',
    ),
    _query("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
    _query(
        "timestamps",
        "boolean",
        "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
    ),
]
_STREAM_PARAMS = {
    "exec": [
        _query(
            "command",
            "string",
            "Command is the remote command to execute. argv array. Not executed within a shell.",
        ),
        _query(
            "container",
            "string",
            "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
        ),
        _query("stderr", "boolean", "Redirect the standard error stream of the pod for this call."),
        _query(
            "stdin",
            "boolean",
            "Redirect the standard input stream of the pod for this call. Defaults to false.",
        ),
        _query("stdout", "boolean", "Redirect the standard output stream of the pod for this call."),
        _query(
            "tty",
            "boolean",
            "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
        ),
    ],
    "attach": [
        _query(
            "container",
            "string",
            "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
        ),
        _query(
            "stderr",
            "boolean",
            "Stderr if true indicates that stderr is to be redirected for the attach call. Defaults to true.",
        ),
        _query(
            "stdin",
            "boolean",
            "Stdin if true, redirects the standard input stream of the pod for this call. Defaults to false.",
        ),
        _query(
            "stdout",
            "boolean",
            "Stdout if true indicates that stdout is to be redirected for the attach call. Defaults to true.",
        ),
        _query(
            "tty",
            "boolean",
            "TTY if true indicates that a tty will be allocated for the attach call. Defaults to false.",
        ),
    ],
    "portforward": [_query("ports", "integer", "List of ports to forward Required when using WebSockets")],
    # The description names the parent ("pod", "service", "node"): filled in per resource.
    "proxy": [_query("path", "string", "Path is the URL path to use for the current proxy request to {parent}.")],
}
def _ref(name: str) -> dict[str, str]:
    return {"$ref": schema.REF_PREFIX + name}


def _content(schema_name: str | None, media: tuple[str, ...] = _MEDIA) -> dict[str, Any]:
    body = _ref(schema_name) if schema_name else {"type": "string"}
    return {m: {"schema": body} for m in media}


def _responses(schema_name: str | None, *codes: str, media: tuple[str, ...] = _MEDIA) -> dict[str, Any]:
    words = {"200": "OK", "201": "Created", "202": "Accepted"}
    return {code: {"content": _content(schema_name, media), "description": words[code]} for code in codes}


def _camel(s: str) -> str:
    return s[:1].upper() + s[1:]


def _group_label(group: str) -> str:
    """``CoordinationV1``'s first half: kube-openapi's operation id spelling of a group."""
    if not group:
        return "Core"
    return "".join(_camel(part) for part in group.removesuffix(".k8s.io").split("."))


def _tag(group: str, version: str) -> str:
    label = _group_label(group)
    return f"{label[:1].lower()}{label[1:]}_{version}"


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


class _Builder:
    """Paths of one group-version, in kube-apiserver's shapes."""

    def __init__(self, group: str, version: str) -> None:
        self.group = group
        self.version = version
        self.prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        self.label = _group_label(group) + _camel(version)
        self.tag = _tag(group, version)
        self.paths: dict[str, dict[str, Any]] = {}

    def op(
        self,
        path: str,
        method: str,
        verb: str,
        noun: str,
        action: str | None,
        gvk: dict[str, str] | None,
        description: str,
        responses: dict[str, Any],
        parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        operation: dict[str, Any] = {
            "description": description,
            "operationId": f"{verb}{self.label}{noun}",
            "responses": responses,
            "tags": [self.tag],
        }
        if action:
            operation["x-kubernetes-action"] = action
        if gvk:
            operation["x-kubernetes-group-version-kind"] = gvk
        if parameters:
            operation["parameters"] = parameters
        if body:
            operation["requestBody"] = body
        self.paths.setdefault(path, {})[method] = operation

    def path_params(self, path: str, params: list[dict[str, Any]]) -> None:
        self.paths.setdefault(path, {})["parameters"] = params

    def resource(self, r: ResourceType) -> None:
        kind_schema = schema.definition_name(r.group, r.version, r.kind)
        list_schema = schema.definition_name(r.group, r.version, r.list_kind)
        # The review kinds (SelfSubjectAccessReview & co) are create-only and have no list kind.
        if kind_schema is None or (list_schema is None and set(r.verbs) != {"create"}):
            raise LookupError(f"no OpenAPI schema for {r.api_version} {r.kind}")
        gvk = _gvk(r.group, r.version, r.kind)
        ns = "Namespaced" if r.namespaced else ""
        scope = f"/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"/{r.plural}"
        collection = self.prefix + scope
        item = collection + "/{name}"
        scope_params = [_NAMESPACE] if r.namespaced else []
        name_param = _path_param("name", f"name of the {r.kind}")
        verbs = set(r.verbs)
        write_body = {"content": {"*/*": {"schema": _ref(kind_schema)}}, "required": True}
        delete_body = {"content": {"*/*": {"schema": _ref(_META + "DeleteOptions")}}}
        patch_body = {"content": {m: {"schema": _ref(_PATCH_SCHEMA)} for m in _PATCH_MEDIA}, "required": True}
        watch_responses = _responses(_META + "WatchEvent", "200", media=_WATCH_MEDIA)

        self.path_params(collection, [*scope_params, _PRETTY])
        if "list" in verbs and list_schema is not None:
            self.op(
                collection,
                "get",
                "list",
                ns + r.kind,
                "list",
                gvk,
                f"list or watch objects of kind {r.kind}",
                _responses(list_schema, "200", media=_WATCH_MEDIA),
                _LIST_PARAMS,
            )
        if "create" in verbs:
            self.op(
                collection,
                "post",
                "create",
                ns + r.kind,
                "post",
                gvk,
                f"create a {r.kind}",
                _responses(kind_schema, "200", "201", "202"),
                _WRITE_PARAMS,
                write_body,
            )
        if "deletecollection" in verbs:
            self.op(
                collection,
                "delete",
                "delete",
                "Collection" + ns + r.kind,
                "deletecollection",
                gvk,
                f"delete collection of {r.kind}",
                _responses(_META + "Status", "200"),
                _DELETE_PARAMS + _LIST_PARAMS,
                delete_body,
            )

        if verbs == {"create"}:
            return  # no item path: a review is never read back
        self.path_params(item, [name_param, *scope_params, _PRETTY])
        if "get" in verbs:
            self.op(
                item,
                "get",
                "read",
                ns + r.kind,
                "get",
                gvk,
                f"read the specified {r.kind}",
                _responses(kind_schema, "200"),
            )
        if "update" in verbs:
            self.op(
                item,
                "put",
                "replace",
                ns + r.kind,
                "put",
                gvk,
                f"replace the specified {r.kind}",
                _responses(kind_schema, "200", "201"),
                _WRITE_PARAMS,
                write_body,
            )
        if "patch" in verbs:
            self.op(
                item,
                "patch",
                "patch",
                ns + r.kind,
                "patch",
                gvk,
                f"partially update the specified {r.kind}",
                _responses(kind_schema, "200", "201"),
                _PATCH_PARAMS,
                patch_body,
            )
        if "delete" in verbs:
            self.op(
                item,
                "delete",
                "delete",
                ns + r.kind,
                "delete",
                gvk,
                f"delete a {r.kind}",
                _responses(kind_schema, "200", "202"),
                _DELETE_PARAMS,
                delete_body,
            )

        if "watch" in verbs:
            watch_collection = self.prefix + "/watch" + scope
            self.path_params(watch_collection, [*_LIST_PARAMS, *scope_params, _PRETTY])
            self.op(
                watch_collection,
                "get",
                "watch",
                ns + r.kind + "List",
                "watchlist",
                gvk,
                f"watch individual changes to a list of {r.kind}. deprecated: use the 'watch' parameter "
                "with a list operation instead.",
                watch_responses,
            )
            self.path_params(
                watch_collection + "/{name}", [*_LIST_PARAMS, name_param, *scope_params, _PRETTY]
            )
            self.op(
                watch_collection + "/{name}",
                "get",
                "watch",
                ns + r.kind,
                "watch",
                gvk,
                f"watch changes to an object of kind {r.kind}. deprecated: use the 'watch' parameter with a "
                "list operation instead, filtered to a single item with the 'fieldSelector' parameter.",
                watch_responses,
            )
        if r.namespaced and "list" in verbs:
            everywhere = f"{self.prefix}/{r.plural}"
            self.path_params(everywhere, [*_LIST_PARAMS, _PRETTY])
            self.op(
                everywhere,
                "get",
                "list",
                r.kind + "ForAllNamespaces",
                "list",
                gvk,
                f"list or watch objects of kind {r.kind}",
                _responses(list_schema, "200", media=_WATCH_MEDIA),
            )
            if "watch" in verbs:
                watch_all = f"{self.prefix}/watch/{r.plural}"
                self.path_params(watch_all, [*_LIST_PARAMS, _PRETTY])
                self.op(
                    watch_all,
                    "get",
                    "watch",
                    r.kind + "ListForAllNamespaces",
                    "watchlist",
                    gvk,
                    f"watch individual changes to a list of {r.kind}. deprecated: use the 'watch' "
                    "parameter with a list operation instead.",
                    watch_responses,
                )

        for sub in r.subresources:
            self.subresource(r, sub, item, ns, scope_params, kind_schema)

    def subresource(
        self,
        r: ResourceType,
        sub: str,
        item: str,
        ns: str,
        scope_params: list[dict[str, Any]],
        kind_schema: str,
    ) -> None:
        path = f"{item}/{sub}"
        noun = ns + r.kind + _camel(sub)
        spec = SUBRESOURCES[sub]
        if spec.kind is not None and spec.kind[2] and not spec.connect:
            group, version, kind = spec.kind
            target = schema.definition_name(group, version, kind)
            if target is None:
                raise LookupError(f"no OpenAPI schema for {group}/{version} {kind}")
            gvk = _gvk(group, version, kind)
        else:
            kind, target, gvk = r.kind, kind_schema, _gvk(r.group, r.version, r.kind)
        self.path_params(path, [_path_param("name", f"name of the {kind}"), *scope_params, _PRETTY])
        write_body = {"content": {"*/*": {"schema": _ref(target)}}, "required": True}
        patch_body = {"content": {m: {"schema": _ref(_PATCH_SCHEMA)} for m in _PATCH_MEDIA}, "required": True}
        verbs = set(spec.verbs)
        if spec.connect:
            self.connect_subresource(r, sub, path, noun, scope_params)
        elif verbs == {"get", "patch", "update"}:
            self.op(
                path,
                "get",
                "read",
                noun,
                "get",
                gvk,
                f"read {sub} of the specified {r.kind}",
                _responses(target, "200"),
            )
            self.op(
                path,
                "put",
                "replace",
                noun,
                "put",
                gvk,
                f"replace {sub} of the specified {r.kind}",
                _responses(target, "200", "201"),
                _WRITE_PARAMS,
                write_body,
            )
            self.op(
                path,
                "patch",
                "patch",
                noun,
                "patch",
                gvk,
                f"partially update {sub} of the specified {r.kind}",
                _responses(target, "200", "201"),
                _PATCH_PARAMS,
                patch_body,
            )
        elif verbs == {"update"}:
            self.op(
                path,
                "put",
                "replace",
                noun,
                "put",
                gvk,
                f"replace finalize of the specified {r.kind}",
                _responses(target, "200", "201"),
                _WRITE_PARAMS,
                write_body,
            )
        elif verbs == {"create"}:
            self.op(
                path,
                "post",
                "create",
                noun,
                "post",
                gvk,
                f"create {sub} of a {r.kind}",
                _responses(target, "200", "201", "202"),
                _WRITE_PARAMS,
                write_body,
            )
        elif verbs == {"get"} and spec.kind == ("", "", ""):
            self.op(
                path,
                "get",
                "read",
                noun,
                "get",
                gvk,
                f"read log of the specified {r.kind}",
                _responses(None, "200", media=("application/json", "application/yaml", "text/plain")),
                _LOG_PARAMS,
            )
        else:
            raise LookupError(f"no OpenAPI shape for subresource {r.plural}/{sub}")

    def connect_subresource(
        self, r: ResourceType, sub: str, path: str, noun: str, scope_params: list[dict[str, Any]]
    ) -> None:
        """exec, attach, portforward: connect operations, one per HTTP method the stream accepts."""
        spec = SUBRESOURCES[sub]
        options = spec.options_kind or r.kind + "ProxyOptions"
        options_gvk = _gvk(r.group, r.version, options)
        params = [{**p, "description": p["description"].format(parent=r.singular)} for p in _STREAM_PARAMS[sub]]
        plain = _responses(None, "200", media=("*/*",))
        self.paths[path] = {"parameters": [_path_param("name", f"name of the {options}"), *scope_params]}
        for method in spec.connect:
            self.op(
                path,
                method,
                "connect",
                _camel(method) + noun,
                "connect",
                options_gvk,
                f"connect {method.upper()} requests to {sub} of {r.kind}",
                plain,
                params,
            )
        if sub == "proxy":  # and .../proxy/{path}: the backend's path in the URL
            with_path = path + "/{path}"
            self.paths[with_path] = {"parameters": [
                _path_param("name", f"name of the {options}"), *scope_params,
                _path_param("path", "path to the resource"),
            ]}
            for method in spec.connect:
                self.op(
                    with_path,
                    method,
                    "connect",
                    _camel(method) + noun + "WithPath",
                    "connect",
                    options_gvk,
                    f"connect {method.upper()} requests to {sub} of {r.kind}",
                    plain,
                    params,
                )

    def discovery_path(self) -> None:
        self.op(
            self.prefix + "/",
            "get",
            "get",
            "APIResources",
            None,
            None,
            "get available resources",
            _responses(_META + "APIResourceList", "200"),
        )


def _closure(roots: set[str]) -> dict[str, Any]:
    """The schemas reachable from ``roots``: a document must resolve every $ref it contains."""
    defs = schema.definitions()
    out: dict[str, Any] = {}
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        node = _EXTRA_SCHEMAS.get(name) or defs[name]
        out[name] = node
        todo.extend(n for n in _refs(node) if n not in out)
    return out


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            ref = n.get("$ref")
            if isinstance(ref, str):
                found.add(ref[len(schema.REF_PREFIX) :])
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return found


def _document(paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "components": {"schemas": _closure(_refs(paths))},
        "info": {"title": "Kubernetes", "version": "v" + schema.kubernetes_version()},
        "openapi": "3.0.0",
        "paths": paths,
    }


def _root_document(path: str, operation_id: str, tag: str, response: str) -> dict[str, Any]:
    op = {
        "description": "get available API versions"
        if path in ("/api/", "/apis/")
        else "get information of a group",
        "operationId": operation_id,
        "responses": _responses(_META + response, "200"),
        "tags": [tag],
    }
    return _document({path: {"get": op}})


def _build() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {
        "api": _root_document("/api/", "getCoreAPIVersions", "core", "APIVersions"),
        "apis": _root_document("/apis/", "getAPIVersions", "apis", "APIGroupList"),
    }
    builders: dict[tuple[str, str], _Builder] = {}
    for r in RESOURCES:
        b = builders.get((r.group, r.version))
        if b is None:
            b = builders[(r.group, r.version)] = _Builder(r.group, r.version)
            b.discovery_path()
        b.resource(r)
    for (group, version), b in sorted(builders.items(), key=lambda kv: GROUP_ORDER.index(kv[0][0])):
        key = f"apis/{group}/{version}" if group else f"api/{version}"
        docs[key] = _document(b.paths)
        if group:
            label = _group_label(group)
            docs[f"apis/{group}"] = _root_document(
                f"/apis/{group}/", f"get{label}APIGroup", label[:1].lower() + label[1:], "APIGroup"
            )
    return docs


@functools.cache
def _serialized() -> dict[str, tuple[bytes, str]]:
    out: dict[str, tuple[bytes, str]] = {}
    for key, doc in _build().items():
        data = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        out[key] = (data, hashlib.sha512(data).hexdigest().upper())
    return out


def v3_document(path: str) -> tuple[bytes, str] | None:
    """The JSON of ``/openapi/v3/<path>`` (``api/v1``, ``apis/apps/v1``...) and its hash, or None."""
    return _serialized().get(path)


@functools.cache
def v3_index() -> dict[str, Any]:
    """The body of ``GET /openapi/v3``: each document's URL, pinned by its content hash."""
    return {
        "paths": {
            key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
            for key, (_, digest) in sorted(_serialized().items())
        }
    }
