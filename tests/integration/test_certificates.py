"""certificates.k8s.io/v1 CertificateSigningRequests end to end: create, ``kubectl certificate
approve|deny``, signing by the cluster CA in the controllers, and the issued certificate used
against the API (its CN becomes the user).

Runs against a real ``kubelite up --no-agent`` with the real kubectl; keys and requests are
made with ``cryptography``, as a client outside the cluster would.
"""

from __future__ import annotations

import base64
import json
import pathlib
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.cluster import Cluster, Raw
from tests.integration.test_lifecycle import get, uid, wait_until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def key_and_request(cn: str, org: str | None = None, dns: list[str] | None = None) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM)


def csr_object(name: str, request: bytes, signer: str = "kubernetes.io/kube-apiserver-client",
               usages: list[str] | None = None, seconds: int | None = 3600) -> Obj:
    spec: Obj = {"request": base64.b64encode(request).decode(), "signerName": signer,
                 "usages": usages if usages is not None else ["client auth"]}
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name}, "spec": spec}


def create(cluster: Cluster, obj: Obj) -> Any:
    return cluster.kubectl("create", "-f", "-", input=json.dumps(obj))


def test_approved_client_request_is_signed_and_the_certificate_authenticates(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    name = f"alice-{uid()}"
    key, request = key_and_request(f"alice-{name}", "developers")
    create(cluster, csr_object(name, request, seconds=7200)).check_returncode()
    try:
        csr = get(cluster, "csr", name)
        assert csr is not None
        # The requestor is whoever created it: the admin of the kubeconfig.
        assert csr["spec"]["username"] == "kubernetes-admin"
        assert "system:masters" in csr["spec"]["groups"]
        assert csr["status"] == {}
        listed = cluster.kubectl("get", "csr", name, check=True).stdout
        assert listed.split("\n")[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                                                 "CONDITION"]
        assert "kubernetes.io/kube-apiserver-client   kubernetes-admin   120m" in listed
        assert listed.split("\n")[1].split()[-1] == "Pending"

        out = cluster.kubectl("certificate", "approve", name, check=True).stdout
        assert out.strip() == f"certificatesigningrequest.certificates.k8s.io/{name} approved"
        signed = wait_until(lambda: (get(cluster, "csr", name) or {}).get("status", {}).get("certificate"),
                            "the certificate", 15)
        cond = get(cluster, "csr", name)["status"]["conditions"][0]  # type: ignore[index]
        assert (cond["type"], cond["status"], cond["reason"]) == ("Approved", "True", "KubectlApprove")
        assert cluster.kubectl("get", "csr", name, "--no-headers", check=True).stdout.split()[-1] == "Approved,Issued"

        pem = base64.b64decode(signed)
        cert = x509.load_pem_x509_certificate(pem)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"alice-{name}"
        ca = x509.load_pem_x509_certificate((cluster.data_dir / "pki" / "ca.crt").read_bytes())
        assert cert.issuer == ca.subject
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        # expirationSeconds honoured; the start backdated 5 minutes (not the end: under 8h it is short-lived).
        assert lifetime.total_seconds() == 7200 + 300

        # The issued certificate authenticates: the API answers as that user.
        (tmp_path / "c.crt").write_bytes(pem)
        (tmp_path / "c.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
        ctx.load_cert_chain(str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
        # Who the API takes it for shows in what it records of a requestor: a CSR created with it.
        _, second = key_and_request("second")
        mine = csr_object(f"{name}-by-alice", second)

        def post() -> urllib.request.Request:
            return urllib.request.Request(
                cluster.server + "/apis/certificates.k8s.io/v1/certificatesigningrequests",
                data=json.dumps(mine).encode(), method="POST", headers={"Content-Type": "application/json"},
            )

        # Authenticated is not authorized (issue 18): the group "developers" holds nothing yet.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post(), context=ctx, timeout=10)
        assert refused.value.code == 403
        assert json.loads(refused.value.read())["message"] == (
            f'certificatesigningrequests.certificates.k8s.io is forbidden: User "alice-{name}" cannot create '
            'resource "certificatesigningrequests" in API group "certificates.k8s.io" at the cluster scope')
        for role in ("system:node-bootstrapper", "view"):
            cluster.kubectl("create", "clusterrolebinding", f"{name}-{role.replace(':', '-')}", f"--clusterrole={role}",
                            "--group=developers", check=True)
        req = post()
        for _ in range(100):  # the authorizer's cache follows the binding within milliseconds
            try:
                urllib.request.urlopen(urllib.request.Request(cluster.server + "/api/v1/namespaces/default"),
                                       context=ctx, timeout=10).close()
                break
            except urllib.error.HTTPError:
                time.sleep(0.02)
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert resp.status == 201
            created = json.loads(resp.read())
        assert created["spec"]["username"] == f"alice-{name}"
        assert created["spec"]["groups"] == ["developers", "system:authenticated"]
        with urllib.request.urlopen(urllib.request.Request(cluster.server + "/api/v1/namespaces/default"),
                                    context=ctx, timeout=10) as resp:
            assert json.loads(resp.read())["metadata"]["name"] == "default"
        # And kubectl with it as its credentials.
        kc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "alice",
            "clusters": [{"name": "c", "cluster": {"server": cluster.server,
                                                   "certificate-authority": str(cluster.data_dir / "pki" / "ca.crt")}}],
            "users": [{"name": "alice", "user": {"client-certificate": str(tmp_path / "c.crt"),
                                                 "client-key": str(tmp_path / "c.key")}}],
            "contexts": [{"name": "alice", "context": {"cluster": "c", "user": "alice"}}],
        }
        (tmp_path / "alice.kubeconfig").write_text(json.dumps(kc))
        res = cluster.kubectl("get", "csr", f"{name}-by-alice", "--no-headers",
                              env={"KUBECONFIG": str(tmp_path / "alice.kubeconfig")})
        assert res.returncode == 0, res.stderr
        assert f"alice-{name}" in res.stdout
    finally:
        cluster.kubectl("delete", "csr", name, f"{name}-by-alice")
        cluster.kubectl("delete", "clusterrolebinding", f"{name}-system-node-bootstrapper", f"{name}-view",
                        "--ignore-not-found")


def test_deny_and_the_verdicts_are_exclusive(cluster: Cluster) -> None:
    name = f"bob-{uid()}"
    _, request = key_and_request("bob")
    create(cluster, csr_object(name, request)).check_returncode()
    try:
        out = cluster.kubectl("certificate", "deny", name, check=True).stdout
        assert out.strip() == f"certificatesigningrequest.certificates.k8s.io/{name} denied"
        csr = get(cluster, "csr", name)
        assert csr is not None
        assert [c["type"] for c in csr["status"]["conditions"]] == ["Denied"]
        assert "certificate" not in csr["status"]
        assert cluster.kubectl("get", "csr", name, "--no-headers", check=True).stdout.split()[-1] == "Denied"
        # kubectl will not approve a denied request; the API refuses it too: the verdicts exclude each other.
        res = cluster.kubectl("certificate", "approve", name)
        assert res.returncode != 0
        raw = Raw(cluster)
        path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
        both = json.loads(json.dumps(csr))
        both["status"]["conditions"].append({"type": "Approved", "status": "True", "reason": "Test"})
        status, body = raw.json("PUT", path + "/approval", both)
        assert status == 422, body
        assert body["message"] == (
            f'CertificateSigningRequest.certificates.k8s.io "{name}" is invalid: status.conditions[1].type: '
            'Invalid value: "Approved": Approved and Denied conditions are mutually exclusive'
        )
        # Nor may the status subresource take the verdict back.
        csr["status"]["conditions"] = []
        status, body = raw.json("PUT", path + "/status", csr)
        assert status == 422, body
        assert 'status.conditions: Forbidden: updates may not remove a condition of type "Denied"' in body["message"]
    finally:
        cluster.kubectl("delete", "csr", name)


def test_signer_rules(cluster: Cluster) -> None:
    """Each signer's usage and subject rules: a broken request is marked Failed, never signed."""
    names = []
    try:
        # kube-apiserver-client without client auth.
        bad_usage = f"bad-usage-{uid()}"
        _, request = key_and_request("carol")
        create(cluster, csr_object(bad_usage, request, usages=["server auth"])).check_returncode()
        names.append(bad_usage)
        # kubelet-serving with the right subject and SANs.
        serving = f"serving-{uid()}"
        _, request = key_and_request("system:node:n1", "system:nodes", ["n1.example"])
        create(cluster, csr_object(serving, request, "kubernetes.io/kubelet-serving",
                                   ["digital signature", "server auth"])).check_returncode()
        names.append(serving)
        # kubelet-serving whose subject is no node.
        not_node = f"not-node-{uid()}"
        _, request = key_and_request("dave", None, ["dave.example"])
        create(cluster, csr_object(not_node, request, "kubernetes.io/kubelet-serving",
                                   ["digital signature", "server auth"])).check_returncode()
        names.append(not_node)
        # A signer of someone else's: approved, never signed by this cluster.
        other = f"other-{uid()}"
        _, request = key_and_request("erin")
        create(cluster, csr_object(other, request, "example.com/signer")).check_returncode()
        names.append(other)
        cluster.kubectl("certificate", "approve", *names, check=True)

        def failed(name: str) -> str:
            csr = get(cluster, "csr", name) or {}
            conds = [c for c in csr.get("status", {}).get("conditions", []) if c["type"] == "Failed"]
            return str(conds[0]["message"]) if conds else ""

        assert wait_until(lambda: failed(bad_usage), "a Failed condition", 15) == \
            "invalid usage for client certificate: server auth"
        assert wait_until(lambda: failed(not_node), "a Failed condition", 15) == "subject organization is not system:nodes"
        cert = wait_until(lambda: (get(cluster, "csr", serving) or {}).get("status", {}).get("certificate"),
                          "the serving certificate", 15)
        served = x509.load_pem_x509_certificate(base64.b64decode(cert))
        assert served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == ["n1.example"]
        assert (cluster.kubectl("get", "csr", bad_usage, "--no-headers", check=True).stdout.split()[-1]
                == "Approved,Failed")
        other_csr = get(cluster, "csr", other)
        assert other_csr is not None and "certificate" not in other_csr["status"]
    finally:
        cluster.kubectl("delete", "csr", *names)


def test_validation_messages(cluster: Cluster) -> None:
    _, request = key_and_request("frank")
    name = f"v-{uid()}"
    res = create(cluster, csr_object(name, request, seconds=599))
    assert res.returncode != 0
    assert (f'The CertificateSigningRequest "{name}" is invalid: spec.expirationSeconds: Invalid value: 599: '
            "may not specify a duration less than 600 seconds (10 minutes)") in res.stderr, res.stderr
    res = create(cluster, csr_object(name, request, "kubernetes.io/legacy-unknown"))
    assert ('spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": '
            "the legacy signerName is not allowed via this API version") in res.stderr, res.stderr
    res = create(cluster, csr_object(name, request, usages=[]))
    assert "spec.usages: Required value" in res.stderr, res.stderr
    res = create(cluster, csr_object(name, request, usages=["client auth", "client auth"]))
    assert 'spec.usages[1]: Duplicate value: "client auth"' in res.stderr, res.stderr
    not_pem = base64.b64encode(b"hello").decode()
    obj = csr_object(name, request)
    obj["spec"]["request"] = not_pem
    res = create(cluster, obj)
    assert ("spec.request: Invalid value: []byte{0x68, 0x65, 0x6c, 0x6c, 0x6f}: "
            "PEM block type must be CERTIFICATE REQUEST") in res.stderr, res.stderr
    # A request whose signature does not verify (its body altered after signing).
    der = x509.load_pem_x509_csr(request).public_bytes(serialization.Encoding.DER)
    tampered_der = der.replace(b"frank", b"frang")
    tampered = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(tampered_der) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    obj["spec"]["request"] = base64.b64encode(tampered).decode()
    res = create(cluster, obj)
    assert "x509: ECDSA verification failure" in res.stderr, res.stderr
    assert get(cluster, "csr", name) is None
    # CertificateSubjectRestriction: no system:masters client certificates through the API.
    _, masters = key_and_request("mallory", "system:masters")
    res = create(cluster, csr_object(name, masters))
    assert res.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": certificatesigningrequests.certificates.k8s.io '
        f'"{name}" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group '
        "is not allowed"
    )


def test_server_side_apply_records_the_requestor_and_discovery_lists_the_kinds(cluster: Cluster) -> None:
    name = f"ssa-{uid()}"
    _, request = key_and_request("grace")
    res = cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(csr_object(name, request)))
    assert res.returncode == 0, res.stderr
    try:
        csr = get(cluster, "csr", name)
        assert csr is not None and csr["spec"]["username"] == "kubernetes-admin"
    finally:
        cluster.kubectl("delete", "csr", name)
    lines = cluster.kubectl("api-resources", check=True).stdout.splitlines()
    rows = {tuple(line.split()) for line in lines[1:]}
    assert ("certificatesigningrequests", "csr", "certificates.k8s.io/v1", "false", "CertificateSigningRequest") in rows
    assert ("limitranges", "limits", "v1", "true", "LimitRange") in rows
    assert ("resourcequotas", "quota", "v1", "true", "ResourceQuota") in rows
    explained = cluster.kubectl("explain", "csr.spec.expirationSeconds", check=True).stdout
    assert "FIELD: expirationSeconds <integer>" in explained


def test_requests_are_listed_by_signer(cluster: Cluster) -> None:
    names = {signer: f"sel-{uid()}" for signer in ("kubernetes.io/kube-apiserver-client", "example.com/other")}
    for signer, name in names.items():
        _, request = key_and_request(name)
        create(cluster, csr_object(name, request, signer=signer)).check_returncode()
    try:
        for signer, name in names.items():
            out = cluster.kubectl("get", "csr", "--field-selector", f"spec.signerName={signer}",
                                  "-o", "name", check=True).stdout.split()
            assert f"certificatesigningrequest.certificates.k8s.io/{name}" in out
            assert all(f"/{other}" not in out for other in names.values() if other != name)
    finally:
        for name in names.values():
            cluster.kubectl("delete", "csr", name)
