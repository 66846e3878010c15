"""When a run stops early: YOLOv5's EarlyStopping (`--patience`), decided on rank 0, which validates, and told to
every rank under torchrun."""

from __future__ import annotations

import numpy as np
import torch


class EarlyStop:
    """YOLOv5's EarlyStopping: stop once `patience` epochs pass without a fitness at least the best so far (at
    least: a run still at 0 mAP goes on); patience 0 never stops. `best` is best.pt's fitness."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.best_epoch = patience, -1.0, 0

    def update(self, epoch: int, fitness: float) -> bool:
        """Record a validated epoch's fitness; whether it is the new best (best.pt takes its weights)."""
        if fitness < self.best:
            return False
        self.best, self.best_epoch = fitness, epoch
        return True

    def due(self, epoch: int) -> bool:
        """Whether the patience has run out at `epoch` (unless `epoch` itself is better: validate it first)."""
        return self.patience > 0 and epoch - self.best_epoch >= self.patience


def from_rank0(values: np.ndarray, world: int, device: torch.device) -> np.ndarray:
    """Rank 0's `values` on every rank (the others wait for them while rank 0 validates)."""
    if world == 1:
        return values
    shared = torch.as_tensor(np.asarray(values, np.float64), device=device)
    torch.distributed.broadcast(shared, 0)
    return shared.cpu().numpy()


def agree_to_stop(stop: bool, world: int, device: torch.device) -> bool:
    """Rank 0's early-stop decision, told to every rank."""
    return bool(from_rank0(np.array([float(stop)]), world, device)[0])
