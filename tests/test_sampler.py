"""The epoch sampler: seeded, different per epoch, disjoint across ranks and covering the epoch."""

import numpy as np
import pytest

from fastload.loader.sampler import EpochSampler


@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("groups", [None, [range(k, min(k + 7, 50)) for k in range(0, 50, 7)]])
def test_ranks_are_disjoint_and_cover_the_epoch(world, groups):
    samplers = [EpochSampler(50, seed=3, rank=r, world=world, groups=groups) for r in range(world)]
    parts = [s.indices(epoch=2) for s in samplers]
    assert len({len(p) for p in parts}) == 1 and all(len(p) == len(samplers[0]) for p in parts)
    together = np.concatenate(parts)
    assert set(together.tolist()) == set(range(50))
    assert len(together) - 50 < world  # only the padding repeats
    if 50 % world == 0:
        assert sorted(together.tolist()) == list(range(50))


def test_seeded_and_different_per_epoch():
    a, b = EpochSampler(100, seed=1), EpochSampler(100, seed=1)
    assert np.array_equal(a.indices(0), b.indices(0))
    assert not np.array_equal(a.indices(0), a.indices(1))
    assert not np.array_equal(a.indices(0), EpochSampler(100, seed=2).indices(0))


def test_shard_aware_order_reads_each_shard_in_one_window():
    groups = [range(k, k + 10) for k in range(0, 100, 10)]
    order = EpochSampler(100, seed=0, groups=groups, window=2).order(0)
    assert sorted(order.tolist()) == list(range(100))
    shard = order // 10
    for k in range(0, 100, 20):  # each block of 20 records comes from exactly 2 shards
        assert len(set(shard[k : k + 20].tolist())) == 2


@pytest.mark.parametrize("world", [1, 3, 4])
def test_validation_split_is_every_record_exactly_once_in_order(world):
    parts = [EpochSampler(10, rank=r, world=world, shuffle=False, pad=False).indices(0) for r in range(world)]
    assert np.concatenate(parts).tolist() == list(range(10))
