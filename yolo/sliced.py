"""Sliced inference, as SAHI's `get_sliced_prediction` (`fastload detect --tile SIZE`, `val --tile`, the Python
detector's `tile=`): each large picture, decoded once (fastload.loader.pictures), cut into tiles on the device and
through the model tile by tile (a small object keeps its pixels in its tile), and optionally whole, the detections
merged by SAHI's greedy non-maximum merging: a box absorbs the less confident boxes of its class that lie mostly
inside it or it inside them (intersection over the smaller's area > 0.5: the part of an object a tile's edge cut,
its copy in the next tile), growing to their union where they are at least half as confident."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from fastload.loader.arrays import batch_shape, letterbox_arrays
from fastload.loader.batch import Batch
from fastload.loader.pictures import PictureLoader
from fastload.pack.tiles import Tiling
from yolo.curves import save_validation_plots
from yolo.metrics import evaluate
from yolo.val import ground_truth, predict

MATCH = 0.5  # SAHI's match_threshold for its IOS metric
GROW = 0.5  # a box grows by the boxes it absorbs that are at least this share as confident
TILE_BATCH = 16  # tiles through the model at once


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


def sliced_picture(picture: np.ndarray | torch.Tensor, tiling: Tiling, imgsz: int, stride: int, square: bool,
                   device: str, detect: Callable[[Batch], list[np.ndarray]], agnostic: bool = False,
                   max_det: int = 1000) -> np.ndarray:  # fmt: skip
    """The detections [k, 6] in a picture's pixels (H x W x 3 uint8, an array, or a tensor on `device` already) by
    its tiles: each cut from it (a view), TILE_BATCH at a time letterboxed to `imgsz` on `device` and given to
    `detect` (a batch -> each image's detections in its original pixels: detect.py's NMS, or val's), moved to the
    picture's pixels and merged (greedy_nmm). A picture that fits one tile is that tile's detections."""
    windows = tiling.windows(*(int(v) for v in picture.shape[:2]))
    found = []
    for first in range(0, len(windows), TILE_BATCH):
        part = windows[first : first + TILE_BATCH]
        crops = [picture[y0:y1, x0:x1] for x0, y0, x1, y1 in part]
        shape = batch_shape([tuple(c.shape[:2]) for c in crops], imgsz, stride, square)
        for (x0, y0, _, _), det in zip(part, detect(letterbox_arrays(crops, imgsz, shape, device)), strict=True):
            found.append(det + np.array([x0, y0, x0, y0, 0, 0], np.float64))
    return found[0] if len(found) == 1 else greedy_nmm(np.concatenate(found), agnostic=agnostic)[:max_det]


def tiled_records(sizes: np.ndarray, tiling: Tiling) -> np.ndarray:
    """The records (of `sizes`, (h, w) each) larger than one tile: those sliced inference cuts."""
    return np.array([i for i, (h, w) in enumerate(sizes) if len(tiling.windows(int(h), int(w))) > 1], np.int64)


def tile_count(sizes: np.ndarray, records: np.ndarray | None, tiling: Tiling) -> int:
    """How many tiles the `records` (of `sizes`) are cut into."""
    return 0 if records is None else sum(len(tiling.windows(*(int(v) for v in sizes[i]))) for i in records)


def sliced(whole: Iterable, pictures: PictureLoader, cut: Callable, tiled: np.ndarray, both: bool,
           max_det: int, agnostic: bool = False) -> Iterator:  # fmt: skip
    """Per image (index, detections in its pixels): `whole` yields (index, detections) of images as a whole (those
    not `tiled`, and with `both` the tiled ones too), `pictures` the tiled ones decoded, which `cut(picture)` turns
    into their tiles' merged detections (sliced_picture); with `both` merged with the whole-image ones."""
    kept: dict[int, np.ndarray] = {}
    is_tiled = set(tiled.tolist())
    for i, det in whole:
        if i in is_tiled:
            kept[i] = det
        else:
            yield i, det
    for i, picture in pictures:
        det = cut(picture)
        if i in kept:
            det = greedy_nmm(np.concatenate([kept.pop(i), det]), agnostic=agnostic)[:max_det]
        yield i, det


def sliced_validate(model, store, loading, tiling: Tiling, whole: bool, conf: float, iou: float, max_det: int,
                    augment: bool = False, speed=None, curves: str = "", workers: int = 2) -> dict:  # fmt: skip
    """yolo.val.validate of `store`'s images by sliced inference: those larger than a tile of `tiling` by their tiles
    (with `whole`, and whole too), merged, scored against their labels in original pixels. `loading(store,
    records=...)` makes a ValLoader (its imgsz, stride, device). Returns validate's metrics (no loss, no batch
    pictures), with `tiles`."""
    t0 = time.perf_counter()
    tiled = tiled_records(store.sizes, tiling)
    loader = loading(store, records=None if whole else np.setdiff1d(np.arange(len(store)), tiled))

    def per_image(loader):
        for b, _, _, _, original in predict(model, loader, conf, iou, max_det, augment, speed):
            yield from zip((int(i) for i in b.indices), original, strict=True)

    def run(batch: Batch) -> list[np.ndarray]:
        return next(predict(model, [batch], conf, iou, max_det, augment, speed))[4]

    pictures = PictureLoader(store, tiled, loader.device, workers)

    def cut(picture: torch.Tensor) -> np.ndarray:
        return sliced_picture(picture, tiling, loader.imgsz, loader.stride, not loader.rect, loader.device, run,
                              max_det=max_det)  # fmt: skip

    preds, gts, indices = [], [], []
    for i, det in sliced(per_image(loader), pictures, cut, tiled, whole, max_det):
        preds.append(det)
        gts.append(ground_truth(store.labels(i), store.sizes[i]))
        indices.append(i)
    metrics = evaluate(preds, gts)
    if curves:
        metrics["plots"] = save_validation_plots(metrics, preds, gts, store.names, curves)
    tiles = tile_count(store.sizes, tiled, tiling)
    metrics |= {"images": len(preds), "predictions": list(zip(indices, preds, strict=True)), "tiles": tiles}
    metrics["seconds"] = time.perf_counter() - t0
    return metrics
