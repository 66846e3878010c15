"""The classification loader against YOLOv5's (classify/train.py's create_classification_dataloader: torchvision's
ImageFolder, OpenCV decode, albumentations' RandomResizedCrop, flip and ColorJitter when installed, else its
CenterCrop only), both with the same workers on the same class folders, side by side in one run. Prints JSON.

    PYTHONPATH=/path/to/yolov5-and-albumentations python benchmarks/classify_loader.py --images 2000 --workers 2

The dataset is `fastload demo-data --classify` (pictures of ~`--scale` x 640 x 480), generated under runs/bench/.
Each loader runs `--epochs` passes; the first is warm-up (workers, caches), the rest are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.loader.classify_loader import TRAIN, ClassifyLoader  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.store import open_store  # noqa: E402


def rate(batches, epochs: int) -> dict:
    """Images per second over the passes after the first, each pass timed whole: the median and each."""
    rates = []
    for epoch in range(epochs):
        t0, n = time.perf_counter(), 0
        for b in batches():
            n += len(b[1]) if isinstance(b, (list, tuple)) else len(b.labels)
        if epoch:
            rates.append(n / (time.perf_counter() - t0))
    return {"images_per_sec": round(statistics.median(rates), 1), "passes": [round(r, 1) for r in rates]}


def fastload_loader(store: str, imgsz: int, batch: int, workers: int, augment: bool, epochs: int) -> dict:
    loader = ClassifyLoader(open_store(store, "train"), imgsz, batch, augment=TRAIN if augment else None,
                            workers=workers)  # fmt: skip
    return rate(lambda: loader, epochs)


def yolov5_loader(folder: str, imgsz: int, batch: int, workers: int, augment: bool, epochs: int) -> dict:
    import importlib.util

    from yolov5.utils.dataloaders import create_classification_dataloader

    loader = create_classification_dataloader(os.path.join(folder, "train"), imgsz, batch, augment=augment,
                                              workers=workers)  # fmt: skip
    albumentations = importlib.util.find_spec("albumentations") is not None
    return rate(lambda: loader, epochs) | {"augmentation": ("albumentations" if albumentations and augment else
                                                           "CenterCrop only")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--scale", type=float, default=0.6, help="picture size, x 640 x 480 (ImageNet's are ~400 x 350)")
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="passes per loader; the first is not timed")
    ap.add_argument("--out", default="runs/bench/classify")
    args = ap.parse_args()
    folder, store = os.path.join(args.out, "data"), os.path.join(args.out, "classify.lmdb")
    if not os.path.isdir(folder):
        generate(folder, DemoConfig(images=args.images, scale=args.scale, val_fraction=0.1, classify=True), 2)
    if not os.path.exists(store):
        pack(folder, store, PackOptions(workers=2), quiet=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
              "images": len(open_store(store, "train")), "imgsz": args.imgsz, "batch": args.batch,
              "workers": args.workers}  # fmt: skip
    for augment in (True, False):
        key = "train" if augment else "val"
        ours = fastload_loader(store, args.imgsz, args.batch, args.workers, augment, args.epochs)
        theirs = yolov5_loader(folder, args.imgsz, args.batch, args.workers, augment, args.epochs)
        ratio = round(ours["images_per_sec"] / theirs["images_per_sec"], 2)
        result[key] = {"fastload": ours, "yolov5": theirs, "ratio": ratio}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
