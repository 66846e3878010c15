"""The training loader: YOLOv5's augmentation (mosaic, random affine, HSV, flips, multi-scale) done by DALI,
fed with compressed bytes by parallel source workers, epochs and DDP ranks from the epoch sampler.

    loader = TrainLoader(open_store("demo.lmdb"), imgsz=640, batch=64, device="cuda", multi_scale=True)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for b in loader:
            b.images, b.targets  # N x 3 x S x S uint8 on the device; M x 6 (batch_idx, cls, cx, cy, w, h)
"""

from __future__ import annotations

import numpy as np
import torch

from fastload.loader.augment import EMPTY_START, Canvas, Hyp, Layer, SamplePlan, multi_scale_size, plan_batch
from fastload.loader.batch import Batch, targets_tensor, to_torch
from fastload.loader.geometry import load_size
from fastload.loader.pipelines import LAYERS, Row, augment_graph, build
from fastload.loader.prefetch import prefetched
from fastload.loader.sampler import EpochSampler


class AugmentPlanner:
    """The batch plans of an epoch: record indices from the sampler, then one SamplePlan per image, from
    generators seeded by (seed, epoch, position), so any process computes the same plan."""

    def __init__(
        self, store, imgsz: int, batch: int, hyp: Hyp, seed: int, rank: int, world: int, multi_scale: bool, stride: int
    ) -> None:
        hyp.check()
        self.store, self.imgsz, self.batch, self.hyp, self.seed = store, imgsz, batch, hyp, seed
        self.multi_scale, self.stride = multi_scale, stride
        self.sampler = EpochSampler(len(store), seed, rank, world, groups=store.read_groups())
        self._epoch, self._indices = None, None

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch)

    def indices(self, epoch: int) -> np.ndarray:
        if self._epoch != epoch:
            self._epoch, self._indices = epoch, self.sampler.indices(epoch)
        return self._indices

    def records(self, epoch: int, iteration: int) -> np.ndarray:
        start = iteration * self.batch
        return self.indices(epoch)[start : start + self.batch]

    def size(self, epoch: int, iteration: int) -> int:
        if not self.multi_scale:
            return self.imgsz
        return multi_scale_size(np.random.default_rng([self.seed, epoch, iteration, 1 << 20]), self.imgsz, self.stride)

    def plan(self, epoch: int, iteration: int) -> tuple[np.ndarray, int, list[SamplePlan]] | None:
        picked = self.records(epoch, iteration)
        if len(picked) == 0:
            return None
        out, rng = self.size(epoch, iteration), np.random.default_rng([self.seed, epoch, iteration])
        return picked, out, plan_batch(rng, picked, self.store.sizes, self.store.labels, self.imgsz, self.hyp, out)


class AugmentSource:
    """DALI's parallel external source (runs in worker processes): the batch's bytes, one row of geometry per
    sample (`Row`), and the boxes, which travel through the pipeline beside the pixels. It goes on from epoch to
    epoch without ending DALI's epoch, so the next epoch starts with batches already prepared."""

    def __init__(self, planner: AugmentPlanner, start_epoch: int) -> None:
        self.planner, self.start_epoch = planner, start_epoch
        hyp = planner.hyp
        self.row = Row(hyp.perspective > 0, hyp.mixup > 0)
        empty = Layer(-1, 0, (1, 1), EMPTY_START, (1, 1))
        self.no_mix = Canvas([empty] * LAYERS, np.eye(3), np.zeros((0, 5)))

    def _canvas(self, canvas: Canvas, slot: int) -> list[float]:
        values = []
        for layer in canvas.layers:
            values += [layer.slot if layer.index >= 0 else slot, *layer.start, *layer.shape]
        matrix = canvas.matrix if self.row.matrix == 9 else canvas.matrix[:2]
        return values + matrix.ravel().tolist()

    def __call__(self, info):
        epochs, k = divmod(info.iteration, len(self.planner))
        picked, out, plans = self.planner.plan(self.start_epoch + epochs, k)
        store, imgsz = self.planner.store, self.planner.imgsz
        jpegs, rows, boxes = [], np.empty((len(plans), self.row.width), np.float32), []
        for j, (index, p) in enumerate(zip(picked, plans, strict=True)):
            h, w = load_size(*(int(v) for v in store.sizes[index]), imgsz)
            values = [w, h, *self._canvas(p.canvas, j)]
            if self.row.canvases == 2:
                values += self._canvas(p.mix or self.no_mix, j)
            values += [out, out, (p.hsv[0] - 1) * 180, p.hsv[1], p.hsv[2], p.flip_lr, p.flip_ud, p.mix_ratio]
            rows[j] = values
            jpegs.append(np.frombuffer(store.get(int(index)).image, np.uint8))
            boxes.append(p.boxes.astype(np.float32).reshape(-1, 5))
        return jpegs, rows, boxes


class TrainLoader:
    def __init__(
        self,
        store,
        imgsz: int = 640,
        batch: int = 16,
        *,
        hyp: Hyp | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        multi_scale: bool = False,
        stride: int = 32,
        device: str = "cpu",
        workers: int = 2,
        dtype: torch.dtype = torch.uint8,
        start_method: str | None = None,  # DALI workers: fork on CPU, spawn once CUDA is initialised
    ) -> None:
        self.planner = AugmentPlanner(store, imgsz, batch, hyp or Hyp(), seed, rank, world, multi_scale, stride)
        self.device, self.dtype, self.batch, self.workers = device, dtype, batch, workers
        self.start_method = start_method
        self.epoch = 0  # the epoch the next pass yields
        self.pipe, self.pipe_epoch = None, None  # the DALI pipeline and the epoch it produces next

    def __len__(self) -> int:
        return len(self.planner)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.pipe is None or self.pipe_epoch != self.epoch:  # DALI counts epochs from 0: start at this one
            hyp = self.planner.hyp
            self.pipe = build(
                augment_graph,
                AugmentSource(self.planner, self.epoch),
                self.device,
                self.batch,
                self.workers,
                self.start_method,
                perspective=hyp.perspective > 0,
                mixup=hyp.mixup > 0,
            )
            self.pipe_epoch = self.epoch
        epoch, finished, pipe = self.epoch, False, self.pipe

        def produce(k: int) -> Batch:
            images, boxes = pipe.run()
            targets = targets_tensor([np.asarray(boxes[j]) for j in range(len(boxes))], self.device)
            return Batch(to_torch(images, self.device, self.dtype), targets, self.planner.records(epoch, k))

        try:
            yield from prefetched(produce, len(self), self.device)
            finished = True
        finally:
            if finished:
                self.epoch = self.pipe_epoch = epoch + 1
            else:  # abandoned mid-epoch: the pipeline holds prefetched batches of this epoch
                self.pipe = None
