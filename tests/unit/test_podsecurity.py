"""Pod Security Standards (kubelite.api.podsecurity): each check's verdict and wording, the
evaluator's order, label parsing, and the warnings of a new enforce level.

Expected texts are those of k8s.io/pod-security-admission's own tests (policy/check_*_test.go)
and of a real kube-apiserver 1.33's refusals.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api import podsecurity as psa

Obj = dict[str, Any]


def pod(*containers: Obj, sc: Obj | None = None, init: list[Obj] | None = None, **spec: Any) -> tuple[Obj, Obj]:
    body: Obj = {"containers": list(containers), **spec}
    if sc is not None:
        body["securityContext"] = sc
    if init:
        body["initContainers"] = init
    return {}, body


def c(name: str, **sc: Any) -> Obj:
    return {"name": name, "image": "busybox", **({"securityContext": sc} if sc else {})}


def run(check: str, meta: Obj, spec: Obj, version: int = psa.LATEST) -> psa.CheckResult:
    return psa.check_fn(check, version)(meta, spec)


def refused(check: str, meta_spec: tuple[Obj, Obj], reason: str, detail: str, version: int = psa.LATEST) -> None:
    r = run(check, *meta_spec, version=version)
    assert not r.allowed
    assert (r.reason, r.detail) == (reason, detail)


def allowed(check: str, meta_spec: tuple[Obj, Obj], version: int = psa.LATEST) -> None:
    assert run(check, *meta_spec, version=version).allowed


# ---------------------------------------------------------------------------- baseline


def test_host_process() -> None:
    p = pod(c("a"), c("e", windowsOptions={"hostProcess": True}), c("f", windowsOptions={"hostProcess": True}),
            sc={"windowsOptions": {"hostProcess": True}})
    refused("windowsHostProcess", p, "hostProcess",
            'pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true')
    allowed("windowsHostProcess", pod(c("a", windowsOptions={"hostProcess": False})))


def test_host_namespaces() -> None:
    refused("hostNamespaces", pod(c("a"), hostNetwork=True, hostPID=True, hostIPC=True), "host namespaces",
            "hostNetwork=true, hostPID=true, hostIPC=true")
    allowed("hostNamespaces", pod(c("a"), hostNetwork=False))


def test_privileged() -> None:
    p = pod(c("a"), c("b", privileged=False), c("d", privileged=True), init=[c("e", privileged=True)])
    # init containers are visited first, as visitContainers does
    refused("privileged", p, "privileged", 'containers "e", "d" must not set securityContext.privileged=true')
    allowed("privileged", pod(c("a", privileged=False)))


def test_capabilities_baseline() -> None:
    p = pod(c("a", capabilities={"add": ["FOO", "CHOWN"]}), c("b", capabilities={"add": ["BAR", "BAZ"]}),
            c("c", capabilities={"add": ["NET_BIND_SERVICE", "KILL"]}))
    refused("capabilities_baseline", p, "non-default capabilities",
            'containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add')
    allowed("capabilities_baseline", pod(c("a", capabilities={"drop": ["ALL"]})))


def test_host_path_volumes() -> None:
    p = pod(c("a"), volumes=[{"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "hostPath": {"path": "/x"}},
                             {"name": "e", "emptyDir": {}}])
    refused("hostPathVolumes", p, "hostPath volumes", 'volumes "a", "b"')


def test_host_ports() -> None:
    p = pod(c("a"), {"name": "b", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 20}]},
            {"name": "c", "ports": [{"containerPort": 3, "hostPort": 30}, {"containerPort": 4}]})
    refused("hostPorts", p, "hostPort", 'containers "b", "c" use hostPorts 10, 20, 30')
    refused("hostPorts", pod({"name": "b", "ports": [{"containerPort": 1, "hostPort": 20}]}), "hostPort",
            'container "b" uses hostPort 20')
    allowed("hostPorts", pod({"name": "a", "ports": [{"containerPort": 80}]}))


def test_app_armor() -> None:
    refused("appArmorProfile", pod(c("a"), sc={"appArmorProfile": {"type": "Unconfined"}}),
            "forbidden AppArmor profile", 'pod must not set AppArmor profile type to "Unconfined"')
    refused("appArmorProfile", pod(c("foo", appArmorProfile={"type": "Unconfined"})),
            "forbidden AppArmor profile", 'container "foo" must not set AppArmor profile type to "Unconfined"')
    meta = {"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined",
                            "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                            "container.apparmor.security.beta.kubernetes.io/c": "localhost/x"}}
    r = psa.check_fn("appArmorProfile")(meta, {"containers": [c("a")]})
    assert (r.reason, r.detail) == ("forbidden AppArmor profile", 'annotation must not set AppArmor profile type to '
                                    '"container.apparmor.security.beta.kubernetes.io/a="unconfined""')
    allowed("appArmorProfile", pod(c("a", appArmorProfile={"type": "RuntimeDefault"}),
                                   sc={"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}))


def test_se_linux_options() -> None:
    p = pod(c("a", seLinuxOptions={"type": "container_t"}), c("e", seLinuxOptions={"type": "bar"}),
            c("f", seLinuxOptions={"user": "bar"}), c("g", seLinuxOptions={"role": "baz"}),
            sc={"seLinuxOptions": {"type": "foo"}})
    refused("seLinuxOptions", p, "seLinuxOptions", 'pod and containers "e", "f", "g" set forbidden '
            'securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set')
    engine = pod(c("d", seLinuxOptions={"type": "container_engine_t"}))
    allowed("seLinuxOptions", engine)  # allowed since v1.31
    refused("seLinuxOptions", engine, "seLinuxOptions",
            'container "d" set forbidden securityContext.seLinuxOptions: type "container_engine_t"', version=30)


def test_proc_mount() -> None:
    p = pod(c("a", procMount="Default"), c("d", procMount="Unmasked"), c("e", procMount="other"))
    refused("procMount", p, "procMount", 'containers "d", "e" must not set securityContext.procMount to "Unmasked", "other"')


def test_seccomp_baseline() -> None:
    p = pod(c("a"), c("c", seccompProfile={"type": "Unconfined"}), c("d", seccompProfile={"type": "Unconfined"}),
            sc={"seccompProfile": {"type": "Unconfined"}})
    refused("seccompProfile_baseline", p, "seccompProfile",
            'pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined"')
    allowed("seccompProfile_baseline", pod(c("a")))  # unset is fine at baseline
    # Before v1.19, the annotations.
    meta = {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}
    r = psa.check_fn("seccompProfile_baseline", 18)(meta, {"containers": [c("a")]})
    assert r.detail == 'forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined"'


def test_sysctls_by_version() -> None:
    p = pod(c("a"), sc={"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}, {"name": "kernel.msgmax", "value": "1"}]})
    refused("sysctls", p, "forbidden sysctls", "kernel.msgmax")
    refused("sysctls", p, "forbidden sysctls", "net.ipv4.tcp_rmem, kernel.msgmax", version=31)
    allowed("sysctls", pod(c("a"), sc={"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports", "value": "1"}]}))


# ---------------------------------------------------------------------------- restricted


def test_restricted_volumes() -> None:
    allowed_kinds = ["emptyDir", "secret", "persistentVolumeClaim", "downwardAPI", "configMap", "projected", "csi",
                     "ephemeral", "image"]
    volumes = [{"name": f"a{i}", k: {}} for i, k in enumerate(allowed_kinds)]
    volumes += [{"name": f"b{i + 1}", k: {}} for i, k in enumerate(psa.RESTRICTED_VOLUME_SOURCES)]
    volumes.append({"name": "c1"})
    refused("restrictedVolumes", pod(c("x"), volumes=volumes), "restricted volume types",
            "volumes " + ", ".join(f'"b{i}"' for i in range(1, 22)) + ', "c1" use restricted volume types '
            '"awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume", "flocker", '
            '"gcePersistentDisk", "gitRepo", "glusterfs", "hostPath", "iscsi", "nfs", "photonPersistentDisk", '
            '"portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "unknown", "vsphereVolume"')


def test_allow_privilege_escalation() -> None:
    p = pod(c("a"), c("b", allowPrivilegeEscalation=True), c("c", allowPrivilegeEscalation=False))
    refused("allowPrivilegeEscalation", p, "allowPrivilegeEscalation != false",
            'containers "a", "b" must set securityContext.allowPrivilegeEscalation=false')
    windows = pod(c("a"), os={"name": "windows"})
    allowed("allowPrivilegeEscalation", windows)  # 1.25+: not for Windows pods
    assert not run("allowPrivilegeEscalation", *windows, version=24).allowed


def test_capabilities_restricted() -> None:
    p = pod(c("a", capabilities={"add": ["FOO", "BAR"]}), c("b", capabilities={"add": ["BAZ"]}),
            c("c", capabilities={"drop": ["ALL"], "add": ["CHOWN", "NET_BIND_SERVICE"]}))
    refused("capabilities_restricted", p, "unrestricted capabilities",
            'containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not '
            'include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add')
    allowed("capabilities_restricted", pod(c("a", capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})))


def test_run_as_non_root() -> None:
    refused("runAsNonRoot", pod(c("a")), "runAsNonRoot != true",
            'pod or container "a" must set securityContext.runAsNonRoot=true')
    p = pod(c("a"), c("b", runAsNonRoot=True), c("c", runAsNonRoot=False), c("d", runAsNonRoot=False),
            sc={"runAsNonRoot": True})
    refused("runAsNonRoot", p, "runAsNonRoot != true", 'containers "c", "d" must not set securityContext.runAsNonRoot=false')
    refused("runAsNonRoot", pod(c("a", runAsNonRoot=True), sc={"runAsNonRoot": False}), "runAsNonRoot != true",
            "pod must not set securityContext.runAsNonRoot=false")
    allowed("runAsNonRoot", pod(c("a"), sc={"runAsNonRoot": True}))


def test_run_as_user() -> None:
    refused("runAsUser", pod(c("a", runAsUser=1), c("c", runAsUser=0), c("d", runAsUser=0)), "runAsUser=0",
            'containers "c", "d" must not set runAsUser=0')
    refused("runAsUser", pod(c("a"), sc={"runAsUser": 0}), "runAsUser=0", "pod must not set runAsUser=0")
    allowed("runAsUser", pod(c("a"), sc={"runAsUser": 1000}))
    with pytest.raises(KeyError):
        psa.check_fn("runAsUser", 22)  # a check only since v1.23


def test_seccomp_restricted() -> None:
    refused("seccompProfile_restricted", pod(c("a"), c("b")), "seccompProfile",
            'pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')
    allowed("seccompProfile_restricted", pod(c("a"), sc={"seccompProfile": {"type": "RuntimeDefault"}}))
    allowed("seccompProfile_restricted", pod(c("a", seccompProfile={"type": "Localhost", "localhostProfile": "x"})))
    refused("seccompProfile_restricted", pod(c("a", seccompProfile={"type": "Unconfined"})), "seccompProfile",
            'container "a" must not set securityContext.seccompProfile.type to "Unconfined"')


# ---------------------------------------------------------------------------- the evaluator


def test_restricted_order_and_message() -> None:
    """A real kube-apiserver's refusal of a privileged pod under restricted:latest."""
    meta, spec = pod(c("c", privileged=True))
    r = psa.evaluate(psa.LevelVersion(psa.RESTRICTED), meta, spec)
    assert r.detail() == (
        'privileged (container "c" must not set securityContext.privileged=true), '
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
        '"Localhost")')
    assert r.reason() == "privileged, allowPrivilegeEscalation != false, unrestricted capabilities, " \
                         "runAsNonRoot != true, seccompProfile"


def test_restricted_overrides_baseline_checks() -> None:
    """restrictedVolumes replaces hostPathVolumes; capabilities and seccomp likewise."""
    meta, spec = pod(c("c", capabilities={"add": ["SYS_ADMIN"]}), volumes=[{"name": "h", "hostPath": {"path": "/"}}])
    baseline = psa.evaluate(psa.LevelVersion(psa.BASELINE), meta, spec)
    assert baseline.reasons == ("non-default capabilities", "hostPath volumes")
    restricted = psa.evaluate(psa.LevelVersion(psa.RESTRICTED), meta, spec)
    assert "hostPath volumes" not in restricted.reasons and "non-default capabilities" not in restricted.reasons
    assert "restricted volume types" in restricted.reasons and "unrestricted capabilities" in restricted.reasons


def test_compliant_pod_and_privileged_level() -> None:
    meta, spec = pod(c("c", allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]}),
                     sc={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}})
    assert psa.evaluate(psa.LevelVersion(psa.RESTRICTED), meta, spec).allowed
    meta, spec = pod(c("c", privileged=True), hostNetwork=True)
    assert psa.evaluate(psa.LevelVersion(psa.PRIVILEGED), meta, spec).allowed


def test_old_versions_run_fewer_checks() -> None:
    meta, spec = pod(c("c", allowPrivilegeEscalation=False), sc={"runAsNonRoot": True, "runAsUser": 0})
    # v1.18: no seccomp, capabilities or runAsUser check at restricted yet.
    assert psa.evaluate(psa.LevelVersion(psa.RESTRICTED, 18), meta, spec).allowed
    assert psa.evaluate(psa.LevelVersion(psa.RESTRICTED, 23), meta, spec).reasons == (
        "unrestricted capabilities", "runAsUser=0", "seccompProfile")
    assert str(psa.LevelVersion(psa.RESTRICTED, 23)) == "restricted:v1.23"


# ---------------------------------------------------------------------------- labels


def test_policy_from_labels() -> None:
    policy, errs = psa.policy_to_evaluate({psa.ENFORCE_LEVEL: "baseline", psa.ENFORCE_VERSION: "v1.25"})
    assert not errs
    assert str(policy.enforce) == "baseline:v1.25"
    assert str(policy.warn) == "baseline:v1.25"  # warn follows a stricter enforce
    assert str(policy.audit) == "privileged:latest"
    policy, _ = psa.policy_to_evaluate({psa.ENFORCE_LEVEL: "baseline", psa.WARN_LEVEL: "privileged"})
    assert str(policy.warn) == "privileged:latest"
    policy, _ = psa.policy_to_evaluate({psa.ENFORCE_LEVEL: "restricted", psa.WARN_VERSION: "v1.20"})
    assert str(policy.warn) == "restricted:v1.20"
    assert psa.policy_to_evaluate({})[0].fully_privileged()


def test_invalid_labels() -> None:
    policy, errs = psa.policy_to_evaluate({psa.ENFORCE_LEVEL: "foo", psa.AUDIT_LEVEL: "bar", psa.WARN_VERSION: "v2.1"})
    assert [str(e) for e in errs] == [
        'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, '
        "baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "bar": must be one of privileged, '
        "baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2.1": must be "latest" or "v1.x"',
    ]
    # enforce fails closed, audit open; an invalid enforce level does not raise warn
    assert str(policy.enforce) == "restricted:latest"
    assert str(policy.audit) == "privileged:latest"
    assert str(policy.warn) == "privileged:latest"
    assert psa.parse_version("v1.0") == 0 and psa.parse_version("v1.01") is None and psa.parse_version("1.2") is None


def test_enforce_tightened() -> None:
    def p(**labels: str) -> psa.Policy:
        return psa.policy_to_evaluate({psa.LABEL_PREFIX + k.replace("_", "-"): v for k, v in labels.items()})[0]

    assert psa.enforce_tightened(p(enforce="restricted"), p())
    assert psa.enforce_tightened(p(enforce="restricted"), p(enforce="baseline"))
    assert not psa.enforce_tightened(p(enforce="baseline"), p(enforce="restricted"))
    assert not psa.enforce_tightened(p(enforce="privileged"), p(enforce="restricted"))
    assert psa.enforce_tightened(p(enforce="baseline", enforce_version="v1.30"), p(enforce="baseline"))
    assert not psa.enforce_tightened(p(enforce="baseline", warn="restricted"), p(enforce="baseline"))


# ---------------------------------------------------------------------------- objects


def test_pod_templates() -> None:
    template = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [c("x")]}}
    assert psa.pod_template("apps", "deployments", {"spec": {"template": template}}) == (
        template["metadata"], template["spec"])
    assert psa.pod_template("batch", "cronjobs", {"spec": {"jobTemplate": {"spec": {"template": template}}}}) == (
        template["metadata"], template["spec"])
    assert psa.pod_template("", "podtemplates", {"template": template}) is not None
    assert psa.pod_template("apps", "deployments", {"spec": {}}) is None
    assert psa.pod_template("", "configmaps", {"data": {}}) is None


def test_significant_pod_update() -> None:
    old = {"spec": {"containers": [c("a")], "initContainers": [c("i")]}}
    same = {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [c("a")], "initContainers": [c("i")],
                                                          "activeDeadlineSeconds": 5}}
    assert not psa.significant_pod_update(same, old)
    image = {"spec": {"containers": [{**c("a"), "image": "nginx"}], "initContainers": [c("i")]}}
    assert psa.significant_pod_update(image, old)
    ephemeral = {"spec": {**old["spec"], "ephemeralContainers": [c("debug")]}}
    assert psa.significant_pod_update(ephemeral, old)


def test_existing_pods_warnings() -> None:
    def p(name: str, *, owner: str = "", **sc: Any) -> Obj:
        meta: Obj = {"name": name}
        if owner:
            meta["ownerReferences"] = [{"uid": owner, "controller": True}]
        return {"metadata": meta, "spec": {"containers": [c("c", **sc)]}}

    pods = [p("web-2", owner="rs1", privileged=True), p("web-1", owner="rs1", privileged=True),
            p("lonely", privileged=True), p("ok"), p("other", capabilities={"add": ["SYS_ADMIN"]})]
    assert psa.existing_pods_warnings("ns", psa.LevelVersion(psa.BASELINE), pods) == [
        'existing pods in namespace "ns" violate the new PodSecurity enforce level "baseline:latest"',
        "lonely (and 2 other pods): privileged",
        "other: non-default capabilities",
    ]
    assert psa.existing_pods_warnings("ns", psa.LevelVersion(psa.BASELINE), [p("ok")]) == []
    two = [p("b", privileged=True), p("a", privileged=True)]
    assert psa.existing_pods_warnings("ns", psa.LevelVersion(psa.BASELINE), two)[1] == "a (and 1 other pod): privileged"


# ---------------------------------------------------------------------------- the plugin's configuration


def _config(**body: Any) -> Obj:
    return {"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration", **body}


def test_the_default_configuration_is_kube_apiservers() -> None:
    for empty in (None, {}, _config()):
        config = psa.configuration_from(empty)
        assert config == psa.Configuration() and config.defaults.fully_privileged()
        assert config.exemptions == psa.Exemptions()


def test_a_configuration_with_defaults_and_exemptions() -> None:
    config = psa.configuration_from(_config(
        defaults={"enforce": "baseline", "enforce-version": "v1.30", "warn": "restricted"},
        exemptions={"usernames": ["system:serviceaccount:ci:deployer"], "runtimeClasses": ["kata"],
                    "namespaces": ["kube-system"]}))
    assert (str(config.defaults.enforce), str(config.defaults.audit), str(config.defaults.warn)) == (
        "baseline:v1.30", "privileged:latest", "restricted:latest")
    assert config.exemptions == psa.Exemptions(("system:serviceaccount:ci:deployer",), ("kata",), ("kube-system",))
    # v1beta1 and v1alpha1 are read the same.
    old = {**_config(defaults={"audit": "restricted"}), "apiVersion": "pod-security.admission.config.k8s.io/v1beta1"}
    assert str(psa.configuration_from(old).defaults.audit) == "restricted:latest"


def test_configuration_errors_are_kube_apiservers() -> None:
    with pytest.raises(psa.ConfigurationError) as e:
        psa.configuration_from(_config(
            defaults={"enforce": "strict", "audit-version": "1.30"},
            exemptions={"namespaces": ["kube-system", "Bad_NS", "kube-system"], "runtimeClasses": ["-x"],
                        "usernames": ["alice", "", "alice"]}))
    assert not e.value.decoding
    assert str(e.value) == (
        '[defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted, '
        'defaults.audit-version: Invalid value: "1.30": must be "latest" or "v1.x", '
        'exemptions.namespaces[1]: Invalid value: "Bad_NS": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
        "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'), "
        'exemptions.namespaces[2]: Duplicate value: "kube-system", '
        'exemptions.runtimeClasses[0]: Invalid value: "-x": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'), "
        'exemptions.usernames[1]: Invalid value: "": username must not be empty, '
        'exemptions.usernames[2]: Duplicate value: "alice"]')
    with pytest.raises(psa.ConfigurationError) as e:
        psa.configuration_from(_config(defaults={"enforce": "restricted", "warn": "nope"}))
    assert str(e.value) == 'defaults.warn: Invalid value: "nope": must be one of privileged, baseline, restricted'
    with pytest.raises(psa.ConfigurationError) as e:
        psa.configuration_from({**_config(), "kind": "PodSecurityPolicy"})
    assert e.value.decoding and str(e.value).startswith(
        'failed to decode: no kind "PodSecurityPolicy" is registered for version '
        '"pod-security.admission.config.k8s.io/v1"')
    with pytest.raises(psa.ConfigurationError) as e:
        psa.configuration_from(_config(exemptions={"namespaces": "kube-system"}))
    assert str(e.value) == ("failed to decode: json: cannot unmarshal string into Go struct field "
                            "PodSecurityExemptions.exemptions.namespaces of type []string")


def test_labels_override_the_configured_defaults_mode_by_mode() -> None:
    defaults = psa.Policy(psa.LevelVersion(psa.BASELINE), psa.LevelVersion(psa.RESTRICTED, 30),
                          psa.LevelVersion(psa.BASELINE))
    assert psa.policy_to_evaluate(None, defaults) == (defaults, [])
    policy, errs = psa.policy_to_evaluate({psa.ENFORCE_LEVEL: "privileged", "team": "a"}, defaults)
    assert not errs
    assert (str(policy.enforce), str(policy.audit), str(policy.warn)) == (
        "privileged:latest", "restricted:v1.30", "baseline:latest")
    policy, _ = psa.policy_to_evaluate({psa.ENFORCE_LEVEL: "restricted"}, defaults)
    assert str(policy.warn) == "restricted:latest"  # warn still follows a stricter enforce label


def test_an_exempt_namespace_given_a_policy_is_told_it_is_ignored() -> None:
    defaults = psa.Policy()
    labels = {psa.ENFORCE_LEVEL: "baseline", psa.WARN_LEVEL: "restricted", psa.AUDIT_VERSION: "v1.30"}
    policy, _ = psa.policy_to_evaluate(labels, defaults)
    assert psa.exempt_namespace_warning("kube-system", policy, defaults, labels) == (
        'namespace "kube-system" is exempt from Pod Security, and the policy (enforce=baseline:latest, '
        "warn=restricted:latest) will be ignored")
    privileged = {psa.ENFORCE_LEVEL: "privileged"}
    assert psa.exempt_namespace_warning("kube-system", psa.policy_to_evaluate(privileged)[0], defaults,
                                        privileged) == ""
    baseline = psa.Policy(psa.LevelVersion(psa.BASELINE), psa.LevelVersion(psa.BASELINE),
                          psa.LevelVersion(psa.BASELINE))
    same = {psa.ENFORCE_LEVEL: "baseline"}
    assert psa.exempt_namespace_warning("x", psa.policy_to_evaluate(same, baseline)[0], baseline, same) == ""


def test_existing_pods_of_an_exempt_runtime_class_are_not_checked() -> None:
    privileged = {"metadata": {"name": "vm"}, "spec": {"runtimeClassName": "kata", "containers": [
        c("c", privileged=True)]}}
    assert psa.existing_pods_warnings("ns", psa.LevelVersion(psa.BASELINE), [privileged], ("kata",)) == []
    assert psa.existing_pods_warnings("ns", psa.LevelVersion(psa.BASELINE), [privileged])[1] == "vm: privileged"
