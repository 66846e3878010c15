"""The classification loader: YOLOv5's classify loader on DALI, from a classification store (fastload pack of class
folders: one row an image, its class). Images are uint8 on the device; `normalize` makes the model's input.

    loader = ClassifyLoader(open_store("imagenette.lmdb"), imgsz=224, batch=64, device="cuda")        # training
    loader = ClassifyLoader(open_store("imagenette.lmdb", "val"), 224, 128, augment=None)            # validation
    for b in loader:
        b.images, b.labels  # N x 3 x 224 x 224 uint8, N int64 classes
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastload.errors import FastloadError
from fastload.loader.batch import to_torch
from fastload.loader.classify import ClassifyAugment, ClassifyPlanner, ClassifySource, classify_graph
from fastload.loader.pipelines import build
from fastload.loader.prefetch import StageTimes
from fastload.loader.shm import batch_bytes
from fastload.loader.train_loader import epoch_batches

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, as YOLOv5's classify transforms normalise
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN = ClassifyAugment()  # YOLOv5's training augmentation


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 N x 3 x H x W -> the model's input: scaled to [0, 1], less ImageNet's mean, over its deviation."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype, device=images.device).view(1, 3, 1, 1)
    return (images.to(dtype) / 255 - mean) / std


def record_classes(store) -> np.ndarray:
    """Each record's class (int64): the class of its one row. A FastloadError for a store that is not for
    classification (packed from class folders)."""
    counts = store.box_counts
    if store.meta.get("task") != "classify" or (counts != 1).any():
        raise FastloadError(f"{store.path}: not a classification store (pack class folders: <split>/<class>/*.jpg)")
    return store.boxes[:, 0].astype(np.int64)


@dataclass
class ClassifyBatch:
    images: torch.Tensor  # N x 3 x S x S uint8
    labels: torch.Tensor  # N int64
    indices: np.ndarray  # the records

    def tensors(self) -> list[torch.Tensor]:
        return [self.images, self.labels]


class ClassifyLoader:
    def __init__(
        self,
        store,
        imgsz: int = 224,
        batch: int = 64,
        *,
        augment: ClassifyAugment | None = TRAIN,  # None: validation (centre crops, in order, each record once)
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        device: str = "cpu",
        workers: int = 2,
        start_method: str | None = None,  # DALI workers: fork on CPU, spawn once CUDA is initialised
        labelled: bool = True,  # False: pictures without classes (image files to classify): labels all 0
    ) -> None:
        self.store, self.imgsz, self.device = store, imgsz, device
        self.workers, self.start_method = workers, start_method
        self.classes = (
            torch.from_numpy(record_classes(store)) if labelled else torch.zeros(len(store), dtype=torch.int64)
        )
        self.planner = ClassifyPlanner(store, batch, augment, seed, rank, world)
        self.batch = batch
        self.epoch, self.pipe, self.pipe_epoch = 0, None, None
        self.times = StageTimes()  # per batch: DALI's run (decode + crop + jitter) and the hand-over to torch

    def __len__(self) -> int:
        return len(self.planner)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def source(self) -> ClassifySource:
        """What each DALI source worker runs, from the epoch the next pass yields."""
        return ClassifySource(self.planner, self.epoch)

    def __iter__(self):
        if not len(self):
            return
        if self.pipe is None or self.pipe_epoch != self.epoch:
            aug = self.planner.aug
            self.pipe = build(classify_graph, self.source(), self.device, self.batch, self.workers, self.start_method,
                              per_batch=batch_bytes(self.store, self.batch), imgsz=self.imgsz,
                              jitter=aug is not None and aug.jitter > 0 and aug.jitter_p > 0,
                              vertical=aug is not None and aug.vflip > 0)  # fmt: skip
            self.pipe_epoch = self.epoch
        epoch = self.epoch

        def handover(outputs, k: int) -> ClassifyBatch:
            records = self.planner.records(epoch, k)
            labels = self.classes[torch.from_numpy(records)].to(self.device, non_blocking=True)
            return ClassifyBatch(to_torch(outputs[0], self.device), labels, records)

        yield from epoch_batches(self, self.pipe, epoch, self.store, handover)
