"""Validation parity on the same weights: a model trained by `fastload train` is written as an ultralytics/yolov5
checkpoint (YOLOv5's own DetectionModel, PyPI `yolov5`, `pip install 'fastload[compare]'`), then validated by
YOLOv5's `val.py` and by `fastload val`'s path, which reads that file back without YOLOv5's code. Prints one JSON
object with both mAPs: a check of the weight mapping both ways and of fastload's letterbox, NMS and mAP against
YOLOv5's on a trained model. With `--onnx`, also that checkpoint exported by YOLOv5's export.py (ONNX, batch 1,
square) and the file validated by both (YOLOv5's DetectMultiBackend; fastload's yolo.exported).

    python benchmarks/val_yolov5.py --weights runs/train/exp/weights/best.pt --imgsz 256 --onnx
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.parity_yolov5 import offline_font  # noqa: E402
from fastload.demo import ensure_demo_data  # noqa: E402
from fastload.loader.val_loader import ValLoader  # noqa: E402
from fastload.store import open_store  # noqa: E402
from yolo.exported import read_model  # noqa: E402
from yolo.val import validate  # noqa: E402
from yolo.weights import read_weights  # noqa: E402
from yolo.yaml_model import layer_names  # noqa: E402

KEYS = ("map50", "map50_95", "precision", "recall")


def as_yolov5(weights: str, out: str) -> str:
    """The fastload checkpoint's EMA weights in YOLOv5's DetectionModel, saved as YOLOv5 saves a finished run."""
    from yolov5.models.yolo import DetectionModel

    w = read_weights(weights)
    hub = "hub" if w.arch.endswith("6") else ""  # YOLOv5 keeps its P6 models' yamls in models/hub
    cfg = os.path.join(os.path.dirname(sys.modules["yolov5.models.yolo"].__file__), hub, f"yolov5{w.arch}.yaml")
    model = DetectionModel(cfg, ch=3, nc=len(w.names))
    index = {name: i for i, name in layer_names(w.arch).items()}
    state = {}
    for key, value in w.state.items():  # the inverse of yolo.weights.rename
        if key == "detect.stride":
            continue
        top = next(t for t in sorted(index, key=len, reverse=True) if key.startswith(t + "."))
        rest = key[len(top) + 1 :].split(".")
        if top != "detect":  # this model's Conv is a Sequential (0, 1); YOLOv5's has conv, bn
            rest = [{"0": "conv", "1": "bn"}.get(p, p) if j + 2 >= len(rest) else p for j, p in enumerate(rest)]
        state[".".join(["model", str(index[top]), *rest])] = value
    model.load_state_dict(state)  # strict: every tensor placed
    model.nc, model.names = len(w.names), dict(enumerate(w.names))  # as its train.py attaches them
    path = os.path.join(out, "yolov5-format.pt")
    torch.save({"epoch": -1, "best_fitness": None, "model": copy.deepcopy(model).half(), "ema": None,
                "updates": None, "optimizer": None}, path)  # fmt: skip
    return path


def freeze_nms_clock() -> None:
    """YOLOv5's NMS gives up after 0.5 + 0.05 x batch seconds (a guard for slow machines): on a CPU that drops an
    early model's detections, so its clock stands still here (it reads time.time() only for that and for logs)."""
    from yolov5.utils import general

    frozen = types.ModuleType("time")
    frozen.__dict__.update(time.__dict__)
    frozen.time = lambda: 0.0
    general.time = frozen


def yolov5_val(data_yaml: str, weights: str, args, out: str) -> dict:
    import numpy as np

    if not hasattr(np, "trapz"):  # yolov5 7.0's metrics call np.trapz, which numpy 2.4 removed
        np.trapz = np.trapezoid
    from yolov5 import val as yolov5_val_module

    offline_font()
    freeze_nms_clock()
    t0 = time.perf_counter()
    (p, r, map50, map50_95, *_), *_ = yolov5_val_module.run(
        data=data_yaml, weights=weights, batch_size=args.batch, imgsz=args.imgsz, device="cpu", workers=2,
        half=False, project=out, name="yolov5", exist_ok=True, plots=False,
    )  # fmt: skip
    return {"map50": map50, "map50_95": map50_95, "precision": p, "recall": r, "seconds": time.perf_counter() - t0}


def yolov5_onnx(weights: str, imgsz: int) -> str:
    """The YOLOv5 checkpoint exported by YOLOv5's own export.py: ONNX, batch 1, imgsz x imgsz, beside it."""
    from yolov5 import export

    export.run(weights=weights, include=("onnx",), imgsz=(imgsz, imgsz), batch_size=1, device="cpu")
    return os.path.splitext(weights)[0] + ".onnx"


def fastload_val(model, store, imgsz: int, batch: int, rect: bool = True) -> dict:
    t0 = time.perf_counter()
    got = validate(model, ValLoader(store, imgsz, batch, rect=rect, workers=2), store)
    return {k: got[k] for k in KEYS} | {"seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="a fastload checkpoint trained on the demo dataset")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default="runs/val-parity")
    ap.add_argument("--onnx", action="store_true", help="also export with YOLOv5 and validate the ONNX file by both")
    args = ap.parse_args()
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # YOLOv5 7.0's torch.load predates weights_only
    os.makedirs(args.out, exist_ok=True)
    data_yaml = os.path.join(ensure_demo_data("runs/demo/data", 500), "data.yaml")
    converted = as_yolov5(args.weights, args.out)
    w = read_weights(converted)  # back through the reader of YOLOv5 checkpoints
    store = open_store(read_weights(args.weights).config["data"], "val")
    ours = fastload_val(w.model(), store, args.imgsz, args.batch)
    theirs = yolov5_val(data_yaml, converted, args, args.out)
    result = {"weights": args.weights, "imgsz": args.imgsz, "images": len(store), "fastload": ours, "yolov5": theirs,
              "difference": {k: round(ours[k] - theirs[k], 4) for k in KEYS}}  # fmt: skip
    if args.onnx:  # YOLOv5's val.py runs every export in batches of 1, square; fastload's batches cut to the file's
        onnx = yolov5_onnx(converted, args.imgsz)
        ours = fastload_val(read_model(onnx), store, args.imgsz, args.batch, rect=False)
        theirs = yolov5_val(data_yaml, onnx, args, args.out)
        result["onnx"] = {"path": onnx, "fastload": ours, "yolov5": theirs,
                          "difference": {k: round(ours[k] - theirs[k], 4) for k in KEYS}}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
