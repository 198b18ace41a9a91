"""Merging the cluster's context into the user's kubeconfig, and taking it out again.

The user's file is theirs: these tests check that only our entries change, that someone
else's entries with our names are never overwritten, that a broken file is left alone, and
that the context that was current comes back.
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Any

import pytest
import yaml

from kubelite.cli import kubeconfig as kcfg


def ours(name: str = "demo", ca: str = "Q0E=", cert: str = "Q0VSVA==", server: str = "https://127.0.0.1:6443") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": f"{name}-admin", "user": {"client-certificate-data": cert, "client-key-data": "S0VZ"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }


USERS_OWN = """\
# my clusters
apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://10.0.0.1:6443"}
contexts:
- name: prod
  context: {cluster: prod, user: me, namespace: web}
users:
- name: me
  user: {token: secret}
current-context: prod
"""


def load(p: pathlib.Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(p.read_text())
    return config


def test_merge_into_a_missing_file_creates_it_private(tmp_path: pathlib.Path) -> None:
    target = tmp_path / ".kube" / "config"
    assert kcfg.merge(target, ours()) == ""
    cfg = load(target)
    assert cfg["current-context"] == "demo"
    assert [c["name"] for c in cfg["contexts"]] == ["demo"]
    assert target.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / ".kube" / "config.lock").exists()


def test_merge_keeps_the_users_entries_and_unmerge_restores_their_context(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "config"
    target.write_text(USERS_OWN)
    previous = kcfg.merge(target, ours())
    assert previous == "prod"
    cfg = load(target)
    assert {c["name"] for c in cfg["clusters"]} == {"prod", "demo"}
    assert {u["name"] for u in cfg["users"]} == {"me", "demo-admin"}
    assert cfg["current-context"] == "demo"
    assert kcfg.unmerge(target, ours(), previous)
    cfg = load(target)
    assert cfg["current-context"] == "prod"
    assert cfg["clusters"] == [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443"}}]
    assert cfg["contexts"] == [{"name": "prod", "context": {"cluster": "prod", "user": "me", "namespace": "web"}}]
    assert cfg["users"] == [{"name": "me", "user": {"token": "secret"}}]
    assert not kcfg.unmerge(target, ours(), previous)  # nothing left to take out


def test_a_restart_replaces_our_entries_even_on_a_new_port(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "config"
    kcfg.merge(target, ours(server="https://127.0.0.1:6443"))
    kcfg.merge(target, ours(server="https://127.0.0.1:7443"))
    cfg = load(target)
    assert [c["cluster"]["server"] for c in cfg["clusters"]] == ["https://127.0.0.1:7443"]
    assert len(cfg["users"]) == 1 and len(cfg["contexts"]) == 1


def test_a_namespace_set_on_our_context_does_not_make_it_foreign(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "config"
    kcfg.merge(target, ours())
    cfg = load(target)
    cfg["contexts"][0]["context"]["namespace"] = "dev"  # kubectl config set-context --current --namespace=dev
    target.write_text(yaml.safe_dump(cfg))
    assert kcfg.unmerge(target, ours())
    assert load(target)["contexts"] == []


@pytest.mark.parametrize("clash", ["cluster", "context", "user"])
def test_someone_elses_entries_with_our_names_are_never_overwritten(tmp_path: pathlib.Path, clash: str) -> None:
    target = tmp_path / "config"
    theirs = ours(ca="T1RIRVI=", cert="T1RIRVI=")
    if clash == "context":
        theirs = ours()
        theirs["contexts"][0]["context"]["cluster"] = "elsewhere"
    kcfg.merge(target, theirs)
    if clash == "cluster":
        mine = ours(cert=theirs["users"][0]["user"]["client-certificate-data"])
    elif clash == "user":
        mine = ours(ca=theirs["clusters"][0]["cluster"]["certificate-authority-data"])
    else:
        mine = ours()
    before = target.read_bytes()
    with pytest.raises(kcfg.KubeconfigError, match=f'already has a {clash} named "demo(-admin)?" for another cluster'):
        kcfg.merge(target, mine)
    assert not kcfg.unmerge(target, mine)
    assert target.read_bytes() == before


@pytest.mark.parametrize("text", ["clusters: [unclosed", "- just\n- a list\n", "clusters: 3\n"])
def test_a_broken_kubeconfig_is_left_alone(tmp_path: pathlib.Path, text: str) -> None:
    target = tmp_path / "config"
    target.write_text(text)
    with pytest.raises(kcfg.KubeconfigError, match="left unchanged"):
        kcfg.merge(target, ours())
    assert target.read_text() == text
    assert sorted(os.listdir(tmp_path)) == ["config"]  # no temporary or lock file left behind


def test_kubectls_lock_is_honoured(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "config"
    lock = tmp_path / "config.lock"
    lock.touch()
    released = threading.Timer(0.2, lock.unlink)
    released.start()
    kcfg.merge(target, ours())  # waits for the lock, then merges
    assert load(target)["current-context"] == "demo"
    lock.touch()
    with pytest.raises(kcfg.KubeconfigError, match="is locked by"), kcfg._locked(target, timeout=0.1):
        pass


def test_concurrent_merges_of_different_clusters_all_land(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "config"
    names = [f"c{i}" for i in range(8)]
    threads = [threading.Thread(target=kcfg.merge, args=(target, ours(n, ca=f"Q{n}", cert=f"C{n}"))) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c["name"] for c in load(target)["contexts"]) == names


def test_the_target_follows_kubectl(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(["", str(tmp_path / "a"), str(tmp_path / "b")]))
    assert kcfg.default_target() == (tmp_path / "a", None)
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kcfg.default_target() == (tmp_path / ".kube" / "config", None)
