"""Packing a dataset from its archive against packing its folder: what the unpacking costs in time, and the disk
the unpacked folder takes while the pack runs (a zip's images are read in place). Prints JSON.

    python benchmarks/pack_archive.py --images 2000 --repeats 3

A generated demo dataset (under runs/bench/), zipped (stored, as most dataset zips hold JPEGs), tarred (as VOC's)
and tarred with gzip; each packed `--repeats` times into a fresh store, side by side in one run, with the same
workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tarfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.pack.archive import disk_use  # noqa: E402


def archive(data: str, out: str) -> None:
    if out.endswith(".zip"):
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for dirpath, _, files in sorted(os.walk(data)):
                for f in sorted(files):
                    path = os.path.join(dirpath, f)
                    z.write(path, os.path.join("demo", os.path.relpath(path, data)))
    else:
        with tarfile.open(out, "w:gz" if out.endswith(".tgz") else "w") as t:
            t.add(data, "demo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="runs/bench/pack_archive")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data = os.path.join(args.out, "data")
    generate(data, DemoConfig(images=args.images, seed=5))
    sources = {"folder": data, "zip": os.path.join(args.out, "demo.zip"), "tar": os.path.join(args.out, "demo.tar")}
    sources["tar.gz"] = sources["tar.gz by hand"] = os.path.join(args.out, "demo.tgz")
    for kind in ("zip", "tar", "tar.gz"):
        archive(data, sources[kind])
    secs: dict[str, list[float]] = {kind: [] for kind in sources}
    unpacked_mb = {}
    for _ in range(args.repeats):
        for kind, src in sources.items():  # interleaved: a slow moment of the machine hits every kind alike
            store = os.path.join(args.out, f"{kind}.lmdb")
            if os.path.exists(store):
                os.remove(store)
            t0 = time.perf_counter()
            if kind.endswith("by hand"):  # what one does without fastload's archives: unpack, pack the folder
                by_hand = os.path.join(args.out, "by-hand")
                shutil.rmtree(by_hand, ignore_errors=True)
                with tarfile.open(src) as t:
                    t.extractall(by_hand, filter="data")
                meta = pack(os.path.join(by_hand, "demo"), store, PackOptions(workers=args.workers), quiet=True)
                meta["pack"]["unpacked_mb"] = round(disk_use(by_hand) / 1e6, 1)
            else:
                meta = pack(src, store, PackOptions(workers=args.workers), quiet=True)
            secs[kind].append(time.perf_counter() - t0)
            assert sum(s["count"] for s in meta["splits"].values()) == args.images
            if kind != "folder":
                unpacked_mb[kind] = meta["pack"]["unpacked_mb"]  # the unpacking folder's disk, the pack's measure
    folder = statistics.median(secs["folder"])
    result = {
        "benchmark": "pack_archive",
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
        "images": args.images,
        "dataset_mb": round(sum(os.path.getsize(os.path.join(d, f)) for d, _, n in os.walk(data) for f in n) / 1e6, 1),
        "archive_mb": {kind: round(os.path.getsize(sources[kind]) / 1e6, 1) for kind in ("zip", "tar", "tar.gz")},
        "unpacked_disk_mb": unpacked_mb,
        "workers": args.workers,
        "seconds_median": {kind: round(statistics.median(s), 3) for kind, s in secs.items()},
        "seconds": {kind: [round(x, 3) for x in s] for kind, s in secs.items()},
        "vs_folder": {kind: round(statistics.median(s) / folder, 2) for kind, s in secs.items() if kind != "folder"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
