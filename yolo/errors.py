"""`fastload val --errors N`: each image's mistakes at a working threshold, the numbers behind the confusion
matrix per image (YOLOv5's val.py counts them per class only): its detections above the matrix's confidence paired
one to one with its labels by the matrix's IoU (yolo.curves.pairs); a pair of one class is correct, of two a wrong
class, a label left alone was missed and a detection left alone is a false one (here also in an image where
nothing paired, which YOLOv5's matrix leaves out). Written worst first to errors.csv; the N worst images are drawn
with their mistakes."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.ops import box_iou

from fastload.loader.draw import draw_box, pen, save_image
from fastload.store.tempfiles import write_atomic
from yolo.curves import paired
from yolo.val import ground_truth

CONF, IOU = 0.25, 0.45  # the confusion matrix's (YOLOv5's ConfusionMatrix)
COLOURS = {"correct": (40, 160, 60), "wrong": (200, 40, 200), "missed": (255, 140, 0), "false": (220, 30, 30),
           "duplicate": (150, 20, 20)}  # fmt: skip
COLUMNS = ["image", "objects", "detections", "correct", "wrong_class", "missed", "false", "duplicates", "errors",
           "top_false_conf", "details"]  # fmt: skip


def image_errors(pred: np.ndarray, gt: np.ndarray, conf: float = CONF, iou: float = IOU) -> dict:
    """One image's detections pred [k, 6] (xyxy, conf, cls) above `conf` against its labels gt [m, 5] (cls,
    xyxy): the label and detection rows (`truth`, `found`) with what each is ("correct", "wrong", "missed",
    "false", or "duplicate": a false one over a label of its class, which another detection took), and, for a wrong
    class, the label paired with the detection (`paired`)."""
    pred = pred[pred[:, 4] > conf]
    overlap = box_iou(torch.as_tensor(gt[:, 1:5]), torch.as_tensor(pred[:, :4])).numpy()  # [labels, detections]
    m0, m1 = paired(overlap, iou)
    same = gt[m0, 0].astype(int) == pred[m1, 5].astype(int)
    truth, found = np.array(["missed"] * len(gt), object), np.array(["false"] * len(pred), object)
    truth[m0] = found[m1] = np.where(same, "correct", "wrong")
    label_of = np.full(len(pred), -1)
    label_of[m1] = m0
    over = ((overlap > iou) & (gt[:, :1].astype(int) == pred[:, 5].astype(int))).any(0)  # a label of its class
    found[(found == "false") & over] = "duplicate"  # (which another detection took: this one is unpaired)
    return {"truth": (gt, truth), "found": (pred, found), "paired": label_of}


def error_rows(predictions: list, store, names: list[str], conf: float = CONF, iou: float = IOU) -> list[dict]:
    """Per image of `predictions` ((record, [k, 6] in original pixels), as validate gives them) of `store`: the
    COLUMNS, worst first (most errors, then path), and each image's `image_errors` under "_found"."""
    rows = []
    for i, det in predictions:
        got = image_errors(np.asarray(det, np.float64).reshape(-1, 6), ground_truth(store.labels(i), store.sizes[i]),
                           conf, iou)  # fmt: skip
        gt, truth = got["truth"]
        pred, found = got["found"]
        unpaired = np.isin(found, ("false", "duplicate"))
        missed = Counter(names[int(c)] for c in gt[truth == "missed", 0])
        false = Counter(names[int(c)] for c in pred[unpaired, 5])
        duplicate = Counter(names[int(c)] for c in pred[found == "duplicate", 5])
        wrong = Counter(f"{names[int(gt[j, 0])]} as {names[int(pred[k, 5])]}" for k, j in enumerate(got["paired"])
                        if found[k] == "wrong")  # fmt: skip
        details = "; ".join(f"{what}: " + ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(c.items()))
                            for what, c in (("missed", missed), ("false", false), ("of which duplicates", duplicate),
                                            ("wrong", wrong)) if c)  # fmt: skip
        counts = {"correct": int((found == "correct").sum()), "wrong_class": wrong.total(), "missed": missed.total(),
                  "false": false.total(), "duplicates": duplicate.total()}  # fmt: skip
        errors = counts["wrong_class"] + counts["missed"] + counts["false"]
        lone = pred[found == "false", 4]  # a confident one may be an object nobody labelled
        counts["top_false_conf"] = round(float(lone.max()), 3) if len(lone) else ""
        rows.append({"image": store.path_of(i), "objects": len(gt), "detections": len(pred), **counts,
                     "errors": errors, "details": details, "_record": int(i), "_found": got})  # fmt: skip
    return sorted(rows, key=lambda r: (-r["errors"], r["image"]))


def write_errors(path: str, rows: list[dict]) -> None:
    """errors.csv: the COLUMNS of each row, as error_rows orders them; written whole or not at all."""
    text = io.StringIO(newline="")
    out = csv.DictWriter(text, COLUMNS, extrasaction="ignore")
    out.writeheader()
    out.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def draw_errors(folder: str, rows: list[dict], store, names: list[str], n: int) -> list[str]:
    """The first `n` rows' images with errors drawn into `folder`, named as in the store (flattened): correct
    detections green, wrong classes magenta (the label's class named), missed labels orange, false detections
    red. Returns the files written."""
    written = []
    for row in [r for r in rows if r["errors"]][:n]:
        with Image.open(io.BytesIO(bytes(store.image(row["_record"])))) as im:
            image = im.convert("RGB")
        draw = ImageDraw.Draw(image)
        width, font = pen(image)
        got = row["_found"]
        gt, truth = got["truth"]
        for box, what in zip(gt, truth, strict=True):
            if what == "missed":
                draw_box(draw, tuple(box[1:5]), int(box[0]), names, None, width, font, colour=COLOURS["missed"],
                         text=f"missed {names[int(box[0])]}")  # fmt: skip
        pred, found = got["found"]
        for k, (box, what) in enumerate(zip(pred, found, strict=True)):
            text = f"{'' if what == 'correct' else what + ' '}{names[int(box[5])]} {box[4]:.2f}"
            if what == "wrong":
                text += f" (is {names[int(gt[got['paired'][k], 0])]})"
            draw_box(draw, tuple(box[:4]), int(box[5]), names, None, width, font, colour=COLOURS[what], text=text)
        flat = os.path.splitext(row["image"].replace("/", "__").replace("\\", "__"))[0] + ".jpg"
        os.makedirs(folder, exist_ok=True)
        save_image(image, os.path.join(folder, flat))
        written.append(os.path.join(folder, flat))
    return written


def report_errors(out: str, store, predictions: list, n: int, conf: float = CONF, iou: float = IOU) -> dict:
    """`val --errors N`: errors.csv and the N worst images (errors/) written into the run folder `out`; returns the
    JSON's `errors` (its totals, the files, the five worst rows) with the summary `line`."""
    rows = error_rows(predictions, store, store.names, conf, iou)
    path = os.path.join(out, "errors.csv")
    write_errors(path, rows)
    drawn = draw_errors(os.path.join(out, "errors"), rows, store, store.names, n)
    totals = {
        k: sum(r[k] for r in rows) for k in ("objects", "correct", "wrong_class", "missed", "false", "duplicates")
    }
    wrong = sum(r["errors"] > 0 for r in rows)
    line = (f"errors (conf {conf}, IoU {iou}): {wrong} of {len(rows)} images, {totals['missed']} missed, "
            f"{totals['false']} false ({totals['duplicates']} duplicates), {totals['wrong_class']} of the wrong "
            f"class: {path}"
            + (f", the {len(drawn)} worst drawn in {os.path.join(out, 'errors')}" if drawn else ""))  # fmt: skip
    worst = [{k: r[k] for k in COLUMNS} for r in rows[:5] if r["errors"]]
    return {"csv": path, "conf": conf, "iou": iou, "images": len(rows), "images_with_errors": wrong, **totals,
            "drawn": drawn, "worst": worst, "line": line}  # fmt: skip
