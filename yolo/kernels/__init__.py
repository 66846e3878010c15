"""Fused kernels, each beside its plain PyTorch reference. CUDA tensors take the fused version, CPU tensors the
reference; `FASTLOAD_KERNELS=reference` (or `use_fused(False)`) turns the fused ones off for A/B runs."""

from __future__ import annotations

import os

import torch

from yolo.kernels.ciou import ciou_fused, ciou_reference

_fused = os.environ.get("FASTLOAD_KERNELS", "fused") != "reference"


def use_fused(on: bool) -> None:
    global _fused
    _fused = on


def fused_enabled() -> bool:
    return _fused


def ciou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CIoU of paired boxes [N, 4] (cx, cy, w, h) -> [N]; YOLOv5's bbox_iou(xywh=True, CIoU=True)."""
    if _fused and pred.is_cuda:
        return ciou_fused(pred, target)
    return ciou_reference(pred, target)
