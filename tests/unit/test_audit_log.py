"""The audit log (kubelite.apiserver.audit): the Event's shape, and the buffered writer."""

from __future__ import annotations

import asyncio
import pathlib

import orjson

from kubelite.apiserver import audit, requestcontext


def sample(i: int) -> dict[str, object]:
    return audit.event(
        audit_id=f"id-{i}", request_uri="/api/v1/namespaces/a/pods?fieldManager=kubectl-run", verb="create",
        user=audit.user_info("admin", ("system:masters", "system:authenticated")),
        impersonated_user=audit.user_info("system:serviceaccount:a:default", ["system:serviceaccounts"]),
        source=audit.source_ips("", "", "127.0.0.1"), user_agent="kubectl/v1.33.1",
        ref=audit.object_ref("pods", "a", "p", "", "v1", ""),
        response_status=audit.response_status(403, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                                    "status": "Failure", "message": "no", "reason": "Forbidden",
                                                    "code": 403}),
        received=1_700_000_000.25, completed=1_700_000_000.5,
        annotations={"authorization.k8s.io/decision": "allow"},
    )


def test_event_shape() -> None:
    ev = sample(1)
    assert list(ev) == ["kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
                        "impersonatedUser", "sourceIPs", "userAgent", "objectRef", "responseStatus",
                        "requestReceivedTimestamp", "stageTimestamp", "annotations"]
    assert ev["apiVersion"] == "audit.k8s.io/v1" and ev["level"] == "Metadata" and ev["stage"] == "ResponseComplete"
    assert ev["objectRef"] == {"resource": "pods", "namespace": "a", "name": "p", "apiVersion": "v1"}
    assert ev["responseStatus"] == {"metadata": {}, "status": "Failure", "message": "no", "reason": "Forbidden",
                                    "code": 403}
    assert ev["requestReceivedTimestamp"] == "2023-11-14T22:13:20.250000Z"
    assert audit.response_status(201) == {"metadata": {}, "code": 201}


def test_source_ips() -> None:
    assert audit.source_ips("10.0.0.1, 10.0.0.2", "10.0.0.2", "127.0.0.1") == ["10.0.0.1", "10.0.0.2", "127.0.0.1"]
    assert audit.source_ips("", "", None) == []


def test_buffered_lines_are_written_on_close(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sub" / "audit.log"

    async def main() -> None:
        first = audit.AuditLog(str(path), flush_interval=3600)  # only close() writes here
        second = audit.AuditLog(str(path), flush_interval=3600)  # another API server process, same file
        await first.start()
        await second.start()
        for i in range(500):
            (first if i % 2 else second).record(sample(i))
        await first.close()
        await second.close()

    asyncio.run(main())
    lines = path.read_bytes().splitlines()
    ids = [orjson.loads(line)["auditID"] for line in lines]
    assert sorted(ids) == sorted(f"id-{i}" for i in range(500))
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_full_buffer_is_flushed_without_close(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.log"

    async def main() -> int:
        log = audit.AuditLog(str(path), flush_interval=3600)
        await log.start()
        n = 0
        while log._size < audit.FLUSH_BYTES:
            log.record(sample(n))
            n += 1
        # The flusher was woken by the full buffer: it takes it at its next turn.
        for _ in range(1000):
            await asyncio.sleep(0)
            if not log._buffer:
                break
        assert not log._buffer
        await log.close()
        return n

    n = asyncio.run(main())
    assert len(path.read_bytes().splitlines()) == n


def test_request_context() -> None:
    requestcontext.add_warning("outside a request: dropped")
    ctx, token = requestcontext.open_context()
    try:
        requestcontext.add_warning("a")
        requestcontext.add_warning("a")
        requestcontext.add_warning("b")
        requestcontext.add_annotation("k", "1")
        requestcontext.add_annotation("k", "2")
        requestcontext.set_object_name("x")
    finally:
        requestcontext.close_context(token)
    assert ctx.warnings == ["a", "b"] and ctx.annotations == {"k": "1"} and ctx.object_name == "x"
    assert requestcontext.current() is None


def test_rbac_reason_of_an_allowed_request() -> None:
    """The audit event's authorization.k8s.io/reason, in RBACAuthorizer's words."""
    from kubelite.api import rbac

    role = {"metadata": {"name": "edit"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}
    crb = {"metadata": {"name": "viewers"}, "roleRef": {"kind": "ClusterRole", "name": "edit"},
           "subjects": [{"kind": "Group", "name": "team"}]}
    rb = {"metadata": {"name": "sa-edit", "namespace": "ns"}, "roleRef": {"kind": "ClusterRole", "name": "edit"},
          "subjects": [{"kind": "ServiceAccount", "name": "default"}]}
    policy = rbac.Policy.of([role], [], [crb], [rb])

    def attrs(user: str, groups: tuple[str, ...], verb: str = "create") -> rbac.Attributes:
        return rbac.Attributes(user, groups, verb, True, "", "", "v1", "configmaps", "", "ns", "")

    assert policy.allowed_by(attrs("system:serviceaccount:ns:default", ("system:serviceaccounts",))) == \
        'RBAC: allowed by RoleBinding "sa-edit/ns" of ClusterRole "edit" to ServiceAccount "default/ns"'
    assert policy.allowed_by(attrs("jane", ("team",))) == \
        'RBAC: allowed by ClusterRoleBinding "viewers" of ClusterRole "edit" to Group "team"'
    assert policy.allowed_by(attrs("joe", ())) == ""
    assert policy.allowed_by(attrs("root", ("system:masters",))) == ""


def test_audit_ids_and_times() -> None:
    import uuid

    ids = {audit.new_audit_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        u = uuid.UUID(text)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == text
    assert audit.micro_time(1_700_000_000.000001) == "2023-11-14T22:13:20.000001Z"
    assert audit.micro_time(1_700_000_001.999999) == "2023-11-14T22:13:21.999999Z"
    assert audit.micro_time(0.5) == "1970-01-01T00:00:00.500000Z"
