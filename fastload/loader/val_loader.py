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

from fastload.loader.batch import Batch, targets_tensor, to_torch
from fastload.loader.geometry import boxes_to_canvas, letterbox, rect_batch_shapes
from fastload.loader.pipelines import build, letterbox_graph


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
        start_method: str | None = None,  # DALI workers: fork on CPU, spawn once CUDA is initialised
    ) -> None:
        self.store, self.imgsz, self.device, self.dtype = store, imgsz, device, dtype
        self.plan = val_plan(store.sizes, imgsz, batch, stride, rect, pad, rank, world)
        self.pipe = build(
            letterbox_graph, LetterboxSource(store, self.plan, imgsz), device, batch, workers, start_method
        )

    def __len__(self) -> int:
        return len(self.plan)

    def _batch(self, k: int, images: torch.Tensor) -> Batch:
        indices, shape = self.plan[k]
        sizes = self.store.sizes[indices].astype(np.int64)
        boxes, ratio, pad = [], np.zeros((len(indices), 2)), np.zeros((len(indices), 2))
        for j, i in enumerate(indices):
            h0, w0 = (int(v) for v in sizes[j])
            p = letterbox(h0, w0, self.imgsz, shape)
            ratio[j], pad[j] = p.ratio(h0, w0), (p.top, p.left)
            boxes.append(boxes_to_canvas(self.store.labels(int(i)), p, shape))
        return Batch(images, targets_tensor(boxes, self.device), indices, sizes, ratio, pad)

    def __iter__(self):
        for k in range(len(self.plan)):
            (images,) = self.pipe.run()
            yield self._batch(k, to_torch(images, self.device, self.dtype))
        try:  # the source's StopIteration ends DALI's epoch; reset for the next pass
            self.pipe.run()
        except StopIteration:
            pass
        self.pipe.reset()
