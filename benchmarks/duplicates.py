"""`fastload verify --duplicates` on a store with planted copies: how many it finds, how many groups it makes that
were not planted, and how fast it hashes and searches, with and without comparing mirror images, and with cropped
copies searched (`--crops`). Prints JSON.

    python benchmarks/duplicates.py --images 3000 --planted 100 --repeats 3

A generated demo dataset (under runs/bench/); `--planted` of its train images are copied byte for byte into val,
as many others shrunk to half and re-encoded at quality 70 (what a resized export makes), and as many others
mirrored and re-encoded at quality 90 (what a flip-augmented export holds), and as many others cropped: a 5-20%
zoom at a random place, shrunk to 0.7 and re-encoded at quality 75 (Roboflow's crop augmentation), every other one
of them mirrored too; then packed, and each search run `--repeats` times. `--frames`: also a still scene's video
frames (one demo picture with noise, 1 in 10 in val: one group), searched with and without `--crops`.
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

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # noqa: E402

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.duplicates import find_duplicates  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402

KINDS = ("exact", "near", "mirrored", "cropped")


def cropped(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A 5-20% zoom at a random place, shrunk to 0.7."""
    w, h = image.size
    z = rng.uniform(0.05, 0.2)
    cw, ch = w * (1 - z), h * (1 - z)
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    return image.crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch))).resize((int(cw * 0.7), int(ch * 0.7)))


def plant(data: str, planted: int) -> dict[str, set[frozenset]]:
    """Copy `planted` train images into val byte for byte, `planted` others shrunk, `planted` others mirrored,
    `planted` others cropped; the planted pairs, by kind."""
    train = sorted(os.listdir(os.path.join(data, "images", "train")))
    pairs = {kind: set() for kind in KINDS}
    rng = np.random.default_rng(0)
    for k, name in enumerate(train[: len(KINDS) * planted]):
        src = os.path.join(data, "images", "train", name)
        copy = f"copy_{k:04d}.jpg"
        kind = KINDS[k // planted]
        if kind == "exact":
            shutil.copyfile(src, os.path.join(data, "images", "val", copy))
        else:
            out, image = io.BytesIO(), Image.open(src)
            if kind == "near":
                image.reduce(2).save(out, "JPEG", quality=70)
            elif kind == "mirrored":
                image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out, "JPEG", quality=90)
            else:
                image = cropped(image, rng)
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if k % 2 else image
                image.save(out, "JPEG", quality=75)
            with open(os.path.join(data, "images", "val", copy), "wb") as f:
                f.write(out.getvalue())
        pairs[kind].add(frozenset({f"images/train/{name}", f"images/val/{copy}"}))
    return pairs


def still_scene(root: str, frames: int, workers: int, repeats: int) -> dict:
    """`frames` noisy copies of one demo picture packed, and the seconds each search takes (median of `repeats`)."""
    generate(os.path.join(root, "one"), DemoConfig(images=1, seed=0, val_fraction=0.0))
    folder = os.path.join(root, "one", "images", "train")
    source = np.asarray(Image.open(os.path.join(folder, os.listdir(folder)[0])).convert("RGB"), np.float32)
    rng = np.random.default_rng(0)
    for i in range(frames):
        split = os.path.join(root, "frames", "images", "val" if i % 10 == 0 else "train")
        os.makedirs(split, exist_ok=True)
        noisy = np.clip(source + rng.normal(0, 3, source.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(os.path.join(split, f"f{i:05d}.jpg"), quality=85)
    store = os.path.join(root, "frames.lmdb")
    pack(os.path.join(root, "frames"), store, PackOptions(workers=workers), quiet=True)
    out = {"frames": frames}
    for name, crops in (("default", False), ("crops", True)):
        secs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            found = find_duplicates(store, workers=workers, quiet=True, crops=crops)
            secs.append(time.perf_counter() - t0)
        out[name] = {"groups": found["groups"], "images_in_groups": found["images_in_groups"],
                     "seconds_median": round(statistics.median(secs), 3)}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--planted", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--frames", type=int, default=0, help="a still scene's frames searched too (0: none)")
    ap.add_argument("--out", default="runs/bench/duplicates")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data, store = os.path.join(args.out, "data"), os.path.join(args.out, "d.lmdb")
    generate(data, DemoConfig(images=args.images, seed=3))
    pairs = plant(data, args.planted)
    pack(data, store, PackOptions(workers=args.workers), quiet=True)
    result = {
        "benchmark": "duplicates",
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
        "planted_pairs": {kind: len(p) for kind, p in pairs.items()},
        "workers": args.workers,
    }
    searches = {"with_mirrors": {}, "without_mirrors": {"mirrored": False}, "with_crops": {"crops": True}}
    for name, how in searches.items():
        secs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            found = find_duplicates(store, workers=args.workers, quiet=True, **how)
            secs.append(time.perf_counter() - t0)
        groups = {frozenset(g["path"] for g in group["images"]): group["kind"] for group in found["listed"]}
        planted = set().union(*pairs.values())
        result[name] = {
            "images": found["images"],
            "planted_found": {kind: len(p & set(groups)) for kind, p in pairs.items()},
            "found_as": {kind: sorted({groups[g] for g in p & set(groups)}) for kind, p in pairs.items()},
            "groups_not_planted": sum(g not in planted for g in groups),
            "across_splits": found["across_splits"],
            "seconds_median": round(statistics.median(secs), 3),
            "seconds": [round(s, 3) for s in secs],
            "images_per_sec": round(found["images"] / statistics.median(secs), 1),
        }
    if args.frames:
        result["still_scene"] = still_scene(args.out, args.frames, args.workers, args.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
