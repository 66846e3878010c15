"""Which records each rank reads in each epoch: a seeded permutation per epoch, split disjointly across DDP ranks.

For Zarr stores the permutation is shard-aware: shards are shuffled, then records are shuffled inside a window
of `window` consecutive shards, so each shard is fetched once per epoch and reads stay large. With `weights`
(YOLOv5's --image-weights) an epoch is instead n draws with replacement, each record in proportion to its weight.
"""

from __future__ import annotations

import numpy as np

from fastload.store.base import grouped_permutation


class EpochSampler:
    """Record indices for (epoch, rank): equal length on every rank, together covering the epoch.

    Training (`shuffle=True`, `pad=True`): the epoch's order is padded by wrapping around so that every rank gets
    the same number of samples, as torch's DistributedSampler does. Validation (`shuffle=False`, `pad=False`): the
    records in order, split into contiguous blocks, each record exactly once.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
        pad: bool = True,
        groups: list[range] | None = None,
        window: int = 2,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.shuffle, self.pad, self.window = shuffle, pad, window
        self.groups = groups if groups and len(groups) > 1 else None
        self.weights: np.ndarray | None = None  # per record, >= 0: the epoch's draws (set_weights)

    def set_weights(self, weights: np.ndarray | None) -> None:
        """Draw each epoch's n records with replacement in proportion to `weights` (None: the permutation). A
        record of weight 0 is never drawn; weights that are all 0 draw uniformly."""
        if weights is not None:
            weights = np.asarray(weights, np.float64)
            if weights.shape != (self.n,) or not np.isfinite(weights).all() or (weights < 0).any():
                raise ValueError(f"need {self.n} finite weights >= 0, one per record")
        self.weights = weights

    def order(self, epoch: int) -> np.ndarray:
        """The whole epoch's order (all ranks), deterministic in (seed, epoch)."""
        if not self.shuffle:
            return np.arange(self.n)
        rng = np.random.default_rng([self.seed, epoch])
        if self.weights is not None:  # as YOLOv5's random.choices(range(n), weights, k=n)
            total = self.weights.sum()
            return rng.choice(self.n, self.n, p=self.weights / total if total > 0 else None)
        if self.groups is None:
            return rng.permutation(self.n)
        return grouped_permutation(rng, self.groups, self.window)  # mix records across a window of shards

    def __len__(self) -> int:
        if self.pad:
            return -(-self.n // self.world)
        return (self.rank + 1) * self.n // self.world - self.rank * self.n // self.world

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's records for `epoch`."""
        order = self.order(epoch)
        if not self.pad:
            return order[self.rank * self.n // self.world : (self.rank + 1) * self.n // self.world]
        per_rank = len(self)
        total = per_rank * self.world
        if total > len(order) and len(order):
            order = np.resize(order, total)  # wrap around: a few records appear twice this epoch
        if self.groups is None:
            return order[self.rank : total : self.world]  # interleaved: each rank's share is spread over the epoch
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]  # contiguous: keeps shard locality
