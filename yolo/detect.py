"""Detection on image files, as YOLOv5's detect.py: a folder (or files) decoded and letterboxed by the validation
loader (DALI; on the GPU with a CUDA device), the model, NMS with one class per box, boxes in original pixels.
It writes the pictures with their boxes and, with `save_txt`, one YOLO label file per image.

    result = detect("runs/train/exp/weights/best.pt", ["photos/"], DetectOptions(out="runs/detect/exp"))
"""

from __future__ import annotations

import contextlib
import csv
import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.loader.draw import annotate, save_image
from fastload.loader.files import find_images, scan_images
from fastload.loader.val_loader import ValLoader
from fastload.store.tempfiles import partial_path, write_atomic
from yolo.model import fit_stride
from yolo.rundir import new_run_dir
from yolo.train import resolve_device, say
from yolo.val import Speed, predict
from yolo.weights import read_weights

PICTURES = (".jpg", ".jpeg", ".png")  # pictures keep these extensions; others are written as .jpg


@dataclass
class DetectOptions:
    out: str = "runs/detect/exp"  # taken: exp2, exp3, ... as YOLOv5 (the result's `out` says which)
    exist_ok: bool = False  # write into `out` even if it exists (YOLOv5's --exist-ok)
    imgsz: int = 0  # long side, rounded up to a multiple of the stride (0: a fastload checkpoint's size, else 640)
    conf: float = 0.25  # YOLOv5 detect.py's thresholds
    iou: float = 0.45
    max_det: int = 1000
    classes: list[int] | None = None  # keep only these class ids
    agnostic: bool = False  # suppress overlapping boxes across classes
    augment: bool = False  # YOLOv5's test-time augmentation (yolo.tta)
    batch: int = 16  # images per batch, grouped by aspect ratio (YOLOv5's detect.py runs one at a time)
    device: str = ""
    workers: int = 2  # DALI source processes (reading, and converting what is not a plain JPEG)
    save_images: bool = True
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False  # crops/<class>/<image>.jpg (then <image>2.jpg, ...), as YOLOv5's save_one_box
    save_csv: bool = False  # predictions.csv: image, class name, confidence per detection (YOLOv5's --save-csv)
    line_thickness: int = 0  # box lines in pixels (0: by the picture's size)
    hide_labels: bool = False
    hide_conf: bool = False


def label_lines(det: np.ndarray, size, save_conf: bool) -> str:
    """Detections [k, 6] (x1, y1, x2, y2, conf, cls) in an image of `size` (h, w) as YOLO label lines:
    cls cx cy w h normalised (then the confidence), as YOLOv5's --save-txt."""
    h, w = (float(v) for v in size)
    lines = []
    for x1, y1, x2, y2, conf, cls in det:
        row = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h] + ([conf] if save_conf else [])
        lines.append(" ".join([str(int(cls))] + [f"{v:.6g}" for v in row]))
    return "".join(line + "\n" for line in lines)


def picture_path(out: str, name: str) -> str:
    root, ext = os.path.splitext(name)
    return os.path.join(out, name if ext.lower() in PICTURES else root + ".jpg")


def crop_box(box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """YOLOv5's save_one_box region for a box (x1, y1, x2, y2): 2% and 10 pixels larger, clipped to the image of
    `size` (h, w), whole pixels."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.02 + 10, (y2 - y1) * 1.02 + 10
    H, W = size
    return (int(min(max(cx - w / 2, 0), W)), int(min(max(cy - h / 2, 0), H)), int(min(max(cx + w / 2, 0), W)),
            int(min(max(cy + h / 2, 0), H)))  # fmt: skip


def crop_paths(out: str, name: str, det: np.ndarray, names: list[str]) -> list[str]:
    """crops/<class>/<name>.jpg for each detection, then <name>2.jpg, ... within a class (YOLOv5's increment)."""
    root, seen, paths = os.path.splitext(name)[0], Counter(), []
    for cls in det[:, 5].astype(int):
        seen[cls] += 1
        suffix = "" if seen[cls] == 1 else str(seen[cls])
        paths.append(os.path.join(out, "crops", names[cls], f"{root}{suffix}.jpg"))
    return paths


def render_file(source: str, det: np.ndarray, names: list[str], picture: str, crops: list[str], opts) -> None:
    """From the original file, upright: its crops (before any drawing) and the picture with its detections drawn,
    each saved atomically."""
    with Image.open(source) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")
    for box, path in zip(det[:, :4], crops, strict=True) if crops else ():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_image(image.crop(crop_box(box, (image.height, image.width))), path, quality=95)
    if picture:
        drawn = annotate(image, det, names, opts.line_thickness, not opts.hide_labels, not opts.hide_conf)
        save_image(drawn, picture, quality=95)  # as cv2.imwrite in YOLOv5's detect.py


def detect(weights: str, sources: list[str], opts: DetectOptions, progress: bool = True) -> dict:
    """Run the model in `weights` (a fastload or YOLOv5 checkpoint) over the images in `sources` (files and
    folders); returns the counts and where the results went. Unusable files are reported and passed over."""
    t0 = time.perf_counter()
    w = read_weights(weights)
    if opts.classes and max(opts.classes) >= len(w.names):
        raise FastloadError(f"--classes {max(opts.classes)}: {weights} has {len(w.names)} classes")
    device = resolve_device(opts.device)
    found = find_images(sources)
    with tqdm(total=len(found), desc="scan", unit="img", disable=not progress or None, leave=False) as bar:
        files, skipped = scan_images(found, opts.workers, bar.update)
    for s in skipped:
        say(f"{s['path']}: {s['reason']} (skipped)")
    model = w.model().to(device).fuse()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    imgsz = fit_stride(opts.imgsz or w.config.get("imgsz", 640), w.stride)
    # pad 0: each batch's shape is the smallest multiple of the stride (32; 64 for a P6 model) around its letterbox,
    # as detect.py's auto letterbox; and detect.py's resize: bilinear without smoothing (its validation's INTER_AREA
    # smooths)
    loader = ValLoader(files, imgsz, opts.batch, pad=0.0, stride=w.stride, device=str(device), workers=opts.workers,
                       antialias=False)  # fmt: skip
    out = new_run_dir(os.path.dirname(opts.out) or ".", os.path.basename(opts.out), opts.exist_ok)
    labels = os.path.join(out, "labels")
    csv_path = os.path.join(out, "predictions.csv")
    per_class: Counter = Counter()
    pending: deque = deque()
    threads = max(1, min(4, os.cpu_count() or 1))
    t1 = time.perf_counter()
    with (
        ThreadPoolExecutor(threads, thread_name_prefix="draw") as pool,
        tqdm(total=len(files), desc="detect", unit="img", disable=not progress or None) as bar,
        open(partial_path(csv_path), "w", newline="") if opts.save_csv else contextlib.nullcontext() as table,
    ):
        if table is not None:
            csv.writer(table).writerow(["Image Name", "Prediction", "Confidence"])  # YOLOv5's columns
        nms = dict(multi_label=False, classes=opts.classes, agnostic=opts.agnostic)
        speed = Speed(device)
        batches = predict(model, loader, opts.conf, opts.iou, opts.max_det, opts.augment, speed, **nms)
        for b, _, _, _, original in batches:
            for i, det in zip(b.indices, original, strict=True):
                name = files.out_names[int(i)]
                per_class.update(int(c) for c in det[:, 5])
                if opts.save_txt:
                    text_path = os.path.join(labels, os.path.splitext(name)[0] + ".txt")
                    os.makedirs(os.path.dirname(text_path), exist_ok=True)
                    write_atomic(text_path, label_lines(det, files.sizes[int(i)], opts.save_conf).encode())
                if table is not None:
                    csv.writer(table).writerows([name, w.names[int(c)], f"{p:.2f}"] for p, c in det[:, 4:6])
                crops = crop_paths(out, name, det, w.names) if opts.save_crop else []
                if opts.save_images or crops:
                    path = picture_path(out, name) if opts.save_images else ""
                    if path:
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                    pending.append(pool.submit(render_file, files.paths[int(i)], det, w.names, path, crops, opts))
                    while len(pending) > 4 * threads:  # memory stays bounded: a few pictures in flight
                        pending.popleft().result()
            bar.update(len(b.indices))
        for job in pending:
            job.result()
    if opts.save_csv:
        os.replace(partial_path(csv_path), csv_path)
    seconds = time.perf_counter() - t1
    return {
        "out": out,
        "weights": weights,
        "device": str(device),
        "imgsz": imgsz,
        "conf": opts.conf,
        "iou": opts.iou,
        "augment": opts.augment,
        "images": len(files),
        "detections": sum(per_class.values()),
        "per_class": {w.names[c]: n for c, n in sorted(per_class.items())},
        "skipped": skipped,
        "labels": labels if opts.save_txt else None,
        "crops": os.path.join(out, "crops") if opts.save_crop else None,
        "csv": csv_path if opts.save_csv else None,
        "images_per_sec": len(files) / seconds,  # loader, model, NMS and writing, after the scan and the build
        "speed_ms": speed.ms_per_image(),  # YOLOv5's per image: waiting for the loader, the model, NMS
        "seconds": time.perf_counter() - t0,
    }
