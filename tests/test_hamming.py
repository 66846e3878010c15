"""The search behind `verify --duplicates`: every pair of 128-bit hashes within d bits, each once, as a comparison
of all pairs finds them; and the thumbnails the hashes are taken from average exactly the area of each cell."""

from __future__ import annotations

import numpy as np
import pytest

from fastload import hamming
from fastload.duplicates import thumbnails


def random_hashes(rng, n: int) -> np.ndarray:
    return rng.integers(0, 1 << 32, (n, 4), dtype=np.uint64).reshape(n, 2, 2) @ np.uint64([1 << 32, 1])


@pytest.mark.parametrize("distance", [0, 1, 5, 10, 20])
def test_near_pairs_equal_all_pairs_compared(distance, monkeypatch):
    monkeypatch.setattr(hamming, "CANDIDATES", 500)  # several slices of candidates per lookup
    rng = np.random.default_rng(distance)
    base = random_hashes(rng, 3000)
    query = base[rng.integers(0, len(base), 400)]
    flipped = rng.integers(0, distance + 3, 400)  # bits flipped per query: most within the distance, some beyond
    flips = rng.random((400, 128)).argsort(1) < flipped[:, None]
    query = query ^ (np.packbits(flips, axis=1).view(">u8").astype(np.uint64))
    got = np.concatenate(list(hamming.near_pairs(query, base, distance)))
    apart = np.bitwise_count(query[:, None] ^ base[None]).sum(-1)
    want = np.argwhere(apart <= distance)
    assert len(want) > 400 * 0.25  # the test holds pairs to find
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist()))  # each once


def test_thumbnails_are_exact_cell_means():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (9, 9, 3), np.uint8)
    big = small.repeat(7, 0).repeat(7, 1)  # 63 x 63: each cell of the whole picture is one pixel of `small`
    grey, colour = thumbnails(big, np.array([[0.0, 0.0, 1.0, 1.0]]))
    assert np.allclose(grey[0], small.astype(np.float64) @ [0.299, 0.587, 0.114], atol=1e-3)
    r, g, b = np.round(small.reshape(-1, 3).mean(0)).astype(int)
    assert int(colour[0]) - 1 == r << 16 | g << 8 | b
    box = np.array([[0.13, 0.21, 0.87, 0.93]])  # cells that cut pixels: against a 20x finer nearest upsampling
    fine = big.repeat(20, 0).repeat(20, 1).astype(np.float64) @ [0.299, 0.587, 0.114]
    edges = [np.round(np.linspace(lo, hi, 10) * 63 * 20).astype(int) for lo, hi in ((0.21, 0.93), (0.13, 0.87))]
    want = [[fine[y0:y1, x0:x1].mean() for x0, x1 in zip(edges[1][:-1], edges[1][1:], strict=True)]
            for y0, y1 in zip(edges[0][:-1], edges[0][1:], strict=True)]  # fmt: skip
    assert np.abs(thumbnails(big, box)[0][0] - want).max() < 2.0
    assert np.abs(thumbnails(big, box)[0][0] - want).mean() < 0.5
