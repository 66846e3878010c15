"""YOLOv5's validation pictures: the confusion matrix (confusion_matrix.png) and the PR, F1, P and R curves
(PR_curve.png, F1_curve.png, P_curve.png, R_curve.png), from the curves `yolo.metrics.average_precision` computes
and the matrix `confusion_matrix` counts."""

from __future__ import annotations

import os

import numpy as np
import torch
from torchvision.ops import box_iou

from fastload.loader.draw import save_image
from yolo.metrics import CURVE_POINTS, smooth

DPI = 250  # YOLOv5's


def pairs(pred: np.ndarray, gt: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv5's pairing of an image's labels gt [m, 5] (cls, xyxy) with its predictions pred [k, 6] (xyxy, conf,
    cls), whatever their classes: one to one at IoU > `iou`, the largest IoU first. Returns (label rows, their
    predictions' rows)."""
    if not len(gt) or not len(pred):
        return np.zeros(0, int), np.zeros(0, int)
    return paired(box_iou(torch.as_tensor(gt[:, 1:5]), torch.as_tensor(pred[:, :4])).numpy(), iou)


def paired(overlap: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """`pairs` of labels and predictions by their IoU matrix `overlap` [m, k]."""
    i, j = np.nonzero(overlap > iou)
    matches = np.stack([i, j, overlap[i, j]], 1) if len(i) else np.zeros((0, 3))
    if len(i) > 1:  # the largest IoU first, then one pair per prediction and one per label
        matches = matches[matches[:, 2].argsort()[::-1]]
        matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
        matches = matches[matches[:, 2].argsort()[::-1]]
        matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
    return matches[:, 0].astype(int), matches[:, 1].astype(int)


def confusion_matrix(preds, gts, nc: int, conf: float = 0.25, iou: float = 0.45) -> np.ndarray:
    """YOLOv5's ConfusionMatrix over images: [nc + 1, nc + 1] counts, rows predicted and columns true class, the
    last row and column the background. Per image, preds [k, 6] (xyxy, conf, cls) above `conf` and gts [m, 5]
    (cls, xyxy) pair one to one at IoU > `iou`, largest IoU first (`pairs`); an unpaired label is a missed
    (background) prediction, an unpaired prediction a false one (as YOLOv5 counts it: only in an image where
    something paired)."""
    matrix = np.zeros((nc + 1, nc + 1))
    for pred, gt in zip(preds, gts, strict=True):
        gt_classes = gt[:, 0].astype(int)
        if len(pred) == 0:  # YOLOv5: every label a background miss
            np.add.at(matrix, (nc, gt_classes), 1)
            continue
        pred = pred[pred[:, 4] > conf]
        pred_classes = pred[:, 5].astype(int)
        m0, m1 = pairs(pred, gt, iou)
        for k, gc in enumerate(gt_classes):
            found = m0 == k
            if found.sum() == 1:
                matrix[pred_classes[m1[found]][0], gc] += 1  # right, or the wrong class
            else:
                matrix[nc, gc] += 1  # missed: background
        if len(m0):
            for k, dc in enumerate(pred_classes):
                if not (m1 == k).any():
                    matrix[dc, nc] += 1  # a prediction of nothing: background
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], path: str) -> None:
    """YOLOv5's confusion_matrix.png: each true class's column normalised, shares under 0.005 left blank."""
    from matplotlib.figure import Figure

    nc = len(names)
    shares = matrix / (matrix.sum(0).reshape(1, -1) + 1e-9)
    shares[shares < 0.005] = np.nan
    fig = Figure(figsize=(12, 9), tight_layout=True)
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    labels = [*names, "background"] if nc < 30 else None  # YOLOv5 names the ticks for fewer than 30 classes
    if labels:
        ax.set_xticks(range(nc + 1), labels, rotation=90)
        ax.set_yticks(range(nc + 1), labels)
        for y, x in zip(*np.nonzero(~np.isnan(shares)), strict=True):
            ax.text(x, y, f"{shares[y, x]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if shares[y, x] > 0.5 else "black")  # fmt: skip
    fig.colorbar(image, ax=ax)
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion Matrix")
    save_image(fig, path, dpi=DPI)


def plot_curves(metrics: dict, names: list[str], prefix: str) -> list[str]:
    """YOLOv5's PR_curve.png (precision against recall at IoU 0.5, the legend with each class's AP@0.5) and
    F1_curve.png, P_curve.png, R_curve.png (against confidence, the bold line the mean over classes); the
    files are `prefix` + the name. Returns their paths."""
    from matplotlib.figure import Figure

    px, curves, classes = CURVE_POINTS, metrics["curves"], metrics["classes"]
    legend = 0 < len(classes) < 21  # YOLOv5 names the classes for fewer than 21
    paths = []
    fig = Figure(figsize=(9, 6), tight_layout=True)
    ax = fig.subplots()
    for k, c in enumerate(classes):
        label = f"{names[c]} {metrics['ap'][k, 0]:.3f}" if legend else None
        ax.plot(px, curves["pr"][k], linewidth=1, label=label)
    if len(classes):
        ax.plot(
            px, curves["pr"].mean(0), linewidth=3, color="blue", label=f"all classes {metrics['map50']:.3f} mAP@0.5"
        )
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1), title="Precision-Recall Curve")
    if len(classes):  # no labelled class: no curve to name
        ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    paths.append(f"{prefix}PR_curve.png")
    save_image(fig, paths[-1], dpi=DPI)
    for key, name, ylabel in (("f1", "F1_curve", "F1"), ("p", "P_curve", "Precision"), ("r", "R_curve", "Recall")):
        fig = Figure(figsize=(9, 6), tight_layout=True)
        ax = fig.subplots()
        for k, c in enumerate(classes):
            ax.plot(px, curves[key][k], linewidth=1, label=names[c] if legend else None)
        if len(classes):
            mean = smooth(curves[key].mean(0), 0.05)
            best = int(mean.argmax())
            ax.plot(px, mean, linewidth=3, color="blue", label=f"all classes {mean[best]:.2f} at {px[best]:.3f}")
        ax.set(xlabel="Confidence", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1), title=f"{ylabel}-Confidence Curve")
        if len(classes):  # no labelled class: no curve to name
            ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
        paths.append(f"{prefix}{name}.png")
        save_image(fig, paths[-1], dpi=DPI)
    return paths


def save_validation_plots(metrics: dict, preds, gts, names: list[str], prefix: str) -> list[str]:
    """The confusion matrix and the four curves of one validation, as `prefix` + YOLOv5's file names."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix + "x")), exist_ok=True)
    matrix = confusion_matrix(preds, gts, len(names))
    plot_confusion_matrix(matrix, names, f"{prefix}confusion_matrix.png")
    return [f"{prefix}confusion_matrix.png", *plot_curves(metrics, names, prefix)]
