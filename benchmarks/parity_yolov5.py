"""Learning parity: ultralytics/yolov5's own `train.py` (PyPI `yolov5`, `pip install 'fastload[compare]'`) and
fastload's trainer on the same demo data, model, hyp (scratch-low, or it updated by --hyp), epochs, image size,
batch and seed, from scratch; prints one JSON object with both final mAPs. Goal: fastload >= YOLOv5 - 0.01
mAP@0.5:0.95.

    python benchmarks/parity_yolov5.py --epochs 30 --imgsz 256 --batch 16 --device cpu
    python benchmarks/parity_yolov5.py --cfg yolov5n-ghost.yaml --out runs/parity-ghost   # a model yaml
    python benchmarks/parity_yolov5.py --polygons --hyp rotate.yaml --out runs/parity-polygons   # polygon labels
    python benchmarks/parity_yolov5.py --segment --out runs/parity-segment   # yolov5n-seg: YOLOv5's segment/train.py

With --segment both train the segmentation model (YOLOv5's segment/train.py, overlap masks at ratio 4; with
--no-overlap each object's whole mask) on the polygon demo data and both mask mAPs are printed too (goal: the same,
on the masks' mAP@0.5:0.95).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo import ensure_demo_data, ensure_demo_store  # noqa: E402
from fastload.pack.cache import ensure_store  # noqa: E402
from fastload.store.tempfiles import write_atomic  # noqa: E402
from yolo.hyp import hyp_yaml, read_hyp  # noqa: E402
from yolo.train import TrainConfig, train  # noqa: E402
from yolo.yaml_model import read_model_yaml  # noqa: E402


def offline_font() -> None:
    """YOLOv5 downloads Arial.ttf for its plots before training; offline, give it matplotlib's DejaVu Sans."""
    import shutil

    import matplotlib
    from yolov5.utils import general

    target = general.CONFIG_DIR / "Arial.ttf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), target)


class EpochTimer:
    """YOLOv5 callbacks timing each epoch's training loop: its batches and steps, no validation or checkpoint (its
    loop reads the mean losses every step, so the GPU has finished the epoch when the last callback runs)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, float]] = []  # (images, seconds)
        self.t0, self.images = 0.0, 0

    def start(self) -> None:
        self.t0, self.images = time.perf_counter(), 0

    def batch_end(self, model, ni, imgs, *_) -> None:
        self.images += len(imgs)

    def end(self, **_) -> None:
        self.epochs.append((self.images, time.perf_counter() - self.t0))


def yolov5_run(data_yaml: str, args, out: str) -> dict:
    """YOLOv5's train.py on the demo data: final mAPs, minutes, and each epoch's training loop alone (from its
    on_train_epoch_start to its on_train_epoch_end callback: batches and steps, no validation or checkpoint)."""
    import numpy as np

    if not hasattr(np, "trapz"):  # yolov5 7.0's metrics call np.trapz, which numpy 2.4 removed
        np.trapz = np.trapezoid
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # its checkpoints pickle numpy objects
    from yolov5 import train as yolov5_train
    from yolov5.utils.callbacks import Callbacks

    if args.segment:  # its segment/train.py: the same options, no epoch callbacks (its calls are commented out)
        from yolov5.segment import train as yolov5_train

    offline_font()
    yolov5_train.check_requirements = lambda *a, **k: None  # offline: nothing to install
    if args.device != "cpu" and torch.cuda.is_available():  # its AMP check downloads yolov5n.pt; online it passes
        yolov5_train.check_amp = lambda model: True
    timer = EpochTimer()
    callbacks = Callbacks()
    callbacks.register_action("on_train_epoch_start", callback=timer.start)
    callbacks.register_action("on_train_batch_end", callback=timer.batch_end)
    callbacks.register_action("on_train_epoch_end", callback=timer.end)
    argv, sys.argv = sys.argv, sys.argv[:1]  # its parser reads the command line: not ours
    opt, sys.argv = yolov5_train.parse_opt(True), argv
    cfg = os.path.abspath(args.cfg) if args.cfg else f"yolov5{args.model}{'-seg' * args.segment}.yaml"
    settings = dict(data=data_yaml, cfg=cfg, weights="", imgsz=args.imgsz, epochs=args.epochs,
                    batch_size=args.batch, device=args.device, workers=args.workers, seed=args.seed, project=out,
                    name="yolov5", exist_ok=True, noplots=True)  # fmt: skip
    if args.segment:
        settings["no_overlap"] = getattr(args, "no_overlap", False)
    if args.hyp:  # YOLOv5 reads every key from the file: the whole set, scratch-low's updated by --hyp
        settings["hyp"] = os.path.join(out, "hyp-both.yaml")
        os.makedirs(out, exist_ok=True)
        write_atomic(settings["hyp"], hyp_yaml(read_hyp(args.hyp)))
    for k, v in settings.items():
        setattr(opt, k, v)
    t0 = time.perf_counter()
    try:
        yolov5_train.main(opt, callbacks)
    finally:  # it turns deterministic algorithms on for the rest of the process: not for fastload's run
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    with open(os.path.join(out, "yolov5", "results.csv")) as f:
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(f)]
    # the last epoch's row: its segment/train.py appends best.pt's validation after it, without the loss columns
    last = next(r for r in rows if int(r["epoch"]) == args.epochs - 1)
    box = "(B)" if args.segment else ""  # its segmentation run's boxes (B) and masks (M)
    masks = {"mask_map50": float(last["metrics/mAP_0.5(M)"]), "mask_map50_95": float(last["metrics/mAP_0.5:0.95(M)"])}
    return {
        "map50": float(last[f"metrics/mAP_0.5{box}"]),
        "map50_95": float(last[f"metrics/mAP_0.5:0.95{box}"]),
        **(masks if args.segment else {}),
        "minutes": round((time.perf_counter() - t0) / 60, 1),
        "epoch_images_per_sec": [round(n / s, 1) for n, s in timer.epochs],
    }


def fastload_run(store: str, args, out: str) -> dict:
    t0 = time.perf_counter()
    model = read_model_yaml(args.cfg) if args.cfg else f"{args.model}{'-seg' * args.segment}"
    result = train(TrainConfig(data=store, model=model, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                               device="" if args.device == "" else ("cpu" if args.device == "cpu" else "cuda"),
                               workers=args.workers, seed=args.seed, project=out, name="fastload",
                               hyp=read_hyp(args.hyp) if args.hyp else {},
                               no_overlap=getattr(args, "no_overlap", False)))  # fmt: skip
    with open(result["results"]) as f:
        epochs = [round(float(row["images_per_sec"]), 1) for row in csv.DictReader(f)]
    masks = {k: result[k] for k in ("mask_map50", "mask_map50_95") if k in result}
    return {"map50": result["map50"], "map50_95": result["map50_95"], **masks,
            "minutes": round((time.perf_counter() - t0) / 60, 1), "epoch_images_per_sec": epochs,
            "data_wait_fraction": round(result["data_wait_fraction"], 4),
            "loader_startup_s": round(result["loader_startup_s"], 2)}  # fmt: skip


def speed_ratio(fastload: dict, yolov5: dict) -> float:
    """fastload's training images/sec over YOLOv5's: medians over the epochs after the first (both loaders' start)."""
    a, b = fastload["epoch_images_per_sec"], yolov5["epoch_images_per_sec"]
    if not a or not b:  # YOLOv5's segment/train.py calls no epoch callbacks
        return None
    return round(statistics.median(a[1:] or a) / statistics.median(b[1:] or b), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500, help="demo dataset size (train + val)")
    ap.add_argument("--model", default="n")
    ap.add_argument("--cfg", default="", help="a model yaml instead of --model (both trainers build it)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="cpu, or a CUDA index as YOLOv5 takes it (0)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/parity")
    ap.add_argument("--fastload-only", action="store_true", help="train fastload's side only (a trainer change)")
    ap.add_argument("--hyp", default="", help="a YOLOv5 hyp file updating scratch-low's values, for both trainers")
    ap.add_argument("--polygons", action="store_true", help="the demo data labelled with polygons (segment rows)")
    ap.add_argument("--segment", action="store_true", help="the segmentation model (its masks from the polygons)")
    ap.add_argument("--no-overlap", action="store_true", help="--segment: each object's whole mask (YOLOv5's flag)")
    args = ap.parse_args()
    args.polygons |= args.segment
    if args.polygons:  # the same images; both trainers box mosaics from the warped polygons
        data = ensure_demo_data(os.path.join("runs", "demo", "data-polygons"), args.images, polygons=True)
        store = ensure_store(data, os.path.join("runs", "stores"))[0]
    else:
        data = ensure_demo_data(os.path.join("runs", "demo", "data"), args.images)
        store = ensure_demo_store(os.path.join("runs", "demo"), args.images)
    result = {"settings": vars(args)}
    if not args.fastload_only:
        result["yolov5"] = yolov5_run(os.path.join(data, "data.yaml"), args, args.out)
    result["fastload"] = fastload_run(store, args, args.out)
    if "yolov5" in result:
        result["map50_95_difference"] = round(result["fastload"]["map50_95"] - result["yolov5"]["map50_95"], 4)
        if args.segment:
            mine, theirs = result["fastload"]["mask_map50_95"], result["yolov5"]["mask_map50_95"]
            result["mask_map50_95_difference"] = round(mine - theirs, 4)
        result["training_speed_ratio"] = speed_ratio(result["fastload"], result["yolov5"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
