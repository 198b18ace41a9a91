"""Each component's own identity, the Node authorizer, NodeRestriction and bound tokens, against a
real API server and the real kubectl (issue 18).

`kubelite up` writes one kubeconfig per component, as kubeadm does; what each may do is what
Kubernetes' bootstrap policy (and, for the kubelet, the Node authorizer) gives its counterpart.
The control-plane-only cluster is enough: a pod is "on" the node once its spec.nodeName says so,
which is all the Node authorizer's graph looks at.
"""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
import uuid
from collections.abc import Callable

import pytest

from tests import waiting
from tests.integration.cluster import Cluster


def kc(cluster: Cluster, component: str) -> dict[str, str]:
    return {"KUBECONFIG": str(cluster.data_dir / f"{component}.conf")}


def token_env(cluster: Cluster, tmp_path: pathlib.Path, token: str) -> dict[str, str]:
    """A kubectl that authenticates with ``token`` only (no client certificate)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": cluster.server,
                                               "certificate-authority": str(cluster.data_dir / "pki" / "ca.crt")}}],
        "users": [{"name": "t", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "t"}}],
    }
    path = tmp_path / f"token-{uuid.uuid4().hex[:6]}.kubeconfig"
    path.write_text(json.dumps(config))
    return {"KUBECONFIG": str(path)}


def eventually(check: Callable[[], bool], what: str, within: float = 5.0) -> None:
    waiting.eventually(check, what, timeout=within)


def node_name(cluster: Cluster) -> str:
    return f"{cluster.name}-node"


def can_i(cluster: Cluster, env: dict[str, str], *args: str) -> str:
    return cluster.kubectl("auth", "can-i", *args, env=env).stdout.strip()


def pod(name: str, node: str, *, secret: str = "", sa: str = "default") -> str:
    spec: dict[str, object] = {"nodeName": node, "serviceAccountName": sa,
                               "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
    if secret:
        spec["volumes"] = [{"name": "s", "secret": {"secretName": secret}}]
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def test_each_component_has_its_own_identity(cluster: Cluster) -> None:
    expected = {
        "controller-manager": ("system:kube-controller-manager", ["system:authenticated"]),
        "scheduler": ("system:kube-scheduler", ["system:authenticated"]),
        "kubelet": (f"system:node:{node_name(cluster)}", ["system:nodes", "system:authenticated"]),
        "kube-proxy": ("system:kube-proxy", ["system:authenticated"]),
    }
    for component, (user, groups) in expected.items():
        out = cluster.kubectl("auth", "whoami", "-o", "json", env=kc(cluster, component), check=True).stdout
        info = json.loads(out)["status"]["userInfo"]
        assert (info["username"], info["groups"]) == (user, groups), component
        key = (cluster.data_dir / "pki" / f"{'kubelet-client' if component == 'kubelet' else component}.key")
        assert key.stat().st_mode & 0o077 == 0  # private, as every key of the PKI


@pytest.mark.parametrize(("component", "question", "answer"), [
    # system:kube-controller-manager: list/watch everything, service accounts and their tokens;
    # no workload writes (those are each controller's service account's).
    ("controller-manager", ["list", "pods", "-A"], "yes"),
    ("controller-manager", ["create", "serviceaccounts", "--subresource=token", "-n", "kube-system"], "yes"),
    ("controller-manager", ["create", "pods"], "no"),
    ("controller-manager", ["update", "deployments.apps"], "no"),
    # system:kube-scheduler (+ system:volume-scheduler)
    ("scheduler", ["create", "pods", "--subresource=binding"], "yes"),
    ("scheduler", ["patch", "persistentvolumes"], "yes"),
    ("scheduler", ["create", "deployments.apps"], "no"),
    ("scheduler", ["get", "secrets"], "no"),
    # system:node-proxier
    ("kube-proxy", ["watch", "endpointslices.discovery.k8s.io"], "yes"),
    ("kube-proxy", ["list", "nodes"], "yes"),
    ("kube-proxy", ["get", "secrets"], "no"),
    ("kube-proxy", ["create", "pods"], "no"),
    # system:kube-network-policies (kube-network-policies' own ClusterRole): watches, writes nothing
    ("kube-network-policies", ["watch", "networkpolicies.networking.k8s.io", "-A"], "yes"),
    ("kube-network-policies", ["list", "pods", "-A"], "yes"),
    ("kube-network-policies", ["list", "namespaces"], "yes"),
    ("kube-network-policies", ["create", "networkpolicies.networking.k8s.io"], "no"),
    ("kube-network-policies", ["get", "secrets"], "no"),
    # the Node authorizer
    ("kubelet", ["get", "secrets"], "no"),
    ("kubelet", ["list", "nodes"], "no"),
    ("kubelet", ["create", "nodes"], "yes"),
    ("kubelet", ["update", "pods", "--subresource=status"], "yes"),
    ("kubelet", ["create", "deployments.apps"], "no"),
])
def test_can_i_answers_as_kubernetes_for_each_component(cluster: Cluster, component: str, question: list[str],
                                                        answer: str) -> None:
    assert can_i(cluster, kc(cluster, component), *question) == answer


def test_controllers_act_as_their_own_service_accounts(cluster: Cluster) -> None:
    # kube-controller-manager --use-service-account-credentials: kube-system/<controller>.
    eventually(lambda: cluster.kubectl("get", "serviceaccount", "deployment-controller", "-n", "kube-system")
               .returncode == 0, "the deployment controller's service account was never made")
    sa = "--as=system:serviceaccount:kube-system:deployment-controller"
    assert cluster.kubectl("auth", "can-i", "create", "replicasets.apps", sa).stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "create", "secrets", sa).stdout.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "list", "pods", sa).stdout.strip() == "yes"
    # They work: a Deployment still gets its ReplicaSet and pods.
    ns = f"ids-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        cluster.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2", "-n", ns, "--", "sleep", "1",
                        check=True)
        eventually(lambda: len(cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout.split()) == 2,
                   "the deployment's pods were never made", within=15)
        rev = cluster.kubectl("get", "deployment", "web", "-n", ns, "-o",
                              "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}").stdout
        assert rev == "1"
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_a_node_reads_only_the_secrets_of_its_own_pods(cluster: Cluster) -> None:
    ns = f"node-{uuid.uuid4().hex[:6]}"
    node = node_name(cluster)
    kubelet = {**kc(cluster, "kubelet")}
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        for name in ("mounted", "unused", "elsewhere"):
            cluster.kubectl("create", "secret", "generic", name, "--from-literal=k=v", "-n", ns, check=True)
        refused = (f'Error from server (Forbidden): secrets "unused" is forbidden: User "system:node:{node}" cannot '
                   f'get resource "secrets" in API group "" in the namespace "{ns}": no relationship found between '
                   f"node '{node}' and this object")
        res = cluster.kubectl("get", "secret", "unused", "-n", ns, env=kubelet)
        assert (res.returncode, res.stderr.strip()) == (1, refused)
        assert cluster.kubectl("get", "secret", "mounted", "-n", ns, env=kubelet).returncode == 1

        cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("mine", node, secret="mounted"), check=True)
        cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("theirs", "other-node", secret="elsewhere"),
                        check=True)
        got = cluster.kubectl("get", "secret", "mounted", "-n", ns, "-o", "jsonpath={.data.k}", env=kubelet, check=True)
        assert got.stdout == "dg=="
        assert cluster.kubectl("get", "secret", "unused", "-n", ns, env=kubelet).stderr.strip() == refused
        assert cluster.kubectl("get", "secret", "elsewhere", "-n", ns, env=kubelet).returncode == 1
        # Its pods, listed as a kubelet lists them; not the others'.
        mine = cluster.kubectl("get", "pods", "-n", ns, f"--field-selector=spec.nodeName={node}", "-o", "name",
                               env=kubelet, check=True)
        assert mine.stdout.split() == ["pod/mine"]
        res = cluster.kubectl("get", "pods", "-n", ns, env=kubelet)
        assert res.stderr.strip().endswith("can only list/watch pods with spec.nodeName field selector")
        # Once the pod is gone, so is the path to its secret.
        cluster.kubectl("delete", "pod", "mine", "-n", ns, "--grace-period=0", "--force", check=True)
        eventually(lambda: cluster.kubectl("get", "secret", "mounted", "-n", ns, env=kubelet).returncode == 1,
                   "the secret stayed readable after its pod was deleted")
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_node_restriction_keeps_a_node_to_its_own_objects(cluster: Cluster) -> None:
    ns = f"nr-{uuid.uuid4().hex[:6]}"
    node = node_name(cluster)
    kubelet = kc(cluster, "kubelet")
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        other = json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "someone-else"}})
        res = cluster.kubectl("create", "-f", "-", input=other, env=kubelet)
        assert res.stderr.strip() == (f'Error from server (Forbidden): error when creating "STDIN": nodes '
                                      f'"someone-else" is forbidden: node "{node}" is not allowed to modify node '
                                      '"someone-else"')
        labelled = json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": node, "labels": {"node-role.kubernetes.io/control-plane": ""}}})
        res = cluster.kubectl("create", "-f", "-", input=labelled, env=kubelet)
        assert res.stderr.strip().endswith(
            f'node "{node}" is not allowed to set the following labels: node-role.kubernetes.io/control-plane')
        # A kubelet creates only mirror pods.
        res = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("sneaky", node), env=kubelet)
        assert res.stderr.strip().endswith(
            f'pods "sneaky" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "{node}" '
            "can only create mirror pods")
        # ... and writes the status of its own pods only (a PUT: a node may not read pods/status,
        # so `kubectl patch`, which reads first, is refused by the authorizer already).
        def with_status(name: str, node_of: str) -> str:
            obj = json.loads(pod(name, node_of))
            obj["metadata"]["namespace"] = ns
            obj["status"] = {"message": "written by the node"}
            return json.dumps(obj)

        cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("theirs", "other-node"), check=True)
        res = cluster.kubectl("replace", "--subresource=status", "-f", "-", input=with_status("theirs", "other-node"),
                              env=kubelet)
        assert res.stderr.strip() == (
            f'Error from server (Forbidden): error when replacing "STDIN": pods "theirs" is forbidden: node "{node}" '
            "can only update pod status for pods with spec.nodeName set to itself")
        cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("mine", node), check=True)
        cluster.kubectl("replace", "--subresource=status", "-f", "-", input=with_status("mine", node), env=kubelet,
                        check=True)
        message = cluster.kubectl("get", "pod", "mine", "-n", ns, "-o", "jsonpath={.status.message}", check=True)
        assert message.stdout == "written by the node"
        # A token only for a pod running on it.
        uid = cluster.kubectl("get", "pod", "theirs", "-n", ns, "-o", "jsonpath={.metadata.uid}", check=True).stdout
        res = cluster.kubectl("create", "token", "default", "-n", ns, "--bound-object-kind=Pod",
                              "--bound-object-name=theirs", f"--bound-object-uid={uid}", env=kubelet)
        assert res.stderr.strip().endswith(
            'serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different '
            "node")
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_a_bound_token_dies_with_its_pod(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    ns = f"tok-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        cluster.kubectl("create", "serviceaccount", "app", "-n", ns, check=True)
        cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("holder", node_name(cluster), sa="app"), check=True)
        token = cluster.kubectl("create", "token", "app", "-n", ns, "--bound-object-kind=Pod",
                                "--bound-object-name=holder", check=True).stdout.strip()
        env = token_env(cluster, tmp_path, token)
        review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                             "spec": {"token": token}})
        status = json.loads(cluster.kubectl("create", "-o", "json", "-f", "-", input=review, check=True).stdout)["status"]
        assert status["authenticated"] is True
        assert status["user"]["username"] == f"system:serviceaccount:{ns}:app"
        extra = status["user"]["extra"]
        assert extra["authentication.kubernetes.io/pod-name"] == ["holder"]
        assert extra["authentication.kubernetes.io/node-name"] == [node_name(cluster)]
        assert extra["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
        assert cluster.kubectl("auth", "whoami", env=env).returncode == 0

        cluster.kubectl("delete", "pod", "holder", "-n", ns, "--grace-period=0", "--force", check=True)
        res = cluster.kubectl("auth", "whoami", env=env)
        assert (res.returncode, res.stderr.strip()) == (1, "error: You must be logged in to the server (Unauthorized)")
        status = json.loads(cluster.kubectl("create", "-o", "json", "-f", "-", input=review, check=True).stdout)["status"]
        assert status == {"user": {}, "error": "[invalid bearer token, service account token has been invalidated]"}
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_token_requests_as_kubernetes_answers_them(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    ns = f"tr-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        cluster.kubectl("create", "serviceaccount", "app", "-n", ns, check=True)
        res = cluster.kubectl("create", "token", "app", "-n", ns, "--duration=9m")
        assert res.stderr.strip() == (
            'error: failed to create token: TokenRequest.authentication.k8s.io "" is invalid: '
            "spec.expirationSeconds: Invalid value: 540: may not specify a duration less than 10 minutes")
        # A token for another audience is no credential for the API.
        vault = cluster.kubectl("create", "token", "app", "-n", ns, "--audience=vault", check=True).stdout.strip()
        res = cluster.kubectl("auth", "whoami", env=token_env(cluster, tmp_path, vault))
        assert res.stderr.strip() == "error: You must be logged in to the server (Unauthorized)"
        # An account made again under another UID voids the old account's tokens.
        token = cluster.kubectl("create", "token", "app", "-n", ns, check=True).stdout.strip()
        env = token_env(cluster, tmp_path, token)
        assert cluster.kubectl("auth", "whoami", env=env).returncode == 0
        cluster.kubectl("delete", "serviceaccount", "app", "-n", ns, check=True)
        cluster.kubectl("create", "serviceaccount", "app", "-n", ns, check=True)
        eventually(lambda: cluster.kubectl("auth", "whoami", env=env).returncode == 1,
                   "the token of a deleted service account still authenticates")
        # The TokenRequest's answer: an hour unless asked otherwise, the API server's audience.
        body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
        out = json.loads(cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{ns}/serviceaccounts/app/token",
                                         "-f", "-", input=body, check=True).stdout)
        assert out["spec"]["expirationSeconds"] == 3600
        assert out["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_a_controller_recovers_its_deleted_service_account(cluster: Cluster) -> None:
    """Deleting a controller's service account voids its token; like client-go's token source
    after a 401, the controller manager makes the account again and asks for a new token."""
    eventually(lambda: cluster.kubectl("get", "serviceaccount", "replicaset-controller", "-n", "kube-system")
               .returncode == 0, "the replicaset controller's service account was never made")
    old_uid = cluster.kubectl("get", "serviceaccount", "replicaset-controller", "-n", "kube-system", "-o",
                              "jsonpath={.metadata.uid}", check=True).stdout
    cluster.kubectl("delete", "serviceaccount", "replicaset-controller", "-n", "kube-system", check=True)
    ns = f"rec-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        rs = json.dumps({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
                         "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                  "template": {"metadata": {"labels": {"a": "b"}},
                                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        cluster.kubectl("create", "-n", ns, "-f", "-", input=rs, check=True)
        eventually(lambda: bool(cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout.strip()),
                   "the replicaset controller never wrote again", within=20)
        new_uid = cluster.kubectl("get", "serviceaccount", "replicaset-controller", "-n", "kube-system", "-o",
                                  "jsonpath={.metadata.uid}", check=True).stdout
        assert new_uid and new_uid != old_uid
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    out: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return out


def test_the_kubelets_projected_token_lifetime_is_extended(cluster: Cluster) -> None:
    """--service-account-extend-token-expiration (on by default): the kubelet's 3607 s pod-bound
    token is signed for a year with warnafter at the hour; the answer keeps the requested expiry."""
    ns = f"ext-{uuid.uuid4().hex[:6]}"
    node = node_name(cluster)
    cluster.kubectl("create", "namespace", ns, check=True)
    try:
        cluster.kubectl("create", "serviceaccount", "app", "-n", ns, check=True)
        cluster.kubectl("create", "-n", ns, "-f", "-", input=pod("holder", node, sa="app"), check=True)
        uid = cluster.kubectl("get", "pod", "holder", "-n", ns, "-o", "jsonpath={.metadata.uid}", check=True).stdout
        for env in ({}, kc(cluster, "kubelet")):  # the admin, and the node the pod is on
            out = json.loads(cluster.kubectl("create", "token", "app", "-n", ns, "--bound-object-kind=Pod",
                                             "--bound-object-name=holder", f"--bound-object-uid={uid}",
                                             "--duration=3607s", "-o", "json", env=env, check=True).stdout)
            claims = _claims(out["status"]["token"])
            iat, exp = claims["iat"], claims["exp"]
            assert isinstance(iat, int) and isinstance(exp, int)
            assert exp - iat == 365 * 24 * 3600
            k8s = claims["kubernetes.io"]
            assert isinstance(k8s, dict) and k8s["warnafter"] == iat + 3607
            expires = datetime.datetime.fromisoformat(out["status"]["expirationTimestamp"].replace("Z", "+00:00"))
            assert abs(expires.timestamp() - (iat + 3607)) <= 1
        # Any other lifetime, or no pod to bind to, is what was asked.
        plain = cluster.kubectl("create", "token", "app", "-n", ns, "--bound-object-kind=Pod",
                                "--bound-object-name=holder", "--duration=3600s", check=True).stdout.strip()
        unbound = cluster.kubectl("create", "token", "app", "-n", ns, "--duration=3607s", check=True).stdout.strip()
        for token, seconds in ((plain, 3600), (unbound, 3607)):
            claims = _claims(token)
            assert (claims["exp"], "warnafter" in claims["kubernetes.io"]) == (  # type: ignore[operator]
                claims["iat"] + seconds, False)  # type: ignore[operator]
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
