"""Small objects in large pictures: YOLOv5n trained on the whole pictures (shrunk to its input) against trained on
`pack --tile`'s tiles, both scored on the whole validation pictures (plain `val`, and `val --tile`: sliced
inference). Prints JSON.

    python benchmarks/tiles.py --pictures 40 --side 224 --tile-epochs 10

Each picture is a 4 x 4 mosaic of demo images at a quarter of their size (680 x 512, ~55 objects of 5-60 pixels),
generated under runs/bench/tiles/. Both runs see the same number of images: the whole-picture run trains as many
epochs more as a picture has tiles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.pack.tiles import Tiling  # noqa: E402

CELL = (170, 128)  # a demo image at a quarter of its size
GRID = 4


def mosaics(root: str, pictures: int, val: int, seed: int) -> str:
    """A YOLO folder of `pictures` mosaics (`val` of them in val) of GRID x GRID demo images, with their labels."""
    demo = os.path.join(root, "demo")
    generate(demo, DemoConfig(images=pictures * GRID * GRID, seed=seed, val_fraction=0.0, scale=0.25))
    images = sorted(os.listdir(os.path.join(demo, "images", "train")))
    data = os.path.join(root, "data")
    w, h = CELL
    for k in range(pictures):
        split = "val" if k >= pictures - val else "train"
        canvas, rows = Image.new("RGB", (GRID * w, GRID * h)), []
        for cell, name in enumerate(images[k * GRID * GRID : (k + 1) * GRID * GRID]):
            x0, y0 = (cell % GRID) * w, (cell // GRID) * h
            with Image.open(os.path.join(demo, "images", "train", name)) as im:
                canvas.paste(im.convert("RGB").resize(CELL), (x0, y0))
            label = os.path.join(demo, "labels", "train", os.path.splitext(name)[0] + ".txt")
            for c, cx, cy, bw, bh in np.loadtxt(label, ndmin=2).reshape(-1, 5):
                rows.append((c, (x0 + cx * w) / (GRID * w), (y0 + cy * h) / (GRID * h), bw / GRID, bh / GRID))
        for kind in ("images", "labels"):
            os.makedirs(os.path.join(data, kind, split), exist_ok=True)
        canvas.save(os.path.join(data, "images", split, f"p{k:03d}.jpg"), quality=95)
        with open(os.path.join(data, "labels", split, f"p{k:03d}.txt"), "w") as f:
            f.writelines(f"{int(c)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n" for c, cx, cy, bw, bh in rows)
    names = open(os.path.join(demo, "data.yaml")).read().split("names:", 1)[1]
    with open(os.path.join(data, "data.yaml"), "w") as f:
        f.write(f"path: .\ntrain: images/train\nval: images/val\nnames:{names}")
    return data


def fastload(*args: str) -> dict:
    run = subprocess.run([sys.executable, "-m", "fastload", *args, "--json"], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"fastload {' '.join(args)}: {run.stderr.strip().splitlines()[-1]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pictures", type=int, default=40)
    ap.add_argument("--val", type=int, default=8)
    ap.add_argument("--side", type=int, default=224, help="the model's input and the tile's side")
    ap.add_argument("--tile-epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/tiles")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data = mosaics(args.out, args.pictures, args.val, args.seed)
    whole, tiles = os.path.join(args.out, "whole.lmdb"), os.path.join(args.out, "tiles.lmdb")
    pack(data, whole, PackOptions(), quiet=True)
    tiled = pack(data, tiles, PackOptions(tile=Tiling(args.side)), quiet=True)
    per_picture = tiled["splits"]["train"]["count"] // tiled["splits"]["train"]["images"]
    side = str(args.side)
    common = ("--model", "n", "--imgsz", side, "--batch", "16", "--val-interval", "100000", "--seed", str(args.seed),
              "--project", args.out, "--exist-ok", "--noplots")  # fmt: skip
    runs = {}
    for name, store, epochs in (("whole", whole, args.tile_epochs * per_picture), ("tiles", tiles, args.tile_epochs)):
        t0 = time.perf_counter()
        trained = fastload("train", "--data", store, "--epochs", str(epochs), "--name", name, *common)
        weights = trained["weights"]
        plain = fastload("val", "--weights", weights, "--data", whole, "--imgsz", side)
        sliced = fastload("val", "--weights", weights, "--data", whole, "--imgsz", side, "--tile", side)
        runs[name] = {
            "epochs": epochs,
            "train_images": epochs * tiled["splits"]["train"]["images" if name == "whole" else "count"],
            "own_val": {"map50": trained["map50"], "map50_95": trained["map50_95"]},
            "val_whole_pictures": {"map50": plain["map50"], "map50_95": plain["map50_95"]},
            "val_tile": {"map50": sliced["map50"], "map50_95": sliced["map50_95"], "tiles": sliced["tile"]["tiles"]},
            "minutes": round((time.perf_counter() - t0) / 60, 1),
        }
    print(json.dumps({
        "benchmark": "tiles",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "pictures": {"train": args.pictures - args.val, "val": args.val, "size": [GRID * CELL[0], GRID * CELL[1]]},
        "side": args.side,
        "tiles_per_picture": per_picture,
        "objects_lost": {s: v["objects_lost"] for s, v in tiled["splits"].items()},
        "runs": runs,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
