"""A classifier on image files, as YOLOv5's classify/predict.py: each picture's centre crop (its CenterCrop,
decoded and cut by the classification loader: DALI, on the GPU with a CUDA device), the model, softmax; the five
likeliest classes written on the picture, into `labels/<name>.txt` ("0.93 circle" lines) and, with `save_csv`,
predictions.csv (the first class and its probability); `fastload detect` comes here for a classifier's weights.

    w = read_weights("runs/train-cls/exp/weights/best.pt")
    result = classify_files(w, "best.pt", ["photos/"], DetectOptions(out="runs/predict-cls/exp"))
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

from fastload.errors import FastloadError
from fastload.loader.classify_loader import ClassifyLoader, normalize
from fastload.loader.draw import pen, save_image
from fastload.loader.files import find_images, scan_images
from fastload.store.tempfiles import partial_path, write_atomic
from yolo.classify import refuse_for_classifier
from yolo.classify_val import classifier_side
from yolo.detect import picture_path
from yolo.exported import inference_model
from yolo.rundir import new_run_dir
from yolo.train import resolve_device, say

TOP = 5  # classes shown per picture, as YOLOv5


def top_lines(probs: np.ndarray, names: list[str]) -> list[str]:
    """YOLOv5's lines of the likeliest classes: '0.93 circle', most likely first."""
    order = np.argsort(-probs, kind="stable")[:TOP]
    return [f"{probs[j]:.2f} {names[j]}" for j in order]


def draw_top(source: str, lines: list[str], path: str) -> None:
    """The original picture, upright, with the lines written at (32, 32) in white, saved atomically (a picture not
    .jpg or .png as .jpg, as detect writes it)."""
    with Image.open(source) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")
    _, font = pen(image)
    ImageDraw.Draw(image).multiline_text((32, 32), "\n".join(lines), fill=(255, 255, 255), font=font)
    save_image(image, path, quality=95)


def classify_files(w, weights: str, sources: list[str], opts, progress: bool = True) -> dict:
    """Classify the pictures in `sources` (fastload.loader.files.find_images) with the classifier weights `w`
    (yolo.weights.Weights of `weights`), with detect's options `opts` (yolo.detect.DetectOptions) where they
    apply. Unusable files are reported and passed over; videos and streams are refused."""
    t0 = time.perf_counter()
    refuse_for_classifier(weights, w, augment=opts.augment or None, visualize=opts.visualize or None,
                          tile=opts.tile or None, save_crop=opts.save_crop or None)  # fmt: skip
    listed: list[tuple[str, str]] = []
    streams: list[str] = []
    found = find_images(sources, listed, streams)
    if listed or streams:
        raise FastloadError(f"{(listed[0][0] if listed else streams[0])}: a classifier predicts on pictures here, "
                            "not videos or streams")  # fmt: skip
    files, skipped = scan_images(found, opts.workers)
    for s in skipped:
        say(f"{s['path']}: {s['reason']} (skipped)")
    device = resolve_device(opts.device)
    imgsz = classifier_side(w, opts.imgsz, say)
    model = inference_model(w, device).eval()  # a checkpoint's, fused; or an exported file's
    loader = ClassifyLoader(files, imgsz, opts.batch, augment=None, device=str(device), workers=opts.workers,
                            labelled=False)  # fmt: skip
    out = new_run_dir(os.path.dirname(opts.out) or ".", os.path.basename(opts.out), opts.exist_ok)
    csv_path, per_class, seconds = os.path.join(out, "predictions.csv"), Counter(), np.zeros(2)
    table = open(partial_path(csv_path), "w", newline="") if opts.save_csv else None
    try:
        rows = csv.writer(table) if table is not None else None
        if rows is not None:
            rows.writerow(["Image Name", "Prediction", "Confidence"])
        with torch.no_grad():
            for b in loader:
                t1 = time.perf_counter()
                with torch.autocast("cuda", enabled=device.type == "cuda"):  # as detect: float16 on CUDA
                    logits = model(normalize(b.images))
                probs = torch.softmax(logits.float(), 1).cpu().numpy()
                t2 = time.perf_counter()
                for i, p in zip(b.indices, probs, strict=True):
                    name, lines = files.out_names[i], top_lines(p, w.names)
                    per_class[int(p.argmax())] += 1
                    if progress:
                        say(f"{files.paths[i]}: {', '.join(' '.join(line.split(' ', 1)[::-1]) for line in lines)}")
                    if opts.save_txt:
                        label = os.path.join(out, "labels", os.path.splitext(name)[0] + ".txt")
                        os.makedirs(os.path.dirname(label), exist_ok=True)
                        write_atomic(label, ("\n".join(lines) + "\n").encode())
                    if opts.save_images:
                        os.makedirs(os.path.dirname(os.path.join(out, name)), exist_ok=True)
                        draw_top(files.paths[i], lines, picture_path(out, name))
                    if rows is not None:
                        rows.writerow([name, w.names[int(p.argmax())], f"{p.max():.2f}"])
                seconds += (t2 - t1, time.perf_counter() - t2)
    except BaseException:
        if table is not None:
            table.close()
            os.remove(partial_path(csv_path))
        raise
    if table is not None:
        table.close()
        os.replace(partial_path(csv_path), csv_path)
    return {
        "out": out,
        "weights": weights,
        "format": w.source,
        "task": "classify",
        "device": str(device),
        "imgsz": imgsz,
        "images": len(files),
        "per_class": {w.names[c]: n for c, n in sorted(per_class.items())},  # each picture's likeliest class
        "skipped": skipped,
        "labels": os.path.join(out, "labels") if opts.save_txt else None,
        "csv": csv_path if opts.save_csv else None,
        "images_per_sec": len(files) / max(time.perf_counter() - t0, 1e-9),
        "speed_ms": [round(1000 * s / max(len(files), 1), 3) for s in seconds],  # model, writing: per image
        "seconds": time.perf_counter() - t0,
    }
