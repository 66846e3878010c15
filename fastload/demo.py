"""The main job on the built-in default (`make demo`): generate the demo dataset, pack it into LMDB and Zarr,
verify both, measure how fast each reads in shuffled order, and bench the augmenting loader briefly."""

from __future__ import annotations

import json
import os
import time

from fastload.demo_data import DemoConfig, generate
from fastload.pack import PackOptions, pack
from fastload.store import disk_bytes, open_store, shuffled_order
from fastload.verify import verify_store


def read_rate(path: str, seed: int = 0) -> float:
    """Records per second reading one split in shuffled, locality-aware order (image bytes touched)."""
    store = open_store(path)
    order = shuffled_order(store, seed)
    t0 = time.perf_counter()
    for i in order:
        rec = store.get(int(i))
        rec.image[-1]  # touch the bytes so mmap pages are really read
    return len(order) / max(time.perf_counter() - t0, 1e-9)


def ensure_demo_data(
    out: str, images: int, seed: int = 0, workers: int | None = None, polygons: bool = False, classify: bool = False
) -> str:
    """Generate the demo dataset once into `out` (regenerated only if the parameters change); `polygons`: label rows
    as the shapes' polygons; `classify`: one shape a picture, in class folders."""
    stamp = os.path.join(out, ".demo.json")
    want = {"images": images, "seed": seed} | ({"polygons": True} if polygons else {})
    want |= {"classify": True} if classify else {}
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == want:
                return out
    cfg = DemoConfig(images=images, seed=seed, polygons=polygons, classify=classify)
    generate(out, cfg, workers or min(8, os.cpu_count() or 1))
    with open(stamp, "w") as f:
        json.dump(want, f)
    return out


def ensure_demo_store(out: str, images: int = 500, polygons: bool = False, classify: bool = False) -> str:
    """The demo dataset packed into `<out>/demo.lmdb` (generated and packed once); with `polygons` (a segmentation
    model's demo), labelled with the shapes' polygons, in `<out>/demo-polygons.lmdb`; with `classify` (a
    classification model's), one shape a picture in class folders, in `<out>/demo-classify.lmdb`."""
    suffix = "-polygons" if polygons else "-classify" if classify else ""
    path = os.path.join(out, f"demo{suffix}.lmdb")
    if not os.path.exists(path):
        data = ensure_demo_data(os.path.join(out, f"data{suffix}"), images, polygons=polygons, classify=classify)
        pack(data, path, PackOptions(workers=min(8, os.cpu_count() or 1)))
    return path


def run_demo(out: str, images: int = 500) -> dict:
    data = ensure_demo_data(os.path.join(out, "data"), images)
    result = {"dataset": os.path.abspath(data), "images": images, "stores": {}}
    for fmt, name in (("lmdb", "demo.lmdb"), ("zarr", "demo.zarr")):
        path = os.path.join(out, name)
        t0 = time.perf_counter()
        meta = pack(data, path, PackOptions(fmt=fmt, workers=min(8, os.cpu_count() or 1)))
        secs = time.perf_counter() - t0
        count = sum(s["count"] for s in meta["splits"].values())
        check = verify_store(path, decode=True)
        result["stores"][fmt] = {
            "path": path,
            "count": count,
            "skipped": len(meta["skipped"]),
            "pack_images_per_sec": count / secs,
            "disk_bytes": disk_bytes(path),
            "verify_ok": check["ok"],
            "read_images_per_sec": read_rate(path),
        }
    result["source_bytes"] = disk_bytes(os.path.join(data, "images"))
    from fastload.bench import run_bench

    loader = run_bench(os.path.join(out, "demo.lmdb"), imgsz=320, batch=16, batches=6, workers=2)
    loader.pop("batch_ms")
    result["loader_bench"] = loader
    return result
