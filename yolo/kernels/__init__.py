"""Fused kernels, each beside its plain PyTorch reference. CUDA tensors take the fused version, CPU tensors the
reference; `FASTLOAD_KERNELS=reference` (or `use_fused(False)`) turns the fused ones off for A/B runs, and
`use_fused(True, cpu=True)` gives CPU tensors the fused version too, in Triton's interpreter (TRITON_INTERPRET=1:
tests on machines without a GPU)."""

from __future__ import annotations

import os

import torch

from yolo.kernels.box_loss import box_loss_fused, box_loss_reference

_fused = os.environ.get("FASTLOAD_KERNELS", "fused") != "reference"
_cpu = False


def use_fused(on: bool, cpu: bool = False) -> None:
    global _fused, _cpu
    _fused, _cpu = on, on and cpu


def fused_enabled() -> bool:
    return _fused


def _fuse(t: torch.Tensor) -> bool:
    return _fused and (t.is_cuda or _cpu)


def box_loss(p: torch.Tensor, anchors: torch.Tensor, tbox: torch.Tensor, iou_dtype: torch.dtype):
    """One layer's box-loss term from the matched cells' raw (x, y, w, h) outputs [N, 4], their anchors [N, 2] and
    targets [N, 4] -> ((1 - CIoU).mean(), CIoU.detach().clamp(0) in `iou_dtype`, objectness's target)."""
    if _fuse(p):
        return box_loss_fused(p, anchors, tbox, iou_dtype=iou_dtype)
    loss, iou = box_loss_reference(p, anchors, tbox)
    return loss, iou.to(iou_dtype)
