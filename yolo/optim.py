"""YOLOv5's optimisation: three parameter groups (biases, weights with decay, normalisation weights without),
SGD with Nesterov momentum, Adam, AdamW or RMSProp (YOLOv5's choices), weight decay scaled to the nominal batch of
64, linear or cosine decay to lr0 * lrf, and the warmup of lr, momentum and gradient accumulation, as train.py does."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

NOMINAL_BATCH = 64
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSProp")  # YOLOv5's --optimizer names


@dataclass(frozen=True)
class OptimHyp:
    """Defaults from YOLOv5's hyp.scratch-low.yaml."""

    lr0: float = 0.01  # initial learning rate (SGD; use ~0.001 for AdamW)
    lrf: float = 0.01  # final learning rate = lr0 * lrf
    momentum: float = 0.937  # SGD momentum / Adam beta1
    weight_decay: float = 5e-4
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    nominal_batch: int = 64  # accumulate gradients to about this many images per step (YOLOv5's nbs)


def accumulation(batch: int, nominal: int = NOMINAL_BATCH) -> int:
    """Steps to accumulate so that one optimizer step sees ~64 images."""
    return max(round(nominal / batch), 1)


def build_optimizer(
    model: nn.Module, name: str, batch: int, hyp: OptimHyp, fused: bool | None = None
) -> torch.optim.Optimizer:
    """Groups: 0 biases (no decay), 1 weights (decay), 2 normalisation weights (no decay). `fused` (default: on
    CUDA) is torch's one-kernel step, which also takes AMP's inf check from the GradScaler on the device: the
    foreach step makes GradScaler.step wait for the backward to finish (`.item()`) every step."""
    biases, weights, norm_weights = [], [], []
    norms = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname == "bias":
                biases.append(p)
            elif pname == "weight" and isinstance(module, norms):
                norm_weights.append(p)
            else:
                weights.append(p)
    if fused is None:
        fused = next(model.parameters()).is_cuda
    if name == "SGD":
        opt = torch.optim.SGD(biases, lr=hyp.lr0, momentum=hyp.momentum, nesterov=True, fused=fused)
    elif name == "Adam":  # YOLOv5's: the weights' decay is an L2 term in the gradient, as torch's Adam does it
        opt = torch.optim.Adam(biases, lr=hyp.lr0, betas=(hyp.momentum, 0.999), fused=fused)
    elif name == "AdamW":
        opt = torch.optim.AdamW(biases, lr=hyp.lr0, betas=(hyp.momentum, 0.999), weight_decay=0.0, fused=fused)
    elif name == "RMSProp":  # torch has no fused RMSprop step
        opt = torch.optim.RMSprop(biases, lr=hyp.lr0, momentum=hyp.momentum)
    else:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {name!r}")
    decay = hyp.weight_decay * batch * accumulation(batch, hyp.nominal_batch) / hyp.nominal_batch
    opt.add_param_group({"params": weights, "weight_decay": decay})
    opt.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    for group in opt.param_groups:
        group["initial_lr"] = hyp.lr0
    return opt


def lr_factor(epoch: float, epochs: int, lrf: float, cosine: bool = False) -> float:
    """Multiplier of lr0 at `epoch`: 1 at the start, lrf at the end."""
    if cosine:
        return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return (1 - epoch / epochs) * (1.0 - lrf) + lrf


class Schedule:
    """Per step: warmup over max(warmup_epochs * batches per epoch, 100) steps, then YOLOv5's lr factor. YOLOv5's
    LambdaLR steps at the end of each epoch from `last_epoch = start_epoch - 1`, so after warmup an epoch runs at the
    previous epoch's factor (epoch e at lf(e - 1), the last at lf(epochs - 2)), except the epoch in which warmup
    ends: its last warmup step sets lf(e), which holds to the epoch's end."""

    def __init__(
        self,
        opt: torch.optim.Optimizer,
        hyp: OptimHyp,
        epochs: int,
        batches_per_epoch: int,
        batch: int,
        cosine: bool = False,
    ) -> None:
        self.opt, self.hyp, self.epochs, self.cosine = opt, hyp, epochs, cosine
        # YOLOv5 warms up for at least 100 steps; warmup_epochs=0 turns warmup off
        self.warmup_steps = max(round(hyp.warmup_epochs * batches_per_epoch), 100) if hyp.warmup_epochs > 0 else 0
        self.batch, self.batches_per_epoch = batch, batches_per_epoch

    def step(self, epoch: int, ni: int) -> int:
        """Set lr and momentum for global step `ni` in `epoch`; returns how many steps to accumulate."""
        behind = ni > self.warmup_steps and epoch * self.batches_per_epoch > self.warmup_steps  # warmup ended earlier
        factor = lr_factor(epoch - behind, self.epochs, self.hyp.lrf, self.cosine)
        if ni > self.warmup_steps:
            for group in self.opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
            return accumulation(self.batch, self.hyp.nominal_batch)
        xi = [0, self.warmup_steps]
        for j, group in enumerate(self.opt.param_groups):
            # the bias lr falls from warmup_bias_lr, every other lr rises from 0
            start = self.hyp.warmup_bias_lr if j == 0 else 0.0
            group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * factor]))
            if "momentum" in group:
                group["momentum"] = float(np.interp(ni, xi, [self.hyp.warmup_momentum, self.hyp.momentum]))
        return max(1, int(np.interp(ni, xi, [1, self.hyp.nominal_batch / self.batch]).round()))
