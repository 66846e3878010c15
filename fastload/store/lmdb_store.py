"""LMDB backend: one file, read-only and lock-free, memory-mapped and shared through the page cache.

Keys: `__meta__` (JSON), `<split>/img/<i:010d>` (encoded image), `<split>/<column>` (one array per column).
"""

from __future__ import annotations

import json
import os

import lmdb
import numpy as np

from fastload.store.base import Store
from fastload.store.record import Record, SplitColumns
from fastload.store.tempfiles import partial_path, publish, remove_stale_partials

META_KEY = b"__meta__"
COLUMN_DTYPES = {
    "sizes": (np.int32, (-1, 2)),
    "crc32": (np.uint32, (-1,)),
    "box_offsets": (np.int64, (-1,)),
    "boxes": (np.dtype("<f4"), (-1, 5)),
    "path_offsets": (np.int64, (-1,)),
    "paths": (np.uint8, (-1,)),
}

# One environment and one long-lived read transaction per file per process: py-lmdb refuses to open an
# environment twice in a process, and an environment inherited through fork must not be used.
_OPEN: dict[str, tuple[lmdb.Environment, lmdb.Transaction]] = {}


def _close_inherited() -> None:
    for env, _ in _OPEN.values():
        env.close()
    _OPEN.clear()


os.register_at_fork(after_in_child=_close_inherited)


def _read_txn(path: str) -> lmdb.Transaction:
    key = os.path.realpath(path)
    if key not in _OPEN:
        env = lmdb.open(key, subdir=False, readonly=True, lock=False, readahead=False, max_readers=1)
        _OPEN[key] = (env, env.begin(buffers=True))
    return _OPEN[key][1]


def image_key(split: str, i: int) -> bytes:
    return f"{split}/img/{i:010d}".encode()


def read_meta(path: str) -> dict | None:
    """The store's metadata, or None if the file is not a complete fastload LMDB store."""
    txn = _read_txn(path)
    raw = txn.get(META_KEY)
    return json.loads(bytes(raw)) if raw is not None else None


class LmdbStore(Store):
    format = "lmdb"

    def _open(self) -> dict[str, np.ndarray]:
        self._txn = _read_txn(self.path)
        cols = {}
        for name, (dtype, shape) in COLUMN_DTYPES.items():
            raw = self._txn.get(f"{self.split}/{name}".encode())
            cols[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        return cols

    def _image(self, i: int) -> memoryview:
        return self._txn.get(image_key(self.split, i))


class LmdbWriter:
    """Writes a store under a temporary name; `finish` renames it into place."""

    COMMIT_BYTES = 256 << 20  # bounds the dirty pages a write transaction holds in memory
    PAGE = 4096

    def __init__(self, path: str, size_hint: int = 0) -> None:
        self.path = path
        remove_stale_partials(path)
        self.tmp = partial_path(path)
        self.map_size = max(1 << 30, 2 * size_hint)
        self.env = lmdb.open(self.tmp, subdir=False, map_size=self.map_size, lock=False, sync=False, meminit=False)
        self.txn = self.env.begin(write=True)
        self.pending = 0
        self.used = 0  # upper bound of the bytes the file holds: each value plus two pages of overhead

    def _put(self, key: bytes, value: bytes | memoryview) -> None:
        need = len(value) + 2 * self.PAGE
        if self.used + need > 0.8 * self.map_size:  # grow before LMDB runs out: MapFullError loses the txn
            self.txn.commit()
            self.map_size = 2 * max(self.map_size, self.used + need)
            self.env.set_mapsize(self.map_size)
            self.txn, self.pending = self.env.begin(write=True), 0
        self.txn.put(key, value)
        self.used += need
        self.pending += need
        if self.pending >= self.COMMIT_BYTES:
            self.txn.commit()
            self.txn, self.pending = self.env.begin(write=True), 0

    def begin_split(self, name: str) -> None:
        self.split, self.cols = name, SplitColumns()

    def add(self, rec: Record) -> None:
        self._put(image_key(self.split, len(self.cols)), rec.image)
        self.cols.append(rec)

    def end_split(self) -> dict:
        for name, arr in self.cols.arrays().items():
            self._put(f"{self.split}/{name}".encode(), arr.tobytes())
        return self.cols.summary()

    def finish(self, meta: dict) -> None:
        self._put(META_KEY, json.dumps(meta).encode())
        self.txn.commit()
        self.env.sync(True)
        self.env.close()
        publish(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.txn.abort()
            self.env.close()
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
