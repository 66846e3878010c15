"""Whole pictures decoded one at a time at their own size, on the device (nvJPEG on a GPU): what sliced inference
cuts into tiles (`detect --tile`, `val --tile`; yolo.sliced). Works over a store's split or image files.

    for i, picture in PictureLoader(files, records=[0, 3], device="cuda"):   # picture: H x W x 3 uint8 tensor
        ...
"""

from __future__ import annotations

import numpy as np
import torch

from fastload.loader.bad_records import run_naming_bad_record
from fastload.loader.batch import to_torch
from fastload.loader.pipelines import build, decode_graph
from fastload.loader.prefetch import prefetched
from fastload.loader.sources import PictureSource


class PictureLoader:
    def __init__(self, store, records, device: str = "cpu", workers: int = 2, start_method: str | None = None) -> None:
        self.store, self.records, self.device = store, np.asarray(records, np.int64), device
        self.workers, self.start_method = workers, start_method
        self.pipe = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        """(record index, its picture: H x W x 3 uint8 on the device), in `records`' order."""
        if not len(self.records):
            return
        if self.pipe is None:
            self.pipe = build(decode_graph, PictureSource(self.store, self.records), self.device, 1, self.workers,
                              self.start_method, per_batch=self.store.image_bytes)  # fmt: skip
        pipe, n, finished = self.pipe, len(self.records), False

        def produce(k: int) -> tuple[int, torch.Tensor]:
            out = run_naming_bad_record(pipe, self.store, lambda j: self.records[[(k + j) % n]])
            return int(self.records[k]), to_torch(out[0], self.device)[0]

        try:
            yield from prefetched(produce, n, self.device)
            finished = True
        finally:
            if not finished:  # abandoned mid-pass: the pipeline holds prefetched pictures of this pass
                self.pipe = None
