"""LMDB backend: one file, read-only and lock-free, memory-mapped and shared through the page cache.

Keys: `__meta__` (JSON), `<split>/img/<i:010d>` (encoded image), `<split>/<column>` (one array per column).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os

import lmdb
import numpy as np

from fastload.store.base import Store
from fastload.store.record import COLUMN_NAMES, OPTIONAL_COLUMNS, Record, SplitColumns, column
from fastload.store.tempfiles import partial_path, publish, remove_stale_partials

META_KEY = b"__meta__"

# One environment and one long-lived read transaction per file per process: py-lmdb refuses to open an
# environment twice in a process, and an environment inherited through fork must not be used.
_OPEN: dict[tuple[str, int], tuple[lmdb.Environment, lmdb.Transaction]] = {}
_MAPS: dict[tuple[str, int], tuple[int, int] | None] = {}


def _key(path: str) -> tuple[str, int]:
    """A store file by path and inode: a store packed again to the same path (a new file) is opened anew."""
    real = os.path.realpath(path)
    return real, os.stat(real).st_ino


@contextlib.contextmanager
def borrowed(path: str):
    """The store file at `path` read for a while (metadata, records to copy): its handle is closed afterwards unless
    this process had it open before, where Stores may still read it (closing would unmap their views). A file
    removed or replaced while a process keeps it mapped keeps its disk space until the process ends."""
    try:
        key = _key(path)
    except OSError:
        key = None
    had = key in _OPEN
    try:
        yield
    finally:
        if key is not None and not had and key in _OPEN:
            _OPEN.pop(key)[0].close()
            _MAPS.pop(key, None)


def _close_inherited() -> None:
    for env, _ in _OPEN.values():
        env.close()
    _OPEN.clear()
    _MAPS.clear()


os.register_at_fork(after_in_child=_close_inherited)


def _read_txn(path: str) -> lmdb.Transaction:
    key = _key(path)
    if key not in _OPEN:
        env = lmdb.open(key[0], subdir=False, readonly=True, lock=False, readahead=False, max_readers=1)
        _OPEN[key] = (env, env.begin(buffers=True))
    return _OPEN[key][1]


_MADV_DONTNEED = 4
_LIBC = ctypes.CDLL(None, use_errno=True) if hasattr(os, "fork") else None


def _mapping_of(path: str) -> tuple[int, int] | None:
    """(start, length) of this process's mapping of `path`, from /proc/self/maps (py-lmdb hides it)."""
    try:
        inode = os.stat(path).st_ino
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[4] == str(inode) and fields[5] == path:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    return start, end - start
    except OSError:
        pass
    return None


def release_pages(path: str) -> None:
    """Unmap the pages this process has touched in the store's read-only shared mapping.

    The data stays in the page cache (shared by every process) and the next access maps it again, so
    a reader's RSS stays flat however much of the store it reads; views handed out stay valid.
    """
    key = _key(path)
    if key not in _OPEN or _LIBC is None:
        return
    if key not in _MAPS:
        _MAPS[key] = _mapping_of(key[0])
    if _MAPS[key] is not None:
        start, length = _MAPS[key]
        _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_DONTNEED)


def image_key(split: str, i: int) -> bytes:
    return f"{split}/img/{i:010d}".encode()


def read_meta(path: str) -> dict | None:
    """The store's metadata, or None if the file is not a complete fastload LMDB store."""
    txn = _read_txn(path)
    raw = txn.get(META_KEY)
    return json.loads(bytes(raw)) if raw is not None else None


class LmdbStore(Store):
    format = "lmdb"
    # Image bytes served between two release_pages calls. Kernels with large page-cache folios map ~1 MB per
    # fault, so a random reader maps ~10x what it reads: release often (one madvise per ~25 images).
    release_every = 2 << 20

    def _open(self) -> dict[str, np.ndarray]:
        self._txn = _read_txn(self.path)
        self._served = 0
        cols = {}
        for name in COLUMN_NAMES:
            raw = self._txn.get(f"{self.split}/{name}".encode())
            if raw is not None or name not in OPTIONAL_COLUMNS:
                cols[name] = column(name, raw)
        return cols

    def _column(self, name: str) -> np.ndarray | None:
        raw = _read_txn(self.path).get(f"{self.split}/{name}".encode())
        return column(name, raw) if raw is not None else None

    def _image(self, i: int) -> memoryview:
        view = self._txn.get(image_key(self.split, i))
        self._served += len(view)
        if self._served >= self.release_every:
            self._served = 0
            release_pages(self.path)
        return view


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

    def add(self, rec: Record, stamp: tuple[int, ...] | None = None) -> None:
        self._put(image_key(self.split, len(self.cols)), rec.image)
        self.cols.append(rec, stamp)

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
