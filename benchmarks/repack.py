"""Packing a dataset again after an edit: every input packed again, against the unchanged ones' records copied from
the earlier store (`fastload pack`'s reuse; what `fastload train --data DATASET` does after an edit). Prints JSON.

    python benchmarks/repack.py --images 10000 --changed 0.01 --repeats 3

A generated demo dataset (under runs/bench/); a share of its label files gets a row more; then each way packs it
`--repeats` times, alternated (page cache warm for both: the files and the earlier store were just read). Twice:
images kept as they are, then shrunk to `--max-side` (re-encoded: what a packed input costs most).
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


def read_all(*roots: str) -> None:
    """Warm the page cache with every file under `roots` (so neither way pays the first read)."""
    for root in roots:
        paths = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
        for path in paths:
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--changed", type=float, default=0.01, help="share of the label files edited")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--max-side", type=int, default=512, help="the second configuration re-encodes to this side")
    ap.add_argument("--work", default="runs/bench")
    args = ap.parse_args()

    generated = ensure_demo_data(os.path.join(args.work, f"demo-{args.images}"), args.images)
    data = os.path.join(args.work, f"repack-{args.images}")  # a copy: the edits stay out of the generated one
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(generated, data)
    labels = sorted(os.path.join(data, "labels", "train", n) for n in os.listdir(os.path.join(data, "labels", "train")))
    edited = labels[:: max(1, round(1 / args.changed))] if args.changed > 0 else []
    rows = [measure(args, data, max_side, edited) for max_side in (None, args.max_side)]
    print(
        json.dumps(
            {
                "benchmark": "repack",
                "date": time.strftime("%Y-%m-%d"),
                "machine": platform.node(),
                "cpus": os.cpu_count(),
                "workers": args.workers,
                "edited_label_files": len(edited),
                "results": rows,
            }
        )
    )
    shutil.rmtree(data)


def measure(args, data: str, max_side: int | None, edited: list[str]) -> dict:
    """Pack `data` (its `edited` label files as they were), edit them, then pack it again both ways, alternated."""
    earlier = os.path.join(args.work, "repack-earlier.lmdb")
    pack(data, earlier, PackOptions(workers=args.workers, max_side=max_side), quiet=True)
    for path in edited:
        with open(path, "a") as f:
            f.write("0 0.5 0.5 0.05 0.05\n")
    read_all(data, earlier)
    times: dict[str, list[float]] = {"every_input": [], "reuse": []}
    reused = 0
    for _ in range(args.repeats):
        for way in times:
            out = os.path.join(args.work, f"repack-{way}.lmdb")
            opts = PackOptions(workers=args.workers, max_side=max_side, reuse=earlier if way == "reuse" else None)
            t0 = time.perf_counter()
            meta = pack(data, out, opts, quiet=True)
            times[way].append(time.perf_counter() - t0)
            reused = meta["pack"].get("reused", {}).get("records", reused)
            os.remove(out)
    for path in edited:  # as they were, for the next configuration
        with open(path) as f:
            rows = f.readlines()
        with open(path, "w") as f:
            f.writelines(rows[:-1])
    os.remove(earlier)
    count = sum(s["count"] for s in meta["splits"].values())
    every, reuse = statistics.median(times["every_input"]), statistics.median(times["reuse"])
    row = {
        "max_side": max_side,
        "images": count,
        "reused_records": reused,
        "seconds_every_input": round(every, 3),
        "seconds_reuse": round(reuse, 3),
        "images_per_sec_every_input": round(count / every, 1),
        "images_per_sec_reuse": round(count / reuse, 1),
        "speedup": round(every / reuse, 2),
        "runs": {k: [round(t, 3) for t in v] for k, v in times.items()},
    }
    print(json.dumps(row), file=sys.stderr)
    return row


if __name__ == "__main__":
    main()
