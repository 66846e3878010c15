"""The validation loader: letterbox only (rectangular batches by aspect ratio, as YOLOv5's `rect` mode),
deterministic order, every record exactly once (the last partial batch kept), and per image the numbers that
map predicted boxes back to original pixels.

    loader = ValLoader(open_store("demo.lmdb", "val"), imgsz=640, batch=32, device="cuda")
    for b in loader:
        b.images, b.targets, b.indices, b.orig_size, b.ratio, b.pad
"""

from __future__ import annotations

import numpy as np
import torch

from fastload.loader.bad_records import run_naming_bad_record
from fastload.loader.batch import Batch, targets_tensor, to_torch
from fastload.loader.geometry import boxes_to_canvas, letterbox, rect_batch_shapes
from fastload.loader.masks import instance_masks, overlap_mask, stack_masks
from fastload.loader.pipelines import build, letterbox_graph
from fastload.loader.prefetch import StageTimes, prefetched
from fastload.loader.shm import batch_bytes
from fastload.loader.sources import LetterboxSource


def val_plan(
    sizes: np.ndarray,
    imgsz: int,
    batch: int,
    stride: int = 32,
    rect: bool = True,
    pad: float = 0.5,
    rank: int = 0,
    world: int = 1,
    records: np.ndarray | None = None,
) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """[(record indices, (H, W))] per batch of this rank; whole batches are dealt to ranks in turn. `records`
    restricts the pass to those records (default: all)."""
    records = np.arange(len(sizes)) if records is None else np.asarray(records)
    n = len(records)
    if rect:
        order, shapes = rect_batch_shapes(sizes[records], imgsz, batch, stride, pad)
    else:
        order, shapes = np.arange(n), [(imgsz, imgsz)] * -(-n // batch)
    order = records[order]
    batches = [(order[k * batch : (k + 1) * batch], shapes[k]) for k in range(len(shapes))]
    return batches[rank::world]


class ValLoader:
    def __init__(
        self,
        store,
        imgsz: int = 640,
        batch: int = 32,
        *,
        stride: int = 32,
        rect: bool = True,
        pad: float = 0.5,
        rank: int = 0,
        world: int = 1,
        device: str = "cpu",
        workers: int = 2,
        dtype: torch.dtype = torch.uint8,
        start_method: str | None = None,  # DALI workers: fork on CPU, spawn once CUDA is initialised
        records: np.ndarray | None = None,  # validate on these records only (default: all)
        antialias: bool = True,  # smooth when shrinking (YOLOv5's val: INTER_AREA; its detect.py: INTER_LINEAR, no)
        mask_ratio: int = 0,  # > 0: segmentation, instance masks this many times smaller than the images
        overlap: bool = True,  # YOLOv5's overlap masks (Batch.masks); False: each target's whole mask (--no-overlap)
    ) -> None:
        self.store, self.imgsz, self.device, self.dtype = store, imgsz, device, dtype
        self.stride, self.rect = stride, rect  # (sliced inference letterboxes tiles alike)
        self.plan = val_plan(store.sizes, imgsz, batch, stride, rect, pad, rank, world, records)
        self.batch, self.workers, self.start_method, self.antialias = batch, workers, start_method, antialias
        self.mask_ratio, self.overlap = mask_ratio, overlap
        self.times = StageTimes()  # per batch: DALI's run (decode + letterbox) and the hand-over to torch
        self.pipe = self._build() if self.plan else None

    def source(self) -> LetterboxSource:
        """What each DALI source worker runs."""
        return LetterboxSource(self.store, self.plan, self.imgsz)

    def _build(self):
        return build(letterbox_graph, self.source(), self.device, self.batch, self.workers, self.start_method,
                     per_batch=batch_bytes(self.store, self.batch), antialias=self.antialias)  # fmt: skip

    def __len__(self) -> int:
        return len(self.plan)

    def _batch(self, k: int, images: torch.Tensor) -> Batch:
        indices, shape = self.plan[k]
        sizes = self.store.sizes[indices].astype(np.int64)
        boxes, ratio, pad, masks = [], np.zeros((len(indices), 2)), np.zeros((len(indices), 2)), []
        for j, i in enumerate(indices):
            h0, w0 = (int(v) for v in sizes[j])
            p = letterbox(h0, w0, self.imgsz, shape)
            ratio[j], pad[j] = p.ratio(h0, w0), (p.top, p.left)
            rows = boxes_to_canvas(self.store.labels(int(i)), p, shape)
            if self.mask_ratio:  # the letterboxed outlines' masks; with overlap the rows in their order
                points, offsets = self.store.outlines(int(i))
                xy = points.astype(np.float64) * (p.nw, p.nh) + (p.left, p.top)
                outlines = np.split(xy, offsets[1:-1]) if len(offsets) > 1 else []  # an image without labels: none
                if self.overlap:
                    found, order = overlap_mask(outlines, shape, self.mask_ratio)
                    rows = rows[order]
                else:
                    found = instance_masks(outlines, shape, self.mask_ratio)
                masks.append(found)
            boxes.append(rows)
        batch = Batch(images, targets_tensor(boxes, self.device), indices, sizes, ratio, pad, overlap=self.overlap)
        if masks:
            batch.masks = torch.from_numpy(stack_masks(masks) if self.overlap else np.concatenate(masks)).to(
                self.device
            )
        return batch

    def __iter__(self):
        if self.pipe is None and self.plan:
            self.pipe = self._build()
        finished, pipe = False, self.pipe

        def produce(k: int) -> Batch:
            suspects = lambda j: self.plan[(k + j) % len(self.plan)][0]  # noqa: E731  (the source goes round)
            return self.times.timed(
                lambda: run_naming_bad_record(pipe, self.store, suspects),
                lambda outputs: self._batch(k, to_torch(outputs[0], self.device, self.dtype)),
            )

        try:
            yield from prefetched(produce, len(self.plan), self.device)
            finished = True
        finally:
            if not finished:  # abandoned mid-pass: the pipeline holds prefetched batches of this pass
                self.pipe = None
