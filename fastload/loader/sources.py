"""What the DALI source workers run: per batch, the records' compressed bytes and the numbers that place their
pixels (training: YOLOv5's augmentation planned in numpy; validation: the letterbox). Kept apart from the
iterators so that a spawned worker imports numpy, the store and DALI, not torch.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from fastload.loader.augment import (
    EMPTY_START,
    LAYERS,
    Canvas,
    Hyp,
    SamplePlan,
    Window,
    grey_canvas,
    multi_scale_size,
    plan_batch,
)
from fastload.loader.copy_paste import Paste
from fastload.loader.geometry import letterbox, load_size, rect_batch_shapes
from fastload.loader.masks import instance_planes, overlap_mask
from fastload.loader.pipelines import Row, warp_kind
from fastload.loader.sampler import EpochSampler


class AugmentPlanner:
    """The batch plans of an epoch: record indices from the sampler, then one SamplePlan per image, from
    generators seeded by (seed, epoch, position), so any process computes the same plan.

    With `rect`, YOLOv5's rectangular training: fixed batches of records sorted by aspect ratio, each with its
    (h, w) (`rect_batch_shapes`, no padding stride, as YOLOv5's training loader); the batches' order is shuffled
    each epoch (YOLOv5 keeps one order) and whole batches are dealt to the ranks in turn."""

    def __init__(
        self,
        store,
        imgsz: int,
        batch: int,
        hyp: Hyp,
        seed: int,
        rank: int,
        world: int,
        multi_scale: bool,
        stride: int,
        rect: bool = False,
        mask_ratio: int = 0,
        overlap: bool = True,
    ) -> None:
        hyp.check()
        hyp = replace(hyp, mosaic=0.0, mixup=0.0) if rect else hyp  # as YOLOv5: no mosaic (so no mixup) in rect
        self.store, self.imgsz, self.batch, self.hyp, self.seed = store, imgsz, batch, hyp, seed
        self.multi_scale, self.stride, self.rank, self.world = multi_scale, stride, rank, world
        self.mask_ratio = mask_ratio  # > 0: instance masks, this many times smaller than the images
        self.overlap = overlap  # YOLOv5's overlap masks (its default); False: each object's whole mask (--no-overlap)
        self.sampler = EpochSampler(len(store), seed, rank, world, groups=store.read_groups())
        self.rect = rect_batch_shapes(store.sizes, imgsz, batch, stride, pad=0.0) if rect else None
        self._epoch, self._indices = None, None

    def __len__(self) -> int:
        if self.rect is not None:
            return -(-len(self.rect[1]) // self.world)
        return -(-len(self.sampler) // self.batch)

    @property
    def pastes(self) -> bool:
        """Whether YOLOv5's copy_paste is on: it pastes polygons into mosaics, so a store with no polygons or a run
        with no mosaics (rectangular training, mosaic 0) pastes nothing."""
        return self.hyp.copy_paste > 0 and self.hyp.mosaic > 0 and self.store.has_polygons

    def rect_batch(self, epoch: int, iteration: int) -> int:
        """The rectangular batch this rank takes at `iteration` of `epoch`: the epoch's shuffled order of all
        batches, wrapped to a multiple of the ranks, dealt in turn."""
        count = len(self.rect[1])
        order = np.random.default_rng([self.seed, epoch, 1 << 21]).permutation(count)
        return int(np.resize(order, len(self) * self.world)[self.rank :: self.world][iteration])

    def set_weights(self, weights: np.ndarray | None) -> None:
        """YOLOv5's --image-weights: each epoch's records drawn in proportion to `weights` (EpochSampler)."""
        if self.rect is not None and weights is not None:
            raise ValueError("weighted draws pick images one by one; rectangular training keeps fixed batches")
        self.sampler.set_weights(weights)
        self._epoch, self._indices = None, None

    def indices(self, epoch: int) -> np.ndarray:
        if self._epoch != epoch:
            self._epoch, self._indices = epoch, self.sampler.indices(epoch)
        return self._indices

    def records(self, epoch: int, iteration: int) -> np.ndarray:
        if self.rect is not None:
            start = self.rect_batch(epoch, iteration) * self.batch
            return self.rect[0][start : start + self.batch]
        start = iteration * self.batch
        return self.indices(epoch)[start : start + self.batch]

    def size(self, epoch: int, iteration: int) -> tuple[int, int]:
        """The batch's output (h, w): imgsz square, or its rectangle; with multi-scale, YOLOv5's size for the
        batch (a rectangle's long side at that size, each side rounded up to the stride)."""
        shape = (self.imgsz, self.imgsz) if self.rect is None else self.rect[1][self.rect_batch(epoch, iteration)]
        if not self.multi_scale:
            return shape
        size = multi_scale_size(np.random.default_rng([self.seed, epoch, iteration, 1 << 20]), self.imgsz, self.stride)
        if self.rect is None:
            return size, size
        return tuple(math.ceil(v * size / max(shape) / self.stride) * self.stride for v in shape)  # YOLOv5's

    def plan(self, epoch: int, iteration: int) -> tuple[np.ndarray, tuple[int, int], list[SamplePlan]] | None:
        """(records, output (h, w), their plans) of a batch; None past the epoch's end."""
        picked = self.records(epoch, iteration)
        if len(picked) == 0:
            return None
        out, rng = self.size(epoch, iteration), np.random.default_rng([self.seed, epoch, iteration])
        shape = None if self.rect is None else self.rect[1][self.rect_batch(epoch, iteration)]
        sizes, labels = self.store.sizes, self.store.labels
        polygons = self.store.polygons if self.store.has_polygons else None
        outlines = self.store.outlines if self.mask_ratio else None
        plans = plan_batch(rng, picked, sizes, labels, self.imgsz, self.hyp, out, shape, polygons, outlines)
        return picked, out, plans


def box_rows(per_image: list[np.ndarray]) -> np.ndarray:
    """Per-image [k, 5] boxes as one float32 [B, 1 + 5 * max k] array (k, then the k rows flat, zero padded): one
    array through DALI per batch instead of one per image (batch_targets() reads it back)."""
    most = max((len(b) for b in per_image), default=0)
    rows = np.zeros((len(per_image), 1 + 5 * most), np.float32)
    for j, b in enumerate(per_image):
        rows[j, 0] = len(b)
        rows[j, 1 : 1 + b.size] = b.ravel()
    return rows


# the copy_paste numbers of a canvas that pasted nothing: a 2 x 2 grey mirror, a mask of 0 (blended as 1 x 1)
NOTHING_PASTED = Paste((0, 0), np.zeros((2, 2), np.uint8), [Window(-1, EMPTY_START, (1, 1))] * LAYERS,
                       [(0, 0), (0, 1), (1, 0), (1, 1)])  # fmt: skip


class AugmentSource:
    """DALI's parallel external source (runs in worker processes): the batch's bytes, one row of geometry per
    sample (`Row`), and the boxes (`box_rows`), which travel through the pipeline beside the pixels. It goes on
    from epoch to epoch without ending DALI's epoch, so the next epoch starts with batches already prepared."""

    def __init__(self, planner: AugmentPlanner, start_epoch: int, warp: str | None = None) -> None:
        self.planner, self.start_epoch = planner, start_epoch
        hyp = planner.hyp
        self.row = Row(warp or warp_kind(hyp.degrees, hyp.shear, hyp.perspective), hyp.mixup > 0, planner.pastes)
        self.no_mix = grey_canvas()

    @staticmethod
    def _windows(windows: list[Window], places: list[tuple[int, int]], slot: int) -> list[float]:
        """Per window (slot, start y, x, h, w), a window of no image taking the sample's slot; then the places."""
        values = []
        for window in windows:
            values += [window.slot if window.slot >= 0 else slot, *window.start, *window.shape]
        return values + [v for place in places for v in place]

    def _canvas(self, canvas: Canvas, slot: int) -> list[float]:
        values = self._windows(canvas.windows, canvas.places, slot) + list(canvas.size)
        if self.row.warp == "resize":
            values += list(canvas.roi)
        else:
            values += (canvas.matrix if self.row.warp == "perspective" else canvas.matrix[:2]).ravel().tolist()
        if not self.row.paste:
            return values
        paste = canvas.paste or NOTHING_PASTED
        values += [*paste.place, *(canvas.size if canvas.paste else (1, 1))]
        return values + self._windows(paste.windows, paste.places, slot) + list(paste.mask.shape)

    def __call__(self, info):
        epochs, k = divmod(info.iteration, len(self.planner))
        picked, out, plans = self.planner.plan(self.start_epoch + epochs, k)
        store, imgsz = self.planner.store, self.planner.imgsz
        jpegs, rows, boxes = [], np.empty((len(plans), self.row.width), np.float32), []
        masks = [[] for _ in range(self.row.canvases if self.row.paste else 0)]
        instances = []
        for j, (index, p) in enumerate(zip(picked, plans, strict=True)):
            h, w = load_size(*(int(v) for v in store.sizes[index]), imgsz)
            values = [w, h, *self._canvas(p.canvas, j)]
            if self.row.canvases == 2:
                values += self._canvas(p.mix or self.no_mix, j)
            values += [out[1], out[0], (p.hsv[0] - 1) * 180, p.hsv[1], p.hsv[2], p.flip_lr, p.flip_ud, p.mix_ratio]
            rows[j] = values
            jpegs.append(np.frombuffer(store.image(int(index)), np.uint8))
            if self.planner.mask_ratio:
                instance, order = sample_mask(p, out, self.planner.mask_ratio, self.planner.overlap)
                instances.append(instance)
                boxes.append(p.boxes[order].reshape(-1, 5))
            else:
                boxes.append(p.boxes.reshape(-1, 5))
            for canvas, found in zip((p.canvas, p.mix or self.no_mix), masks):  # noqa: B905 (one or two)
                found.append(np.packbits((canvas.paste or NOTHING_PASTED).mask, axis=1)[:, :, None])
        return jpegs, rows, box_rows(boxes), *masks, *([instances] if self.planner.mask_ratio else [])


def sample_mask(
    plan: SamplePlan, out: tuple[int, int], ratio: int, overlap: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A sample's masks, flipped as its image, and the order of its rows in them. Overlap masks
    (masks.overlap_mask of its outlines): uint8 [h, w, 1], or [h, w, 2] (the int16 value's bytes, little-endian)
    over 255 objects, since DALI takes one dtype per output; the rows largest first. Without overlap: each object's
    mask as bit planes (masks.instance_planes, [P, h, w]), the rows as they are."""
    if overlap:
        mask, order = overlap_mask(plan.outlines, out, ratio)
    else:
        mask, order = instance_planes(plan.outlines, out, ratio), np.arange(len(plan.outlines))
    if plan.flip_ud:
        mask = mask[..., ::-1, :]
    if plan.flip_lr:
        mask = mask[..., ::-1]
    if mask.ndim == 3:
        return np.ascontiguousarray(mask), order
    if mask.dtype == np.uint8:
        return np.ascontiguousarray(mask)[:, :, None], order
    return np.ascontiguousarray(mask.astype("<i2")).view(np.uint8).reshape(*mask.shape, 2), order


class LetterboxSource:
    """DALI's parallel external source (runs in worker processes): bytes and placement per image. It goes round
    the passes without ending DALI's epoch, so a new pass starts with batches already prepared."""

    def __init__(self, store, plan, imgsz: int) -> None:
        self.store, self.plan, self.imgsz = store, plan, imgsz

    def __call__(self, info):
        indices, shape = self.plan[info.iteration % len(self.plan)]
        jpegs, rows = [], []
        sizes = self.store.sizes
        for i in indices:
            p = letterbox(*(int(v) for v in sizes[i]), self.imgsz, shape)
            jpegs.append(np.frombuffer(self.store.image(int(i)), np.uint8))
            rows.append((p.nw, p.nh, -p.top, -p.left, *shape))
        return jpegs, np.array(rows, np.float32)


class PictureSource:
    """DALI's parallel external source of whole pictures, one a batch: record `records[k]`'s bytes for batch k,
    round and round."""

    def __init__(self, store, records: np.ndarray) -> None:
        self.store, self.records = store, records

    def __call__(self, info):
        return [np.frombuffer(self.store.image(int(self.records[info.iteration % len(self.records)])), np.uint8)]
