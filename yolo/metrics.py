"""Validation metrics: YOLOv5's multi-label NMS (torchvision's batched_nms) and COCO-style AP: greedy matching
per IoU threshold (0.50:0.05:0.95), precision envelope sampled at 101 recall points, mean over classes with
ground truth. Cross-checked against pycocotools in tests/test_metrics.py."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
CURVE_POINTS = np.linspace(0.0, 1.0, 1000)  # YOLOv5's axis of the P, R, F1 (confidence) and PR (recall) curves


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """YOLOv5's box filter of fraction f (edges repeated)."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    return np.convolve(np.concatenate((pad * y[0], y, pad * y[-1])), np.ones(nf) / nf, mode="valid")


def xywh2xyxy(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[..., 0], y[..., 1] = x[..., 0] - x[..., 2] / 2, x[..., 1] - x[..., 3] / 2
    y[..., 2], y[..., 3] = x[..., 0] + x[..., 2] / 2, x[..., 1] + x[..., 3] / 2
    return y


def non_max_suppression(
    pred: torch.Tensor,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    max_candidates: int = 30000,
    multi_label: bool = True,
    classes: list[int] | None = None,
    agnostic: bool = False,
    labels: list[torch.Tensor] | None = None,
    nm: int = 0,
) -> list[torch.Tensor]:
    """Decoded predictions [N, A, 5 + nc] (cx, cy, w, h, obj, cls...) -> per image [k, 6] (x1, y1, x2, y2, conf,
    cls). Multi-label as YOLOv5's validation: every (box, class) with obj * cls > conf_thres is a candidate; else,
    as its detect.py, each box's best class. `classes` keeps only those; `agnostic` suppresses across classes.
    `labels` (YOLOv5's, for --save-hybrid): per image [m, 5] rows (cls, cx, cy, w, h) in the input's pixels, added
    as candidates of confidence 1 before NMS, so they stand and suppress the predictions they overlap. `nm`: the
    last nm columns are a segmentation model's mask coefficients, not classes; they follow each kept row, after
    its 6 ([k, 6 + nm])."""
    out = []
    for k, x in enumerate(pred):
        x = x[x[:, 4] > conf_thres]
        if labels is not None and len(labels[k]):
            lb = labels[k].to(x.device, x.dtype)
            v = torch.zeros((len(lb), x.shape[1]), device=x.device, dtype=x.dtype)
            v[:, :4], v[:, 4] = lb[:, 1:5], 1.0
            v[torch.arange(len(lb), device=x.device), lb[:, 0].long() + 5] = 1.0
            x = torch.cat((x, v), 0)
        scores = x[:, 5 : x.shape[1] - nm] * x[:, 4:5]
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=False).T
            conf = scores[i, j]
        else:
            conf, j = scores.max(1)
            i = (conf > conf_thres).nonzero(as_tuple=False).flatten()
            conf, j = conf[i], j[i]
        boxes, cls, coefficients = xywh2xyxy(x[i, :4]), j.float(), x[i, x.shape[1] - nm :]
        if classes is not None:
            wanted = torch.isin(j, torch.as_tensor(classes, device=j.device))
            boxes, conf, cls, coefficients = boxes[wanted], conf[wanted], cls[wanted], coefficients[wanted]
        if conf.numel() > max_candidates:
            top = conf.topk(max_candidates).indices
            boxes, conf, cls, coefficients = boxes[top], conf[top], cls[top], coefficients[top]
        keep = batched_nms(boxes, conf, torch.zeros_like(cls, dtype=torch.long) if agnostic else cls.long(), iou_thres)
        keep = keep[:max_det]
        out.append(torch.cat((boxes[keep], conf[keep, None], cls[keep, None], coefficients[keep]), 1))
    return out


def match(pred: np.ndarray, gt: np.ndarray, iou: np.ndarray | None = None) -> np.ndarray:
    """COCO's greedy matching in one image: detections [k, 6] (xyxy, conf, cls) in descending confidence take the
    unmatched ground truth [m, 5] (cls, xyxy) of their class with the highest IoU >= t: their boxes' IoU, or `iou`
    [k, m] (their masks'). Returns [k, 10] hits."""
    hits = np.zeros((len(pred), len(IOU_THRESHOLDS)), bool)
    if not len(pred) or not len(gt):
        return hits
    if iou is None:
        iou = box_iou(torch.as_tensor(pred[:, :4]), torch.as_tensor(gt[:, 1:5])).numpy()
    iou = np.array(iou, np.float64)
    iou[pred[:, 5][:, None] != gt[:, 0][None, :]] = -1  # other classes never match
    order = np.argsort(-pred[:, 4], kind="mergesort")
    for t, thr in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(len(gt), bool)
        for d in order:
            candidates = np.where(~taken & (iou[d] >= min(thr, 1 - 1e-10)), iou[d], -1)
            g = int(candidates.argmax())
            if candidates[g] >= 0:
                taken[g], hits[d, t] = True, True
    return hits


def average_precision(hits: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, gt_cls: np.ndarray) -> dict:
    """AP per class and IoU threshold, precision and recall at IoU 0.5 per class (`classes`: those with ground
    truth, `ap` [classes, 10], `p`, `r`, `instances`) and their means. P and R are read where YOLOv5 reads them: at
    the confidence (`f1_conf`) that maximises the smoothed mean over classes of the F1 curve. `curves` holds
    YOLOv5's curves over CURVE_POINTS: per class P, R and F1 against confidence, and the PR envelope at IoU 0.5."""
    classes, instances = np.unique(gt_cls.astype(int), return_counts=True)
    ap = np.zeros((len(classes), len(IOU_THRESHOLDS)))
    px = CURVE_POINTS
    p_curve, r_curve, pr_curve = (np.zeros((len(classes), len(px))) for _ in range(3))
    for k, (c, n_gt) in enumerate(zip(classes, instances, strict=True)):
        mine = pred_cls == c
        if not mine.any():
            continue
        order = np.argsort(-conf[mine], kind="mergesort")
        tp = np.cumsum(hits[mine][order], 0)
        fp = np.cumsum(~hits[mine][order], 0)
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, 1e-16)
        for t in range(len(IOU_THRESHOLDS)):
            envelope = np.maximum.accumulate(precision[::-1, t])[::-1]
            idx = np.searchsorted(recall[:, t], RECALL_POINTS, side="left")
            ap[k, t] = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0).mean()
        descending = -conf[mine][order]
        r_curve[k] = np.interp(-px, descending, recall[:, 0], left=0)
        p_curve[k] = np.interp(-px, descending, precision[:, 0], left=1)
        envelope = np.flip(np.maximum.accumulate(np.flip(np.concatenate(([1.0], precision[:, 0], [0.0])))))
        pr_curve[k] = np.interp(px, np.concatenate(([0.0], recall[:, 0], [1.0])), envelope)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
    best = int(smooth(f1_curve.mean(0), 0.1).argmax()) if len(classes) else 0
    p, r = p_curve[:, best], r_curve[:, best]
    return {
        "classes": classes,
        "ap": ap,
        "p": p,
        "r": r,
        "instances": instances,
        "map50": float(ap[:, 0].mean()) if len(ap) else 0.0,
        "map50_95": float(ap.mean()) if len(ap) else 0.0,
        "precision": float(p.mean()) if len(p) else 0.0,
        "recall": float(r.mean()) if len(r) else 0.0,
        "f1_conf": float(px[best]),
        "curves": {"p": p_curve, "r": r_curve, "f1": f1_curve, "pr": pr_curve},
    }


def fitness(metrics: dict) -> float:
    """YOLOv5's fitness of a validation: 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 (what best.pt and evolution rank by)."""
    return 0.1 * metrics["map50"] + 0.9 * metrics["map50_95"]


def evaluate(preds: list[np.ndarray], gts: list[np.ndarray], ious: list[np.ndarray] | None = None) -> dict:
    """mAP over images: preds per image [k, 6] (xyxy, conf, cls), gts per image [m, 5] (cls, xyxy), same pixels;
    or with `ious`, per image the [k, m] IoU of each prediction with each ground truth (their masks': the boxes
    are then not read)."""
    ious = ious or [None] * len(preds)
    hits = [match(p, g, iou) for p, g, iou in zip(preds, gts, ious, strict=True)]
    cat = [np.concatenate(x) if x else np.zeros((0, w)) for x, w in ((preds, 6), (hits, 10), (gts, 5))]
    pred, hit, gt = cat
    metrics = average_precision(hit.astype(bool), pred[:, 4], pred[:, 5], gt[:, 0])
    # images with each class (a class's share of the data, as Ultralytics' per-class table shows it)
    per_image = np.concatenate([np.unique(g[:, 0].astype(int)) for g in gts]) if gts else np.zeros(0, int)
    metrics["images_with"] = np.array([(per_image == c).sum() for c in metrics["classes"]], dtype=int)
    return metrics
