"""Zarr v3 backend: per split, a flat sharded `uint8` array of encoded images plus offsets, and the columns.

Reads fetch whole shards (one large object each) and slice images out of them: a one-image read from Zarr
costs nearly as much as a shard read, so the loader orders Zarr reads shard by shard (`read_groups`).
The root group's `fastload` attribute holds the metadata and is written last: a store without it is
incomplete and does not open.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from collections import OrderedDict

import numpy as np
import zarr

from fastload.store.base import Store
from fastload.store.record import COLUMN_NAMES, Record, SplitColumns, column
from fastload.store.tempfiles import partial_path, publish, remove_stale_partials

SHARD_BYTES = 16 << 20  # one storage object per 16 MiB of images
CHUNK_BYTES = 1 << 20  # inner chunk of a shard
COLUMN_CHUNK_BYTES = 4 << 20
POINT_CHUNK_BYTES = 256 << 10  # polygon points: read a chunk at a time (COCO's are ~170 MB), not whole per process


def _pin_mmap_threshold() -> None:
    """Keep shard buffers out of the malloc heap. glibc raises its mmap threshold after the first large free,
    so later 16 MiB shard buffers land in the heap and fragment it: a reader's RSS then grows by ~20% over
    20k records. A fixed 1 MiB threshold keeps it flat (measured in benchmarks/store_memory.py)."""
    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def is_url(path: str) -> bool:
    return "://" in path


def open_root(path: str, mode: str) -> zarr.Group:
    if is_url(path):
        return zarr.open_group(path, mode=mode)
    return zarr.open_group(zarr.storage.LocalStore(path, read_only=(mode == "r")), mode=mode)


def read_meta(path: str) -> dict | None:
    """The store's metadata, or None if `path` is not a complete fastload Zarr store."""
    try:
        return open_root(path, "r").attrs.get("fastload")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError, ValueError):
        return None


class ZarrStore(Store):
    format = "zarr"
    cached_shards = 2  # bounds memory: an image may straddle two shards
    cached_point_chunks = 16  # 4 MiB: a batch's records come from a few shards, so their polygons from a few chunks

    def _open(self) -> dict[str, np.ndarray]:
        _pin_mmap_threshold()
        group = open_root(self.path, "r")[self.split]
        self._images = group["images"]
        self._shard = int(self._images.shards[0]) if self._images.shards else int(self._images.chunks[0])
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._points_array = group["segments"] if "segments" in group else None
        self._point_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        cols = {name: column(name, group[name][:]) for name in COLUMN_NAMES if name in group and name != "segments"}
        cols["image_offsets"] = group["image_offsets"][:]
        return cols

    def _column(self, name: str) -> np.ndarray | None:
        group = open_root(self.path, "r")[self.split]
        return column(name, group[name][:]) if name in group else None

    def _points(self, a: int, b: int) -> np.ndarray:
        """Polygon points a..b, from the chunks that hold them (a small LRU of chunks, not the whole column)."""
        chunk = int(self._points_array.chunks[0])
        pieces = []
        for c in range(a // chunk, (max(a, b - 1)) // chunk + 1):
            if c in self._point_cache:
                self._point_cache.move_to_end(c)
            else:
                while len(self._point_cache) >= self.cached_point_chunks:
                    self._point_cache.popitem(last=False)
                self._point_cache[c] = column("segments", self._points_array[c * chunk : (c + 1) * chunk])
            base = c * chunk
            pieces.append(self._point_cache[c][max(a, base) - base : min(b, base + chunk) - base])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _read_shard(self, s: int) -> np.ndarray:
        if s in self._cache:
            self._cache.move_to_end(s)
            return self._cache[s]
        while len(self._cache) >= self.cached_shards:  # evict before reading: never hold one extra shard
            self._cache.popitem(last=False)
        data = self._images[s * self._shard : min((s + 1) * self._shard, self._images.shape[0])]
        self._cache[s] = data
        return data

    def _image(self, i: int) -> memoryview:
        off = self._cols["image_offsets"]
        a, b = int(off[i]), int(off[i + 1])
        first, last = a // self._shard, max(a, b - 1) // self._shard
        pieces = []
        for s in range(first, last + 1):
            base = s * self._shard
            pieces.append(self._read_shard(s)[max(a, base) - base : min(b, base + self._shard) - base])
        return memoryview(pieces[0] if len(pieces) == 1 else np.concatenate(pieces))

    def read_groups(self) -> list[range]:
        off = self._ready()["image_offsets"]
        starts = off[:-1] // self._shard
        bounds = np.flatnonzero(np.diff(starts)) + 1
        edges = [0, *bounds.tolist(), len(self)]
        return [range(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _write_column(group: zarr.Group, name: str, data: np.ndarray) -> None:
    row_bytes = max(1, data.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)))
    chunk_bytes = POINT_CHUNK_BYTES if name == "segments" else COLUMN_CHUNK_BYTES
    rows = max(1, min(max(1, data.shape[0]), chunk_bytes // row_bytes))
    group.create_array(name, data=data, chunks=(rows, *data.shape[1:]))


class ZarrWriter:
    """Writes images shard by shard (each write covers whole shards) and the columns at the end of a split."""

    def __init__(self, path: str, size_hint: int = 0, shard_bytes: int = SHARD_BYTES) -> None:
        self.path = path
        self.shard_bytes = shard_bytes
        if is_url(path):  # object stores have no rename: the metadata, written last, marks completion
            self.tmp = path
        else:
            remove_stale_partials(path)
            self.tmp = partial_path(path)
        self.root = open_root(self.tmp, "w")

    def begin_split(self, name: str) -> None:
        self.split, self.cols = name, SplitColumns()
        self.group = self.root.create_group(name)
        chunk = min(CHUNK_BYTES, self.shard_bytes)
        self.images = self.group.create_array(
            "images", shape=(0,), dtype="uint8", chunks=(chunk,), shards=(self.shard_bytes,), compressors=None
        )
        self.offsets = [0]
        self.buf = bytearray()
        self.written = 0

    def add(self, rec: Record, stamp: tuple[int, ...] | None = None) -> None:
        self.buf += rec.image
        self.offsets.append(self.offsets[-1] + len(rec.image))
        self.cols.append(rec, stamp)
        if len(self.buf) >= self.shard_bytes:
            self._flush(len(self.buf) // self.shard_bytes * self.shard_bytes)

    def _flush(self, n: int) -> None:
        if n == 0:
            return
        self.images.resize((self.written + n,))
        self.images[self.written : self.written + n] = np.frombuffer(self.buf, dtype=np.uint8, count=n)
        del self.buf[:n]
        self.written += n

    def end_split(self) -> dict:
        self._flush(len(self.buf))
        for name, arr in self.cols.arrays().items():
            _write_column(self.group, name, arr)
        _write_column(self.group, "image_offsets", np.asarray(self.offsets, dtype=np.int64))
        return self.cols.summary()

    def finish(self, meta: dict) -> None:
        self.root.attrs["fastload"] = meta
        if self.tmp != self.path:
            publish(self.tmp, self.path)

    def abort(self) -> None:
        if self.tmp != self.path and os.path.exists(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)
