"""What a request gathers on its way through the API server: warnings and audit annotations.

kube-apiserver keeps both in the request's context: any layer may add a warning
(``warning.AddWarning``: admission plugins, field validation), written as ``Warning``
headers with the response, and annotations for the request's audit event
(``audit.AddAuditAnnotation``: the authorizer's decision, PodSecurity's verdicts). Here a
:class:`contextvars.ContextVar` carries the same: the server's middleware opens a context
per request, the registry and admission (which know nothing of HTTP) add to it, and the
middleware reads it back when it answers. Outside a request (the server's own bootstrap
writes) there is no context and adding is a no-op.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field


@dataclass
class RequestContext:
    warnings: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    # The name in a create's body (the audit event's objectRef.name when the URL has none).
    object_name: str = ""


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("kubelite_request", default=None)


def open_context() -> tuple[RequestContext, contextvars.Token[RequestContext | None]]:
    ctx = RequestContext()
    return ctx, _current.set(ctx)


def close_context(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def current() -> RequestContext | None:
    return _current.get()


def add_warning(text: str) -> None:
    """A warning for the client; the same text twice is sent once (as the warning recorder does)."""
    ctx = _current.get()
    if ctx is not None and text and text not in ctx.warnings:
        ctx.warnings.append(text)


def add_annotation(key: str, value: str) -> None:
    """An annotation of the request's audit event; the first value of a key stays (as in Kubernetes)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.annotations.setdefault(key, value)


def set_object_name(name: str) -> None:
    ctx = _current.get()
    if ctx is not None and not ctx.object_name:
        ctx.object_name = name
