"""Image store benchmarks: pull + unpack from a loopback registry, a cached resolution, a load.

Everything is local: images are built here (busybox-static plus random, incompressible files,
so gzip cannot shrink them), pushed to Debian's docker-registry on 127.0.0.1, then:
- pull + unpack of a ~30 MB image into an empty store (skopeo copy + umoci raw unpack);
  goal <= 2 s;
- the second resolution of that image (the kubelet's "already present": a lookup, no unpack),
  side by side with a catalog image's resolution;
- ``kubelite image load`` (the CLI, a new process) of a ~100 MB docker-save archive; goal <= 3 s;
  beside it ``tar -xf`` of the same archive (the disk's floor, measured in the same run).

Usage: python bench/bench_image_pull.py [--runs N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))

from tests import imagefixture as fx

from kubelite import images
from kubelite.images.pull import Puller
from kubelite.images.store import ImageStore
from kubelite.node.images import ImageManager


def random_files(total: int, count: int) -> dict[str, bytes | str]:
    size = total // count
    return {f"/data/blob-{i}.bin": os.urandom(size) for i in range(count)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        layout30 = fx.build_layout(tmp / "l30", "v1", fx.ImageSpec(files=random_files(30_000_000, 6)))
        layout100 = fx.build_layout(tmp / "l100", "v1", fx.ImageSpec(files=random_files(100_000_000, 10)))
        archive = fx.docker_archive(layout100, "v1", "bench.local/big:1", tmp / "big.tar")
        with fx.registry(tmp / "registry") as reg:
            ref = reg.push(layout30, "v1", "bench/thirty:v1")
            pulls, cached, catalog = [], [], []
            for run in range(args.runs):
                store = ImageStore(tmp / f"store-{run}")
                started = time.perf_counter()
                image = asyncio.run(Puller(store).pull(ref)).image
                pulls.append(time.perf_counter() - started)
                manager = ImageManager(images.resolve, store, mode="auto")

                async def no_secrets() -> list[dict[str, object]]:
                    return []

                def ignore(*_: str) -> None:
                    pass

                for _ in range(20):
                    started = time.perf_counter()
                    asyncio.run(manager.ensure(ref, "IfNotPresent", no_secrets, ignore))
                    cached.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    asyncio.run(manager.ensure("registry.k8s.io/pause:3.9", "IfNotPresent", no_secrets, ignore))
                    catalog.append(time.perf_counter() - started)
            results["pull_unpack_30MB_s"] = statistics.median(pulls)
            results["image_size_bytes"] = float(image.size)
            results["cached_resolution_ms"] = statistics.median(cached) * 1000
            results["catalog_resolution_ms"] = statistics.median(catalog) * 1000
        loads = []
        for run in range(args.runs):
            data_dir = tmp / f"load-{run}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kubelite", "image", "load", "--data-dir", str(data_dir), str(archive)],
                           check=True, capture_output=True)
            loads.append(time.perf_counter() - started)
        results["load_100MB_s"] = statistics.median(loads)
        results["archive_bytes"] = float(archive.stat().st_size)
        # The floor in the same run, for a busy machine: GNU tar writing the archive's bytes once.
        floors = []
        for run in range(args.runs):
            target = tmp / f"tar-{run}"
            target.mkdir()
            started = time.perf_counter()
            subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], check=True)
            floors.append(time.perf_counter() - started)
        results["tar_x_100MB_s"] = statistics.median(floors)
        # The same load with umoci unpacking (what images/unpack.py replaces where it can).
        umoci = []
        for run in range(args.runs):
            started = time.perf_counter()
            ImageStore(tmp / f"umoci-{run}", unpacker="umoci").load(archive)
            umoci.append(time.perf_counter() - started)
        results["load_100MB_umoci_s"] = statistics.median(umoci)
    print(f"pull + unpack of a {results['image_size_bytes'] / 1e6:.0f} MB image (loopback registry): "
          f"{results['pull_unpack_30MB_s']:.2f} s (goal <= 2 s)")
    print(f"second resolution of it (no unpack): {results['cached_resolution_ms']:.2f} ms; "
          f"a catalog image: {results['catalog_resolution_ms']:.2f} ms "
          f"({results['cached_resolution_ms'] / max(results['catalog_resolution_ms'], 1e-9):.1f}x)")
    print(f"kubelite image load of a {results['archive_bytes'] / 1e6:.0f} MB docker-save archive: "
          f"{results['load_100MB_s']:.2f} s (goal <= 3 s); tar -x of the same archive: "
          f"{results['tar_x_100MB_s']:.2f} s ({results['load_100MB_s'] / results['tar_x_100MB_s']:.1f}x: "
          "a load writes the bytes twice, blobs then the unpacked root); "
          f"with umoci unpacking: {results['load_100MB_umoci_s']:.2f} s")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
