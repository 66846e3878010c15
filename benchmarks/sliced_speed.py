"""Sliced inference's throughput (what `detect --tile` and `val --tile` do per large picture): each picture decoded
once, whole (fastload.loader.pictures: DALI, nvJPEG on a GPU), cut into its tiles on the device, the tiles
letterboxed and through the model 16 at a time (consecutive pictures' tiles together) with NMS, the detections
merged. Times the decode alone, then the
whole path; pictures and tiles per second. Prints JSON.

    python benchmarks/sliced_speed.py --pictures 8 --size 4000x3000 --tile 640 --model s --device cuda
    python benchmarks/sliced_speed.py --pictures 2 --size 1280x960 --tile 640 --model n   # this CPU, a few minutes

The pictures are generated (benchmarks/region_decode.py's textured JPEGs); the model is YOLOv5 untrained, at
detect.py's confidence 0.25 (it finds little: this times the decode, the cutting, letterboxing, model and NMS; the
merge of many boxes is benchmarks/sliced_merge.py's). One warm-up picture first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from region_decode import picture  # noqa: E402

from fastload.loader.files import find_images, scan_images  # noqa: E402
from fastload.loader.pictures import PictureLoader  # noqa: E402
from fastload.pack.tiles import Tiling  # noqa: E402
from yolo.model import YOLOv5  # noqa: E402
from yolo.sliced import Slicer, batch_found  # noqa: E402
from yolo.val import predict  # noqa: E402


def synced(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def run(pictures: int, size: tuple[int, int], tile: int, model: str, device: str, workers: int = 2) -> dict:
    net = YOLOv5(model, nc=80).to(device).eval()
    tiling = Tiling(tile)
    with tempfile.TemporaryDirectory() as folder:
        for k in range(pictures + 1):
            with open(os.path.join(folder, f"p{k}.jpg"), "wb") as f:
                f.write(picture(*size, seed=k))
        files, _ = scan_images(find_images([folder]))

        def detect(batch):
            return batch_found(*next(predict(net, [batch], 0.25, 0.45, 1000)), masks=False)

        timings, slicer = {}, Slicer(tiling, tile, 32, False, device, detect)
        for name in ("decode", "sliced"):
            decoded = iter(PictureLoader(files, np.arange(len(files)), device, workers))
            _, first = next(decoded)  # the warm-up picture
            if name == "sliced":
                slicer.picture(first)
            t0 = synced(device)
            empty = ((i, (np.zeros((0, 6)), None)) for i, _ in decoded)  # the decode alone
            found = slicer.stream(decoded) if name == "sliced" else empty
            boxes = sum(len(det) for _, (det, _) in found)
            tiles = sum(len(tiling.windows(*(int(v) for v in files.sizes[i]))) for i in range(1, len(files)))
            timings[name] = {"seconds": synced(device) - t0, "tiles": tiles, "boxes": boxes}
    machine = (
        torch.cuda.get_device_name() if device.startswith("cuda") else f"{platform.machine()}, {os.cpu_count()} cores"
    )
    out = {"benchmark": "sliced_speed", "device": device, "machine": machine, "pictures": pictures,
           "size": list(size), "tile": tile, "model": model}  # fmt: skip
    for name, t in timings.items():
        out[name] = {"pictures_per_sec": round(pictures / t["seconds"], 2),
                     "tiles_per_sec": round(t["tiles"] / t["seconds"], 1), "boxes": t["boxes"]}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=8)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--tile", type=int, default=640)
    parser.add_argument("--model", default="s")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    print(json.dumps(run(args.pictures, (w, h), args.tile, args.model, args.device, args.workers), indent=1))


if __name__ == "__main__":
    main()
