"""Defaulting: the values the API server fills in before it validates or stores an object.

Kubernetes runs its defaulting functions (``pkg/apis/core/v1/defaults.go``,
``pkg/apis/apps/v1/defaults.go``, the discovery ones, and the ``+default`` markers of the
types) every time it decodes an object, so a user who sends a three-line Service reads back
``type: ClusterIP``, ``sessionAffinity: None``, ``targetPort: 80``... Clients and
``kubectl apply`` diffs depend on seeing exactly those fields, and validation depends on them
being there (``spec.sessionAffinity: Required value`` is what a missing default looks like).

Three kinds of filling live here, kept apart because the API server applies them at
different moments:

* :func:`apply_defaults`: the defaulting functions proper, run on every create and update.
* :func:`admit_pod_create`: what the default admission plugins add to a new Pod
  (ServiceAccount, Priority, DefaultTolerationSeconds); users see it in ``-o yaml``.
* The Service strategy's preparation (:func:`prepare_service_create`,
  :func:`prepare_service_update`) and :func:`default_ip_families`, which the allocator does:
  kube-apiserver runs them, in that order, before validating a Service.

Objects are plain dicts changed in place; nothing a client set is overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

Obj = MutableMapping[str, Any]

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
DEFAULT_TOLERATION_SECONDS = 300
VOLUME_DEFAULT_MODE = 0o644  # 420, as secret/configMap/downwardAPI/projected volumes default

# Every VolumeSource member, in Kubernetes' order: a volume with none of them is an emptyDir.
VOLUME_SOURCES = (
    "emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret", "nfs",
    "iscsi", "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs", "quobyte",
    "downwardAPI", "fc", "flexVolume", "configMap", "azureFile", "vsphereVolume", "photonPersistentDisk",
    "portworxVolume", "azureDisk", "storageos", "projected", "scaleIO", "csi", "ephemeral", "image",
)


def _dict(parent: Obj, key: str) -> Obj:
    """parent[key] as a dict, creating it; for struct fields Go always serializes."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


# -- Service ----------------------------------------------------------------------------------


def _externally_accessible(spec: Obj) -> bool:
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def _default_service(svc: Obj) -> None:
    spec = _dict(svc, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig") or {}
        if (config.get("clientIP") or {}).get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}}
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in spec.get("ports") or []:
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port", 0)
    if _externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is None:
            spec["allocateLoadBalancerNodePorts"] = True
        for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"


def _same(new: Obj, old: Obj, key: str) -> bool:
    return (new.get(key) or None) == (old.get(key) or None)


def normalize_cluster_ips(new: Obj, old: Obj | None) -> None:
    """Keep ``clusterIP`` and ``clusterIPs`` in step for clients that only know the singular.

    On create a lone ``clusterIP`` seeds ``clusterIPs`` (never the reverse: a client that
    knows the plural must send both). On update, an old client that resent only
    ``clusterIP`` gets its ``clusterIPs`` back, and a changed or cleared ``clusterIP``
    carries ``clusterIPs`` along, so that validation reports the change on ``clusterIPs``.
    """
    spec = _dict(new, "spec")
    if old is None:
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        return
    old_spec = old.get("spec") or {}
    same_ip = (old_spec.get("clusterIP") or "") == (spec.get("clusterIP") or "")
    if old_spec.get("clusterIPs") and not spec.get("clusterIPs") and same_ip:
        spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if (old_spec.get("clusterIP") or "") != (spec.get("clusterIP") or ""):
        same_ips = _same(spec, old_spec, "clusterIPs")
        if old_spec.get("clusterIP") and not spec.get("clusterIP") and same_ips:
            spec.pop("clusterIPs", None)
        if spec.get("clusterIP") and same_ips:
            spec["clusterIPs"] = [spec["clusterIP"]]


def _needs_cluster_ip(spec: Obj) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_port(spec: Obj) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _needs_hc_node_port(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _patch_allocated_values(spec: Obj, old_spec: Obj) -> None:
    """Carry over what the allocators gave the old object when the client did not resend it."""
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if _needs_node_port(old_spec) and _needs_node_port(spec):

        def used(s: Obj) -> set[int]:
            return {p["nodePort"] for p in s.get("ports") or [] if p.get("nodePort")}

        taken = used(old_spec) & used(spec)
        by_port = {(p.get("port"), p.get("protocol")): p.get("nodePort") or 0 for p in old_spec.get("ports") or []}
        for p in spec.get("ports") or []:
            if not p.get("nodePort"):
                previous = by_port.get((p.get("port"), p.get("protocol")), 0)
                if previous and previous not in taken:
                    p["nodePort"] = previous
    keeps_hc = _needs_hc_node_port(old_spec) and _needs_hc_node_port(spec)
    if keeps_hc and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def _drop_type_dependent_fields(svc: Obj, old: Obj) -> None:
    """Wipe what the old type implied and the new one does not, unless the client changed it."""
    spec, old_spec = _dict(svc, "spec"), old.get("spec") or {}
    if _needs_cluster_ip(old_spec) and not _needs_cluster_ip(spec):
        if _same(spec, old_spec, "clusterIP") and _same(spec, old_spec, "clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if _same(spec, old_spec, "ipFamilies"):
            spec.pop("ipFamilies", None)
        if _same(spec, old_spec, "ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if _needs_node_port(old_spec) and not _needs_node_port(spec):
        old_node_ports = [p.get("nodePort") or 0 for p in old_spec.get("ports") or []]
        if [p.get("nodePort") or 0 for p in spec.get("ports") or []] == old_node_ports:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
    drops_hc = _needs_hc_node_port(old_spec) and not _needs_hc_node_port(spec)
    if drops_hc and spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if old_spec.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        allocate = spec.get("allocateLoadBalancerNodePorts")
        if allocate is not None and allocate == old_spec.get("allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts")
        if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    drops_etp = _externally_accessible(old_spec) and not _externally_accessible(spec)
    if drops_etp and spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if spec.get("type") != "LoadBalancer" and "status" in svc:
        svc["status"]["loadBalancer"] = {}


def prepare_service_create(svc: Obj) -> None:
    """What the Service REST storage does to a new Service before allocating and validating."""
    normalize_cluster_ips(svc, None)


def prepare_service_update(svc: Obj, old: Obj) -> None:
    """The Service strategy's PrepareForUpdate, after defaulting and before validation."""
    normalize_cluster_ips(svc, old)
    _patch_allocated_values(_dict(svc, "spec"), old.get("spec") or {})
    _drop_type_dependent_fields(svc, old)


def default_ip_families(svc: Obj, families: tuple[str, ...] = ("IPv4",)) -> None:
    """The allocator's choice of ``ipFamilies``/``ipFamilyPolicy`` on a cluster with ``families``.

    Headless Services without a selector are the odd case Kubernetes has: they default to
    ``RequireDualStack`` and both families, even on a single-stack cluster, because their
    endpoints are managed by hand and may be of either family.
    """
    spec = _dict(svc, "spec")
    if spec.get("type") == "ExternalName":
        return
    other = {"IPv4": "IPv6", "IPv6": "IPv4"}
    ips: list[str] = spec.get("clusterIPs") or []
    if ips == ["None"] and not spec.get("selector"):
        spec.setdefault("ipFamilyPolicy", "RequireDualStack")
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = [families[0]]
        if len(spec["ipFamilies"]) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
            spec["ipFamilies"].append(other.get(spec["ipFamilies"][0], "IPv4"))
        return
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "SingleStack"
    if not spec.get("ipFamilies"):
        chosen = [("IPv6" if ":" in ip else "IPv4") for ip in ips if ip != "None"]
        spec["ipFamilies"] = chosen or [families[0]]
    if spec["ipFamilyPolicy"] != "SingleStack" and len(spec["ipFamilies"]) < 2 and len(families) > 1:
        spec["ipFamilies"].append(other[spec["ipFamilies"][0]])


# -- Pods and pod templates ---------------------------------------------------------------------


def image_tag(image: str) -> str:
    """The tag parsers.ParseImageName finds: ``latest`` when neither a tag nor a digest is given."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def _default_http_get(handler: Obj | None) -> None:
    if handler and isinstance(handler.get("httpGet"), dict):
        http = handler["httpGet"]
        if not http.get("path"):
            http["path"] = "/"
        if not http.get("scheme"):
            http["scheme"] = "HTTP"


def _default_probe(probe: Obj | None) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        if not probe.get(key):
            probe[key] = value
    _default_http_get(probe)
    if isinstance(probe.get("grpc"), dict):
        probe["grpc"].setdefault("service", "")


def _default_field_ref(ref: Obj | None) -> None:
    if isinstance(ref, dict) and not ref.get("apiVersion"):
        ref["apiVersion"] = "v1"


def _default_container(c: Obj) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = "Always" if image_tag(c.get("image") or "") == "latest" else "IfNotPresent"
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    for port in c.get("ports") or []:
        if not port.get("protocol"):
            port["protocol"] = "TCP"
    for env in c.get("env") or []:
        _default_field_ref((env.get("valueFrom") or {}).get("fieldRef"))
    _dict(c, "resources")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(key))
    lifecycle = c.get("lifecycle") or {}
    _default_http_get(lifecycle.get("postStart"))
    _default_http_get(lifecycle.get("preStop"))


def _default_downward_items(source: Obj) -> None:
    for item in source.get("items") or []:
        _default_field_ref(item.get("fieldRef"))


def _default_volume(volume: Obj) -> None:
    if not any(volume.get(key) is not None for key in VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        source = volume.get(key)
        if isinstance(source, dict) and source.get("defaultMode") is None:
            source["defaultMode"] = VOLUME_DEFAULT_MODE
    if isinstance(volume.get("hostPath"), dict):
        volume["hostPath"].setdefault("type", "")
    if isinstance(volume.get("downwardAPI"), dict):
        _default_downward_items(volume["downwardAPI"])
    for source in (volume.get("projected") or {}).get("sources") or []:
        if isinstance(source.get("serviceAccountToken"), dict):
            source["serviceAccountToken"].setdefault("expirationSeconds", 3600)
        if isinstance(source.get("downwardAPI"), dict):
            _default_downward_items(source["downwardAPI"])


def _default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and the defaults of everything a PodSpec holds (pods and templates)."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    _dict(spec, "securityContext")
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = DEFAULT_TERMINATION_GRACE_PERIOD
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    # The v1 conversion keeps the deprecated serviceAccount mirroring serviceAccountName.
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            _default_container(c)
    for volume in spec.get("volumes") or []:
        _default_volume(volume)


def _default_pod(pod: Obj) -> None:
    spec = _dict(pod, "spec")
    _default_pod_spec(spec)
    # Only Pods (not templates): requests default to limits, service links on, host ports.
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            resources = c.get("resources") or {}
            if resources.get("limits"):
                requests = resources.setdefault("requests", {})
                for name, quantity in resources["limits"].items():
                    requests.setdefault(name, quantity)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork"):
        for key in ("containers", "initContainers"):
            for c in spec.get(key) or []:
                for port in c.get("ports") or []:
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort", 0)


def admit_pod_create(pod: Obj) -> None:
    """What kube-apiserver's default admission plugins add to a Pod being created.

    ServiceAccount (the ``default`` account; its token volume is the API server's business),
    Priority (priority 0 and PreemptLowerPriority when no PriorityClass applies) and
    DefaultTolerationSeconds (five minutes of tolerance for not-ready and unreachable nodes).
    """
    spec = _dict(pod, "spec")
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    if not spec.get("priorityClassName") and spec.get("priority") is None:
        spec["priority"] = 0
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations: list[Obj] = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        # A toleration of the key (or of every key) for NoExecute, or for any effect, wins.
        if not any(
            t.get("effect") in (None, "", "NoExecute")
            and (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
            for t in tolerations
        ):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}
            )


# -- apps/v1 ------------------------------------------------------------------------------------


def _default_template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        _default_pod_spec(_dict(template, "spec"))


def _default_deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = _dict(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _default_template(spec)


def _default_replicaset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _default_template(spec)


# -- batch/v1 -------------------------------------------------------------------------------------


def _default_job(obj: Obj) -> None:
    """SetDefaults_Job: one pod at a time unless told; six retries (or unlimited retries with a
    per-index limit); the template's labels stand in for missing Job labels."""
    spec = _dict(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    template = spec.get("template")
    labels = ((template.get("metadata") or {}).get("labels")) if isinstance(template, dict) else None
    meta = _dict(obj, "metadata")
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in rule.get("onPodConditions") or []:
            if not pattern.get("status"):
                pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False
    _default_template(spec)


def _default_cronjob(obj: Obj) -> None:
    """SetDefaults_CronJob; the job template's pod spec gets the PodSpec defaults (not the
    Job's own: those apply when the controller creates the Job)."""
    spec = _dict(obj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
        _default_template(job_template["spec"])


def prepare_job_create(job: Obj) -> None:
    """The Job strategy's PrepareForCreate: unless ``manualSelector``, the selector is generated
    (``batch.kubernetes.io/controller-uid=<uid>``) and the template labelled with the Job's uid and
    name, both the ``batch.kubernetes.io/`` keys and the legacy ones; labels the user set are kept
    (validation then says which are wrong). Needs ``metadata.uid``.

    The defaulting that kube-apiserver ran while decoding (before this) copied the template's
    labels to a Job without labels: that is done here first, so that a Job whose template had
    labels keeps exactly those, and one whose template had none gets the generated ones (as it
    does when kube-apiserver defaults the stored object again on reading it).
    """
    spec = _dict(job, "spec")
    template = _dict(spec, "template")
    tmeta = _dict(template, "metadata")
    meta = _dict(job, "metadata")
    if tmeta.get("labels") and not meta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    if spec.get("manualSelector"):
        return
    spec["manualSelector"] = False
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        labels = tmeta["labels"] = {}
    name, uid = str(meta.get("name") or ""), str(meta.get("uid") or "")
    for key in ("job-name", "batch.kubernetes.io/job-name"):
        labels.setdefault(key, name)
    for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
        labels.setdefault(key, uid)
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    match = selector.get("matchLabels")
    if not isinstance(match, dict):
        match = selector["matchLabels"] = {}
    match.setdefault("batch.kubernetes.io/controller-uid", uid)


def _default_claim_template(claim: Obj) -> None:
    """SetDefaults_PersistentVolumeClaim(Spec), as the generated defaulters run them over a
    StatefulSet's volumeClaimTemplates: volumeMode Filesystem, phase Pending."""
    spec = _dict(claim, "spec")
    if not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    status = _dict(claim, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def _default_statefulset(obj: Obj) -> None:
    """SetDefaults_StatefulSet (apps/v1, 1.33). maxUnavailable is not defaulted: the
    MaxUnavailableStatefulSet gate that would default it to 1 is off by default in 1.33."""
    spec = _dict(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        if strategy.get("rollingUpdate") is None:
            strategy["rollingUpdate"] = {}
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict) and rolling.get("partition") is None:
        rolling["partition"] = 0
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    for key in ("whenDeleted", "whenScaled"):
        if not retention.get(key):
            retention[key] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _default_template(spec)
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict):
            _default_claim_template(claim)


def _default_daemonset(obj: Obj) -> None:
    """SetDefaults_DaemonSet (apps/v1): RollingUpdate with maxUnavailable 1, maxSurge 0."""
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _default_template(spec)


# -- Endpoints and EndpointSlices ---------------------------------------------------------------


def _default_endpoints(obj: Obj) -> None:
    for subset in obj.get("subsets") or []:
        for port in subset.get("ports") or []:
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def _default_endpoint_slice(obj: Obj) -> None:
    for port in obj.get("ports") or []:
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


# -- core/v1 ReplicationController and PodTemplate, scheduling, storage ---------------------------


def _default_replication_controller(obj: Obj) -> None:
    """SetDefaults_ReplicationController: the template's labels stand in for a missing selector
    and missing object labels; one replica by default."""
    spec = _dict(obj, "spec")
    template = spec.get("template")
    labels = ((template.get("metadata") or {}).get("labels")) if isinstance(template, dict) else None
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _dict(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _default_template(spec)


def _default_pod_template(obj: Obj) -> None:
    _default_template(obj)


def _default_priority_class(obj: Obj) -> None:
    if obj.get("preemptionPolicy") is None:
        obj["preemptionPolicy"] = "PreemptLowerPriority"


def _default_csi_driver(obj: Obj) -> None:
    """SetDefaults_CSIDriverSpec (storage/v1), with 1.33's SELinuxMount default."""
    spec = _dict(obj, "spec")
    for key, value in (("attachRequired", True), ("podInfoOnMount", False), ("storageCapacity", False),
                       ("fsGroupPolicy", "ReadWriteOnceWithFSType"), ("requiresRepublish", False),
                       ("seLinuxMount", False)):
        if spec.get(key) is None:
            spec[key] = value
    if not spec.get("volumeLifecycleModes"):
        spec["volumeLifecycleModes"] = ["Persistent"]


def _default_limit_range(obj: Obj) -> None:
    """SetDefaults_LimitRangeItem: a Container item's default limit is its max, its default request
    the default limit, else the min; this is what LimitRanger then fills into pods."""
    for item in (obj.get("spec") or {}).get("limits") or []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = _dict(item, "default")
        request = _dict(item, "defaultRequest")
        for key, value in (item.get("max") or {}).items():
            default.setdefault(key, value)
        for key, value in default.items():
            request.setdefault(key, value)
        for key, value in (item.get("min") or {}).items():
            request.setdefault(key, value)
        # Go's omitempty drops the maps that stayed empty.
        for key in ("default", "defaultRequest"):
            if not item[key]:
                del item[key]


def _default_network_policy(obj: Obj) -> None:
    """SetDefaults_NetworkPolicy (networking/v1): policyTypes say Ingress, and Egress too when
    there are egress rules; SetDefaults_NetworkPolicyPort: a port's protocol is TCP."""
    spec = _dict(obj, "spec")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in (rule.get("ports") or []) if isinstance(rule, dict) else []:
                if isinstance(port, dict) and port.get("protocol") is None:
                    port["protocol"] = "TCP"


def _default_role_binding(obj: Obj) -> None:
    """SetDefaults_RoleBinding / _ClusterRoleBinding / _Subject (rbac/v1): the roleRef's apiGroup
    is RBAC's; a User or Group subject's apiGroup is RBAC's, a ServiceAccount's stays empty."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = "rbac.authorization.k8s.io"
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("rbac.authorization.k8s.io", "RoleBinding"): _default_role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _default_role_binding,
    ("networking.k8s.io", "NetworkPolicy"): _default_network_policy,
    ("", "ReplicationController"): _default_replication_controller,
    ("", "PodTemplate"): _default_pod_template,
    ("scheduling.k8s.io", "PriorityClass"): _default_priority_class,
    ("storage.k8s.io", "CSIDriver"): _default_csi_driver,
    ("", "LimitRange"): _default_limit_range,
    ("", "Service"): _default_service,
    ("", "Pod"): _default_pod,
    ("", "Endpoints"): _default_endpoints,
    ("apps", "Deployment"): _default_deployment,
    ("apps", "ReplicaSet"): _default_replicaset,
    ("apps", "StatefulSet"): _default_statefulset,
    ("apps", "DaemonSet"): _default_daemonset,
    ("discovery.k8s.io", "EndpointSlice"): _default_endpoint_slice,
    ("batch", "Job"): _default_job,
    ("batch", "CronJob"): _default_cronjob,
}


def apply_defaults(group: str, kind: str, obj: Obj) -> None:
    """Fill ``obj`` in place as Kubernetes' defaulting functions for ``group``/``kind`` do."""
    defaulter = _DEFAULTERS.get((group, kind))
    if defaulter is not None:
        defaulter(obj)


# -- the Priority admission plugin ----------------------------------------------------------------


def _default_priority_class_of(classes: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """getDefaultPriorityClass: the global default; after a race left two, the lower value."""
    found: Mapping[str, Any] | None = None
    for pc in classes:
        if pc.get("globalDefault") and (found is None or int(pc.get("value", 0)) < int(found.get("value", 0))):
            found = pc
    return found


_NO_CLASS = "no PriorityClass with name {} was found"


def names_missing_class(refusal: str) -> bool:
    """Whether a refusal of :func:`admit_pod_priority` is for a class it did not find."""
    return refusal.startswith("no PriorityClass with name ")


def admit_pod_priority(pod: Obj, classes: Sequence[Mapping[str, Any]]) -> str | None:
    """The Priority admission of a Pod being created: its PriorityClass (named, or the global
    default) gives ``spec.priority`` and ``spec.preemptionPolicy``. Returns the reason to refuse
    the pod (answered as Forbidden), None when admitted."""
    spec = _dict(pod, "spec")
    name = spec.get("priorityClassName") or ""
    policy: str | None = "PreemptLowerPriority"
    if not name:
        default = _default_priority_class_of(classes)
        if default is None:
            priority = 0
        else:
            name = str((default.get("metadata") or {}).get("name") or "")
            spec["priorityClassName"] = name
            priority = int(default.get("value", 0))
            policy = default.get("preemptionPolicy")
    else:
        pc = next((c for c in classes if (c.get("metadata") or {}).get("name") == name), None)
        if pc is None:
            return _NO_CLASS.format(name)
        priority = int(pc.get("value", 0))
        policy = pc.get("preemptionPolicy")
    given = spec.get("priority")
    if given is not None and given != priority:
        return (f"the integer value of priority ({given}) must not be provided in pod spec; priority admission "
                f"controller computed {priority} from the given PriorityClass name")
    spec["priority"] = priority
    if policy is not None:
        given_policy = spec.get("preemptionPolicy")
        if given_policy is not None and given_policy != policy:
            return (f"the string value of PreemptionPolicy ({given_policy}) must not be provided in pod spec; "
                    f"priority admission controller computed {policy} from the given PriorityClass name")
        spec["preemptionPolicy"] = policy
    return None


def admit_priority_class(pc: Mapping[str, Any], classes: Sequence[Mapping[str, Any]], *, creating: bool) -> str | None:
    """The Priority admission of a PriorityClass: one global default at most."""
    if not pc.get("globalDefault"):
        return None
    default = _default_priority_class_of(classes)
    if default is None:
        return None
    default_name = (default.get("metadata") or {}).get("name")
    if creating or default_name != (pc.get("metadata") or {}).get("name"):
        return f"PriorityClass {default_name} is already marked as default. Only one default can exist"
    return None
