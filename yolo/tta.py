"""YOLOv5's test-time augmentation (`val.py --augment`, `detect.py --augment`): the model on the image, on the image
mirrored left-right and shrunk to 0.83, and on it shrunk to 0.67; the predictions mapped back to the image's pixels
and pooled for NMS, without the largest image's coarsest level and the smallest image's finest one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from yolo.ensemble import Ensemble

SCALES = (1.0, 0.83, 0.67)
MIRRORED = (False, True, False)
GREY = 0.447  # YOLOv5's padding of a shrunk image (ImageNet's mean)


def scale_img(x: torch.Tensor, ratio: float, stride: int = 32) -> torch.Tensor:
    """YOLOv5's scale_img: resized by `ratio` (bilinear), padded right and bottom to a multiple of `stride`."""
    if ratio == 1.0:
        return x
    h, w = x.shape[2:]
    size = (int(h * ratio), int(w * ratio))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    h, w = (math.ceil(v * ratio / stride) * stride for v in (h, w))
    return F.pad(x, [0, w - size[1], 0, h - size[0]], value=GREY)


def forward_augment(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The decoded predictions [B, n, 5 + nc] (cx, cy, w, h in x's pixels) of YOLOv5's augmented inference for a
    YOLOv5 model in eval mode; of an ensemble, each model's passes, pooled (as YOLOv5's Ensemble augments)."""
    if isinstance(model, Ensemble):
        return torch.cat([forward_augment(m, x) for m in model], 1)
    height, width = x.shape[-2:]
    detect = model.detect
    outs = []
    for ratio, mirrored in zip(SCALES, MIRRORED, strict=True):
        y = model(scale_img(x.flip(3) if mirrored else x, ratio, model.grid_size))[0]
        y[..., :4] /= ratio
        if mirrored:
            y[..., 0] = width - y[..., 0]
        outs.append(y)
    levels = len(detect.stride)
    cells = sum(4**k for k in range(levels))  # a level's cells, in units of the coarsest level's
    outs[0] = outs[0][:, : -(outs[0].shape[1] // cells)]  # the largest image: without its coarsest level
    outs[-1] = outs[-1][:, (outs[-1].shape[1] // cells) * 4 ** (levels - 1) :]  # the smallest: without its finest
    return torch.cat(outs, 1)
