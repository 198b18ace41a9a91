"""The kinds of issue 15 point 12 without a server: Priority admission, validation, defaults,
printers and the local APIServices' table (the integration tests drive them through kubectl)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubelite.api import defaults, validation
from kubelite.api.errors import StatusError
from kubelite.api.printers import to_table
from kubelite.api.registry import RESOURCES, by_group_version, lookup
from kubelite.apiserver import componentstatus, systemobjects
from kubelite.apiserver.registry import Registry, Target
from kubelite.store import SqliteStore

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
Obj = dict[str, Any]


def pc(name: str, value: int, *, default: bool = False, policy: str = "PreemptLowerPriority") -> Obj:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "globalDefault": default, "preemptionPolicy": policy}


def pod(**spec: Any) -> Obj:
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}


def messages(group: str, kind: str, obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in validation.validate(group, kind, obj, old)]


# --- the Priority admission ----------------------------------------------------------------


def test_a_named_class_gives_priority_and_preemption_policy() -> None:
    p = pod(priorityClassName="high")
    assert defaults.admit_pod_priority(p, [pc("high", 1000, policy="Never")]) is None
    assert (p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == (1000, "Never")


def test_an_unknown_class_is_refused_in_kubernetes_words() -> None:
    assert defaults.admit_pod_priority(pod(priorityClassName="x"), []) == "no PriorityClass with name x was found"


def test_without_a_class_the_global_default_applies_the_lowest_if_several() -> None:
    p = pod()
    classes = [pc("a", 10, default=True), pc("b", 5, default=True, policy="Never"), pc("c", 1)]
    assert defaults.admit_pod_priority(p, classes) is None
    assert (p["spec"]["priorityClassName"], p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == ("b", 5, "Never")
    bare = pod()
    assert defaults.admit_pod_priority(bare, [pc("c", 1)]) is None
    assert (bare["spec"]["priority"], "priorityClassName" in bare["spec"]) == (0, False)


def test_a_priority_that_disagrees_with_the_class_is_refused() -> None:
    refusal = defaults.admit_pod_priority(pod(priorityClassName="high", priority=3), [pc("high", 1000)])
    assert refusal == ("the integer value of priority (3) must not be provided in pod spec; priority admission "
                       "controller computed 1000 from the given PriorityClass name")


def test_one_global_default_class_only() -> None:
    existing = [pc("d", 1, default=True)]
    assert defaults.admit_priority_class(pc("e", 2, default=True), existing, creating=True) == (
        "PriorityClass d is already marked as default. Only one default can exist")
    assert defaults.admit_priority_class(pc("d", 1, default=True), existing, creating=False) is None
    assert defaults.admit_priority_class(pc("e", 2), existing, creating=True) is None


# --- validation and defaults ----------------------------------------------------------------


def test_priority_class_validation() -> None:
    assert messages("scheduling.k8s.io", "PriorityClass", pc("system-node-critical", 2000001000)) == []
    assert messages("scheduling.k8s.io", "PriorityClass", pc("system-x", 1)) == [
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. "
        "error: system-x is not a known system priority class"]
    assert messages("scheduling.k8s.io", "PriorityClass", pc("u", 1000000001)) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    old = {**pc("u", 1), "metadata": {"name": "u", "resourceVersion": "1", "uid": "x", "creationTimestamp": "t"}}
    new = {**old, "value": 2}
    assert messages("scheduling.k8s.io", "PriorityClass", new, old) == [
        "value: Forbidden: may not be changed in an update."]


def rc(selector: dict[str, str] | None, labels: dict[str, str]) -> Obj:
    spec: Obj = {"replicas": 1, "template": {"metadata": {"labels": labels},
                                            "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    if selector is not None:
        spec["selector"] = selector
    obj: Obj = {"apiVersion": "v1", "kind": "ReplicationController",
                "metadata": {"name": "web", "namespace": "default"}, "spec": spec}
    defaults.apply_defaults("", "ReplicationController", obj)
    return obj


def test_replication_controller_defaults_and_validation() -> None:
    obj = rc(None, {"app": "web"})
    assert obj["spec"]["selector"] == {"app": "web"} and obj["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert messages("", "ReplicationController", obj) == []
    assert messages("", "ReplicationController", rc({"app": "x"}, {"app": "web"})) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"]
    assert "spec.selector: Required value" in messages("", "ReplicationController", rc(None, {}))


def test_csi_and_attachment_validation() -> None:
    driver: Obj = {"metadata": {"name": "-bad-"}, "spec": {}}
    defaults.apply_defaults("storage.k8s.io", "CSIDriver", driver)
    assert driver["spec"]["attachRequired"] is True and driver["spec"]["fsGroupPolicy"] == "ReadWriteOnceWithFSType"
    assert messages("storage.k8s.io", "CSIDriver", driver)[0].startswith('metadata.name: Invalid value: "-bad-"')
    va: Obj = {"metadata": {"name": "a"}, "spec": {"attacher": "d.example.com", "nodeName": "n",
                                                   "source": {"persistentVolumeName": "pv", "inlineVolumeSpec": {}}}}
    assert messages("storage.k8s.io", "VolumeAttachment", va) == [
        "spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"]


# --- printers ---------------------------------------------------------------------------------


def test_flow_schemas_print_in_matching_precedence_order() -> None:
    def fs(name: str, precedence: int) -> Obj:
        return {"metadata": {"name": name, "creationTimestamp": "2025-06-01T11:00:00Z"},
                "spec": {"priorityLevelConfiguration": {"name": "pl"}, "matchingPrecedence": precedence}}

    table = to_table("flowcontrol.apiserver.k8s.io", "FlowSchema", [fs("b", 10000), fs("a", 1), fs("c", 1)],
                     now=NOW, list_meta={"resourceVersion": "1"})
    assert [r["cells"] for r in table["rows"]] == [
        ["a", "pl", 1, "<none>", "60m", "?"], ["c", "pl", 1, "<none>", "60m", "?"], ["b", "pl", 10000, "<none>", "60m", "?"]]


def test_component_status_and_api_service_cells() -> None:
    cs = {"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "False", "message": "",
                                                           "error": "store down"}]}
    assert to_table("", "ComponentStatus", [cs], now=NOW)["rows"][0]["cells"] == ["etcd-0", "Unhealthy", "", "store down"]
    svc = {"metadata": {"name": "v1beta1.metrics.k8s.io", "creationTimestamp": "2025-06-01T11:59:00Z"},
           "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
           "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}}
    assert to_table("apiregistration.k8s.io", "APIService", [svc], now=NOW)["rows"][0]["cells"] == [
        "v1beta1.metrics.k8s.io", "kube-system/metrics-server", "False (MissingEndpoints)", "60s"]


# --- the served table -------------------------------------------------------------------------


def test_every_served_group_version_has_its_local_api_service() -> None:
    services = systemobjects.local_api_services()
    assert len(services) == len(by_group_version())
    assert services["v1."]["spec"] == {"group": "", "version": "v1", "groupPriorityMinimum": 18000,
                                       "versionPriority": 1, "service": None}
    for obj in services.values():
        assert validation.validate("apiregistration.k8s.io", "APIService", obj) == []


def test_read_only_and_computed_kinds_advertise_their_verbs() -> None:
    cs = lookup("", "v1", "componentstatuses")
    fs = lookup("flowcontrol.apiserver.k8s.io", "v1", "flowschemas")
    assert cs is not None and cs.verbs == ("get", "list")
    assert fs is not None and fs.verbs == ("get", "list", "watch")
    assert sum(1 for r in RESOURCES if r.kind == "ReplicationController") == 1


async def test_admission_reads_priority_classes_from_a_cache_and_misses_go_live(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    registry = Registry(store)
    rt = lookup("scheduling.k8s.io", "v1", "priorityclasses")
    pods = lookup("", "v1", "pods")
    assert rt is not None and pods is not None
    cache = registry.caches[rt]
    try:
        await cache.start()
        await registry.create_object(rt, None, pc("early", 10), manager="test")
        async with asyncio.timeout(5):
            # The cache has no event to wait on: poll it.
            while "/registry/scheduling.k8s.io/priorityclasses/early" not in cache.objects:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await cache.stop()
        cache.synced = True  # a cache that lags: it will never see "late"
        await registry.create_object(rt, None, pc("late", 20), manager="test")
        strategy = registry.strategy(pods)
        late = pod(priorityClassName="late")
        await strategy.admit(late, None, registry)
        assert late["spec"]["priority"] == 20
        with pytest.raises(StatusError) as refused:
            await strategy.admit(pod(priorityClassName="never"), None, registry)
        assert refused.value.code == 403
        assert refused.value.message == 'pods "p" is forbidden: no PriorityClass with name never was found'
    finally:
        await cache.stop()
        await store.close()


async def test_local_api_services_are_reconciled_with_the_served_table(tmp_path: Path) -> None:
    """A local APIService of a group version no longer served goes; a changed one is put back."""
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    registry = Registry(store)
    rt = lookup("apiregistration.k8s.io", "v1", "apiservices")
    assert rt is not None
    try:
        stale = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                 "metadata": {"name": "v1.gone.example.com", "labels": {systemobjects.AUTOMANAGED: "onstart"}},
                 "spec": {"group": "gone.example.com", "version": "v1", "groupPriorityMinimum": 100,
                          "versionPriority": 1, "service": None}}
        remote = {**stale, "metadata": {"name": "v1beta1.metrics.k8s.io"},
                  "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                           "versionPriority": 100, "service": {"namespace": "kube-system", "name": "metrics-server"},
                           "insecureSkipTLSVerify": True}}
        for obj in (stale, remote):
            await registry.create_object(rt, None, obj, manager="test")
        await systemobjects.api_services(registry)
        await registry.update_status(rt, None, "v1.apps", lambda o: {**o, "status": {}}, manager="t", dry_run=False)
        apps = await registry.get_object(rt, None, "v1.apps")
        changed = {**apps, "spec": {**apps["spec"], "versionPriority": 3}}
        await registry.update(Target(rt, None, "v1.apps", None), changed, manager="t", dry_run=False)
        await systemobjects.api_services(registry)
        names = {o["metadata"]["name"] for o in await registry.list_objects(rt, None)}
        assert names == set(systemobjects.local_api_services()) | {"v1beta1.metrics.k8s.io"}
        apps = await registry.get_object(rt, None, "v1.apps")
        assert apps["spec"]["versionPriority"] == 15
        assert [c["type"] for c in apps["status"]["conditions"]] == ["Available"]
    finally:
        await store.close()


async def test_etcd_component_status_is_the_store_health(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    healthy = await componentstatus.get_status(store, "etcd-0")
    assert healthy["conditions"] == [{"type": "Healthy", "status": "True", "message": "ok"}]
    await store.close()  # a closed store cannot serve: etcd-0 is unhealthy, with the store's reason
    down = await componentstatus.get_status(store, "etcd-0")
    assert down["conditions"][0]["status"] == "False" and down["conditions"][0]["error"]
    assert [s["metadata"]["name"] for s in await componentstatus.list_statuses(store)] == [
        "scheduler", "controller-manager", "etcd-0"]
    with pytest.raises(StatusError) as missing:
        await componentstatus.get_status(store, "kubelet")
    assert (missing.value.code, missing.value.message) == (500, "Component not found: kubelet")


async def test_limit_ranger_and_priority_admission_both_admit_a_pod_in_plugin_order(tmp_path: Path) -> None:
    """Mutating admission runs kube-apiserver's plugins in order on the decoded, defaulted pod:
    LimitRanger fills what the containers leave unset (a container's limits are already its
    requests, so its defaultRequest does not apply), then Priority gives the global default
    class; the QoS class the strategy derives follows what admission set."""
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    registry = Registry(store)
    namespaces, limit_ranges = lookup("", "v1", "namespaces"), lookup("", "v1", "limitranges")
    pods, classes = lookup("", "v1", "pods"), lookup("scheduling.k8s.io", "v1", "priorityclasses")
    assert namespaces is not None and limit_ranges is not None and pods is not None and classes is not None
    try:
        # No cache or index started: admission reads PriorityClasses and LimitRanges live.
        await registry.create_object(namespaces, None, {"metadata": {"name": "ns"}}, manager="test")
        await registry.create_object(limit_ranges, "ns", {"metadata": {"name": "lr"}, "spec": {"limits": [
            {"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}]}}, manager="test")
        await registry.create_object(classes, None, pc("high", 1000, default=True, policy="Never"), manager="test")
        unset = {"metadata": {"generateName": "p-"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        limited = {"metadata": {"name": "q"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"limits": {"cpu": "200m"}}}]}}
        for body, resources, qos in (
            (unset, {"limits": {"cpu": "500m"}, "requests": {"cpu": "100m"}}, "Burstable"),
            (limited, {"limits": {"cpu": "200m"}, "requests": {"cpu": "200m"}}, "Burstable"),
        ):
            created = await registry.create_object(pods, "ns", body, manager="test")
            spec = created["spec"]
            assert spec["containers"][0]["resources"] == resources
            assert (spec["priorityClassName"], spec["priority"], spec["preemptionPolicy"]) == ("high", 1000, "Never")
            assert created["status"]["qosClass"] == qos
        # The first pod took both of the LimitRange's defaults; the second had nothing left unset.
        assert created["metadata"].get("annotations") is None
        first = next(p for p in await registry.list_objects(pods, "ns") if p["metadata"]["name"] != "q")
        assert first["metadata"]["annotations"] == {
            "kubernetes.io/limit-ranger": "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
        }
    finally:
        await store.close()


async def test_a_second_default_class_is_refused_by_validating_admission_after_validation(tmp_path: Path) -> None:
    """Priority checks PriorityClasses in its Validate, which kube-apiserver runs after the
    strategy's validation: an invalid second default is 422 Invalid, a valid one 403 Forbidden
    (on create and on update alike)."""
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    registry = Registry(store)
    classes = lookup("scheduling.k8s.io", "v1", "priorityclasses")
    assert classes is not None
    try:
        await registry.create_object(classes, None, pc("d", 1, default=True), manager="test")
        with pytest.raises(StatusError) as invalid:
            await registry.create_object(classes, None, pc("e", 2_000_000_000, default=True), manager="test")
        assert invalid.value.code == 422
        with pytest.raises(StatusError) as forbidden:
            await registry.create_object(classes, None, pc("e", 2, default=True), manager="test")
        assert forbidden.value.code == 403
        assert forbidden.value.message == ('priorityclasses.scheduling.k8s.io "e" is forbidden: PriorityClass d is '
                                           "already marked as default. Only one default can exist")
        await registry.create_object(classes, None, pc("f", 3), manager="test")

        def make_default(obj: Obj) -> Obj:
            obj["globalDefault"] = True
            return obj

        with pytest.raises(StatusError) as refused:
            await registry.guaranteed_update(Target(classes, None, "f", None), make_default, manager="test")
        assert refused.value.code == 403
    finally:
        await store.close()
