"""Classification learning against YOLOv5's classify/train.py: the same class folders, model (yolov5n-cls from
scratch), epochs, size, batch and seeds, each trainer with its own loader and defaults (Adam, lr0 0.001, label
smoothing 0.1, its augmentation). Prints JSON: each run's top-1 and top-5 per epoch and at the end.

    PYTHONPATH=<yolov5 7.0 and albumentations> python benchmarks/classify_yolov5.py --images 1000 --epochs 30

The dataset is `fastload demo-data --classify` (one shape a picture), generated under runs/bench/classify-parity/.
YOLOv5 starts from tests/data/yolov5n-cls-3cls.pt with `--pretrained False`, which re-initialises every layer: from
scratch, as fastload's `--model n-cls`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.store import open_store  # noqa: E402
from yolo.classify_train import ClassifyConfig, train_classifier  # noqa: E402


def fastload_run(store: str, args, seed: int, out: str) -> dict:
    cfg = ClassifyConfig(data=store, model="n-cls", epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=seed,
                         workers=2, device="cpu", project=out, name=f"fastload{seed}", exist_ok=True)  # fmt: skip
    t0 = time.perf_counter()
    r = train_classifier(cfg, open_store(store, "train"), open_store(store, "val"), progress=False)
    with open(r["results"]) as f:
        rows = list(csv.DictReader(f))
    minutes = round((time.perf_counter() - t0) / 60, 1)
    return {"top1": round(r["top1"], 4), "top5": round(r["top5"], 4), "minutes": minutes,
            "top1_per_epoch": [round(float(row["top1"]), 4) for row in rows]}  # fmt: skip


def yolov5_run(folder: str, args, seed: int, out: str) -> dict:
    weights = os.path.join(ROOT, "tests", "data", "yolov5n-cls-3cls.pt")
    # its Roboflow and Hugging Face download helpers (packages of their own) are unused here: stand-ins; the
    # checkpoint pickles YOLOv5's classes as its release weights name them (models.yolo), which the package is
    launch = ("import runpy, sys, types; sys.modules['yolov5.utils.roboflow'] = types.SimpleNamespace("
              "RoboflowConnector=None); import yolov5.utils.downloads as d; d.attempt_download_from_hub = "
              "lambda *a, **k: None; import yolov5.models.yolo, yolov5.models.common; sys.modules['models'] = "
              "yolov5.models; sys.modules['models.yolo'] = yolov5.models.yolo; sys.modules['models.common'] = "
              "yolov5.models.common; runpy.run_module('yolov5.classify.train', run_name='__main__')")  # fmt: skip
    cmd = [sys.executable, "-c", launch, "--model", weights, "--pretrained", "False", "--data",
           os.path.abspath(folder), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch-size",
           str(args.batch), "--seed", str(seed), "--workers", "2", "--device", "cpu", "--project", os.path.abspath(out),
           "--name", f"yolov5{seed}", "--exist-ok"]  # fmt: skip
    t0 = time.perf_counter()
    env = os.environ | {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # YOLOv5 7.0 predates torch's weights_only default
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=out, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    with open(os.path.join(out, f"yolov5{seed}", "results.csv")) as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    top1 = [round(float(row["metrics/accuracy_top1"]), 4) for row in rows]
    return {"top1": top1[-1], "top5": round(float(rows[-1]["metrics/accuracy_top5"]), 4),
            "minutes": round((time.perf_counter() - t0) / 60, 1), "top1_per_epoch": top1}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=96)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", default="runs/bench/classify-parity")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    folder, store = os.path.join(args.out, "data"), os.path.join(args.out, "shapes.lmdb")
    if not os.path.isdir(folder):
        generate(folder, DemoConfig(images=args.images, scale=args.scale, classify=True), 2)
    if not os.path.exists(store):
        pack(folder, store, PackOptions(workers=2), quiet=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
              "train_images": len(open_store(store, "train")), "val_images": len(open_store(store, "val")),
              "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "runs": {}}  # fmt: skip
    for seed in (int(s) for s in args.seeds.split(",")):
        result["runs"][f"fastload_seed{seed}"] = fastload_run(store, args, seed, args.out)
        result["runs"][f"yolov5_seed{seed}"] = yolov5_run(folder, args, seed, args.out)
        print(json.dumps(result["runs"]), file=sys.stderr, flush=True)
    for who in ("fastload", "yolov5"):
        runs = [r for k, r in result["runs"].items() if k.startswith(who)]
        result[f"{who}_mean_top1"] = round(sum(r["top1"] for r in runs) / len(runs), 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
