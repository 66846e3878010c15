"""`fastload verify --duplicates`: images a store holds more than once, byte for byte or nearly (re-encoded,
resized, mirrored), and which of them sit in two splits: a val image that is also trained on makes mAP measure
memory."""

from __future__ import annotations

import hashlib
from functools import lru_cache, partial

import numpy as np
from PIL import Image
from tqdm import tqdm

from fastload.hamming import near_pairs
from fastload.picture_hash import (
    CROP_DISTANCE,
    LAYOUT_GAP,
    WINDOW_COLUMNS,
    WINDOWS,
    dhash,
    layout_gap,
    small,
    window_prints,
)
from fastload.pool import ordered_map
from fastload.store import open_store, read_meta

CHUNK = 256  # records a worker hashes per task
LISTED = 1000  # groups the report lists; the counts cover all
MEAN_GAP = 12  # near duplicates' mean colours differ by at most this per channel (dHash sees no colour or brightness)


def fingerprints(path: str, task: tuple[str, int, int], windows: bool = False) -> np.ndarray:
    """[n, 6] uint64 of records start..stop of a split: a hash of each image's bytes; its dHash, 128 bits in two words
    (in a 9x9 grey thumbnail, is each of 8x8 pixels brighter than its right neighbour, and than the one below); its
    thumbnail's mean colour (R << 16 | G << 8 | B, plus one); and the dHash of its mirror image (the thumbnail
    flipped left to right). dHashes and colour are 0 for an image that does not decode (the exact hash still groups
    its copies). `windows`: the columns of `fastload.picture_hash.window_prints` after them."""
    split, start, stop = task
    store = open_store(path, split)
    out = np.zeros((stop - start, 6 + WINDOW_COLUMNS * windows), np.uint64)
    for row, i in enumerate(range(start, stop)):
        data = store.image(i)
        out[row, 0] = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
        rgb = small(data)
        if rgb is None:  # a damaged image: `verify` names it; here only its bytes count
            continue
        thumb = rgb.resize((9, 9), Image.Resampling.BOX)
        grey = np.asarray(thumb.convert("L"), np.int16)[None]
        r, g, b = np.asarray(thumb, np.float32).mean((0, 1)).round().astype(np.uint64)
        out[row, 1:3], out[row, 3] = dhash(grey)[0], (r << 16 | g << 8 | b) + 1  # colour 0: not decoded
        # (a box-filtered thumbnail of the mirror is the thumbnail mirrored)
        out[row, 4:6] = dhash(grey[:, :, ::-1])[0]
        if windows:
            out[row, 6:] = window_prints(rgb)
    return out


def _colour_gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The largest difference of packed mean colours, pair by pair, in one channel."""
    a, b = a.astype(np.int64) - 1, b.astype(np.int64) - 1
    return np.max([abs((a >> k & 255) - (b >> k & 255)) for k in (16, 8, 0)], axis=0)


def find_duplicates(
    path: str,
    distance: int = 8,
    workers: int = 1,
    quiet: bool = False,
    mirrored: bool = True,
    crops: bool = False,
    crop_distance: int = CROP_DISTANCE,
    most: int | None = LISTED,
) -> dict:
    """Groups of records whose images are equal byte for byte, or whose dHashes (one's against the other's or against
    its mirror image's) differ in at most `distance` of their 128 bits, with mean colours at most MEAN_GAP apart in
    each channel. Each group says whether it spans splits, and its kind: exact, near, mirrored (a member matched
    only as another's mirror image: what a flip-augmented export holds) or cropped. `mirrored` False: mirror images
    are not compared. `crops`: each image's dHash (and its mirror image's) is also compared with every other's
    WINDOWS, at most `crop_distance` bits apart, their colours too: a member matched only so makes the group
    cropped (what an export with a crop augmentation holds). `most`: the groups listed (None: all)."""
    splits = list(read_meta(path)[1]["splits"])
    where, prints = [], []
    for s, split in enumerate(splits):
        n = len(open_store(path, split))
        tasks = [(split, a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]
        with tqdm(total=n, desc=f"hash {split}", unit="img", disable=quiet or None, leave=False) as bar:
            for got in ordered_map(partial(fingerprints, path, windows=crops), tasks, workers, batch=1):
                prints.append(got)
                bar.update(len(got))
        where += [(s, i) for i in range(n)]
    prints = np.concatenate(prints) if prints else np.zeros((0, 6 + WINDOW_COLUMNS * crops), np.uint64)
    groups = _Groups(len(prints))
    for members in _same(prints[:, 0]):  # byte for byte
        groups.join(members)
    firsts = np.unique(prints[:, 0], return_index=True)[1]  # one record of each exact copy: the others follow it
    decoded = np.sort(firsts[prints[firsts, 3] != 0])
    whole, colour = prints[decoded, 1:3], prints[decoded, 3]
    searches = {"near": (whole, colour, 1, distance)}  # what to compare each whole dHash with; rows per image
    if mirrored:
        searches["mirrored"] = (prints[decoded, 4:6], colour, 1, distance)
    if crops:
        windows = prints[decoded, 10:].reshape(-1, 3)  # the windows of one image, then the next's
        crop_check = _CropCheck(path, splits, where)
        searches["cropped"] = (windows[:, :2], windows[:, 2], len(WINDOWS), crop_distance)
    matched = {kind: np.zeros(len(prints), bool) for kind in searches}  # records that joined a group so
    for kind, (base, colours, per, within) in searches.items():
        asking, queries = np.arange(len(decoded)), [whole]  # the rows of `decoded` compared with the base: hashes
        if kind == "cropped":  # one image of each group so far (a video's frames: one) against every image's windows
            asking = np.unique(groups.roots()[decoded], return_index=True)[1]
            queries = [prints[decoded[asking], 6:8], prints[decoded[asking], 8:10]][: 1 + mirrored]
        for flipped, query in enumerate(queries):
            for pairs in near_pairs(query, base, within):
                a, b = asking[pairs[:, 0]], pairs[:, 1]
                keep = (a != b // per) & (_colour_gaps(colour[a], colours[b]) <= MEAN_GAP)
                x, y, window = decoded[a[keep]], decoded[b[keep] // per], b[keep] % per
                roots = groups.roots()
                new = roots[x] != roots[y]  # a pair within one group adds nothing (a video's frames give many)
                x, y, window = x[new], y[new], window[new]
                if kind != "cropped":  # joined all at once
                    matched[kind][x] = matched[kind][y] = True
                    groups.join_pairs(x, y)
                    continue
                for p, q, w in zip(x.tolist(), y.tolist(), window.tolist(), strict=True):  # each checked apart
                    if groups.find(p) != groups.find(q) and crop_check(p, q, w, bool(flipped)):
                        matched[kind][[p, q]] = True
                        groups.join((p, q))
    none = np.zeros(len(prints), bool)
    mirror, crop = matched.get("mirrored", none), matched.get("cropped", none)
    only = {"mirrored": mirror & ~matched["near"], "cropped": crop & ~matched["near"] & ~mirror}  # matched only so
    listed, stores = [], [open_store(path, split) for split in splits]
    for members in groups.sets():
        exact = len(set(prints[members, 0].tolist())) == 1
        kind = "exact" if exact else next((k for k, m in only.items() if m[members].any()), "near")
        spanned = sorted({splits[where[m][0]] for m in members})
        listed.append({
            "kind": kind,
            "splits": spanned,
            "images": [{"split": splits[where[m][0]], "index": where[m][1],
                        "path": stores[where[m][0]].path_of(where[m][1])} for m in members],
        })  # fmt: skip
    listed.sort(key=lambda g: (len(g["splits"]) < 2, g["images"][0]["split"], g["images"][0]["index"]))
    return {
        "images": len(prints),
        "distance": distance,
        **({"crop_distance": crop_distance} if crops else {}),
        "groups": len(listed),
        "images_in_groups": sum(len(g["images"]) for g in listed),
        "across_splits": sum(len(g["splits"]) > 1 for g in listed),
        "listed": listed[:most],
    }


class _CropCheck:
    """Confirms a cropped copy its dHash matched by the colour layouts (`layout_gap`), decoding the two pictures again
    (the matches are few; the last pictures decoded are kept)."""

    def __init__(self, path: str, splits: list[str], where: list[tuple[int, int]]) -> None:
        self.stores, self.where = [open_store(path, split) for split in splits], where
        self.picture = lru_cache(maxsize=64)(self._picture)

    def _picture(self, record: int):
        split, index = self.where[record]
        return small(self.stores[split].image(index))

    def __call__(self, copy: int, original: int, window: int, mirrored: bool) -> bool:
        return layout_gap(self.picture(copy), self.picture(original), window, mirrored) <= LAYOUT_GAP


def _same(keys: np.ndarray):
    """Index arrays of the entries of `keys` that share a value, for each value held more than once."""
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    for run in np.split(order, cuts):
        if len(run) > 1:
            yield run


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

    def join_pairs(self, x: np.ndarray, y: np.ndarray) -> None:
        """Join records x[k] and y[k] for every k, in numpy: each round points the larger root of each pair still
        apart at the smaller (where several write one root, one wins; the rest are apart still, for the next round)."""
        while len(x):
            roots = self.roots()
            apart = roots[x] != roots[y]
            x, y = x[apart], y[apart]
            self.parent[np.maximum(roots[x], roots[y])] = np.minimum(roots[x], roots[y])

    def roots(self) -> np.ndarray:
        """Each record's group (its root), every path compressed."""
        while not (self.parent[self.parent] == self.parent).all():
            self.parent = self.parent[self.parent]
        return self.parent

    def sets(self) -> list[np.ndarray]:
        """Each group of two or more records."""
        return list(_same(self.roots().copy()))
