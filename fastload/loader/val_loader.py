"""The validation loader: letterbox only (rectangular batches by aspect ratio, as YOLOv5's `rect` mode),
deterministic order, every record exactly once (the last partial batch kept), and per image the numbers that
map predicted boxes back to original pixels.

    loader = ValLoader(open_store("demo.lmdb", "val"), imgsz=640, batch=32, device="cuda")
    for b in loader:
        b.images, b.targets, b.indices, b.orig_size, b.ratio, b.pad
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastload.loader.geometry import boxes_to_canvas, letterbox, rect_batch_shapes
from fastload.loader.pipelines import build, letterbox_graph
from fastload.loader.tensors import to_torch


@dataclass
class Batch:
    images: torch.Tensor  # N x 3 x H x W, uint8 (or float in [0, 1] on request), on the loader's device
    targets: torch.Tensor  # M x 6 float32: batch_idx, cls, cx, cy, w, h normalised to the batch's H, W
    indices: np.ndarray  # [N] record index of each image in the store split
    orig_size: np.ndarray  # [N, 2] original (h, w)
    ratio: np.ndarray  # [N, 2] (rh, rw): original pixels -> canvas pixels
    pad: np.ndarray  # [N, 2] (top, left) of the image in the canvas


def val_plan(
    sizes: np.ndarray,
    imgsz: int,
    batch: int,
    stride: int = 32,
    rect: bool = True,
    pad: float = 0.5,
    rank: int = 0,
    world: int = 1,
) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """[(record indices, (H, W))] per batch of this rank; whole batches are dealt to ranks in turn."""
    n = len(sizes)
    if rect:
        order, shapes = rect_batch_shapes(sizes, imgsz, batch, stride, pad)
    else:
        order, shapes = np.arange(n), [(imgsz, imgsz)] * -(-n // batch)
    batches = [(order[k * batch : (k + 1) * batch], shapes[k]) for k in range(len(shapes))]
    return batches[rank::world]


class LetterboxSource:
    """DALI's parallel external source (runs in worker processes): bytes and placement per image."""

    def __init__(self, store, plan, imgsz: int) -> None:
        self.store, self.plan, self.imgsz = store, plan, imgsz

    def __call__(self, info):
        if info.iteration >= len(self.plan):
            raise StopIteration
        indices, shape = self.plan[info.iteration]
        jpegs, rx, ry, start, size = [], [], [], [], []
        canvas = np.array(shape, np.float32)
        sizes = self.store.sizes
        for i in indices:
            p = letterbox(*(int(v) for v in sizes[i]), self.imgsz, shape)
            jpegs.append(np.frombuffer(self.store.get(int(i)).image, np.uint8))
            rx.append(np.array(p.nw, np.float32))
            ry.append(np.array(p.nh, np.float32))
            start.append(np.array([-p.top, -p.left], np.float32))
            size.append(canvas)
        return jpegs, rx, ry, start, size


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
    ) -> None:
        self.store, self.imgsz, self.device, self.dtype = store, imgsz, device, dtype
        self.plan = val_plan(store.sizes, imgsz, batch, stride, rect, pad, rank, world)
        self.pipe = build(letterbox_graph, LetterboxSource(store, self.plan, imgsz), device, batch, workers)

    def __len__(self) -> int:
        return len(self.plan)

    def _batch(self, k: int, images: torch.Tensor) -> Batch:
        indices, shape = self.plan[k]
        sizes = self.store.sizes[indices].astype(np.int64)
        rows, ratio, pad = [], np.zeros((len(indices), 2)), np.zeros((len(indices), 2))
        for j, i in enumerate(indices):
            h0, w0 = (int(v) for v in sizes[j])
            p = letterbox(h0, w0, self.imgsz, shape)
            ratio[j], pad[j] = p.ratio(h0, w0), (p.top, p.left)
            boxes = boxes_to_canvas(self.store.labels(int(i)), p, shape)
            rows.append(np.concatenate([np.full((len(boxes), 1), j, np.float32), boxes], axis=1))
        targets = torch.from_numpy(np.concatenate(rows) if rows else np.zeros((0, 6), np.float32))
        if self.dtype != torch.uint8:
            images = images.to(self.dtype).div_(255)
        return Batch(images, targets.to(self.device), indices, sizes, ratio, pad)

    def __iter__(self):
        for k in range(len(self.plan)):
            (images,) = self.pipe.run()
            yield self._batch(k, to_torch(images, self.device))
        try:  # the source's StopIteration ends DALI's epoch; reset for the next pass
            self.pipe.run()
        except StopIteration:
            pass
        self.pipe.reset()
