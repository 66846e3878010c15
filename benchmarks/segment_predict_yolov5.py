"""Segmentation parity on the same weights (a YOLOv5 segmentation checkpoint, e.g. the one
`benchmarks/parity_yolov5.py --segment` trains with YOLOv5's own code): `fastload val` against YOLOv5's
`segment/val.py`, and `fastload detect` against YOLOv5's `segment/predict.py --retina-masks` (PyPI `yolov5`,
`pip install 'fastload[compare]'`). Prints one JSON object:

- val: box and mask P, R, mAP@0.5, mAP@0.5:0.95 of both. Each is run twice: as YOLOv5's trainer calls its val.py
  (overlap masks at a quarter of the input, a fastload run's default) and with YOLOv5's command-line defaults (one
  whole mask per object at the input's size, shrunk to the prototypes' by bilinear resizing: what `fastload val`
  does with a YOLOv5 checkpoint).
- detect: YOLOv5's predict.py is run twice: with --retina-masks (masks at the original's resolution, as fastload's)
  and without (at the input's, resized to the original). Each side's masks are filled from the outlines in its
  label files at the original resolution (YOLOv5 traces cv2's contour through its boundary pixels, fastload along the
  pixels' edges). `against_labels`: for each labelled object, the best IoU of a same-class mask with its polygon,
  averaged (how well each side's masks land). Pairs: per image the detections matched one to one (same class, box
  IoU >= 0.5, best first; boxes: the outlines' extents) and the IoU of their masks.
- same_outputs: the two ways to a mask at the original's resolution on the very same prototypes, coefficients and
  boxes (fastload's model on fastload's letterbox): fastload's `native_masks` and YOLOv5's `process_mask_native`
  (which cuts the letterbox's padding at the prototypes' resolution, rounded down, then resizes once), each against
  the labelled polygon it overlaps most (same class), and against each other.

    python benchmarks/segment_predict_yolov5.py --weights runs/parity-segment/yolov5/weights/best.pt --imgsz 256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.parity_yolov5 import offline_font  # noqa: E402
from benchmarks.val_yolov5 import freeze_nms_clock  # noqa: E402
from fastload.demo import ensure_demo_data, ensure_demo_store  # noqa: E402
from fastload.loader.val_loader import ValLoader  # noqa: E402
from fastload.store import open_store  # noqa: E402
from yolo.detect import DetectOptions, detect  # noqa: E402
from yolo.segment import (
    MASK_RATIO,  # noqa: E402
    mask_iou,  # noqa: E402
)
from yolo.val import validate  # noqa: E402
from yolo.weights import read_weights  # noqa: E402

KEYS = ("precision", "recall", "map50", "map50_95")


def yolov5_val(data_yaml: str, weights: str, args, trainer: bool) -> dict:
    """YOLOv5's segment/val.py on the val split: box and mask metrics, seconds."""
    if not hasattr(np, "trapz"):  # yolov5 7.0's metrics call np.trapz, which numpy 2.4 removed
        np.trapz = np.trapezoid
    from yolov5.segment import val as seg_val

    offline_font()
    freeze_nms_clock()
    extra = {"overlap": True, "mask_downsample_ratio": MASK_RATIO} if trainer else {}
    t0 = time.perf_counter()
    (bp, br, b50, b, mp, mr, m50, m, *_), *_ = seg_val.run(
        data=data_yaml, weights=weights, batch_size=args.batch, imgsz=args.imgsz, device="cpu", workers=2,
        half=False, project=args.out, name="yolov5_val", exist_ok=True, plots=False, **extra,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    return (
        dict(zip(KEYS, map(float, (bp, br, b50, b)), strict=True))
        | {f"mask_{k}": float(v) for k, v in zip(KEYS, (mp, mr, m50, m), strict=True)}
        | {"seconds": seconds}
    )


def fastload_val(weights: str, store, args, ratio: int = MASK_RATIO, overlap: bool = True) -> dict:
    w = read_weights(weights)
    t0 = time.perf_counter()
    loader = ValLoader(store, args.imgsz, args.batch, workers=2, mask_ratio=ratio, overlap=overlap)
    got = validate(w.model(), loader, store)
    return (
        {k: float(got[k]) for k in KEYS}
        | {f"mask_{k}": float(got[f"mask_{k}"]) for k in KEYS}
        | {"seconds": time.perf_counter() - t0}
    )


def yolov5_predict(weights: str, source: str, args, retina: bool) -> str:
    from yolov5.segment import predict

    offline_font()
    freeze_nms_clock()
    name = "yolov5_predict_retina" if retina else "yolov5_predict"
    predict.run(
        weights=weights, source=source, imgsz=(args.imgsz, args.imgsz), conf_thres=0.25, iou_thres=0.45,
        device="cpu", save_txt=True, save_conf=True, nosave=True, retina_masks=retina, project=args.out,
        name=name, exist_ok=True,
    )  # fmt: skip
    return os.path.join(args.out, name, "labels")


def outlines(folder: str, stem: str, size, conf: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A segment label file's classes, masks (filled at `size` (h, w)) and the outlines' boxes (x1, y1, x2, y2);
    `conf`: its last column is a confidence (--save-conf)."""
    path = os.path.join(folder, stem + ".txt")
    rows = [np.array(line.split(), np.float64) for line in open(path)] if os.path.exists(path) else []
    h, w = size
    classes, masks, boxes = [], [], []
    for r in rows:
        points = r[1 : len(r) - conf].reshape(-1, 2) * (w, h)
        image = Image.new("L", (w, h))
        if len(points) >= 2:
            ImageDraw.Draw(image).polygon([tuple(p) for p in points.tolist()], fill=1)
        classes.append(r[0])
        masks.append(np.asarray(image, bool))
        boxes.append([*points.min(0), *points.max(0)] if len(points) else [0, 0, 0, 0])
    return np.array(classes), np.array(masks).reshape(-1, h, w), np.array(boxes).reshape(-1, 4)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from torchvision.ops import box_iou as iou

    return iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def same_outputs(weights: str, source: str, labels: str, sizes: dict, args) -> dict:
    from yolov5.utils.segment.general import process_mask_native

    from fastload.loader.arrays import batch_shape, letterbox_arrays
    from yolo.detect import predictions
    from yolo.exported import inference_model
    from yolo.val import Speed

    model = inference_model(read_weights(weights), torch.device("cpu"))
    ours, theirs, between = [], [], []
    for stem, size in sizes.items():
        with Image.open(os.path.join(source, stem + ".jpg")) as im:
            image = np.asarray(im.convert("RGB"))
        batch = letterbox_arrays([image], args.imgsz, batch_shape([size], args.imgsz, 32), "cpu")
        opts = DetectOptions(imgsz=args.imgsz)
        (_, x, raw, detections, original, masks), *_ = predictions(model, [batch], opts, Speed(torch.device("cpu")))
        if not len(masks[0]):
            continue
        boxes = torch.from_numpy(original[0][:, :4]).float().round()  # as YOLOv5's predict.py rounds them first
        yolov5 = process_mask_native(raw[1][0], detections[0][:, 6:], boxes, size).numpy().astype(bool)
        fastload = np.stack([m.dense(size) for m in masks[0]])
        t_cls, t_masks, _ = outlines(labels, stem, size, conf=False)
        same = original[0][:, 5][:, None] == t_cls[None]
        for found, into in ((fastload, ours), (yolov5, theirs)):
            into += list((mask_iou(torch.from_numpy(found), torch.from_numpy(t_masks)).numpy() * same).max(1))
        between += list(np.diag(mask_iou(torch.from_numpy(fastload), torch.from_numpy(yolov5)).numpy()))
    ours, theirs, between = np.array(ours), np.array(theirs), np.array(between)
    landed = (ours >= 0.5) | (theirs >= 0.5)  # detections on a labelled object of their class
    return {
        "detections": len(ours),
        "on_a_labelled_object": int(landed.sum()),
        "iou_with_its_label": {
            "fastload_native_masks": float(ours[landed].mean()),
            "yolov5_process_mask_native": float(theirs[landed].mean()),
        },  # fmt: skip
        "fastload_better": float((ours[landed] > theirs[landed]).mean()),
        "iou_between_median": float(np.median(between)),
        "iou_between_mean": float(between.mean()),
    }


def image_sizes(source: str) -> dict[str, tuple[int, int]]:
    sizes = {}
    for name in sorted(os.listdir(source)):
        with Image.open(os.path.join(source, name)) as im:
            sizes[os.path.splitext(name)[0]] = (im.height, im.width)
    return sizes


def against_labels(found: str, labels: str, sizes: dict) -> float:
    """The mean over labelled objects of the best IoU of a same-class mask of `found` with the object's polygon."""
    best = []
    for stem, size in sizes.items():
        t_cls, t_masks, _ = outlines(labels, stem, size, conf=False)
        f_cls, f_masks, _ = outlines(found, stem, size)
        if not len(t_cls):
            continue
        ious = mask_iou(torch.from_numpy(t_masks), torch.from_numpy(f_masks)).numpy() if len(f_cls) else None
        best += list((ious * (t_cls[:, None] == f_cls[None])).max(1)) if ious is not None else [0.0] * len(t_cls)
    return float(np.mean(best))


def agreement(ours: str, theirs: str, sizes: dict) -> dict:
    """One-to-one matches per image (same class, box IoU >= 0.5, best first) and their masks' IoU."""
    counts, mask_ious, box_ious = [0, 0], [], []
    for stem, size in sizes.items():
        a_cls, a_masks, a_boxes = outlines(ours, stem, size)
        b_cls, b_masks, b_boxes = outlines(theirs, stem, size)
        counts[0], counts[1] = counts[0] + len(a_cls), counts[1] + len(b_cls)
        if not len(a_cls) or not len(b_cls):
            continue
        m = box_iou(a_boxes, b_boxes) * (a_cls[:, None] == b_cls[None])
        masks = mask_iou(torch.from_numpy(a_masks), torch.from_numpy(b_masks)).numpy()
        while m.size and m.max() >= 0.5:
            i, j = np.unravel_index(m.argmax(), m.shape)
            box_ious.append(float(m[i, j]))
            mask_ious.append(float(masks[i, j]))
            m[i, :], m[:, j] = 0, 0
    q = np.quantile(mask_ious, [0.05, 0.5]) if mask_ious else [None, None]
    return {
        "detections": {"fastload": counts[0], "yolov5": counts[1]},
        "matched": len(mask_ious),
        "found": [len(mask_ious) / max(counts[0], 1), len(mask_ious) / max(counts[1], 1)],
        "mask_iou_median": float(q[1]) if mask_ious else None,
        "mask_iou_p05": float(q[0]) if mask_ious else None,
        "mask_iou_mean": float(np.mean(mask_ious)) if mask_ious else None,
        "box_iou_mean": float(np.mean(box_ious)) if box_ious else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="a YOLOv5 segmentation checkpoint trained on the polygon demo")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default="runs/segment-parity")
    ap.add_argument("--val-only", action="store_true", help="the validation comparison alone")
    args = ap.parse_args()
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # YOLOv5 7.0's torch.load predates weights_only
    os.makedirs(args.out, exist_ok=True)
    data = ensure_demo_data("runs/demo/data-polygons", 500, polygons=True)
    store = open_store(ensure_demo_store("runs/demo", polygons=True), "val")
    source = os.path.join(data, "images", "val")
    data_yaml = os.path.join(data, "data.yaml")
    ours = fastload_val(args.weights, store, args)
    whole = fastload_val(args.weights, store, args, ratio=1, overlap=False)  # `fastload val` of a YOLOv5 checkpoint
    trainer = yolov5_val(data_yaml, args.weights, args, trainer=True)
    own = yolov5_val(data_yaml, args.weights, args, trainer=False)
    keys = [*KEYS, *(f"mask_{k}" for k in KEYS)]
    val = {
        "fastload": ours,
        "fastload_whole_full_size": whole,
        "yolov5_as_its_trainer": trainer,
        "yolov5_val_defaults": own,
        "difference_vs_trainer": {k: round(ours[k] - trainer[k], 4) for k in keys},
        "difference_vs_defaults": {k: round(whole[k] - own[k], 4) for k in keys},
    }
    if args.val_only:
        print(json.dumps({"weights": args.weights, "imgsz": args.imgsz, "images": len(store), "val": val}))
        return
    t0 = time.perf_counter()
    opts = DetectOptions(out=os.path.join(args.out, "fastload_detect"), exist_ok=True, imgsz=args.imgsz, batch=1,
                         save_txt=True, save_conf=True, save_images=False)  # fmt: skip
    labels = detect(args.weights, [source], opts, progress=False)["labels"]
    fastload_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in ("yolov5_predict_retina", "yolov5_predict"):  # predict.py appends to label files: start empty
        shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)
    retina = yolov5_predict(args.weights, source, args, retina=True)
    yolov5_seconds = time.perf_counter() - t0
    plain = yolov5_predict(args.weights, source, args, retina=False)
    sizes, truth = image_sizes(source), os.path.join(data, "labels", "val")
    result = {
        "weights": args.weights,
        "imgsz": args.imgsz,
        "images": len(store),
        "val": val,
        "detect": {
            "against_labels": {
                "fastload": against_labels(labels, truth, sizes),
                "yolov5_retina_masks": against_labels(retina, truth, sizes),
                "yolov5_default": against_labels(plain, truth, sizes),
            },  # fmt: skip
            "fastload_vs_yolov5_retina_masks": agreement(labels, retina, sizes),
            "fastload_vs_yolov5_default": agreement(labels, plain, sizes),
            "same_outputs": same_outputs(args.weights, source, truth, sizes, args),
            "seconds": {"fastload_batch1": fastload_seconds, "yolov5_retina_batch1": yolov5_seconds},
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
