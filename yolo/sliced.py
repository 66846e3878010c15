"""Sliced inference, as SAHI's `get_sliced_prediction` (`fastload detect --tile SIZE`, `val --tile`, the Python
detector's `tile=`): each large picture, decoded once (fastload.loader.pictures), cut into tiles on the device and
through the model tile by tile (a small object keeps its pixels in its tile), and optionally whole, the detections
merged by SAHI's greedy non-maximum merging: a box absorbs the less confident boxes of its class that lie mostly
inside it or it inside them (intersection over the smaller's area > 0.5: the part of an object a tile's edge cut,
its copy in the next tile), growing to their union where they are at least half as confident (or SAHI's other
postprocesses: Merging). A segmentation model's masks (at the picture's resolution, within their boxes) merge with
their boxes: the union of the parts'. The Slicer batches the tiles of consecutive pictures together; the merge
compares only boxes that meet (matching_pairs), so a picture's thousands of boxes at validation's confidence do not
cost n squared."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fastload.errors import FastloadError
from fastload.loader.arrays import batch_shape, letterbox_arrays
from fastload.loader.batch import Batch
from fastload.loader.masks import outline_blocks
from fastload.loader.pictures import PictureLoader
from fastload.pack.tiles import Tiling
from yolo.coco import rle
from yolo.curves import save_validation_plots
from yolo.metrics import evaluate
from yolo.model import mask_coefficients
from yolo.segment import BoxMask, batch_native_masks, box_mask_iou, union_mask
from yolo.val import ground_truth, predict

Found = tuple[np.ndarray, list[BoxMask] | None]  # a picture's detections [k, 6] in its pixels, their masks or None

MATCH = 0.5  # SAHI's match_threshold for its IOS metric
GROW = 0.5  # a box grows by the boxes it absorbs that are at least this share as confident
TILE_BATCH = 16  # tiles through the model at once


@dataclass(frozen=True)
class Merging:
    """How sliced inference joins an object's detections from overlapping tiles (SAHI's postprocess): `kind` nmm,
    greedy non-maximum merging (the boxes grow to their union, masks too), or nms (the most confident kept); two
    detections of a class are one object where their `metric` exceeds `threshold`: ios, the intersection over the
    smaller box's area (SAHI's default: an object's part that a tile's edge cut lies inside its whole), or iou
    (adjacent objects of a crowd, whose boxes nest, stay apart)."""

    kind: str = "nmm"
    metric: str = "ios"
    threshold: float = MATCH

    def __post_init__(self) -> None:
        if self.kind not in ("nmm", "nms") or self.metric not in ("ios", "iou"):
            raise FastloadError(f"tile merge {self.kind}/{self.metric}: nmm or nms, by ios or iou")
        if not 0 <= self.threshold < 1:
            raise FastloadError(f"--tile-threshold {self.threshold:g}: an overlap in [0, 1)")


MERGE = Merging()


PAIRS_CHUNK = 1 << 22  # candidate pairs examined at once (memory stays bounded whatever the boxes)


def matching_pairs(det: np.ndarray, merging: Merging = MERGE, agnostic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i, j), i < j, of rows [n, 6] that are one object by `merging` (its metric above its threshold;
    of one class unless `agnostic`), sorted. Only boxes that share a band of rows and whose x ranges meet are
    compared: each box is entered in the bands (of twice the median box's height) it spans, each class's and band's
    entries set along x past the others', and by x1 order each entry meets those that start before it ends; a pair
    counts in the band where their intersection's top lies. So the work follows the overlaps, not n squared."""
    n = len(det)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    x1, y1, x2, y2 = det[:, :4].T
    area = (x2 - x1) * (y2 - y1)
    band_h = max(2.0 * float(np.median(y2 - y1)), 1.0)
    lo = np.floor(y1 / band_h).astype(np.int64)
    reps = np.maximum(np.floor(y2 / band_h).astype(np.int64) - lo + 1, 1)
    box = np.repeat(np.arange(n), reps)  # the entries: a box once per band it spans
    band = lo[box] + np.arange(len(box)) - np.repeat(np.cumsum(reps) - reps, reps)
    line = band - band.min() + (0 if agnostic else det[box, 5].astype(np.int64) * (band.max() - band.min() + 1))
    shift = line * (x2.max() - x1.min() + 1)  # each line's entries past the last one's
    by_x = np.argsort(x1[box] + shift, kind="stable")
    start, end = (x1[box] + shift)[by_x], (x2[box] + shift)[by_x]
    count = np.maximum(np.searchsorted(start, end, side="left") - np.arange(len(box)) - 1, 0)
    found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    first, total = 0, np.cumsum(count)
    while first < len(box):  # the sorted entries in runs whose candidate pairs fit a chunk
        last = max(int(np.searchsorted(total, (total[first - 1] if first else 0) + PAIRS_CHUNK, side="right")),
                   first + 1)  # fmt: skip
        k = count[first:last]
        pos = np.repeat(np.arange(first, last), k)
        other = pos + 1 + np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
        i, j, where = box[by_x[pos]], box[by_x[other]], band[by_x[pos]]
        top = np.maximum(y1[i], y1[j])
        ih = np.minimum(y2[i], y2[j]) - top
        keep = (ih > 0) & (np.floor(top / band_h).astype(np.int64) == where)  # counted in one band
        i, j, ih = i[keep], j[keep], ih[keep]
        inter = (np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j])) * ih
        base = np.minimum(area[i], area[j]) if merging.metric == "ios" else area[i] + area[j] - inter
        hit = inter / np.maximum(base, 1e-9) > merging.threshold
        found_i.append(np.minimum(i[hit], j[hit]))
        found_j.append(np.maximum(i[hit], j[hit]))
        first = last
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    order = np.lexsort((j, i))
    return i[order], j[order]


def nmm_groups(det: np.ndarray, merging: Merging = MERGE, agnostic: bool = False, grow: float = GROW) -> list:
    """SAHI's greedy non-maximum merging (or suppression) of rows [n, 6] (x1, y1, x2, y2, conf, cls): in descending
    confidence, each row not yet taken takes the later rows (of its class, unless `agnostic`) that match it
    (`merging`'s metric above its threshold: matching_pairs). Per row kept, the rows (indices into `det`) it becomes
    the union of: itself first, then (nmm) those it took that are at least `grow` times as confident (SAHI's merge
    takes every one: at validation's confidence 0.001 the faint boxes around an object would grow its box over
    them)."""
    order = np.argsort(-det[:, 4], kind="stable")
    det = det[order]
    i, j = matching_pairs(det, merging, agnostic)
    starts = np.searchsorted(i, np.arange(len(det) + 1))
    merged, grown = np.zeros(len(det), bool), {}
    for k in np.unique(i).tolist():  # the rows that match a later one (the others take nothing)
        if merged[k]:
            continue
        hit = j[starts[k] : starts[k + 1]]
        hit = hit[~merged[hit]]
        merged[hit] = True
        if merging.kind == "nmm":
            grown[k] = hit[det[hit, 4] >= grow * det[k, 4]]
    return [order[np.concatenate([[k], grown[k]]).astype(np.int64)] if k in grown else order[k : k + 1]
            for k in np.flatnonzero(~merged).tolist()]  # fmt: skip


def reference_nmm_groups(det: np.ndarray, merging: Merging = MERGE, agnostic: bool = False, grow: float = GROW) -> list:
    """nmm_groups as a plain loop, each kept row against every later one (n squared: 0.8 s for 14,400 boxes, where
    nmm_groups takes 14 ms; benchmarks/sliced_merge.py): the reference it is tested against."""
    order = np.argsort(-det[:, 4], kind="stable")
    det = det[order]
    x1, y1, x2, y2 = det[:, :4].T
    area = (x2 - x1) * (y2 - y1)
    merged, groups = np.zeros(len(det), bool), []
    for i in range(len(det)):
        if merged[i]:
            continue
        rest = np.arange(i + 1, len(det))[~merged[i + 1 :]]
        if not agnostic:
            rest = rest[det[rest, 5] == det[i, 5]]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        base = np.minimum(area[i], area[rest]) if merging.metric == "ios" else area[i] + area[rest] - inter
        hit = rest[inter / np.maximum(base, 1e-9) > merging.threshold]
        merged[hit] = True
        grown = hit[det[hit, 4] >= grow * det[i, 4]] if merging.kind == "nmm" else hit[:0]
        groups.append(order[np.concatenate([[i], grown]).astype(np.int64)])
    return groups


def merged_rows(det: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Per group (nmm_groups) its first row, the box grown to the union of the group's boxes."""
    out = np.array(det[[int(g[0]) for g in groups]], np.float64).reshape(-1, det.shape[1])
    for k, g in enumerate(groups):
        if len(g) > 1:
            out[k, :2], out[k, 2:4] = det[g, :2].min(axis=0), det[g, 2:4].max(axis=0)
    return out


def greedy_nmm(det: np.ndarray, merging: Merging = MERGE, agnostic: bool = False, grow: float = GROW) -> np.ndarray:
    """Rows [n, 6] merged by SAHI's greedy non-maximum merging (nmm_groups), by confidence."""
    return merged_rows(det, nmm_groups(det, merging, agnostic, grow))


def merge(parts: list[Found], agnostic: bool = False, max_det: int = 1000, merging: Merging = MERGE) -> Found:
    """Detections of one picture from several passes (its tiles, its whole) merged (greedy_nmm); where every part has
    masks (a segmentation model's), each merged detection's mask is the union of its group's."""
    det = np.concatenate([d for d, _ in parts])
    groups = nmm_groups(det, merging, agnostic)[:max_det]
    if any(m is None for _, m in parts):
        return merged_rows(det, groups), None
    masks = [m for _, ms in parts for m in ms]
    return merged_rows(det, groups), [union_mask([masks[k] for k in g]) for g in groups]


@dataclass
class Slicer:
    """Sliced inference's cut and merge: a picture (H x W x 3 uint8, an array, or a tensor on `device` already) cut
    into its tiles of `tiling` (views), the tiles TILE_BATCH at a time letterboxed to `imgsz` (the model's `stride`,
    `square` batches for a fixed-shape export) on `device` and given to `detect` (a batch -> each image's
    detections in its original pixels, with their masks: detect.py's NMS, or val's), moved to the picture's pixels
    and merged (`merge`: `agnostic`, `max_det`, `merging`). A picture that fits one tile is that tile's detections."""

    tiling: Tiling
    imgsz: int
    stride: int
    square: bool
    device: str
    detect: Callable[[Batch], list[Found]]
    agnostic: bool = False
    max_det: int = 1000
    merging: Merging = MERGE

    def picture(self, picture: np.ndarray | torch.Tensor) -> Found:
        """One picture's detections in its pixels, with their masks (a segmentation model's, else None)."""
        return next(self.stream([(0, picture)]))[1]

    def stream(self, pictures: Iterable[tuple[object, np.ndarray | torch.Tensor]]) -> Iterator[tuple[object, Found]]:
        """(key, picture) -> (key, its detections) in the same order, the tiles of consecutive pictures batched
        together (TILE_BATCH at a time, tiles of one size a batch: a picture of few tiles does not run the model on
        a small batch). A picture's detections come once all its tiles have run, so at most the pictures of one
        batch are held."""
        slots: deque = deque()  # per picture: [key, windows, each tile's detections, tiles still to run]
        queue: list = []  # (slot, tile index, crop) waiting for a batch
        for key, picture in pictures:
            windows = self.tiling.windows(*(int(v) for v in picture.shape[:2]))
            slot = [key, windows, [None] * len(windows), len(windows)]
            slots.append(slot)
            for k, (x0, y0, x1, y1) in enumerate(windows):
                crop = picture[y0:y1, x0:x1]
                if queue and tuple(crop.shape[:2]) != tuple(queue[0][2].shape[:2]):
                    self._run(queue)
                queue.append((slot, k, crop))
                if len(queue) == TILE_BATCH:
                    self._run(queue)
            yield from self._done(slots)
        if queue:
            self._run(queue)
        yield from self._done(slots)

    def _run(self, queue: list) -> None:
        """The queued tiles (all of one size) through `detect`; each one's detections into its picture's slot."""
        crops = [crop for _, _, crop in queue]
        shape = batch_shape([tuple(crops[0].shape[:2])], self.imgsz, self.stride, self.square)
        batch = letterbox_arrays(crops, self.imgsz, shape, self.device)
        for (slot, k, _), (det, masks) in zip(queue, self.detect(batch), strict=True):
            x0, y0 = slot[1][k][:2]
            moved = None if masks is None else [BoxMask(m.x + x0, m.y + y0, m.pixels) for m in masks]
            slot[2][k] = (det + np.array([x0, y0, x0, y0, 0, 0], np.float64), moved)
            slot[3] -= 1
        queue.clear()

    def _done(self, slots: deque) -> Iterator[tuple[object, Found]]:
        """The leading pictures whose tiles have all run, merged."""
        while slots and slots[0][3] == 0:
            key, _, found, _ = slots.popleft()
            yield key, found[0] if len(found) == 1 else merge(found, self.agnostic, self.max_det, self.merging)


def sliced_picture(picture: np.ndarray | torch.Tensor, tiling: Tiling, imgsz: int, stride: int, square: bool,
                   device: str, detect: Callable[[Batch], list[Found]], agnostic: bool = False,
                   max_det: int = 1000, merging: Merging = MERGE) -> Found:  # fmt: skip
    """One picture's detections by its tiles (Slicer.picture)."""
    return Slicer(tiling, imgsz, stride, square, device, detect, agnostic, max_det, merging).picture(picture)


def tile_side(tile: int | str, config: dict, weights: str) -> int:
    """--tile's side: a number, or `auto`: the side of the tiles the model learned from (a `train --tile` run's
    checkpoint says it)."""
    if tile != "auto":
        return int(tile)
    if not config.get("tile"):
        raise FastloadError(f"{weights}: --tile auto: this model did not learn from tiles (train --tile): give the "
                            "tile's side")  # fmt: skip
    return int(config["tile"])


def tiled_records(sizes: np.ndarray, tiling: Tiling) -> np.ndarray:
    """The records (of `sizes`, (h, w) each) larger than one tile: those sliced inference cuts."""
    return np.array([i for i, (h, w) in enumerate(sizes) if len(tiling.windows(int(h), int(w))) > 1], np.int64)


def tile_json(side: int, overlap: float, whole: bool, tiles: int, merging: Merging) -> dict | None:
    """--tile's entry in val's and detect's JSON (None without tiles)."""
    if not side:
        return None
    return {"size": side, "overlap": overlap, "whole": whole, "tiles": tiles, "merge": asdict(merging)}


def tile_count(sizes: np.ndarray, records: np.ndarray | None, tiling: Tiling) -> int:
    """How many tiles the `records` (of `sizes`) are cut into."""
    return 0 if records is None else sum(len(tiling.windows(*(int(v) for v in sizes[i]))) for i in records)


def sliced(whole: Iterable[tuple[int, Found]], cut: Iterable[tuple[int, Found]], tiled: np.ndarray, both: bool,
           max_det: int, agnostic: bool = False, merging: Merging = MERGE) -> Iterator[tuple[int, Found]]:  # fmt: skip
    """Per image (index, its detections in its pixels and their masks): `whole` yields those of images as a whole
    (those not `tiled`, and with `both` the tiled ones too), `cut` those of the tiled ones by their tiles
    (Slicer.stream of their decoded pictures); with `both` the two merged."""
    kept: dict[int, Found] = {}
    is_tiled = set(tiled.tolist())
    for i, found in whole:
        if i in is_tiled:
            kept[i] = found
        else:
            yield i, found
    for i, found in cut:
        if i in kept:
            found = merge([kept.pop(i), found], agnostic, max_det, merging)
        yield i, found


def batch_found(b: Batch, x: torch.Tensor, raw, detections, original, masks: bool = True) -> list[Found]:
    """yolo.val.predict's items for a batch -> per image its detections in original pixels and, for a segmentation
    model (`raw` its (maps, prototypes)) when `masks`, their masks at the original's resolution."""
    if masks and isinstance(raw, tuple):
        return list(zip(original, batch_native_masks(raw[1], detections, original, b, x.shape[-2:]), strict=True))
    return [(det, None) for det in original]


def truth_masks(store, i: int) -> list[BoxMask]:
    """Record i's objects' masks at its resolution (its polygons, else its boxes' rectangles), as YOLOv5 draws them."""
    h, w = (int(v) for v in store.sizes[i])
    points, offsets = store.outlines(i)
    outlines = np.split(points.astype(np.float64) * (w, h), offsets[1:-1])
    return [BoxMask(x0, y0, block.astype(bool)) for y0, x0, block in outline_blocks(outlines, (h, w), 1)]


class SlicedImages:
    """A store's images as sliced validation reads them: those larger than a tile of `tiling` (`tiled`) decoded
    whole by `pictures`, the others (with `whole`, all) letterboxed by `loader` (`loading(store, records=...)`: a
    ValLoader, its imgsz, stride, device). Built once, read by every validation (train --val-whole)."""

    def __init__(self, store, loading: Callable, tiling: Tiling, whole: bool = False, workers: int = 2) -> None:
        self.store, self.tiling, self.whole = store, tiling, whole
        self.tiled = tiled_records(store.sizes, tiling)
        self.loader = loading(store, records=None if whole else np.setdiff1d(np.arange(len(store)), self.tiled))
        self.pictures = PictureLoader(store, self.tiled, self.loader.device, workers)


def sliced_validate(model, images: SlicedImages, conf: float, iou: float, max_det: int, augment: bool = False,
                    speed=None, curves: str = "", segmentations: bool = False,
                    merging: Merging = MERGE) -> dict:  # fmt: skip
    """yolo.val.validate of a store's `images` by sliced inference: those larger than a tile by their tiles (with
    `images.whole`, and whole too), merged, scored against their labels in original pixels. Returns validate's
    metrics (no loss, no batch pictures), with `tiles`. A segmentation model's merged masks are scored too
    (`mask_map50` ...), against the labels' outlines at the original's resolution, not the prototypes' (a small
    object has no pixels there); with `segmentations`, as validate's, their COCO RLE strings."""
    t0 = time.perf_counter()
    store, loader, tiling = images.store, images.loader, images.tiling
    segment = mask_coefficients(model) > 0

    def per_image(loader):
        for items in predict(model, loader, conf, iou, max_det, augment, speed):
            yield from zip((int(i) for i in items[0].indices), batch_found(*items, masks=segment), strict=True)

    def run(batch: Batch) -> list[Found]:
        return batch_found(*next(predict(model, [batch], conf, iou, max_det, augment, speed)), masks=segment)

    slicer = Slicer(tiling, loader.imgsz, loader.stride, not loader.rect, loader.device, run, False, max_det, merging)
    preds, gts, indices, mask_ious, rles = [], [], [], [], []
    for i, (det, masks) in sliced(per_image(loader), slicer.stream(images.pictures), images.tiled, images.whole,
                                  max_det, merging=merging):  # fmt: skip
        preds.append(det)
        gts.append(ground_truth(store.labels(i), store.sizes[i]))
        indices.append(i)
        if masks is not None:
            mask_ious.append(box_mask_iou(masks, truth_masks(store, i)))
            if segmentations:
                rles.append(([int(v) for v in store.sizes[i]], [rle(m, store.sizes[i])["counts"] for m in masks]))
    metrics = evaluate(preds, gts)
    if mask_ious:
        found = evaluate(preds, gts, mask_ious)
        metrics |= {f"mask_{k}": found[k] for k in ("map50", "map50_95", "precision", "recall")}
        metrics["mask_per_class"] = {k: found[k] for k in ("classes", "p", "r", "ap")}
    if rles:
        metrics["segmentations"] = rles
    if curves:
        metrics["plots"] = save_validation_plots(metrics, preds, gts, store.names, curves)
    tiles = tile_count(store.sizes, images.tiled, tiling)
    metrics |= {"images": len(preds), "predictions": list(zip(indices, preds, strict=True)), "tiles": tiles}
    metrics["seconds"] = time.perf_counter() - t0
    return metrics
