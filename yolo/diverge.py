"""Steps whose loss is not finite (NaN or inf: too high a learning rate, AdamW at SGD's lr0, an AMP overflow) are
skipped, as CUDA's GradScaler skips them under AMP, and left out of the logged losses; each epoch says how many. A
run that diverged (half or more of an epoch's steps not finite, or weights no longer finite) stops with one line
before last.pt is written over, so last.pt keeps the last good epoch."""

from __future__ import annotations

import torch

from fastload.errors import JobFailed

ADVICE = "lower lr0 (--hyp FILE; AdamW wants ~0.001)"


class Diverged(JobFailed):
    """Training no longer gives finite losses or weights: one line, exit 1."""

    then = "start from it with --weights"  # --resume would take the run's own hyp again


class LossGuard:
    """Counts an epoch's non-finite losses on the device (no sync per step) and keeps the running mean of the
    finite ones. On CPU it also skips the optimiser step of non-finite gradients, which the GradScaler does on
    CUDA; under torchrun the counts are summed over the ranks, so every rank decides alike."""

    def __init__(self, device: torch.device, world: int = 1, terms: int = 3) -> None:
        self.device, self.world, self.terms = device, world, terms  # the loss's terms: 4 with masks (seg)
        self.scaler_skips = device.type == "cuda"  # the GradScaler (enabled on CUDA) checks the gradients itself
        self.start()

    def start(self) -> None:
        self.sum = torch.zeros(self.terms, device=self.device)
        self.bad = torch.zeros((), dtype=torch.int64, device=self.device)
        self.steps = 0

    def add(self, loss: torch.Tensor, items: torch.Tensor) -> None:
        finite = torch.isfinite(loss).all()
        self.bad += ~finite
        self.sum += torch.where(finite, items.detach(), 0.0)
        self.steps += 1

    def mean(self) -> torch.Tensor:
        """The epoch's mean (box, obj, cls) loss over its finite steps ((box, seg, obj, cls) for a segmentation)."""
        return self.sum / (self.steps - self.bad).clamp(min=1)

    def may_step(self, grad_norm: torch.Tensor) -> bool:
        """Whether to take the optimiser step: the gradients' norm is finite (CPU; CUDA: left to the scaler)."""
        return self.scaler_skips or bool(torch.isfinite(grad_norm))

    def end(self, epoch: int, *models: torch.nn.Module) -> int:
        """The epoch's count of skipped steps (over all ranks); Diverged if half or more, or if a weight or buffer
        of `models` is no longer finite."""
        steps = torch.tensor(self.steps, device=self.device)
        counts = torch.stack([self.bad, steps, *(_nonfinite_tensors(m, self.device) for m in models)])
        if self.world > 1:
            torch.distributed.all_reduce(counts)
        bad, steps, *broken = counts.tolist()
        what = f"{bad} of {steps} steps had a non-finite loss"
        if any(broken):
            raise Diverged(f"training diverged in epoch {epoch + 1}: the weights are no longer finite ({what}); "
                           f"{ADVICE}")  # fmt: skip
        if steps and 2 * bad >= steps:
            raise Diverged(f"training diverged in epoch {epoch + 1}: {what} (NaN or inf); {ADVICE}")
        return int(bad)


def _nonfinite_tensors(model: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """How many of the model's floating-point parameters and buffers hold a NaN or inf (a tensor: no sync)."""
    floats = [t for t in model.state_dict().values() if t.is_floating_point()]
    if not floats:
        return torch.zeros((), dtype=torch.int64, device=device)
    return (~torch.stack([torch.isfinite(t).all() for t in floats])).sum().to(device)
