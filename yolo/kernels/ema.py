"""EMA update v = d * v + (1 - d) * p over all floating-point parameters and buffers: the per-tensor reference
(YOLOv5's loop) and the multi-tensor version (`torch._foreach_lerp_`, one call for all tensors). The Triton
multi-tensor kernel over a flat view lands here beside them (issue 5)."""

from __future__ import annotations

import torch


def ema_reference(ema: list[torch.Tensor], model: list[torch.Tensor], d: float) -> None:
    """YOLOv5's ModelEMA.update: two small kernels per tensor."""
    for v, p in zip(ema, model, strict=True):
        v *= d
        v += (1 - d) * p.detach()


def ema_foreach(ema: list[torch.Tensor], model: list[torch.Tensor], d: float) -> None:
    """One multi-tensor launch: v += (1 - d) * (p - v)."""
    torch._foreach_lerp_(ema, [p.detach() for p in model] if model and model[0].requires_grad else model, 1 - d)
