"""Learning parity: ultralytics/yolov5's own `train.py` (PyPI `yolov5`, `pip install 'fastload[compare]'`) and
fastload's trainer on the same demo data, model, hyp (scratch-low), epochs, image size, batch and seed, from
scratch; prints one JSON object with both final mAPs. Goal: fastload >= YOLOv5 - 0.01 mAP@0.5:0.95.

    python benchmarks/parity_yolov5.py --epochs 30 --imgsz 256 --batch 16 --device cpu
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo import ensure_demo_data, ensure_demo_store  # noqa: E402
from yolo.train import TrainConfig, train  # noqa: E402


def offline_font() -> None:
    """YOLOv5 downloads Arial.ttf for its plots before training; offline, give it matplotlib's DejaVu Sans."""
    import shutil

    import matplotlib
    from yolov5.utils import general

    target = general.CONFIG_DIR / "Arial.ttf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), target)


def yolov5_run(data_yaml: str, args, out: str) -> dict:
    import numpy as np

    if not hasattr(np, "trapz"):  # yolov5 7.0's metrics call np.trapz, which numpy 2.4 removed
        np.trapz = np.trapezoid
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # its checkpoints pickle numpy objects
    from yolov5 import train as yolov5_train

    offline_font()
    t0 = time.perf_counter()
    yolov5_train.run(
        data=data_yaml, cfg=f"yolov5{args.model}.yaml", weights="", imgsz=args.imgsz, epochs=args.epochs,
        batch_size=args.batch, device=args.device, workers=args.workers, seed=args.seed, project=out, name="yolov5",
        exist_ok=True, noplots=True,
    )  # fmt: skip
    with open(os.path.join(out, "yolov5", "results.csv")) as f:
        last = {k.strip(): v for k, v in list(csv.DictReader(f))[-1].items()}
    return {
        "map50": float(last["metrics/mAP_0.5"]),
        "map50_95": float(last["metrics/mAP_0.5:0.95"]),
        "minutes": round((time.perf_counter() - t0) / 60, 1),
    }


def fastload_run(store: str, args, out: str) -> dict:
    t0 = time.perf_counter()
    result = train(TrainConfig(data=store, model=args.model, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                               device="" if args.device == "" else ("cpu" if args.device == "cpu" else "cuda"),
                               workers=args.workers, seed=args.seed, project=out, name="fastload"))  # fmt: skip
    return {"map50": result["map50"], "map50_95": result["map50_95"],
            "minutes": round((time.perf_counter() - t0) / 60, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500, help="demo dataset size (train + val)")
    ap.add_argument("--model", default="n")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="cpu, or a CUDA index as YOLOv5 takes it (0)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/parity")
    ap.add_argument("--fastload-only", action="store_true", help="train fastload's side only (a trainer change)")
    args = ap.parse_args()
    data = ensure_demo_data(os.path.join("runs", "demo", "data"), args.images)
    store = ensure_demo_store(os.path.join("runs", "demo"), args.images)
    result = {"settings": vars(args)}
    if not args.fastload_only:
        result["yolov5"] = yolov5_run(os.path.join(data, "data.yaml"), args, args.out)
    result["fastload"] = fastload_run(store, args, args.out)
    if "yolov5" in result:
        result["map50_95_difference"] = round(result["fastload"]["map50_95"] - result["yolov5"]["map50_95"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
