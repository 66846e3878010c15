"""Pairs of 128-bit hashes at most d bits apart, found without comparing every pair: the search behind `verify
--duplicates` (whole pictures against whole pictures, and against other pictures' windows for cropped copies)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BITS = 128
CHUNK = 4096  # query rows looked up at a time
CANDIDATES = 1 << 22  # candidate pairs compared at a time: memory stays bounded when a bucket is large
SKEW = 50  # real hashes collide in a block this much more often than uniform random ones (dHashes of demo data)
PERMUTATION = np.random.default_rng(0).permutation(BITS)  # the bits blocks are cut from: neighbours are correlated


def near_pairs(query: np.ndarray, base: np.ndarray, distance: int) -> Iterator[np.ndarray]:
    """Arrays [k, 2] (row of `query`, row of `base`) of every pair of hashes (uint64 [n, 2]: high and low words) at
    most `distance` bits apart, each pair once. Multi-index hashing: the bits are cut into m blocks, so many that two
    hashes that near agree in one block to within r bits (m (r + 1) > distance); each query's blocks, exact (r = 0)
    or with each bit flipped in turn too (r = 1), are looked up among the base's blocks, sorted. r is what makes fewer
    lookups and random collisions for these sizes. The bits are shuffled first: a dHash's neighbouring bits compare
    neighbouring pixels, so blocks of them would collide far more often than blocks of bits from all over."""
    if not len(query) or not len(base):
        return
    query, base = _shuffled(query), _shuffled(base)
    flips, blocks = _layout(len(query), len(base), distance)
    tables = []
    for lo, hi in blocks:
        keys = _block(base, lo, hi)
        order = np.argsort(keys, kind="stable")
        tables.append((keys[order], order))
    for a in range(0, len(query), CHUNK):
        rows = np.arange(a, min(a + CHUNK, len(query)))
        for k, ((lo, hi), (keys, order)) in enumerate(zip(blocks, tables, strict=True)):
            qkeys = _block(query[rows], lo, hi)
            for pairs in _lookup(query, base, rows, qkeys, hi - lo, flips, keys, order, distance):
                q, r = pairs[:, 0], pairs[:, 1]
                first = np.ones(len(pairs), bool)  # a pair is yielded by the first block it agrees in, only
                for lo2, hi2 in blocks[:k]:
                    first &= np.bitwise_count(_block(query[q], lo2, hi2) ^ _block(base[r], lo2, hi2)) > flips
                if first.any():
                    yield pairs[first]


def _layout(queries: int, bases: int, distance: int) -> tuple[int, list[tuple[int, int]]]:
    """r (bits flipped per block) and the blocks (bit ranges, at most 64 bits each) that cost least by a count of
    lookups plus the candidate pairs (what uniform random hashes would give, times SKEW)."""
    best = None
    for flips in (0, 1):
        m = max(distance // (flips + 1) + 1, 2)
        width = BITS / m
        probes = 1 + flips * width
        cost = queries * m * probes * 4 + queries * bases * m * probes / 2.0**width * SKEW
        if best is None or cost < best[0]:
            edges = np.linspace(0, BITS, m + 1).round().astype(int)
            best = (cost, flips, list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)))
    return best[1], best[2]


def _shuffled(hashes: np.ndarray) -> np.ndarray:
    """The hashes with their bits in PERMUTATION's order (distances stay as they were)."""
    out = np.empty((len(hashes), 2), np.uint64)
    for a in range(0, len(hashes), 1 << 16):
        part = np.ascontiguousarray(hashes[a : a + (1 << 16)], ">u8").view(np.uint8)
        bits = np.ascontiguousarray(np.unpackbits(part, axis=1)[:, PERMUTATION])
        out[a : a + len(part)] = np.packbits(bits, axis=1).view(">u8")
    return out


def _block(hashes: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Bits lo..hi (from the most significant; at most 64) of each 128-bit hash, as a uint64 key."""
    high, low, u = hashes[:, 0], hashes[:, 1], np.uint64
    if hi <= 64:
        value = high >> u(64 - hi)
    elif lo >= 64:
        value = low >> u(128 - hi)
    else:  # across the two words
        value = (high << u(hi - 64)) | (low >> u(128 - hi))
    return value & u((1 << (hi - lo)) - 1)


def _lookup(query, base, rows, qkeys, width, flips, keys, order, distance) -> Iterator[np.ndarray]:
    """The pairs within `distance` among those whose block keys match a query key (or it with one bit flipped)."""
    probes = [qkeys] + [qkeys ^ np.uint64(1 << bit) for bit in range(width)] * flips
    probe_rows = np.tile(rows, len(probes))
    probe_keys = np.concatenate(probes)
    start = np.searchsorted(keys, probe_keys, "left")
    count = np.searchsorted(keys, probe_keys, "right") - start
    hit = np.flatnonzero(count)
    start, count, probe_rows = start[hit], count[hit], probe_rows[hit]
    total = np.cumsum(count)
    if not len(total):
        return
    ends = np.unique(np.r_[np.searchsorted(total, np.arange(1, total[-1] // CANDIDATES + 1) * CANDIDATES), len(count)])
    for a, b in zip(np.r_[0, ends[:-1]], ends, strict=True):  # probes whose candidates fit CANDIDATES, at a time
        n = count[a:b]
        q = np.repeat(probe_rows[a:b], n)
        offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        r = order[np.repeat(start[a:b], n) + offsets]
        apart = np.bitwise_count(query[q] ^ base[r]).sum(1)
        near = apart <= distance
        yield np.stack([q[near], r[near]], 1)
