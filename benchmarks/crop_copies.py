"""A feasibility study for finding cropped copies (what `fastload verify --duplicates` misses: Roboflow's "crop"
augmentation zooms 5-20% into a random place): how far, in dHash bits, a cropped, shrunk and re-encoded copy is
from its original's whole-picture dHash and from the nearest of the original's window dHashes (zooms of 10% and 20%,
each at 9 places), against how near the windows of other pictures come. Prints JSON; nothing in fastload uses it.

    python benchmarks/crop_copies.py --images 200

The dHash is verify's (fastload.duplicates: 128 bits of a 9 x 9 grey thumbnail).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # noqa: E402

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.picture_hash import dhash as _dhash  # noqa: E402

WINDOWS = [(z, fx, fy) for z in (0.1, 0.2) for fx in (0, 0.5, 1) for fy in (0, 0.5, 1)]  # zoom, place in x and y


def dhash(image: Image.Image, box=None) -> np.ndarray:
    grey = image.convert("L")
    grey = grey.crop(box) if box else grey
    return _dhash(np.asarray(grey.resize((9, 9), Image.Resampling.BOX), np.int16)[None])[0]


def window_hashes(image: Image.Image) -> list[np.ndarray]:
    w, h = image.size
    out = []
    for z, fx, fy in WINDOWS:
        cw, ch = w * (1 - z), h * (1 - z)
        x0, y0 = fx * (w - cw), fy * (h - ch)
        out.append(dhash(image, (x0, y0, x0 + cw, y0 + ch)))
    return out


def cropped_copy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A 5-20% zoom at a random place, shrunk to 0.7 and re-encoded at quality 75."""
    w, h = image.size
    z = rng.uniform(0.05, 0.2)
    cw, ch = w * (1 - z), h * (1 - z)
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    crop = image.crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch))).resize((int(cw * 0.7), int(ch * 0.7)))
    out = io.BytesIO()
    crop.convert("RGB").save(out, "JPEG", quality=75)
    return Image.open(io.BytesIO(out.getvalue()))


def bits(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits((a ^ b).view(np.uint8)).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--out", default="runs/bench/crop_copies")
    args = ap.parse_args()
    data = os.path.join(args.out, "data")
    if not os.path.isdir(data):
        generate(data, DemoConfig(images=args.images, seed=9, val_fraction=0.0))
    folder = os.path.join(data, "images", "train")
    files = sorted(os.listdir(folder))[: args.images]
    rng = np.random.default_rng(0)
    whole, windows, copies = [], [], []
    for name in files:
        with Image.open(os.path.join(folder, name)) as im:
            im.load()
            whole.append(dhash(im))
            windows.append(window_hashes(im))
            copies.append(dhash(cropped_copy(im, rng)))
    n = len(files)
    own_whole = np.array([bits(copies[i], whole[i]) for i in range(n)])
    own_best = np.array([min([bits(copies[i], whole[i])] + [bits(copies[i], w) for w in windows[i]]) for i in range(n)])
    others = np.array([min([bits(copies[i], whole[j])] + [bits(copies[i], w) for w in windows[j]])
                       for i in range(n) for j in range(n) if i != j])  # fmt: skip
    result = {
        "benchmark": "crop_copies",
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
        "images": n,
        "windows": len(WINDOWS),
        "copy_to_own_whole_bits": {"median": float(np.median(own_whole)), "p90": float(np.percentile(own_whole, 90))},
        "copy_to_own_nearest_window_bits": {"median": float(np.median(own_best)),
                                            "p90": float(np.percentile(own_best, 90)), "max": int(own_best.max())},
        "copy_to_other_pictures_nearest_bits": {"min": int(others.min()), "p1": float(np.percentile(others, 1))},
        "by_distance": {str(d): {"copies_found": round(float(np.mean(own_best <= d)), 3),
                                 "copies_found_whole_only": round(float(np.mean(own_whole <= d)), 3),
                                 "other_pairs_matched": int((others <= d).sum()), "other_pairs": len(others)}
                        for d in (8, 12, 16, 20)},
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
