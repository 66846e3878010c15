"""YOLOv5's letterbox arithmetic in numpy: load size, letterbox placement, rect batch shapes, box mapping.

The pipelines move pixels with these numbers and the iterator moves boxes with the same numbers, so boxes
follow the pixels exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def load_size(h0: int, w0: int, imgsz: int) -> tuple[int, int]:
    """YOLOv5's load_image: long side resized to imgsz (up or down), aspect kept, sizes rounded up."""
    r = imgsz / max(h0, w0)
    if r == 1:
        return h0, w0
    return math.ceil(h0 * r), math.ceil(w0 * r)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an original image lands in the output canvas: resized to (nh, nw) at (top, left)."""

    nh: int
    nw: int
    top: int
    left: int

    def ratio(self, h0: int, w0: int) -> tuple[float, float]:
        return self.nh / h0, self.nw / w0


def letterbox(h0: int, w0: int, imgsz: int, shape: tuple[int, int]) -> Placement:
    """load_image then letterbox(shape, auto=False, scaleup=False), as YOLOv5's validation loader does."""
    h1, w1 = load_size(h0, w0, imgsz)
    r = min(shape[0] / h1, shape[1] / w1, 1.0)
    nw, nh = (int(round(w1 * r)), int(round(h1 * r))) if r != 1 else (w1, h1)
    dw, dh = (shape[1] - nw) / 2, (shape[0] - nh) / 2
    return Placement(nh, nw, int(round(dh - 0.1)), int(round(dw - 0.1)))


def rect_batch_shapes(sizes: np.ndarray, imgsz: int, batch: int, stride: int = 32, pad: float = 0.5):
    """YOLOv5's rectangular batches: (order, shapes) with records sorted by aspect ratio and one (H, W) per
    batch of `batch` consecutive records in that order. `sizes` is [N, 2] of (h, w)."""
    ar = sizes[:, 0] / sizes[:, 1]
    order = np.argsort(ar, kind="stable")
    ar = ar[order]
    shapes = []
    for k in range(0, len(order), batch):
        lo, hi = ar[k : k + batch].min(), ar[k : k + batch].max()
        shapes.append([hi, 1] if hi < 1 else [1, 1 / lo] if lo > 1 else [1, 1])
    hw = np.ceil(np.array(shapes, np.float64).reshape(-1, 2) * imgsz / stride + pad).astype(int) * stride
    return order, [tuple(int(v) for v in s) for s in hw]


def boxes_to_canvas(rows: np.ndarray, p: Placement, shape: tuple[int, int]) -> np.ndarray:
    """(cls, cx, cy, w, h) normalised to the original image -> normalised to the output canvas."""
    out = rows.astype(np.float32, copy=True)
    H, W = shape
    out[:, 1] = (rows[:, 1] * p.nw + p.left) / W
    out[:, 2] = (rows[:, 2] * p.nh + p.top) / H
    out[:, 3] = rows[:, 3] * p.nw / W
    out[:, 4] = rows[:, 4] * p.nh / H
    return out


def xyxy_to_original(xyxy: np.ndarray, orig_size, ratio, pad) -> np.ndarray:
    """Pixel boxes in the output canvas -> pixel boxes in the original image (clipped), like YOLOv5's
    scale_boxes with the `shapes` its validation loader returns: ratio (rh, rw), pad (top, left)."""
    out = np.asarray(xyxy, np.float64).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - pad[1]) / ratio[1]
    out[:, [1, 3]] = (out[:, [1, 3]] - pad[0]) / ratio[0]
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, orig_size[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, orig_size[0])
    return out
