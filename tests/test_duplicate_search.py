"""The parts behind `verify --duplicates`: the search finds every pair of 128-bit hashes within d bits, each once, as
a comparison of all pairs does; the thumbnails the hashes are taken from average exactly the area of each cell; the
colour-layout check tells a cropped copy from a picture of other colours."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from fastload import hamming
from fastload.picture_hash import LAYOUT_GAP, WINDOWS, layout_gap, small, thumbnails


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


def test_layout_gap_tells_a_crop_from_a_picture_of_other_colours(demo_dataset):
    folder = f"{demo_dataset}/images/train"
    with open(f"{folder}/{sorted(os.listdir(folder))[3]}", "rb") as f:
        original = small(f.read())
    w, h = original.size
    window = WINDOWS.index((0.14, 0.75, 0.25))
    box = (0.75 * 0.14 * w, 0.25 * 0.14 * h, (0.75 * 0.14 + 0.86) * w, (0.25 * 0.14 + 0.86) * h)
    copy = original.resize((round(w * 0.86 * 0.7), round(h * 0.86 * 0.7)), Image.Resampling.BILINEAR, box=box)
    assert layout_gap(copy, original, window, mirrored=False) < LAYOUT_GAP / 4
    flipped = copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert layout_gap(flipped, original, window, mirrored=True) < LAYOUT_GAP / 4
    assert layout_gap(flipped, original, window, mirrored=False) > layout_gap(flipped, original, window, True)
    swapped = np.asarray(copy).copy()
    swapped[:, : swapped.shape[1] // 2] = swapped[:, : swapped.shape[1] // 2, ::-1]  # R and B change places
    assert layout_gap(Image.fromarray(swapped), original, window, mirrored=False) > LAYOUT_GAP
