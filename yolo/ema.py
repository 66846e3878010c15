"""Exponential moving average of the model weights (YOLOv5's ModelEMA: decay 0.9999 ramped by tau 2000), holding
flat lists of tensors so that a step is one multi-tensor update (the Triton kernel on CUDA, torch's foreach lerp
elsewhere) plus one copy of the integer buffers. With the fused kernels off (`FASTLOAD_KERNELS=reference`), YOLOv5's
per-tensor update, so that on-vs-off compares with what YOLOv5 users run."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from yolo import kernels
from yolo.kernels.ema import EmaTriton, ema_foreach, ema_reference


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay_max, self.tau, self.updates = decay, tau, updates
        self._model: nn.Module | None = None
        state = self.ema.state_dict(keep_vars=True)
        self._keys_float = [k for k, v in state.items() if v.dtype.is_floating_point]
        self._keys_other = [k for k, v in state.items() if not v.dtype.is_floating_point]
        self._ema_float = [state[k].data for k in self._keys_float]
        self._ema_other = [state[k].data for k in self._keys_other]

    def decay(self, updates: int) -> float:
        return self.decay_max * (1 - math.exp(-updates / self.tau))

    def _bind(self, model: nn.Module) -> None:
        """Cache the model's tensors once: parameters and buffers are updated in place, so the lists stay valid."""
        state = model.state_dict(keep_vars=True)
        self._model_float = [state[k].data for k in self._keys_float]
        self._model_other = [state[k].data for k in self._keys_other]
        self._model = model
        self._triton = None
        if self._ema_float[0].is_cuda:
            try:
                self._triton = EmaTriton(self._ema_float, self._model_float)
            except ValueError:  # e.g. half-precision or differently laid out weights: the foreach lerp
                self._triton = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self._model is not model:
            self._bind(model)
        self.updates += 1
        d = self.decay(self.updates)
        if not kernels.fused_enabled():  # kernels off (A/B runs): YOLOv5's own update, two launches per tensor
            ema_reference(self._ema_float, self._model_float, d)
        elif self._triton is not None:
            self._triton(d)  # one launch over all tensors (CUDA)
        else:
            ema_foreach(self._ema_float, self._model_float, d)
        if self._ema_other:
            torch._foreach_copy_(self._ema_other, self._model_other)  # e.g. BatchNorm's num_batches_tracked
