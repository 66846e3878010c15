"""Loader memory as the dataset grows: `fastload bench` (mosaic pipeline, workers included; summed PSS and its
private part), each in a fresh process, on a 1k-image and a 20k-image store packed from the same demo dataset;
prints one JSON object.

    python benchmarks/loader_memory.py --small 1000 --large 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pack_store import subset_yaml  # noqa: E402

from fastload.demo import ensure_demo_data  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=20000)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--work", default="runs/bench")
    args = ap.parse_args()
    data = ensure_demo_data(os.path.join(args.work, f"demo-{args.large}"), args.large)
    results = {}
    for n in (args.small, args.large):
        src, _ = subset_yaml(data, n, os.path.join(args.work, "subsets"))
        store = os.path.join(args.work, f"loader-{n}.lmdb")
        if not os.path.exists(store):
            pack(src, store, PackOptions(workers=os.cpu_count() or 1), quiet=True)
        # a fresh process per size: a loader built earlier in the same process would colour the next measurement
        cmd = [
            sys.executable,
            "-m",
            "fastload",
            "bench",
            store,
            "--imgsz",
            str(args.imgsz),
            "--batch",
            str(args.batch),
            "--batches",
            str(args.batches),
            "--workers",
            "2",
            "--json",
        ]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        results[n] = {k: r[k] for k in ("images_per_sec", "rss_peak_mb", "private_peak_mb", "stages")}
        print(json.dumps({n: results[n]}), file=sys.stderr)
    big, small = results[args.large], results[args.small]
    print(
        json.dumps(
            {
                "benchmark": "loader_memory",
                "date": time.strftime("%Y-%m-%d"),
                "imgsz": args.imgsz,
                "batch": args.batch,
                "workers": 2,
                "results": results,
                "pss_growth": round(big["rss_peak_mb"] / small["rss_peak_mb"] - 1, 4),
                "private_growth": round(big["private_peak_mb"] / small["private_peak_mb"] - 1, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
