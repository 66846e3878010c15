"""`fastload verify --duplicates`: images a store holds more than once, byte for byte or nearly (re-encoded,
resized, mirrored), and which of them sit in two splits: a val image that is also trained on makes mAP measure
memory."""

from __future__ import annotations

import hashlib
import io
from functools import partial

import numpy as np
from PIL import Image
from tqdm import tqdm

from fastload.pool import ordered_map
from fastload.store import open_store, read_meta

CHUNK = 256  # records a worker hashes per task
LISTED = 1000  # groups the report lists; the counts cover all
MEAN_GAP = 12  # near duplicates' mean colours differ by at most this per channel (dHash sees no colour or brightness)


def fingerprints(path: str, task: tuple[str, int, int]) -> np.ndarray:
    """[n, 6] uint64 of records start..stop of a split: a hash of each image's bytes; its dHash, 128 bits in two words
    (in a 9x9 grey thumbnail, is each of 8x8 pixels brighter than its right neighbour, and than the one below); its
    thumbnail's mean colour (R << 16 | G << 8 | B, plus one); and the dHash of its mirror image (the thumbnail
    flipped left to right). dHashes and colour are 0 for an image that does not decode (the exact hash still groups
    its copies)."""
    split, start, stop = task
    store = open_store(path, split)
    out = np.zeros((stop - start, 6), np.uint64)
    for row, i in enumerate(range(start, stop)):
        data = store.image(i)
        out[row, 0] = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (64, 64))  # a JPEG decodes at 1/2 to 1/8 scale (in the DCT): a fraction of the cost
                thumb = im.convert("RGB").resize((9, 9), Image.Resampling.BOX)
                grey = np.asarray(thumb.convert("L"), np.int16)
                r, g, b = np.asarray(thumb, np.float32).mean((0, 1)).round().astype(np.uint64)
        except Exception:  # a damaged image: `verify` names it; here only its bytes count
            continue
        out[row, 1:3] = _dhash(grey)
        out[row, 3] = (r << 16 | g << 8 | b) + 1  # 0: not decoded
        out[row, 4:6] = _dhash(grey[:, ::-1])  # (a box-filtered thumbnail of the mirror is the thumbnail mirrored)
    return out


def _colour_gap(a: np.uint64, b: np.uint64) -> int:
    """The largest difference of two packed mean colours in one channel."""
    a, b = int(a) - 1, int(b) - 1
    return max(abs((a >> k & 255) - (b >> k & 255)) for k in (16, 8, 0))


def _dhash(grey: np.ndarray) -> np.ndarray:
    bits = np.concatenate([(grey[:8, 1:] > grey[:8, :-1]).ravel(), (grey[1:, :8] > grey[:-1, :8]).ravel()])
    return np.packbits(bits).view(">u8")


def find_duplicates(path: str, distance: int = 8, workers: int = 1, quiet: bool = False, mirrored: bool = True) -> dict:
    """Groups of records whose images are equal byte for byte, or whose dHashes (one's against the other's or against
    its mirror image's) differ in at most `distance` of their 128 bits, with mean colours at most MEAN_GAP apart in
    each channel. Each group says whether it spans splits, and its kind: exact, near, or mirrored (a member matched
    only as another's mirror image: what a flip-augmented export holds). `mirrored` False: mirror images are not
    compared."""
    splits = list(read_meta(path)[1]["splits"])
    where, prints = [], []
    for s, split in enumerate(splits):
        n = len(open_store(path, split))
        tasks = [(split, a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]
        with tqdm(total=n, desc=f"hash {split}", unit="img", disable=quiet or None, leave=False) as bar:
            for got in ordered_map(partial(fingerprints, path), tasks, workers, batch=1):
                prints.append(got)
                bar.update(len(got))
        where += [(s, i) for i in range(n)]
    prints = np.concatenate(prints) if prints else np.zeros((0, 6), np.uint64)
    groups = _Groups(len(prints))
    for members in _same(prints[:, 0]):  # byte for byte
        groups.join(members)
    decoded = np.flatnonzero(prints[:, 3])
    n = len(decoded)
    columns = [prints[decoded, 1:3], prints[decoded, 4:6]][: 1 + mirrored]
    hashes = np.concatenate(columns).astype(">u8").view(np.uint8).reshape(-1, 16)
    near, mirrored = set(), set()
    for a, b in _near(hashes, distance):  # rows n.. are the mirror images: a pair of two of them is one of rows ..n
        if a >= n or b - n == a:
            continue  # two mirror images, or an image and its own (a symmetric one)
        pair = (int(decoded[a]), int(decoded[b % n]))
        if _colour_gap(prints[pair[0], 3], prints[pair[1], 3]) <= MEAN_GAP:
            (mirrored if b >= n else near).add(tuple(sorted(pair)))
            groups.join(pair)
    flipped = {m for pair in mirrored - near for m in pair}
    found, stores = [], [open_store(path, split) for split in splits]
    for members in groups.sets():
        exact = len(set(prints[members, 0].tolist())) == 1
        kind = "exact" if exact else "mirrored" if flipped.intersection(members.tolist()) else "near"
        spanned = sorted({splits[where[m][0]] for m in members})
        found.append({
            "kind": kind,
            "splits": spanned,
            "images": [{"split": splits[where[m][0]], "index": where[m][1],
                        "path": stores[where[m][0]].path_of(where[m][1])} for m in members],
        })  # fmt: skip
    found.sort(key=lambda g: (len(g["splits"]) < 2, g["images"][0]["split"], g["images"][0]["index"]))
    return {
        "images": len(prints),
        "distance": distance,
        "groups": len(found),
        "images_in_groups": sum(len(g["images"]) for g in found),
        "across_splits": sum(len(g["splits"]) > 1 for g in found),
        "listed": found[:LISTED],
    }


def _same(keys: np.ndarray):
    """Index arrays of the entries of `keys` that share a value, for each value held more than once."""
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    for run in np.split(order, cuts):
        if len(run) > 1:
            yield run


def _near(packed: np.ndarray, distance: int):
    """Pairs (2-index arrays) of the rows of `packed` (uint8 [n, 16]: 128-bit hashes) at most `distance` bits apart:
    two such hashes agree exactly on at least one of distance + 1 bit blocks (pigeonhole), so only those sharing a
    block are compared."""
    bits = np.unpackbits(packed, axis=1)
    edges = np.linspace(0, bits.shape[1], distance + 2).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        _, keys = np.unique(np.packbits(bits[:, lo:hi], axis=1), axis=0, return_inverse=True)
        for run in _same(keys.ravel()):
            x = packed[run]
            for a in range(0, len(run), CHUNK):  # rows of the pair table at a time: a big bucket stays small
                apart = POPCOUNT[x[a : a + CHUNK, None, :] ^ x[None, :, :]].sum(-1, dtype=np.int32)
                i, j = np.nonzero(apart <= distance)
                for pair in zip(run[a + i], run[j], strict=True):
                    if pair[0] < pair[1]:
                        yield np.array(pair)


POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint8)


class _Groups:
    """Union-find over record numbers."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return int(i)

    def join(self, members) -> None:
        root = self.find(int(members[0]))
        for m in members[1:]:
            other = self.find(int(m))
            if other != root:
                self.parent[other] = root

    def sets(self) -> list[np.ndarray]:
        """Each group of two or more records."""
        return list(_same(np.array([self.find(i) for i in range(len(self.parent))])))
