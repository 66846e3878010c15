"""YOLOv5's --image-weights: each epoch draws its images with replacement, more often those holding classes that
are rare in the training labels or were detected poorly at the last validation.

    weights = ImageWeights(store)              # the class weights, from the store's box rows, once
    loader.set_weights(weights(maps))          # per epoch; maps: per-class mAP@0.5:0.95 (class_maps)
"""

from __future__ import annotations

import numpy as np


def class_weights(classes: np.ndarray, nc: int) -> np.ndarray:
    """YOLOv5's `labels_to_class_weights(labels, nc) * nc`: inverse class frequencies, summing to nc (a class
    without labels counts as one box)."""
    counts = np.bincount(classes.astype(np.int64), minlength=nc).astype(np.float64)[:nc]
    counts[counts == 0] = 1
    weights = 1 / counts
    return weights / weights.sum() * nc


def class_maps(metrics: dict, nc: int) -> np.ndarray:
    """YOLOv5's `maps` after a validation: each class's mAP@0.5:0.95; a class without validation labels gets the
    mean, as in YOLOv5's val.run (zeros before any validation)."""
    maps = np.full(nc, float(metrics.get("map50_95", 0.0)))
    if len(metrics.get("classes", ())):
        maps[np.asarray(metrics["classes"])] = np.asarray(metrics["ap"]).mean(1)
    return maps


class ImageWeights:
    """Per record of a store, the sum over its boxes of its class's weight `class_weights * (1 - maps)**2 / nc`:
    YOLOv5's `labels_to_image_weights`. A record without boxes weighs 0 and is not drawn, as in YOLOv5. Computed
    from the store's columns: one number per box and per record, never an object per image."""

    def __init__(self, store) -> None:
        self.nc = len(store.names)
        self.classes = store.boxes[:, 0].astype(np.int32)
        self.owner = np.repeat(np.arange(len(store), dtype=np.int32), store.box_counts)  # the record of each box row
        self.n = len(store)
        self.class_weights = class_weights(self.classes, self.nc)

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        per_class = self.class_weights * (1 - np.asarray(maps, np.float64)) ** 2 / self.nc
        return np.bincount(self.owner, weights=per_class[self.classes], minlength=self.n)
