"""YOLOv5's copy_paste (hyp copy_paste) on mosaics whose labels have polygons: which objects it pastes, the rows
they add, and the mask through which the pipeline shows the canvas's mirror image (`Paste`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from fastload.loader.augment import Window


@dataclass
class Paste:
    """YOLOv5's copy_paste on a canvas: its mirror image shown where `mask` is 1, over a window of the assembly at
    `place`; the pipeline cuts the mirrored part of the canvas as 2 x 2 cells (`windows` at `places`, `cells`)
    and flips it left-right."""

    place: tuple[int, int]  # (y, x) of the mask in the assembly
    mask: np.ndarray  # uint8 [h, w]
    windows: list[Window]
    places: list[tuple[int, int]]


def paste_rows(rng, p, cls, xyxy, cid, boxed, points, per_row, size_hw):
    """YOLOv5's copy_paste (paste_choice) on each canvas whose rows are boxed from polygons (`points`,
    `per_row` of them per boxed row): the pasted rows appended (class, mirrored box, canvas, mirrored polygon).
    Returns the arrays so extended and {canvas: the pasted labels' own polygons}."""
    index = np.full(len(xyxy), -1)
    index[boxed] = np.arange(boxed.sum())  # row -> its polygon
    first = np.concatenate([[0], np.cumsum(per_row)[:-1]])
    extra, pasted = [], {}
    for c in np.unique(cid[boxed]).tolist():
        rows = np.flatnonzero(cid == c)
        width = float(size_hw[c][1])
        picks, boxes = paste_choice(rng, xyxy[rows], p, width)
        for j, box in zip(rows[picks].tolist(), boxes, strict=True):
            r = index[j]
            xy = points[first[r] : first[r] + per_row[r]]
            extra.append((cls[j], box, c, np.stack([np.float32(width) - xy[:, 0], xy[:, 1]], 1)))
            pasted.setdefault(c, []).append(xy)
    if not extra:
        return cls, xyxy, cid, boxed, points, per_row, pasted
    k = len(extra)  # after all rows: plan_batch groups them by canvas, each canvas's pasted ones after its own
    return (
        np.concatenate([cls, np.array([e[0] for e in extra])]),
        np.concatenate([xyxy, np.array([e[1] for e in extra])]),
        np.concatenate([cid, np.array([e[2] for e in extra], cid.dtype)]),
        np.concatenate([boxed, np.ones(k, bool)]),
        np.concatenate([points, *(e[3] for e in extra)]),
        np.concatenate([per_row, [len(e[3]) for e in extra]]),
        pasted,
    )


def paste_choice(rng: np.random.Generator, xyxy: np.ndarray, p: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv5's copy_paste on one mosaic of n labels (`xyxy` [n, 4], clipped to the canvas of `width`): round(p n)
    of them in random order; each whose mirror image across the canvas covers under 30% of every label so far
    (those pasted before it included: bbox_ioa, intersection over the label's area) is pasted. Returns (the pasted
    labels' indices [k], their mirrored xyxy [k, 4])."""
    n = len(xyxy)
    picks, boxes = [], list(xyxy)
    for j in rng.permutation(n)[: round(p * n)].tolist():
        x1, y1, x2, y2 = xyxy[j]
        box = np.array([width - x2, y1, width - x1, y2])
        labels = np.asarray(boxes)
        inter = (np.minimum(box[2], labels[:, 2]) - np.maximum(box[0], labels[:, 0])).clip(0) * (
            np.minimum(box[3], labels[:, 3]) - np.maximum(box[1], labels[:, 1])
        ).clip(0)
        if (inter / ((labels[:, 2] - labels[:, 0]) * (labels[:, 3] - labels[:, 1]) + 1e-7) < 0.30).all():
            picks.append(j)
            boxes.append(box)
    return np.array(picks, np.int64), np.array(boxes[n:], np.float64).reshape(-1, 4)


def paste_mask(polygons: list[np.ndarray], width: int, region: tuple[int, int, int, int]):
    """Where YOLOv5's copy_paste shows the canvas's mirror image: its pasted objects' polygons (canvas pixels,
    `placed`) drawn filled at their integer vertices (cv2.drawContours of astype(int32)), then flipped left-right
    across the canvas of `width`; drawn only over `region` (y0, x0, y1, x1), the part of the canvas the warp reads.
    Returns ((y, x) of the mask in the canvas, uint8 [h, w] mask of 0 and 1, at least 2 x 2), or None when nothing
    pasted lands in the region. PIL's fill and lines, not cv2's: they differ on ~0.3% of the pixels, at edges."""
    y0, x0, y1, x1 = region
    mirrored = []
    for xy in polygons:
        v = xy.astype(np.int32)
        mirrored.append(np.stack([width - 1 - v[:, 0], v[:, 1]], 1))
    corners = np.concatenate(mirrored)
    top, left = max(int(corners[:, 1].min()), y0), max(int(corners[:, 0].min()), x0)
    bottom, right = min(int(corners[:, 1].max()) + 1, y1), min(int(corners[:, 0].max()) + 1, x1)
    if top >= bottom or left >= right:
        return None
    top, left = min(top, y1 - 2), min(left, x1 - 2)  # at least 2 x 2 (the region is), for the pipeline's cells
    bottom, right = max(bottom, top + 2), max(right, left + 2)
    image = Image.new("L", (right - left, bottom - top))
    draw = ImageDraw.Draw(image)
    for v in mirrored:
        xy = [(x - left, y - top) for x, y in v.tolist()]
        draw.polygon(xy, fill=1)
        draw.line(xy + xy[:1], fill=1)  # cv2 fills the pixels its 8-connected edges cross: 10x closer with them
    return (top, left), np.asarray(image)
