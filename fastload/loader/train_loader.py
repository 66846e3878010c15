"""The training loader: YOLOv5's augmentation (mosaic, random affine, HSV, flips, multi-scale) done by DALI,
fed with compressed bytes by parallel source workers, epochs and DDP ranks from the epoch sampler.

    loader = TrainLoader(open_store("demo.lmdb"), imgsz=640, batch=64, device="cuda", multi_scale=True)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for b in loader:
            b.images, b.targets  # N x 3 x S x S uint8 on the device; M x 6 (batch_idx, cls, cx, cy, w, h)
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from fastload.loader.augment import EMPTY_START, Canvas, Hyp, Layer, SamplePlan, multi_scale_size, plan_sample
from fastload.loader.batch import Batch, targets_tensor, to_torch
from fastload.loader.pipelines import LAYERS, augment_graph, build
from fastload.loader.sampler import EpochSampler


def _blank_jpeg() -> np.ndarray:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (114, 114, 114)).save(out, "JPEG")
    return np.frombuffer(out.getvalue(), np.uint8)


class AugmentPlanner:
    """The batch plans of an epoch: record indices from the sampler, then one SamplePlan per image, from
    generators seeded by (seed, epoch, position), so every process computes the same plan."""

    def __init__(
        self, store, imgsz: int, batch: int, hyp: Hyp, seed: int, rank: int, world: int, multi_scale: bool, stride: int
    ) -> None:
        hyp.check()
        self.store, self.imgsz, self.batch, self.hyp, self.seed = store, imgsz, batch, hyp, seed
        self.multi_scale, self.stride = multi_scale, stride
        groups = store.read_groups()
        self.sampler = EpochSampler(len(store), seed, rank, world, groups=groups)
        # Zarr: mosaic partners from the records around the sample in the epoch order (the shards being read),
        # so a partner never fetches a shard of its own; one read group (LMDB): the whole store, as YOLOv5
        self.partner_reach = max(batch, len(store) // len(groups)) if len(groups) > 1 else None
        self._epoch, self._indices = None, None

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch)

    def indices(self, epoch: int) -> np.ndarray:
        if self._epoch != epoch:
            self._epoch, self._indices = epoch, self.sampler.indices(epoch)
        return self._indices

    def size(self, epoch: int, iteration: int) -> int:
        if not self.multi_scale:
            return self.imgsz
        return multi_scale_size(np.random.default_rng([self.seed, epoch, iteration, 1 << 20]), self.imgsz, self.stride)

    def plan(self, epoch: int, iteration: int) -> tuple[np.ndarray, int, list[SamplePlan]] | None:
        order = self.indices(epoch)
        start = iteration * self.batch
        if start >= len(order):
            return None
        picked = order[start : start + self.batch]
        out = self.size(epoch, iteration)
        sizes, labels = self.store.sizes, self.store.labels
        pool = None
        if self.partner_reach:
            pool = order[max(0, start - self.partner_reach) : start + len(picked) + self.partner_reach]
        plans = [
            plan_sample(
                np.random.default_rng([self.seed, epoch, start + j]),
                int(i),
                sizes,
                labels,
                self.imgsz,
                self.hyp,
                out,
                pool,
            )
            for j, i in enumerate(picked)
        ]
        return picked, out, plans


class AugmentSource:
    """DALI's parallel external source (runs in worker processes): bytes and per-quadrant geometry."""

    def __init__(self, planner: AugmentPlanner, start_epoch: int) -> None:
        self.planner, self.start_epoch = planner, start_epoch
        self.blank = _blank_jpeg()
        self.perspective = planner.hyp.perspective > 0
        self.mixup = planner.hyp.mixup > 0
        self.no_mix = Canvas([Layer(-1, (8, 8), EMPTY_START, (1, 1))] * LAYERS, np.eye(3), np.zeros((0, 5)))

    def _canvas_columns(self, canvas: Canvas) -> list[np.ndarray]:
        store, values = self.planner.store, []
        for layer in canvas.layers:
            jpeg = self.blank if layer.index < 0 else np.frombuffer(store.get(layer.index).image, np.uint8)
            values += [
                jpeg,
                np.array(layer.load_hw[1], np.float32),
                np.array(layer.load_hw[0], np.float32),
                np.array(layer.start, np.float32),
                np.array(layer.shape, np.float32),
            ]
        matrix = canvas.matrix if self.perspective else canvas.matrix[:2]
        return [*values, matrix.astype(np.float32)]

    def __call__(self, info):
        got = self.planner.plan(self.start_epoch + info.epoch_idx, info.iteration)
        if got is None:
            raise StopIteration
        _, out, plans = got
        rows = []
        for p in plans:
            values = self._canvas_columns(p.canvas)
            if self.mixup:
                values += self._canvas_columns(p.mix or self.no_mix)
            values += [
                np.array([out, out], np.float32),
                np.array((p.hsv[0] - 1) * 180, np.float32),
                np.array(p.hsv[1], np.float32),
                np.array(p.hsv[2], np.float32),
                np.array(p.flip_lr, np.int32),
                np.array(p.flip_ud, np.int32),
            ]
            if self.mixup:
                values.append(np.array(p.mix_ratio, np.float32))
            rows.append(values)
        return [list(column) for column in zip(*rows, strict=True)]


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
        epoch, finished = self.epoch, False
        try:
            for k in range(len(self)):
                (images,) = self.pipe.run()
                picked, _, plans = self.planner.plan(epoch, k)
                targets = targets_tensor([p.boxes for p in plans], self.device)
                yield Batch(to_torch(images, self.device, self.dtype), targets, picked)
            try:  # the source's StopIteration ends DALI's epoch
                self.pipe.run()
            except StopIteration:
                pass
            self.pipe.reset()
            finished = True
        finally:
            if finished:
                self.epoch = self.pipe_epoch = epoch + 1
            else:  # abandoned mid-epoch: the pipeline holds prefetched batches of this epoch
                self.pipe = None
