"""What a training run writes about itself: after each epoch a row of results.csv, the results.png plot of it, and
the same values as TensorBoard scalars under YOLOv5's tags (`tensorboard --logdir runs/train`); at its start,
YOLOv5's labels.jpg of the training boxes."""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
from tqdm import tqdm

from fastload.loader.draw import save_image

COLUMNS = ["epoch", "box_loss", "obj_loss", "cls_loss", "precision", "recall", "map50", "map50_95", "val_box_loss",
           "val_obj_loss", "val_cls_loss", "lr0", "images_per_sec", "data_wait_s", "compute_s", "val_s",
           "checkpoint_s", "skipped_steps"]  # fmt: skip
MASK_COLUMNS = ["seg_loss", "mask_precision", "mask_recall", "mask_map50", "mask_map50_95", "val_seg_loss"]
# YOLOv5's TensorBoard tags where it has the value; fastload's seconds under time/
TAGS = {"box_loss": "train/box_loss", "obj_loss": "train/obj_loss", "cls_loss": "train/cls_loss",
        "precision": "metrics/precision", "recall": "metrics/recall", "map50": "metrics/mAP_0.5",
        "map50_95": "metrics/mAP_0.5:0.95", "val_box_loss": "val/box_loss", "val_obj_loss": "val/obj_loss",
        "val_cls_loss": "val/cls_loss", "lr0": "x/lr0", "images_per_sec": "speed/images_per_sec",
        "data_wait_s": "time/data_wait_s", "compute_s": "time/compute_s", "val_s": "time/val_s",
        "checkpoint_s": "time/checkpoint_s"}  # fmt: skip
MASK_TAGS = {"seg_loss": "train/seg_loss", "mask_precision": "metrics/precision(M)", "mask_recall": "metrics/recall(M)",
             "mask_map50": "metrics/mAP_0.5(M)", "mask_map50_95": "metrics/mAP_0.5:0.95(M)",
             "val_seg_loss": "val/seg_loss"}  # fmt: skip


class RunLog:
    """results.csv (a new one, or appended to when a run resumes), results.png (with `plot`) and, when
    tensorboard is installed and `tensorboard` is on, an event file in the run folder. A segmentation run
    (`masks`) has the MASK_COLUMNS too, after the others."""

    def __init__(self, out: str, resumed: bool, tensorboard: bool = True, plot: bool = True, masks: bool = False):
        self.csv, self.png = os.path.join(out, "results.csv"), os.path.join(out, "results.png") if plot else ""
        self.columns = COLUMNS + MASK_COLUMNS * masks
        self.tags = TAGS | (MASK_TAGS if masks else {})
        if not resumed or not os.path.exists(self.csv):
            with open(self.csv, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        else:  # a run begun by an older fastload: its rows in today's columns (0 where it had none)
            with open(self.csv, newline="") as f:
                old = list(csv.DictReader(f))
            if old and list(old[0]) != self.columns:
                with open(f"{self.csv}.partial", "w", newline="") as f:
                    csv.writer(f).writerows([self.columns, *([r.get(c, "0") for c in self.columns] for r in old)])
                os.replace(f"{self.csv}.partial", self.csv)
        self.board = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                tqdm.write("no TensorBoard log: tensorboard is not installed (pip install tensorboard)", sys.stderr)
            else:
                self.board = SummaryWriter(out)

    def epoch(self, values: dict[str, float]) -> None:
        """One epoch's values (`columns`' keys): a csv row, the plot redrawn, the scalars flushed."""
        row = [values[c] for c in self.columns]
        with open(self.csv, "a", newline="") as f:
            csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        if self.png:
            plot_results(self.csv, self.png)
        if self.board is not None:
            for key, tag in self.tags.items():
                self.board.add_scalar(tag, values[key], values["epoch"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def plot_results(csv_path: str, png_path: str) -> None:
    """results.png: per epoch the losses, P and R, the mAPs, and where the seconds went."""
    from matplotlib.figure import Figure

    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    epoch = [int(r["epoch"]) for r in table]
    masks = "seg_loss" in table[0]
    panels = [
        ("loss", ("box_loss", "obj_loss", "cls_loss", "val_box_loss", "val_obj_loss", "val_cls_loss")
         + ("seg_loss", "val_seg_loss") * masks),
        ("P / R", ("precision", "recall") + ("mask_precision", "mask_recall") * masks),
        ("mAP", ("map50", "map50_95") + ("mask_map50", "mask_map50_95") * masks),
        ("seconds", ("data_wait_s", "compute_s", "val_s", "checkpoint_s")),
    ]  # fmt: skip
    fig = Figure(figsize=(16, 3.5))
    axes = fig.subplots(1, 4)
    for ax, (title, columns) in zip(axes, panels, strict=True):
        for c in columns:
            ax.plot(epoch, [float(r[c]) for r in table], marker=".", label=c)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_image(fig, png_path, dpi=80)


def plot_labels(boxes: np.ndarray, names: list[str], path: str) -> None:
    """YOLOv5's labels.jpg for the training split's boxes [M, 5] (cls, cx, cy, w, h normalised): instances per
    class, where the box centres are and how large the boxes are (2-D histograms)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4))
    bars, centres, sizes = fig.subplots(1, 3)
    counts = np.bincount(boxes[:, 0].astype(np.int64), minlength=len(names)) if len(boxes) else np.zeros(len(names))
    bars.bar(range(len(names)), counts, color="#4878cf")
    bars.set_ylabel("instances")
    if len(names) <= 30:
        bars.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    for ax, (x, y), (xlabel, ylabel) in ((centres, (1, 2), ("x", "y")), (sizes, (3, 4), ("width", "height"))):
        ax.hist2d(boxes[:, x], boxes[:, y], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    save_image(fig, path, dpi=100)
