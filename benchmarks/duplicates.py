"""`fastload verify --duplicates` on a store with planted copies: how many it finds, how many groups it makes that
were not planted, and how fast it hashes. Prints JSON.

    python benchmarks/duplicates.py --images 3000 --planted 100 --repeats 3

A generated demo dataset (under runs/bench/); `--planted` of its train images are copied byte for byte into val,
and as many others shrunk to half and re-encoded at quality 70 (what a resized export makes); then packed, and the
search run `--repeats` times.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # noqa: E402

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.duplicates import find_duplicates  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402


def plant(data: str, planted: int) -> set[frozenset]:
    """Copy `planted` train images into val byte for byte and `planted` others shrunk; the planted pairs."""
    train = sorted(os.listdir(os.path.join(data, "images", "train")))
    pairs = set()
    for k, name in enumerate(train[: 2 * planted]):
        src = os.path.join(data, "images", "train", name)
        copy = f"copy_{k:04d}.jpg"
        if k < planted:
            shutil.copyfile(src, os.path.join(data, "images", "val", copy))
        else:
            out = io.BytesIO()
            Image.open(src).reduce(2).save(out, "JPEG", quality=70)
            with open(os.path.join(data, "images", "val", copy), "wb") as f:
                f.write(out.getvalue())
        pairs.add(frozenset({f"images/train/{name}", f"images/val/{copy}"}))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--planted", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="runs/bench/duplicates")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data, store = os.path.join(args.out, "data"), os.path.join(args.out, "d.lmdb")
    generate(data, DemoConfig(images=args.images, seed=3))
    pairs = plant(data, args.planted)
    pack(data, store, PackOptions(workers=args.workers), quiet=True)
    secs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        found = find_duplicates(store, workers=args.workers, quiet=True)
        secs.append(time.perf_counter() - t0)
    groups = [frozenset(g["path"] for g in group["images"]) for group in found["listed"]]
    result = {
        "benchmark": "duplicates",
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
        "images": found["images"],
        "planted_pairs": len(pairs),
        "planted_found": len(pairs & set(groups)),
        "found_by_kind": {k: sum(g["kind"] == k for g in found["listed"]) for k in ("exact", "near")},
        "groups_not_planted": sum(g not in pairs for g in groups),
        "across_splits": found["across_splits"],
        "workers": args.workers,
        "seconds_median": round(statistics.median(secs), 3),
        "seconds": [round(s, 3) for s in secs],
        "images_per_sec": round(found["images"] / statistics.median(secs), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
