"""``kubelite image load|ls|rm|pull``: the node's image store from the command line.

Like ``kind load`` / ``k3s ctr images import``, but with no daemon to talk to: the store is
files under the cluster's data dir (see :mod:`kubelite.images.store`), so these commands
work whether the cluster runs or not; a running agent sees the change at its next look.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import pathlib
import sys
import time
from typing import Any

from kubelite.images import split_reference
from kubelite.images.store import ImageStore, StoreError


def human_size(size: int) -> str:
    """crictl's size column (go-units HumanSizeWithPrecision(size, 3): decimal units)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{size}B"


def ls_lines(store: ImageStore) -> list[str]:
    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
    for name, record in sorted(store.records().items()):
        repository, version = split_reference(name)
        tag = "<none>" if version.startswith("sha256:") else version
        rows.append((repository, tag, record.config_digest.removeprefix("sha256:")[:13], human_size(record.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:<{widths[2]}}   {r[3]}".rstrip() for r in rows]


def creds_secret(ref: str, creds: str) -> dict[str, Any]:
    """``--creds USER:PASSWORD`` as the pull secret a pod would have for ``ref``'s registry."""
    from kubelite.images.pull import registry_host

    user, _, password = creds.partition(":")
    doc = {"auths": {registry_host(ref): {"username": user, "password": password}}}
    return {"type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(doc).encode()).decode()}}


def run_image(args: argparse.Namespace, data_dir: pathlib.Path) -> int:
    store = ImageStore(data_dir / "imagestore")
    try:
        if args.image_command == "ls":
            print("\n".join(ls_lines(store)))
            return 0
        if args.image_command == "load":
            for f in args.files:
                started = time.monotonic()
                path = pathlib.Path(f)
                if not path.is_file():
                    raise StoreError(f"{f}: no such file")
                records = store.load(path, args.tag or None)
                for record in records:
                    print(f"loaded {record.name} ({record.digest}, {human_size(record.size)}) "
                          f"in {time.monotonic() - started:.2f}s")
            return 0
        if args.image_command == "rm":
            code = 0
            for ref in args.refs:
                removed = store.remove(ref)
                if removed:
                    print("\n".join(f"Deleted: {n}" for n in removed))
                else:
                    print(f'kubelite: no such image "{ref}"', file=sys.stderr)
                    code = 1
            return code
        if args.image_command == "pull":
            from kubelite.images.pull import Puller, PullError

            puller = Puller(store, args.insecure_registry)
            for ref in args.refs:
                secrets = [creds_secret(ref, args.creds)] if args.creds else []
                try:
                    result = asyncio.run(puller.pull(ref, secrets))
                except PullError as e:
                    print(f'kubelite: pulling image "{ref}": {e}', file=sys.stderr)
                    return 1
                print(f"Image is up to date for {result.image.name} ({result.image.image_id}) "
                      f"in {result.seconds:.2f}s")
            return 0
    except StoreError as e:
        print(f"kubelite: {e}", file=sys.stderr)
        return 1
    return 2
