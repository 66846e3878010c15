"""Reader memory: RSS of a process that reads every record of a 20k-image store in random order, at 1k and
at 20k records, for LMDB and Zarr, in one process and in 2 forked reader processes; prints one JSON object.

    python benchmarks/store_memory.py --images 20000

RSS is split into RssAnon (private memory) and RssFile (mapped file pages, i.e. the shared page cache);
"at n" is the peak over the 500 records ending at n; `peak` is the maximum over the whole run.
Each reader computes a CRC32 over every image, so every byte is really read.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pack_store import subset_yaml  # noqa: E402

from fastload.demo import ensure_demo_data  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.store import open_store, shuffled_order  # noqa: E402


def memory_kb() -> dict[str, int]:
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssFile")}


def read_all(store, seed: int, marks=(1000, 5000, 20000), window: int = 500) -> dict:
    """Read every record in shuffled order; memory at each mark and the read rate.

    "At n records" is the peak over the `window` records ending at n, sampled every 25 records: LMDB's mapped
    pages follow a sawtooth between two releases, so a single snapshot depends on where in the cycle it falls.
    """
    order = shuffled_order(store, seed)
    out, recent, overall, t0 = {}, [], {}, time.perf_counter()
    for n, i in enumerate(order, 1):
        rec = store.get(int(i))
        zlib.crc32(rec.image)
        if n % 25 == 0 or n == len(order):
            recent = [*recent[-(window // 25 - 1) :], memory_kb()]
            overall = {k: max(v, overall.get(k, 0)) for k, v in recent[-1].items()}
        if n in marks or n == len(order):
            out[f"at_{n}"] = {k: max(m[k] for m in recent) for k in recent[-1]}
    out["peak"] = overall
    out["records_per_sec"] = round(len(order) / (time.perf_counter() - t0), 1)
    base, end = out["at_1000"], out[f"at_{len(order)}"]
    out["rss_growth"] = round(end["VmRSS"] / base["VmRSS"] - 1, 4)
    out["anon_growth"] = round(end["RssAnon"] / base["RssAnon"] - 1, 4)
    return out


def _child(args) -> dict:
    store, seed = args
    return read_all(store, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--work", default="runs/bench")
    args = ap.parse_args()
    data = ensure_demo_data(os.path.join(args.work, f"demo-{args.images}"), args.images)
    src, _ = subset_yaml(data, args.images, os.path.join(args.work, "subsets"))  # all images in one split
    results = {}
    for fmt in ("lmdb", "zarr"):
        path = os.path.join(args.work, f"memory-{args.images}.{fmt}")
        if not os.path.exists(path):
            pack(src, path, PackOptions(fmt=fmt, workers=os.cpu_count() or 1), quiet=True)
        store = open_store(path, "train")
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:  # a fresh process, so earlier runs do not colour its RSS
            single = pool.map(_child, [(store, 0)])[0]
        with ctx.Pool(2) as pool:
            forked = pool.map(_child, [(store, 1), (store, 2)])
        results[fmt] = {"records": len(store), "single": single, "forked": forked}
        print(json.dumps({fmt: results[fmt]}), file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "store_memory",
                "date": time.strftime("%Y-%m-%d"),
                "machine": platform.node(),
                "cpus": os.cpu_count(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
