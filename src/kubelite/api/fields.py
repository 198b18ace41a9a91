"""Field selectors: the ``?fieldSelector=`` syntax and the fields each kind lets you select on.

Unlike labels, fields are not free-form: kube-apiserver lets a client select on a short,
per-kind list (``spec.nodeName`` for pods, ``involvedObject.name`` for events...) and
rejects any other label with a 400 before touching storage. That list comes from two places
in Kubernetes that do not always agree: the per-version *field label conversion* that
accepts or rejects a label (``pkg/apis/*/v1/conversion.go``), and the registry's
``ToSelectableFields`` that computes values. The conversion decides what a client may ask
for, so it is what :meth:`FieldSelector.validate_for` follows; a ReplicaSet's
``status.replicas`` for instance is computed by the registry but refused by the conversion,
and refused here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.api.errors import go_value
from kubelite.api.labels import SelectorError

EQUALS = "="
NOT_EQUALS = "!="


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # EQUALS ("=" and "==" alike) or NOT_EQUALS
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        # A field the object does not have reads as the empty string.
        equal = fields.get(self.field, "") == self.value
        return equal if self.operator == EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """An AND of ``field=value`` / ``field!=value`` terms, in the order Kubernetes sorts them."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def requires_exact_match(self, field: str) -> str | None:
        for r in self.requirements:
            if r.field == field and r.operator == EQUALS:
                return r.value
        return None

    def validate_for(self, group: str, kind: str) -> FieldSelector:
        """Check every label is selectable on the kind and return the selector in internal names.

        Raises :class:`SelectorError` with kube-apiserver's text (``field label not supported:
        spec.foo``), to be answered as 400 BadRequest. Old and group-specific spellings are
        translated (a Pod's ``spec.host``, events.k8s.io's ``regarding.name``), so the result
        matches :func:`object_fields`.
        """
        accepted = _FIELD_LABELS.get((group, kind))
        converted = []
        for r in self.requirements:
            if accepted is None:
                if r.field not in ("metadata.name", "metadata.namespace"):
                    raise SelectorError(
                        f'{go_value(r.field)} is not a known field selector: only "metadata.name", "metadata.namespace"'
                    )
                field = r.field
            elif r.field in accepted:
                field = accepted[r.field]
            else:
                raise SelectorError(f"field label not supported: {r.field}")
            converted.append(FieldRequirement(field, r.operator, r.value))
        return FieldSelector(tuple(converted))

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_value(value: str) -> str:
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            # Go prints the rune with %v, that is as its code point number.
            raise SelectorError(f"invalid field selector: unescapedRune character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    """Split on commas, except backslash-escaped ones (kept with their backslash)."""
    terms: list[str] = []
    start, in_slash = 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def parse_field_selector(text: str) -> FieldSelector:
    """fields.ParseSelector: ``a=b``, ``a==b``, ``a!=b``, comma-separated; ``""`` selects everything."""
    requirements = []
    for term in sorted(_split_terms(text)) if text else []:
        if not term:
            continue
        # The first operator found splits the term; the left side has no escaping.
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op is not None:
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, value = term[:i], _unescape_value(term[i + len(op):])
        if field or value:  # Kubernetes drops a bare "=" term
            requirements.append(FieldRequirement(field, NOT_EQUALS if op == NOT_EQUALS else EQUALS, value))
    return FieldSelector(tuple(requirements))


def _identity(*labels: str) -> dict[str, str]:
    return {label: label for label in labels}


_META = ("metadata.name", "metadata.namespace")
_EVENT_FIELDS = (
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
    "reason", "reportingComponent", "source", "type",
)

# Kinds with their own field label conversion: label a client may send -> internal label.
# Every other kind accepts metadata.name and metadata.namespace only.
_FIELD_LABELS: dict[tuple[str, str], dict[str, str]] = {
    ("", "Pod"): {
        **_identity(*_META, "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                    "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
                    "status.nominatedNodeName"),
        "spec.host": "spec.nodeName",  # what pre-1.0 clients send
    },
    ("", "Node"): _identity("metadata.name", "spec.unschedulable"),
    ("", "Namespace"): _identity("metadata.name", "status.phase"),
    ("", "Secret"): _identity(*_META, "type"),
    ("", "Service"): _identity(*_META, "spec.clusterIP", "spec.type"),
    ("", "Event"): _identity(*_META, *_EVENT_FIELDS),
    ("certificates.k8s.io", "CertificateSigningRequest"): _identity("metadata.name", "spec.signerName"),
    ("events.k8s.io", "Event"): {
        **_identity(*_META, "reason", "type"),
        **{f"regarding.{f}": f"involvedObject.{f}"
           for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reportingController": "reportingComponent",
    },
}


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _event_fields(event: Mapping[str, Any], events_api: bool) -> dict[str, str]:
    # events.k8s.io/v1 renames the core/v1 fields; both describe the same internal Event.
    involved = event.get("regarding" if events_api else "involvedObject") or {}
    source = event.get("deprecatedSource" if events_api else "source") or {}
    controller = event.get("reportingController" if events_api else "reportingComponent") or ""
    return {
        **{f"involvedObject.{f}": _str(involved.get(f))
           for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": _str(event.get("reason")),
        "reportingComponent": controller,
        "source": source.get("component") or controller,
        "type": _str(event.get("type")),
    }


def object_fields(group: str, kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of an object, keyed by internal label (see FieldSelector.validate_for)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    fields = {"metadata.name": _str(meta.get("name")), "metadata.namespace": _str(meta.get("namespace"))}
    if group == "" and kind == "Pod":
        pod_ips = status.get("podIPs") or []
        fields.update({
            "spec.nodeName": _str(spec.get("nodeName")),
            "spec.restartPolicy": _str(spec.get("restartPolicy")),
            "spec.schedulerName": _str(spec.get("schedulerName")),
            "spec.serviceAccountName": _str(spec.get("serviceAccountName")),
            "spec.hostNetwork": _str(bool(spec.get("hostNetwork"))),
            "status.phase": _str(status.get("phase")),
            "status.podIP": _str(pod_ips[0].get("ip") if pod_ips else status.get("podIP")),
            "status.nominatedNodeName": _str(status.get("nominatedNodeName")),
        })
    elif group == "" and kind == "Node":
        fields["spec.unschedulable"] = _str(bool(spec.get("unschedulable")))
    elif group == "" and kind == "Namespace":
        fields["status.phase"] = _str(status.get("phase"))
    elif group == "" and kind == "Secret":
        fields["type"] = _str(obj.get("type"))
    elif group == "" and kind == "Service":
        fields["spec.clusterIP"] = _str(spec.get("clusterIP"))
        fields["spec.type"] = _str(spec.get("type"))
    elif group == "certificates.k8s.io" and kind == "CertificateSigningRequest":
        fields["spec.signerName"] = _str(spec.get("signerName"))
    elif kind == "Event" and group in ("", "events.k8s.io"):
        fields.update(_event_fields(obj, group == "events.k8s.io"))
    return fields
