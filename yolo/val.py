"""Validation: a model over a validation loader, YOLOv5's NMS (conf 0.001, IoU 0.6, 300 per image), predictions
mapped back to original pixels, COCO-style mAP@0.5 and mAP@0.5:0.95, precision, recall, and YOLOv5's per-class
table."""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from fastload.errors import FastloadError
from fastload.loader.draw import batch_grid, detection_rows, save_image
from fastload.loader.files import unique_names
from fastload.loader.geometry import xyxy_to_original
from fastload.store.tempfiles import write_atomic
from yolo.coco import rle
from yolo.curves import save_validation_plots
from yolo.metrics import evaluate, non_max_suppression
from yolo.model import mask_coefficients
from yolo.segment import batch_native_masks, mask_iou, prediction_overlap, process_mask, target_masks
from yolo.tta import forward_augment


def ground_truth(rows: np.ndarray, orig_size) -> np.ndarray:
    """Normalised (cls, cx, cy, w, h) -> (cls, x1, y1, x2, y2) in original pixels."""
    h0, w0 = (float(v) for v in orig_size)
    out = np.empty((len(rows), 5))
    out[:, 0] = rows[:, 0]
    out[:, 1], out[:, 3] = (rows[:, 1] - rows[:, 3] / 2) * w0, (rows[:, 1] + rows[:, 3] / 2) * w0
    out[:, 2], out[:, 4] = (rows[:, 2] - rows[:, 4] / 2) * h0, (rows[:, 2] + rows[:, 4] / 2) * h0
    return out


class Speed:
    """YOLOv5's "Speed:" line: per image, the wait for the loader's batch (its decode and letterbox, YOLOv5's
    pre-process), the model and NMS (with the boxes' copy to the host). On CUDA each stage waits for its kernels
    before it is timed, as YOLOv5's Profile does: a profiled pass is a little slower than a plain one. The wait
    for the first batch (the loader's workers and pipeline starting) is `startup_s`, apart."""

    STAGES = ("preprocess", "inference", "nms")

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self.images, self.startup_s = device, np.zeros(len(self.STAGES)), 0, 0.0
        self.last = time.perf_counter()

    def lap(self, stage: int) -> None:
        """The time since the last lap goes to `stage`."""
        if self.device.type == "cuda" and stage > 0:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if stage == 0 and self.images == 0:
            self.startup_s += now - self.last
        else:
            self.seconds[stage] += now - self.last
        self.last = now

    def add(self, other: Speed) -> None:
        """Another Speed's times and images counted into this one (streams timed in their own threads)."""
        self.seconds += other.seconds
        self.images += other.images
        self.startup_s += other.startup_s

    def ms_per_image(self) -> dict:
        return {k: float(v) * 1000 / max(self.images, 1) for k, v in zip(self.STAGES, self.seconds, strict=True)}


def speed_line(ms: dict, shape: str) -> str:
    """YOLOv5's "Speed:" line from `Speed.ms_per_image()`."""
    return (f"Speed: {ms['preprocess']:.1f}ms pre-process (waiting for the loader), {ms['inference']:.1f}ms "
            f"inference, {ms['nms']:.1f}ms NMS per image at {shape}")  # fmt: skip


def pixel_labels(targets: torch.Tensor, n: int, shape) -> list[torch.Tensor]:
    """A batch's targets [M, 6] (image, cls, cx, cy, w, h; normalised to the input) -> per image [m, 5] (cls, cx,
    cy, w, h) in the input's pixels (YOLOv5's --save-hybrid labels)."""
    h, w = shape
    rows = targets.clone()
    rows[:, 2:] *= torch.tensor((w, h, w, h), dtype=rows.dtype, device=rows.device)
    return [rows[rows[:, 0] == i, 1:] for i in range(n)]


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader,
    conf: float,
    iou: float,
    max_det: int,
    augment: bool = False,
    speed: Speed | None = None,
    hybrid: bool = False,
    **nms,
):
    """Per batch of `loader` (a ValLoader): (the batch, the input as the model got it, the model's raw outputs per
    level (what the loss takes), NMS detections per image [k, 6] (x1, y1, x2, y2, conf, cls) in the input's pixels,
    the same in original pixels as float64 numpy).
    `nms` goes to non_max_suppression (multi_label, classes, agnostic). The model is in eval mode meanwhile. With
    `augment`, YOLOv5's test-time augmentation (yolo.tta), and no raw outputs (None), as in YOLOv5. With `speed`,
    the stages are timed into it (the time the caller spends between batches is not counted). With `hybrid`
    (YOLOv5's --save-hybrid), each image's labels join its NMS as detections of confidence 1.
    A segmentation model's raw outputs are (the maps, the prototypes), and its detections carry their mask
    coefficients after the 6 columns ([k, 6 + nm]; not in the original-pixel ones)."""
    nm = mask_coefficients(model)
    if augment and nm:
        raise FastloadError("--augment: test-time augmentation is built for detection models, not segmentation")
    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)  # none: an exported model (yolo.exported), which says its device
    device = model.device if first is None else first.device
    fmt = torch.channels_last if first is not None and first.is_contiguous(memory_format=torch.channels_last) else None
    try:
        for b in loader:
            if speed is not None:
                speed.lap(0)
                speed.images += len(b.images)
            x = b.images.to(device).float() / 255
            if fmt is not None and x.dim() == 4:
                x = x.contiguous(memory_format=fmt)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out, *raw = (forward_augment(model, x), None) if augment else model(x)
            raw = raw[0] if len(raw) == 1 else tuple(raw)  # a segmentation model's: (maps, prototypes)
            if speed is not None:
                speed.lap(1)
            labels = pixel_labels(b.targets, len(x), x.shape[-2:]) if hybrid else None
            detections = non_max_suppression(out.float(), conf, iou, max_det, labels=labels, nm=nm, **nms)
            original = []
            for j, det in enumerate(detections):
                det = det[:, :6].cpu().numpy().astype(np.float64)
                det[:, :4] = xyxy_to_original(det[:, :4], b.orig_size[j], b.ratio[j], b.pad[j])
                original.append(det)
            if speed is not None:
                speed.lap(2)
            yield b, x, raw, detections, original
            if speed is not None:
                speed.last = time.perf_counter()
    finally:
        model.train(was_training)


def validate(
    model: torch.nn.Module,
    loader,
    store,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 300,
    plot: str = "",
    compute_loss=None,
    augment: bool = False,
    speed: Speed | None = None,
    curves: str = "",
    hybrid: bool = False,
    segmentations: bool = False,
) -> dict:
    """mAP of `model` on every image `loader` yields (a ValLoader over `store`). With `plot` (a path prefix), the
    first batch is drawn with its labels into `<plot>_labels.jpg` and its predictions into `<plot>_pred.jpg`. With
    `compute_loss` (the trainer's ComputeLoss), also `loss`: the mean over batches of its [box, obj, cls] terms, as
    YOLOv5's val/*_loss. `augment`: YOLOv5's test-time augmentation (no loss then). With `curves` (a path prefix),
    YOLOv5's confusion_matrix.png, PR_curve.png, F1_curve.png, P_curve.png and R_curve.png (yolo.curves).
    `hybrid`: the labels join the predictions (YOLOv5's --save-hybrid; the mAP is then not the model's alone).
    A segmentation model on a loader with masks (mask_ratio) also gets YOLOv5's mask metrics (`mask_map50`,
    `mask_map50_95`, `mask_precision`, `mask_recall`: the same matching with the masks' IoU at the prototypes'
    size), and its loss has a seg term ([box, seg, obj, cls]). With `segmentations`, a segmentation model's
    detections' masks at the original resolution (yolo.segment.native_masks) as COCO RLE strings, per image beside
    `predictions` with its size (for YOLOv5's segment/val.py --save-json)."""
    t0 = time.perf_counter()
    preds, gts, indices, loss = [], [], [], None
    mask_gts, mask_ious, rles = [], [], []
    for b, x, raw, detections, original in predict(model, loader, conf, iou, max_det, augment, speed, hybrid):
        segment = isinstance(raw, tuple) and b.masks is not None
        if compute_loss is not None and raw is not None:
            if isinstance(raw, tuple):
                maps, proto = raw
                items = compute_loss(([r.float() for r in maps], proto.float()), b.targets, masks=b.masks)[1]
            else:
                items = compute_loss([r.float() for r in raw], b.targets)[1]
            loss = items if loss is None else loss + items
        if segment:  # the detections' masks against the targets' (in the loader's order: the masks')
            for j, det in enumerate(detections):
                mine = b.targets[:, 0] == j
                rows = b.targets[mine]
                found = process_mask(raw[1][j], det[:, 6:], det[:, :4], x.shape[-2:])
                truth = target_masks(b.masks[j], len(rows)) if b.overlap else b.masks[mine] > 0  # whole: its rows'
                if truth.shape[-2:] != found.shape[-2:]:  # another --mask-ratio: resized as YOLOv5's (bilinear, 0.5)
                    truth = F.interpolate(truth[None].float(), found.shape[-2:], mode="bilinear")[0] > 0.5
                mask_ious.append(mask_iou(found, truth).cpu().numpy())
                mask_gts.append(np.pad(rows[:, 1:2].cpu().numpy().astype(np.float64), ((0, 0), (0, 4))))
        if segmentations and isinstance(raw, tuple):
            for size, masks in zip(b.orig_size, batch_native_masks(raw[1], detections, original, b, x.shape[-2:]),
                                   strict=True):  # fmt: skip
                rles.append(([int(v) for v in size], [rle(m, size)["counts"] for m in masks]))
        if plot and not preds:
            titles = [store.path_of(int(i)) for i in b.indices]
            labelled = batch_grid(b.images, b.targets, store.names, titles, masks=b.overlap_masks())
            save_image(labelled, f"{plot}_labels.jpg")
            rows = detection_rows(detections, tuple(x.shape[-2:]))
            found = prediction_overlap(raw[1], detections, x.shape[-2:]) if isinstance(raw, tuple) else None
            save_image(batch_grid(b.images, rows, store.names, titles, masks=found), f"{plot}_pred.jpg")
        preds += original
        gts += [ground_truth(store.labels(int(i)), size) for i, size in zip(b.indices, b.orig_size, strict=True)]
        indices += [int(i) for i in b.indices]
    metrics = evaluate(preds, gts)
    if mask_ious:
        found = evaluate(preds, mask_gts, mask_ious)
        metrics |= {f"mask_{k}": found[k] for k in ("map50", "map50_95", "precision", "recall")}
        metrics["mask_per_class"] = {k: found[k] for k in ("classes", "p", "r", "ap")}  # class_rows' mask columns
    if curves:
        metrics["plots"] = save_validation_plots(metrics, preds, gts, store.names, curves)
    metrics["images"] = len(preds)
    metrics["predictions"] = list(zip(indices, preds, strict=True))  # (record, [k, 6] in original pixels)
    if rles:
        metrics["segmentations"] = rles  # per image as `predictions`: its size [h, w], its detections' RLE counts
    if loss is not None:
        metrics["loss"] = (loss / len(loader)).tolist()
    metrics["seconds"] = time.perf_counter() - t0
    return metrics


def label_lines(det: np.ndarray, size, save_conf: bool) -> str:
    """Detections [k, 6] (x1, y1, x2, y2, conf, cls) in an image of `size` (h, w) as YOLO label lines:
    cls cx cy w h normalised (then the confidence), as YOLOv5's --save-txt."""
    h, w = (float(v) for v in size)
    lines = []
    for x1, y1, x2, y2, conf, cls in det:
        row = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h] + ([conf] if save_conf else [])
        lines.append(" ".join([str(int(cls))] + [f"{v:.6g}" for v in row]))
    return "".join(line + "\n" for line in lines)


def save_labels(out: str, store, predictions, save_conf: bool = False) -> str:
    """YOLOv5 val.py's --save-txt: `out`/labels/<image>.txt for each validated record, its detections (`validate`'s
    `predictions`: (record, [k, 6] in original pixels)) as `label_lines`. Files are named by the image's stem
    (`_2`, `_3` ... where two folders hold the same name) and written atomically; returns the folder."""
    folder = os.path.join(out, "labels")
    os.makedirs(folder, exist_ok=True)
    stems = [os.path.splitext(os.path.basename(store.path_of(i)))[0] + ".txt" for i, _ in predictions]
    sizes = store.sizes
    for (i, det), name in zip(predictions, unique_names(stems), strict=True):
        write_atomic(os.path.join(folder, name), label_lines(det, sizes[i], save_conf).encode())
    return folder


METRIC_KEYS = ("precision", "recall", "map50", "map50_95")


def class_rows(metrics: dict, names: list[str]) -> list[dict]:
    """YOLOv5's per-class lines: `all`, then each class with labels: images with it, its instances, P, R, mAP@0.5
    and mAP@0.5:0.95; a segmentation model's also the same four of its masks (`mask_precision`, ...), as YOLOv5's
    segment/val.py."""
    rows = [{"name": "all", "images": metrics["images"], "instances": int(metrics["instances"].sum())}
            | {k: metrics[k] for k in METRIC_KEYS}]  # fmt: skip
    masks = metrics.get("mask_per_class")
    if masks is not None:
        rows[0] |= {f"mask_{k}": metrics[f"mask_{k}"] for k in METRIC_KEYS}
    for k, c in enumerate(metrics["classes"]):
        rows.append({"name": names[c], "images": int(metrics["images_with"][k]),
                     "instances": int(metrics["instances"][k])} | per_class(metrics, k))  # fmt: skip
        if masks is not None:
            rows[-1] |= {f"mask_{key}": v for key, v in per_class(masks, list(masks["classes"]).index(c)).items()}
    return rows


def per_class(metrics: dict, k: int) -> dict:
    """Class k's P, R, mAP@0.5 and mAP@0.5:0.95 of `evaluate`'s per-class arrays."""
    values = (metrics["p"][k], metrics["r"][k], metrics["ap"][k, 0], metrics["ap"][k].mean())
    return {key: float(v) for key, v in zip(METRIC_KEYS, values, strict=True)}


def class_table(rows: list[dict]) -> list[str]:
    """`class_rows` as YOLOv5's val.py prints them (a segmentation model's: box then mask columns, as its
    segment/val.py)."""
    masks = bool(rows) and "mask_map50" in rows[0]
    keys = [*METRIC_KEYS, *(f"mask_{k}" for k in METRIC_KEYS if masks)]
    columns = ("P", "R", "mAP50", "mAP50-95")
    header = [f"Box({c})" for c in columns] + [f"Mask({c})" for c in columns] if masks else list(columns)
    lines = [f"{'Class':>22}{'Images':>11}{'Instances':>11}" + "".join(f"{c:>11}" if not masks else f"{c:>15}"
                                                                      for c in header)]  # fmt: skip
    width = 15 if masks else 11
    for r in rows:
        lines.append(f"{r['name'][:22]:>22}{r['images']:>11}{r['instances']:>11}" + "".join(
            f"{r[k]:>{width}.3f}" for k in keys))  # fmt: skip
    return lines
