"""The cluster's kubeconfig, and merging it into the user's own (as kind and k3d do).

``kubelite up`` always writes ``DATA_DIR/kubeconfig``. So that plain ``kubectl`` works
right away, it also merges a context named after the cluster into the kubeconfig kubectl
reads by default (the first file of ``$KUBECONFIG``, else ``~/.kube/config``) and makes it
the current context; ``kubelite down`` (and a clean stop of ``up``) take it out again.

The user's file is theirs: it is changed under kubectl's own lock (``FILE.lock``, created
exclusively, which is what ``kubectl config`` honours), only our three entries are touched,
the result is written to a temporary file and renamed over, and a file that does not parse
is left alone with an error instead of being replaced.

Under ``sudo`` the cluster belongs to the user who ran sudo: their ``~/.kube/config`` is the
one kubectl will read afterwards, so that is where the context goes (owned by them).
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import pwd
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from kubelite.apiserver.pki import PKI


class KubeconfigError(Exception):
    """The user's kubeconfig could not be read or changed (it is left as it was)."""


def build(name: str, server: str, pki: PKI) -> dict[str, Any]:
    """The cluster's own kubeconfig: one cluster, its admin user, one context, all named after it."""

    def b64(p: pathlib.Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    user = admin_user(name)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}],
        "users": [
            {"name": user, "user": {"client-certificate-data": b64(pki.admin_cert), "client-key-data": b64(pki.admin_key)}}
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


def build_component(name: str, server: str, pki: PKI, base: str, user: str) -> dict[str, Any]:
    """A component's kubeconfig, as kubeadm writes ``controller-manager.conf`` and its siblings:
    the cluster, the component's own client certificate (``pki/BASE.crt``), one context
    ``USER@CLUSTER``."""

    def b64(p: pathlib.Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    context = f"{user}@{name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(pki.client_cert(base)),
                                          "client-key-data": b64(pki.client_key(base))}}],
        "contexts": [{"name": context, "context": {"cluster": name, "user": user}}],
        "current-context": context,
    }


def admin_user(cluster: str) -> str:
    return f"{cluster}-admin"


def write_private(path: pathlib.Path, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """Write ``path`` atomically with mode 0600 (it holds credentials)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- the user's kubeconfig


def _sudo_user() -> pwd.struct_passwd | None:
    """The user who ran ``sudo kubelite up``, if that is how we run."""
    name = os.environ.get("SUDO_USER")
    if os.geteuid() != 0 or not name or name == "root":
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def default_target() -> tuple[pathlib.Path, tuple[int, int] | None]:
    """Where kubectl looks first, and who should own a file created there.

    kubectl writes new entries into the first file of ``$KUBECONFIG``; without it,
    ``~/.kube/config`` (of the user behind sudo, who runs kubectl afterwards).
    """
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env:
        return pathlib.Path(env[0]).expanduser(), None
    sudo = _sudo_user()
    if sudo is not None:
        return pathlib.Path(sudo.pw_dir) / ".kube" / "config", (sudo.pw_uid, sudo.pw_gid)
    return pathlib.Path.home() / ".kube" / "config", None


@contextlib.contextmanager
def _locked(path: pathlib.Path, timeout: float = 10.0) -> Iterator[None]:
    """kubectl's lock: ``FILE.lock`` created exclusively, removed when done."""
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise KubeconfigError(
                    f"{path} is locked by {lock} (another kubectl or kubelite is writing it; "
                    f"if none is, remove {lock})"
                ) from None
            time.sleep(0.02)
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _load(path: pathlib.Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [], "users": [], "contexts": []}
    except OSError as e:
        raise KubeconfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeconfigError(f"{path} is not valid YAML ({e.__class__.__name__}); left unchanged") from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (not a mapping); left unchanged")
    for section in ("clusters", "users", "contexts"):
        entries = cfg.get(section)
        if entries is None:
            cfg[section] = []
        elif not isinstance(entries, list):
            raise KubeconfigError(f"{path}: {section} is not a list; left unchanged")
    cfg.setdefault("apiVersion", "v1")
    cfg.setdefault("kind", "Config")
    return cfg


def _named(entries: list[Any], name: str) -> dict[str, Any] | None:
    return next((e for e in entries if isinstance(e, dict) and e.get("name") == name), None)


def _foreign(cfg: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """What in ``cfg`` has one of our names but belongs to another cluster (None: nothing).

    Entries are recognised as ours by the cluster's CA and the admin's certificate (both stay
    the same across restarts of one cluster) and, for the context, by pointing at our cluster
    and user: someone else's entries that happen to have our names are never overwritten.
    """
    cluster = ours["clusters"][0]
    existing = _named(cfg["clusters"], cluster["name"])
    ca = cluster["cluster"]["certificate-authority-data"]
    if existing is not None and (existing.get("cluster") or {}).get("certificate-authority-data") != ca:
        return f'a cluster named "{cluster["name"]}"'
    context = ours["contexts"][0]
    existing = _named(cfg["contexts"], context["name"])
    theirs = (existing or {}).get("context") or {}
    if existing is not None and any(theirs.get(k) != v for k, v in context["context"].items()):
        return f'a context named "{context["name"]}"'
    user = ours["users"][0]
    existing = _named(cfg["users"], user["name"])
    cert = user["user"]["client-certificate-data"]
    if existing is not None and (existing.get("user") or {}).get("client-certificate-data") != cert:
        return f'a user named "{user["name"]}"'
    return None


def merge(path: pathlib.Path, ours: dict[str, Any], owner: tuple[int, int] | None = None) -> str:
    """Put our cluster, user and context into ``path`` and make our context the current one;
    returns the context that was current before ("" if none), for ``unmerge`` to restore.

    Entries of the same names from an earlier run of this cluster are replaced; entries of
    the same names that belong to something else are a KubeconfigError (nothing is written).
    """
    if owner is not None and not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        os.chown(path.parent, *owner)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(path):
        cfg = _load(path)
        clash = _foreign(cfg, ours)
        if clash is not None:
            raise KubeconfigError(
                f"{path} already has {clash} for another cluster; left unchanged "
                "(use another --name, or --no-kubeconfig-merge)"
            )
        for section in ("clusters", "users", "contexts"):
            for entry in ours[section]:
                cfg[section] = [*(e for e in cfg[section] if not (isinstance(e, dict) and e.get("name") == entry["name"])),
                                entry]
        previous = cfg.get("current-context") or ""
        cfg["current-context"] = ours["current-context"]
        if owner is None and path.exists():
            st = path.stat()
            owner = (st.st_uid, st.st_gid)
        write_private(path, yaml.safe_dump(cfg, sort_keys=False).encode(), owner)
    return "" if previous == ours["current-context"] else str(previous)


def unmerge(path: pathlib.Path, ours: dict[str, Any], previous: str = "") -> bool:
    """Take our entries out of ``path``; True if there was anything to take out.

    Only entries that are ours (see ``_foreign``) go. If our context was the current one, the
    one current before ``merge`` (``previous``) is restored if it still exists, else the
    current context is unset (as ``kind delete cluster`` does): pointing kubectl at a
    cluster the user did not choose would be worse than no context.
    """
    if not path.exists():
        return False
    with _locked(path):
        cfg = _load(path)
        if _foreign(cfg, ours) is not None:
            return False
        changed = False
        for section in ("clusters", "users", "contexts"):
            name = ours[section][0]["name"]
            kept = [e for e in cfg[section] if not (isinstance(e, dict) and e.get("name") == name)]
            changed |= len(kept) != len(cfg[section])
            cfg[section] = kept
        if cfg.get("current-context") == ours["current-context"]:
            cfg["current-context"] = previous if _named(cfg["contexts"], previous) is not None else ""
            changed = True
        if changed:
            st = path.stat()
            write_private(path, yaml.safe_dump(cfg, sort_keys=False).encode(), (st.st_uid, st.st_gid))
        return changed
