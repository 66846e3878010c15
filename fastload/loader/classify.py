"""The classification graphs' planning and source (YOLOv5's classify loader: torchvision's ImageFolder with its
classify_albumentations): per image a window of the picture, planned in numpy from generators seeded by (seed,
epoch, position), that DALI cuts out, resizes to imgsz x imgsz, flips and colour-jitters. Training windows are
RandomResizedCrop's (scale 0.08-1 of the area, aspect 3/4-4/3); validation's are YOLOv5's CenterCrop (the central
square). Kept apart from the iterator (fastload.loader.classify_loader) so a spawned worker does not import torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from fastload.loader.sampler import EpochSampler


@dataclass(frozen=True)
class ClassifyAugment:
    """YOLOv5's classify_albumentations: RandomResizedCrop(scale, ratio), HorizontalFlip(hflip), VerticalFlip(vflip),
    ColorJitter(jitter, jitter, jitter, 0) (brightness, contrast, saturation; no hue) on a share `jitter_p` of the
    pictures (albumentations' default p, which YOLOv5 keeps)."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (0.75, 1.0 / 0.75)
    hflip: float = 0.5
    vflip: float = 0.0
    jitter: float = 0.4
    jitter_p: float = 0.5


def random_crop(rng: np.random.Generator, h: int, w: int, aug: ClassifyAugment) -> tuple[int, int, int, int]:
    """RandomResizedCrop's window (y, x, h, w) of an h x w picture (torchvision's get_params): ten tries at an area
    in `scale` and a log-uniform aspect in `ratio` that fits, else the central crop of the nearest aspect."""
    area, log_ratio = h * w, (math.log(aug.ratio[0]), math.log(aug.ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*aug.scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    if w / h < min(aug.ratio):
        cw, ch = w, round(w / min(aug.ratio))
    elif w / h > max(aug.ratio):
        cw, ch = round(h * max(aug.ratio)), h
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def center_crop(h: int, w: int) -> tuple[int, int, int, int]:
    """YOLOv5's CenterCrop window (y, x, h, w): the central square of the short side."""
    m = min(h, w)
    return (h - m) // 2, (w - m) // 2, m, m


ROW = 8  # per image: window y, x, h, w, mirror, brightness, contrast, saturation


class ClassifyPlanner:
    """The batches of a pass and each image's row. Training (`aug` given): the epoch sampler's seeded permutation,
    padded so every rank gets equal batches (the last one short); validation: the records in order, each once."""

    def __init__(self, store, batch: int, aug: ClassifyAugment | None, seed: int = 0, rank: int = 0, world: int = 1):
        self.store, self.batch, self.aug, self.seed, self.rank = store, batch, aug, seed, rank
        self.sampler = EpochSampler(len(store), seed, rank, world, shuffle=aug is not None, pad=aug is not None)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch)

    def records(self, epoch: int, k: int) -> np.ndarray:
        return self.sampler.indices(epoch)[k * self.batch : (k + 1) * self.batch]

    def rows(self, epoch: int, k: int, records: np.ndarray) -> np.ndarray:
        out = np.zeros((len(records), ROW), np.float32)
        sizes, aug = self.store.sizes, self.aug
        for j, i in enumerate(records):
            h, w = (int(v) for v in sizes[i])
            if aug is None:
                out[j] = (*center_crop(h, w), 0, 1, 1, 1)
                continue
            rng = np.random.default_rng([self.seed, self.rank, epoch, k, j])
            window = random_crop(rng, h, w, aug)
            mirror = rng.random() < aug.hflip
            flip_ud = rng.random() < aug.vflip
            jitter = rng.uniform(1 - aug.jitter, 1 + aug.jitter, 3)
            if rng.random() >= aug.jitter_p:
                jitter[:] = 1
            out[j] = (*window, mirror + 2 * flip_ud, *jitter)
        return out


class ClassifySource:
    """DALI's parallel external source (worker processes): per batch the images' bytes and rows. It goes on from
    pass to pass without ending DALI's epoch, so the next pass starts with batches already prepared."""

    def __init__(self, planner: ClassifyPlanner, start_epoch: int) -> None:
        self.planner, self.start_epoch = planner, start_epoch

    def __call__(self, info):
        epochs, k = divmod(info.iteration, len(self.planner))
        epoch = self.start_epoch + epochs
        records = self.planner.records(epoch, k)
        jpegs = [np.frombuffer(self.planner.store.image(int(i)), np.uint8) for i in records]
        return jpegs, self.planner.rows(epoch, k, records)


@pipeline_def
def classify_graph(source, gpu: bool, imgsz: int, jitter: bool = True, vertical: bool = False, ahead: int = 2):
    """Decode the row's window only (libjpeg-turbo's or nvJPEG's region decode: 1.9x decoding whole pictures and
    cutting on 2 CPU cores), resize it to imgsz x imgsz (bilinear, as cv2's INTER_LINEAR in YOLOv5), `jitter`
    brightness, contrast and saturation, flip (`vertical`: up-down too); uint8 CHW out."""
    jpegs, rows = fn.external_source(
        source=source, num_outputs=2, batch=True, parallel=True, batch_info=True, prefetch_queue_depth=ahead
    )
    window = {"axis_names": "HW", "normalized_anchor": False, "normalized_shape": False, "output_type": types.RGB}
    if gpu:  # the hardware JPEG engine's share, as the detection graphs' decode
        window["hw_decoder_load"] = float(os.environ.get("FASTLOAD_HW_DECODER_LOAD", "0.65"))
    images = fn.decoders.image_slice(jpegs, rows[0:2], rows[2:4], device="mixed" if gpu else "cpu", **window)
    images = fn.resize(images, resize_x=imgsz, resize_y=imgsz, interp_type=types.INTERP_LINEAR, antialias=False)
    if jitter:  # (validation has none: its cost, a third of the CPU graph's, spared)
        images = fn.color_twist(images, brightness=rows[5], contrast=rows[6], saturation=rows[7])
    mirror = fn.cast(rows[4], dtype=types.INT32)
    if vertical:
        images = fn.flip(images, horizontal=0, vertical=mirror // 2)  # (DALI flips left-right by default)
    return fn.crop_mirror_normalize(images, mirror=mirror % 2, dtype=types.UINT8, output_layout="CHW")
