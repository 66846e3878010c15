"""Model ensembling (`val --weights a.pt b.pt`, YOLOv5's NMS ensemble) against each model alone: YOLOv5n trained
with different seeds on the demo dataset (as the demo run trains: every batch of 16 a step), each validated alone
and all together, plain and with test-time augmentation. Prints JSON.

    python benchmarks/ensemble.py --models 2 --epochs 15 --imgsz 256

The dataset is `fastload demo-data`'s (500 images, 100 of them val), generated under runs/bench/ensemble/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiles import fastload  # noqa: E402  (a command's --json object; benchmarks/ is the script's folder)

from fastload.demo_data import DemoConfig, generate  # noqa: E402

KEYS = ("map50", "map50_95", "precision", "recall")


def scores(weights: list[str], store: str, imgsz: int, augment: bool) -> dict:
    got = fastload("val", "--weights", *weights, "--data", store, "--imgsz", str(imgsz), *(["--augment"] * augment))
    return {k: round(got[k], 4) for k in KEYS} | {"ms_per_image": round(got["speed_ms"]["inference"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=2, help="models trained, seeds 0, 1, ...")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--out", default="runs/bench/ensemble")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data = os.path.join(args.out, "data")
    generate(data, DemoConfig())
    store = os.path.join(args.out, "demo.lmdb")
    fastload("pack", data, "-o", store)
    weights, trained = [], []
    for seed in range(args.models):
        t0 = time.perf_counter()
        run = fastload("train", "--data", store, "--model", "n", "--epochs", str(args.epochs), "--imgsz",
                       str(args.imgsz), "--batch", "16", "--nominal-batch", "16", "--seed", str(seed), "--project",
                       args.out, "--name", f"seed{seed}", "--exist-ok", "--noplots")  # fmt: skip
        weights.append(run["weights"])
        trained.append({"seed": seed, "minutes": round((time.perf_counter() - t0) / 60, 1)})
    rows = {}
    for augment in (False, True):
        kind = "tta" if augment else "plain"
        for seed, w in enumerate(weights):
            rows[f"seed{seed}_{kind}"] = scores([w], store, args.imgsz, augment)
        rows[f"ensemble_{kind}"] = scores(weights, store, args.imgsz, augment)
    best = {k: max(rows[f"seed{s}_plain"][k] for s in range(args.models)) for k in ("map50", "map50_95")}
    print(json.dumps({
        "benchmark": "ensemble",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "model": "n",
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "trained": trained,
        "val": rows,
        "ensemble_minus_best_alone": {k: round(rows["ensemble_plain"][k] - v, 4) for k, v in best.items()},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
