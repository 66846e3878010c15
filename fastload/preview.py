"""`fastload preview`: one batch of the training (or validation) loader drawn with its boxes, to check by eye
what the model will be fed: the augmentation, the labels, the class names.

    fastload preview runs/demo/demo.lmdb -o batch.jpg --imgsz 640 --batch 16
"""

from __future__ import annotations

import os

import numpy as np
import torch

from fastload.errors import FastloadError
from fastload.loader.augment import Hyp
from fastload.loader.classify_loader import TRAIN, ClassifyLoader
from fastload.loader.draw import batch_grid, save_image
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store

FORMATS = (".jpg", ".jpeg", ".png")


def preview(
    store_path: str,
    out: str,
    split: str = "train",
    imgsz: int = 640,
    batch: int = 16,
    augment: bool = True,
    multi_scale: bool = False,
    seed: int = 0,
    epoch: int = 0,
    device: str = "cpu",
    workers: int = 2,
    hyp: Hyp | None = None,
    masks: bool = False,
) -> dict:
    """Draw the first batch of `epoch` (the training loader with YOLOv5's augmentation, `hyp` or scratch-low's, or
    the letterboxing validation loader) into `out`; returns what was drawn. `masks`: a segmentation model's masks
    too, each object's tinted in its class's colour."""
    if os.path.splitext(out)[1].lower() not in FORMATS:
        raise FastloadError(f"{out}: the picture must be .jpg or .png")
    store = open_store(store_path, split)
    if len(store) == 0:
        raise FastloadError(f"{store_path}: split {split!r} is empty")
    classify = store.meta.get("task") == "classify"
    if classify:  # the classification loader's crops, each titled by its class
        if multi_scale or masks:
            raise FastloadError(f"{store_path}: a classification store: --multi-scale and --masks are detection's")
        loader = ClassifyLoader(store, imgsz, batch, augment=TRAIN if augment else None, seed=seed, device=device,
                                workers=workers)  # fmt: skip
        loader.set_epoch(epoch)
    elif augment:
        loader = TrainLoader(store, imgsz, batch, hyp=hyp or Hyp(), seed=seed, multi_scale=multi_scale, device=device,
                             workers=workers, mask_ratio=4 * masks)  # fmt: skip
        loader.set_epoch(epoch)
    else:
        loader = ValLoader(store, imgsz, batch, device=device, workers=workers, mask_ratio=4 * masks)
    batches = iter(loader)
    b = next(batches)
    batches.close()  # the rest of the epoch is not needed
    records = [int(i) for i in b.indices]
    targets = torch.zeros((0, 6)) if classify else b.targets.cpu()
    titles = [store.path_of(i) for i in records]
    if classify:
        titles = [f"{store.names[c]}: {os.path.basename(t)}" for c, t in zip(b.labels.tolist(), titles, strict=True)]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_image(batch_grid(b.images, targets, store.names, titles, masks=getattr(b, "masks", None)), out)
    per_image = np.bincount(targets[:, 0].long().numpy(), minlength=len(records))
    return {
        "path": out,
        "store": store_path,
        "split": split,
        "device": device,
        "augment": augment,
        "multi_scale": multi_scale,
        "imgsz": imgsz,
        "shape": list(b.images.shape[-2:]),  # the batch's H, W (multi-scale or rect letterbox may change it)
        "images": len(records),
        "boxes": int(per_image[:16].sum()),  # drawn: the first 16 images
        "records": records,
        "epoch": epoch,
        "seed": seed,
        "polygons": store.has_polygons,  # boxes of mosaics made from the warped polygons, as YOLOv5's
        "masks": masks,  # each object's mask tinted (a segmentation model's loader)
        "task": "classify" if classify else "detect",
    }
