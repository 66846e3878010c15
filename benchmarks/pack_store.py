"""Pack throughput and store size, LMDB vs Zarr, on the demo dataset; prints one JSON object.

    python benchmarks/pack_store.py --images 10000 --repeats 3

Uses the first N images of a generated demo dataset (generated once under runs/bench/). Each
configuration is packed `--repeats` times; the median is reported. Page cache is warm (files just read).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo import ensure_demo_data  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.store import disk_bytes  # noqa: E402


def subset_yaml(data: str, n: int, out_dir: str) -> tuple[str, int]:
    """A data.yaml whose train split lists the first n images of the dataset (train then val)."""
    files = []
    for split in ("train", "val"):
        folder = os.path.join(os.path.abspath(data), "images", split)
        files += [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    files = files[:n]
    os.makedirs(out_dir, exist_ok=True)
    listing = os.path.abspath(os.path.join(out_dir, f"first-{n}.txt"))
    with open(listing, "w") as f:
        f.write("".join(p + "\n" for p in files))
    yaml_path = os.path.join(out_dir, f"first-{n}.yaml")
    with open(yaml_path, "w") as f:
        f.write(f"path: {os.path.abspath(data)}\ntrain: {listing}\nnames: [circle, rectangle, triangle]\n")
    labels = [p.replace(f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}")[:-4] + ".txt" for p in files]
    return yaml_path, sum(os.path.getsize(p) for p in files + labels if os.path.exists(p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--dataset-images", type=int, default=20000, help="size of the generated dataset to draw from")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--work", default="runs/bench")
    args = ap.parse_args()

    data = ensure_demo_data(os.path.join(args.work, f"demo-{args.dataset_images}"), args.dataset_images)
    src, source_bytes = subset_yaml(data, args.images, os.path.join(args.work, "subsets"))
    for _ in range(2):  # warm the page cache so every configuration reads the same way
        for d, _, fs in os.walk(data):
            for f in fs:
                with open(os.path.join(d, f), "rb") as fh:
                    fh.read()
    configs = [(fmt, int(w), None) for fmt in ("lmdb", "zarr") for w in args.workers.split(",")]
    configs.append(("lmdb", max(int(w) for w in args.workers.split(",")), 512))
    rows = []
    for fmt, workers, max_side in configs:
        out = os.path.join(args.work, f"bench.{fmt}")
        rates, size, count = [], 0, 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            meta = pack(src, out, PackOptions(fmt=fmt, workers=workers, max_side=max_side), quiet=True)
            rates.append(meta["splits"]["train"]["count"] / (time.perf_counter() - t0))
            size, count = disk_bytes(out), meta["splits"]["train"]["count"]
        rate = statistics.median(rates)
        rows.append(
            {
                "format": fmt,
                "workers": workers,
                "max_side": max_side,
                "images": count,
                "images_per_sec": round(rate, 1),
                "images_per_sec_per_worker": round(rate / workers, 1),
                "runs": [round(r, 1) for r in rates],
                "store_bytes": size,
                "store_vs_source": round(size / source_bytes, 4),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True) if os.path.isdir(out) else os.remove(out)
    print(
        json.dumps(
            {
                "benchmark": "pack_store",
                "date": time.strftime("%Y-%m-%d"),
                "machine": platform.node(),
                "cpus": os.cpu_count(),
                "source_bytes": source_bytes,
                "results": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
