"""Detection parity on the same weights: `fastload detect` against YOLOv5's `detect.py` (PyPI `yolov5`,
`pip install 'fastload[compare]'`) on the model written as a YOLOv5 checkpoint, and YOLOv5's `detect.py` on
`fastload export`'s ONNX file against the same on that checkpoint. Prints one JSON object: for each pair, the share
of each side's boxes that the other finds (same class, IoU >= 0.5), the mean IoU of those pairs and their mean
confidence difference.

fastload runs with batch 1, so each image gets detect.py's own letterbox shape (the long side at --imgsz, padded
to the next multiple of 32). YOLOv5 runs an ONNX file on a square letterbox (its `auto` letterbox is for PyTorch
weights only), so that pair also compares two input shapes.

    python benchmarks/detect_yolov5.py --weights runs/train/exp/weights/best.pt --imgsz 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from torchvision.ops import box_iou

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.parity_yolov5 import offline_font  # noqa: E402
from benchmarks.val_yolov5 import as_yolov5, freeze_nms_clock  # noqa: E402
from fastload.demo import ensure_demo_data  # noqa: E402
from yolo.detect import DetectOptions, detect  # noqa: E402
from yolo.export import export_onnx  # noqa: E402


def boxes(folder: str, stem: str) -> np.ndarray:
    """Label rows (cls, cx, cy, w, h, conf) of one image; YOLOv5 writes no file for an image without boxes."""
    path = os.path.join(folder, stem + ".txt")
    if not os.path.exists(path):
        return np.zeros((0, 6))
    return np.loadtxt(path, ndmin=2).reshape(-1, 6)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of label rows (cls, cx, cy, w, h, ...)."""
    corners = lambda r: torch.from_numpy(np.concatenate([r[:, 1:3] - r[:, 3:5] / 2, r[:, 1:3] + r[:, 3:5] / 2], 1))  # noqa: E731
    return box_iou(corners(a), corners(b)).numpy()


def agreement(a_dir: str, b_dir: str, stems: list[str]) -> dict:
    """Greedy one-to-one matching per image and class, best IoU first, at IoU >= 0.5."""
    a_total = b_total = 0
    ious, confs = [], []
    for stem in stems:
        a, b = boxes(a_dir, stem), boxes(b_dir, stem)
        a_total, b_total = a_total + len(a), b_total + len(b)
        if len(a) == 0 or len(b) == 0:
            continue
        m = iou(a, b) * (a[:, None, 0] == b[None, :, 0])
        while m.size and m.max() >= 0.5:
            i, j = np.unravel_index(m.argmax(), m.shape)
            ious.append(m[i, j])
            confs.append(abs(a[i, 5] - b[j, 5]))
            m[i, :], m[:, j] = 0, 0
    return {
        "boxes": [a_total, b_total],
        "found": [len(ious) / max(a_total, 1), len(ious) / max(b_total, 1)],
        "mean_iou": float(np.mean(ious)) if ious else None,
        "mean_conf_difference": float(np.mean(confs)) if confs else None,
    }


def yolov5_detect(weights: str, source: str, imgsz: int, out: str, name: str) -> str:
    from yolov5 import detect as yolov5_detect_module

    offline_font()
    freeze_nms_clock()
    yolov5_detect_module.run(
        weights=weights, source=source, imgsz=(imgsz, imgsz), conf_thres=0.25, iou_thres=0.45, device="cpu",
        save_txt=True, save_conf=True, nosave=True, project=out, name=name, exist_ok=True,
    )  # fmt: skip
    return os.path.join(out, name, "labels")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="a fastload checkpoint trained on the demo dataset")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--out", default="runs/detect-parity")
    args = ap.parse_args()
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # YOLOv5 7.0's torch.load predates weights_only
    os.makedirs(args.out, exist_ok=True)
    source = os.path.join(ensure_demo_data("runs/demo/data", 500), "images", "val")
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(source))
    converted = as_yolov5(args.weights, args.out)
    onnx = export_onnx(args.weights, os.path.join(args.out, "model.onnx"), args.imgsz)["path"]
    opts = DetectOptions(out=os.path.join(args.out, "fastload"), imgsz=args.imgsz, batch=1, save_txt=True,
                         save_conf=True, save_images=False)  # fmt: skip
    ours = detect(args.weights, [source], opts, progress=False)["labels"]
    theirs = yolov5_detect(converted, source, args.imgsz, args.out, "yolov5_pt")
    their_onnx = yolov5_detect(onnx, source, args.imgsz, args.out, "yolov5_onnx")
    result = {
        "weights": args.weights,
        "imgsz": args.imgsz,
        "images": len(stems),
        "fastload_detect_vs_yolov5_detect": agreement(ours, theirs, stems),
        "yolov5_detect_on_fastload_onnx_vs_on_yolov5_checkpoint": agreement(their_onnx, theirs, stems),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
