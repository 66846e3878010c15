"""`--autosplit TRAIN,VAL[,TEST]`: a dataset's images split anew into train, val (and test), each image by a hash of
its path, so that a growing dataset keeps every earlier image in the split it had."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from fastload.errors import FastloadError
from fastload.pack.sources import SPLIT_KEYS, Source


def parse_weights(text: str) -> tuple[float, ...]:
    """'0.9,0.1' or '0.8,0.1,0.1' as weights of train, val and test, summing to 1 (as given, scaled)."""
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        raise FastloadError(f"--autosplit {text}: not numbers (TRAIN,VAL or TRAIN,VAL,TEST, e.g. 0.9,0.1)") from None
    if len(weights) not in (2, 3) or min(weights) < 0 or not weights[0] > 0 or not np.isfinite(weights).all():
        raise FastloadError(f"--autosplit {text}: give 2 or 3 weights, train's above 0 and none below (e.g. 0.9,0.1)")
    return tuple(float(w) for w in np.asarray(weights) / sum(weights))


def autosplit(source: Source, weights: tuple[float, ...]) -> Source:
    """`source` with every image (of whichever split it was in) in train, val or test by `weights`: the split whose
    share of [0, 1) holds a hash of the image's path in the dataset. As YOLOv5's autosplit, all images are split; not
    as it, by a hash rather than a random draw over the sorted files, where one added image moves those after it and
    an image validated on in one pack is trained on in the next. A split with weight above 0 that the hash left
    empty (a tiny dataset) takes the image whose hash is nearest its share."""
    paths = sorted(p for ps in source.split_images.values() for p in ps)
    at = np.array([place(source.rel(p)) for p in paths], np.float64)
    edges = np.concatenate([[0.0], np.cumsum(weights)])
    edges[-1] = 1.0
    split = np.minimum(np.searchsorted(edges, at, side="right") - 1, len(weights) - 1)
    for k, w in enumerate(weights):
        if w > 0 and not (split == k).any() and len(paths) >= len(weights):
            counts = np.bincount(split, minlength=len(weights))
            spare = counts[split] > 1  # images whose split keeps others
            far = np.maximum(edges[k] - at, at - edges[k + 1]).clip(0) + np.where(spare, 0, np.inf)
            split[int(np.argmin(far))] = k
    splits = {SPLIT_KEYS[k]: [p for p, s in zip(paths, split, strict=True) if s == k] for k in range(len(weights))}
    return dataclasses.replace(source, split_images={name: got for name, got in splits.items() if got})


def place(rel: str) -> float:
    """Where in [0, 1) the image at `rel` (its path in the dataset) falls: the same on every machine and run."""
    return int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") / 2.0**64
