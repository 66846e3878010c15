"""The training loader: YOLOv5's augmentation (mosaic, random affine, HSV, flips, multi-scale) done by DALI,
fed with compressed bytes by parallel source workers, epochs and DDP ranks from the epoch sampler.

    loader = TrainLoader(open_store("demo.lmdb"), imgsz=640, batch=64, device="cuda", multi_scale=True)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for b in loader:
            b.images, b.targets  # N x 3 x S x S uint8 on the device; M x 6 (batch_idx, cls, cx, cy, w, h)

With `quad`, YOLOv5's --quad: each 4 images become one of twice the side, tiled 2 x 2 or one upscaled.
`prepare_targets=ComputeLoss(...).assigner()` also yields the loss's target assignment as `b.assigned`, made on the
CPU in the prefetch thread: the training step then has no host-device synchronisation left.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fastload.loader.augment import Hyp
from fastload.loader.bad_records import run_naming_bad_record
from fastload.loader.batch import Batch, batch_targets, instance_tensor, mask_tensor, quad, to_device, to_torch
from fastload.loader.pipelines import augment_graph, build, warp_kind
from fastload.loader.prefetch import StageTimes, prefetched
from fastload.loader.shm import batch_bytes
from fastload.loader.sources import AugmentPlanner, AugmentSource


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
        rect: bool = False,  # YOLOv5's rectangular training: fixed batches by aspect ratio, no mosaic
        stride: int = 32,
        device: str = "cpu",
        workers: int = 2,
        dtype: torch.dtype = torch.uint8,
        start_method: str | None = None,  # DALI workers: fork on CPU, spawn once CUDA is initialised
        prepare_targets: Callable[[torch.Tensor, tuple[int, int]], object] | None = None,
        quad: bool = False,  # YOLOv5's --quad: each 4 images become one of twice the side (fastload.loader.batch.quad)
        mask_ratio: int = 0,  # > 0: segmentation, instance masks this many times smaller than the images
        overlap: bool = True,  # YOLOv5's overlap masks (Batch.masks); False: each target's whole mask (--no-overlap)
    ) -> None:
        if mask_ratio and quad:
            raise ValueError("masks and --quad do not go together (YOLOv5's segmentation loader has no quad either)")
        if mask_ratio < 0 or (mask_ratio and stride % mask_ratio):
            raise ValueError(f"the mask ratio must divide the stride {stride}, not {mask_ratio}")
        self.planner = AugmentPlanner(
            store, imgsz, batch, hyp or Hyp(), seed, rank, world, multi_scale, stride, rect, mask_ratio, overlap
        )
        self.device, self.dtype, self.batch, self.workers = device, dtype, batch, workers
        self.start_method, self.quad = start_method, quad
        # f(targets [M, 6] on the CPU, the batch's (H, W)), run in the prefetch thread: what the loss would do with
        # the targets alone (yolo.loss's target assignment), done while the previous step runs; its result, tensors
        # moved to the device, is the batch's `assigned`
        self.prepare_targets = prepare_targets
        self.epoch = 0  # the epoch the next pass yields
        self.pipe, self.pipe_epoch = None, None  # the DALI pipeline and the epoch it produces next
        hyp = self.planner.hyp
        self.warp = warp_kind(hyp.degrees, hyp.shear, hyp.perspective, gpu=device != "cpu")
        self.times = StageTimes()  # per batch: DALI's run (decode + augment) and the hand-over to torch

    def __len__(self) -> int:
        return len(self.planner)

    def source(self) -> AugmentSource:
        """What each DALI source worker runs, from the epoch the next pass yields."""
        return AugmentSource(self.planner, self.epoch, self.warp)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_weights(self, weights: np.ndarray | None) -> None:
        """Draw the epochs from now on with replacement in proportion to `weights`, one per record (YOLOv5's
        --image-weights; None: a permutation again). New weights restart the source workers, which plan ahead
        with the weights they were started with."""
        old = self.planner.sampler.weights
        if (old is None) != (weights is None) or (old is not None and not np.array_equal(old, weights)):
            self.planner.set_weights(weights)
            self.pipe = None

    def __iter__(self):
        if self.pipe is None or self.pipe_epoch != self.epoch:  # DALI counts epochs from 0: start at this one
            self.pipe = build(
                augment_graph,
                self.source(),
                self.device,
                self.batch,
                self.workers,
                self.start_method,
                per_batch=batch_bytes(self.planner.store, self.batch),
                warp=self.warp,
                mixup=self.planner.hyp.mixup > 0,
                paste=self.planner.pastes,
                instances=self.planner.mask_ratio > 0,
            )
            self.pipe_epoch = self.epoch
        epoch, pipe = self.epoch, self.pipe

        def handover(outputs, k: int) -> Batch:
            images, boxes, *found = outputs
            images = to_torch(images, self.device, self.dtype)
            targets = batch_targets(boxes.as_array(), "cpu")
            records = self.planner.records(epoch, k)
            if self.quad:  # seeded by the batch: a resumed run draws the same
                rng = np.random.default_rng([self.planner.seed, self.planner.rank, epoch, k, 1 << 22])
                images, targets = quad(images, targets, rng)
                records = records[::4][: len(images)]  # each quad's first image
            assigned = None
            if self.prepare_targets is not None:
                assigned = to_device(self.prepare_targets(targets, tuple(images.shape[-2:])), self.device)
            masks, overlap = None, self.planner.overlap
            if found:
                samples = [np.array(found[0][i]) for i in range(len(found[0]))]
                masks = (
                    mask_tensor(samples).to(self.device) if overlap else instance_tensor(samples, targets, self.device)
                )
            targets = targets.to(self.device)
            return Batch(images, targets, records, assigned=assigned, masks=masks, overlap=overlap)

        yield from epoch_batches(self, pipe, epoch, self.planner.store, handover)


def epoch_batches(loader, pipe, epoch: int, store, handover):
    """The batches of `epoch` from a training loader's DALI pipeline (TrainLoader's, fastload.loader.classify_loader's:
    their planner's records, `times`, `device`, and their pipe/epoch state): handover(DALI's outputs, k) made ahead in
    the prefetch thread, a failing run naming its bad record. After the whole epoch the loader's next is epoch + 1; an
    epoch left early drops the pipeline, which holds batches prefetched for it."""

    def suspects(k: int) -> np.ndarray:  # the records of the k-th batch on (the source goes on into the next epoch)
        return loader.planner.records(epoch + k // len(loader), k % len(loader))

    def produce(k: int):
        run = lambda: run_naming_bad_record(pipe, store, lambda j: suspects(k + j))  # noqa: E731
        return loader.times.timed(run, lambda outputs: handover(outputs, k))

    finished = False
    try:
        yield from prefetched(produce, len(loader), loader.device)
        finished = True
    finally:
        if finished:
            loader.epoch = loader.pipe_epoch = epoch + 1
        else:
            loader.pipe = None
