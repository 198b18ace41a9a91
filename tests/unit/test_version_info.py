"""The API server's /version: the form clients check (kubectl version, conformance's regexp)."""

from __future__ import annotations

import re

from kubelite.apiserver.server import version_info


def test_version_info_has_kube_apiserver_form() -> None:
    v = version_info()
    # What "Kubectl version should check is all data is printed" matches in kubectl 1.20's output.
    printed = (f'version.Info{{Major:"{v["major"]}", Minor:"{v["minor"]}", GitVersion:"{v["gitVersion"]}", '
               f'GitCommit:"{v["gitCommit"]}"')
    assert re.match(r'version.Info\{Major:"\d", Minor:"\d+\+?", GitVersion:"v\d\.\d+\.[\d\w\-\.\+]+", '
                    r'GitCommit:"[0-9a-f]+"', printed), printed
    assert len(v["gitCommit"]) == 40 and v == version_info()  # stable across calls
