"""The zero Status of each served kind, as Go's encoding/json writes the struct (issue 15, point 5)."""

from __future__ import annotations

import orjson

from kubelite.apiserver.strategy import empty_status


def test_kinds_with_a_status_struct_get_its_zero_value() -> None:
    assert empty_status("apps", "v1", "Deployment") == {}
    assert empty_status("apps", "v1", "ReplicaSet") == {"replicas": 0}  # no omitempty on replicas
    assert empty_status("", "v1", "Service") == {"loadBalancer": {}}  # a struct, never omitted
    assert empty_status("networking.k8s.io", "v1", "ServiceCIDR") == {}
    # Struct fields in declaration order, required strings as "".
    node = orjson.dumps(empty_status("", "v1", "Node"))
    assert node.startswith(b'{"daemonEndpoints":{"kubeletEndpoint":{"Port":0}},"nodeInfo":{"machineID":"",'
                           b'"systemUUID":"","bootID":""')
    assert orjson.dumps(empty_status("policy", "v1", "PodDisruptionBudget")) == (
        b'{"disruptionsAllowed":0,"currentHealthy":0,"desiredHealthy":0,"expectedPods":0}'
    )


def test_kinds_without_a_status_field_get_none() -> None:
    for group, kind in (("", "ConfigMap"), ("", "Secret"), ("", "Event"), ("coordination.k8s.io", "Lease"),
                        ("discovery.k8s.io", "EndpointSlice"), ("", "ServiceAccount")):
        assert empty_status(group, "v1", kind) is None, kind


def test_the_kinds_added_alongside_get_theirs_from_the_same_rule() -> None:
    """replicationcontrollers, storage, flowcontrol, apiservices, quotas, CSRs: the schema alone decides."""
    assert empty_status("", "v1", "ReplicationController") == {"replicas": 0}
    # VolumeAttachmentStatus.Attached is a bool without omitempty: a real cluster shows attached: false.
    assert empty_status("storage.k8s.io", "v1", "VolumeAttachment") == {"attached": False}
    for group, kind in (("flowcontrol.apiserver.k8s.io", "FlowSchema"),
                        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
                        ("apiregistration.k8s.io", "APIService"), ("", "ResourceQuota"),
                        ("certificates.k8s.io", "CertificateSigningRequest")):
        assert empty_status(group, "v1", kind) == {}, kind
    for group, kind in (("", "PodTemplate"), ("", "ComponentStatus"), ("", "LimitRange"),
                        ("scheduling.k8s.io", "PriorityClass"), ("storage.k8s.io", "CSIDriver"),
                        ("storage.k8s.io", "CSINode"), ("storage.k8s.io", "CSIStorageCapacity")):
        assert empty_status(group, "v1", kind) is None, kind
