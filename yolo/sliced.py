"""Sliced inference, as SAHI's `get_sliced_prediction` (`fastload detect --tile SIZE`, `val --tile`): each large
image through the model tile by tile (a small object keeps its pixels in its tile), and optionally whole, the
detections merged by SAHI's greedy non-maximum merging: a box absorbs the less confident boxes of its class that lie
mostly inside it or it inside them (intersection over the smaller's area > 0.5: the part of an object a tile's edge
cut, its copy in the next tile), growing to their union where they are at least half as confident."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import numpy as np

from fastload.loader.tile_view import TileView
from yolo.curves import save_validation_plots
from yolo.metrics import evaluate
from yolo.val import ground_truth, predict

MATCH = 0.5  # SAHI's match_threshold for its IOS metric
GROW = 0.5  # a box grows by the boxes it absorbs that are at least this share as confident


def greedy_nmm(det: np.ndarray, threshold: float = MATCH, agnostic: bool = False, grow: float = GROW) -> np.ndarray:
    """Rows [n, 6] (x1, y1, x2, y2, conf, cls) by confidence: each row not yet merged keeps its confidence and class
    and absorbs the later rows (of its class, unless `agnostic`) whose intersection over the smaller box's area
    exceeds `threshold`; its box becomes the union with those at least `grow` times as confident as it (SAHI's merge
    takes every one: at validation's confidence 0.001 the faint boxes around an object would grow its box over
    them)."""
    det = det[np.argsort(-det[:, 4], kind="stable")]
    x1, y1, x2, y2 = det[:, :4].T
    area = (x2 - x1) * (y2 - y1)
    merged = np.zeros(len(det), bool)
    out = []
    for i in range(len(det)):
        if merged[i]:
            continue
        rest = np.arange(i + 1, len(det))[~merged[i + 1 :]]
        if not agnostic:
            rest = rest[det[rest, 5] == det[i, 5]]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        hit = rest[iw * ih / np.maximum(np.minimum(area[i], area[rest]), 1e-9) > threshold]
        merged[hit] = True
        row = det[i].copy()
        near = hit[det[hit, 4] >= grow * det[i, 4]]
        if len(near):
            row[:2] = np.minimum(row[:2], det[near, :2].min(axis=0))
            row[2:4] = np.maximum(row[2:4], det[near, 2:4].max(axis=0))
        out.append(row)
    return np.array(out, np.float64).reshape(-1, det.shape[1])


def sliced(whole: Iterable, tiles: Iterable, view, max_det: int, agnostic: bool = False) -> Iterator:
    """Per image (index, detections in original pixels): `whole` yields (index, detections) of images as a whole
    (those without tiles, and those with tiles the whole-image pass saw too), `tiles` (tile index, detections in the
    tile's pixels) of each tile of `view` (a TileView). An image without tiles is yielded as the whole-image pass
    found it; the others once their last tile is in, merged."""
    found: dict[int, list[np.ndarray]] = {}
    left = view.counts.copy()
    for i, det in whole:
        if left[i] == 0:
            yield i, det
        else:
            found[i] = [det]
    for t, det in tiles:
        i = int(view.owners[t])
        x, y = view.regions[t, :2]
        found.setdefault(i, []).append(det + np.array([x, y, x, y, 0, 0], np.float64))
        left[i] -= 1
        if left[i] == 0:
            yield i, greedy_nmm(np.concatenate(found.pop(i)), agnostic=agnostic)[:max_det]


def sliced_validate(model, store, loading, tiling, whole: bool, conf: float, iou: float, max_det: int,
                    augment: bool = False, speed=None, curves: str = "") -> dict:  # fmt: skip
    """yolo.val.validate of `store`'s images by sliced inference: those larger than a tile of `tiling` by their tiles
    (with `whole`, and whole too), merged, scored against their labels in original pixels. `loading(store,
    records=...)` makes a ValLoader. Returns validate's metrics (no loss, no batch pictures), with `tiles`."""
    t0 = time.perf_counter()
    view = TileView(store, tiling)
    loader = loading(store, records=None if whole else np.flatnonzero(view.counts == 0))

    def per_image(loader):
        for b, _, _, _, original in predict(model, loader, conf, iou, max_det, augment, speed):
            yield from zip((int(i) for i in b.indices), original, strict=True)

    parts = per_image(loading(view)) if len(view) else ()
    preds, gts, indices = [], [], []
    for i, det in sliced(per_image(loader), parts, view, max_det):
        preds.append(det)
        gts.append(ground_truth(store.labels(i), store.sizes[i]))
        indices.append(i)
    metrics = evaluate(preds, gts)
    if curves:
        metrics["plots"] = save_validation_plots(metrics, preds, gts, store.names, curves)
    metrics |= {"images": len(preds), "predictions": list(zip(indices, preds, strict=True)), "tiles": len(view)}
    metrics["seconds"] = time.perf_counter() - t0
    return metrics
