"""The `Store` interface: one split of a packed store, opened lazily in each process that reads it."""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod

import numpy as np

from fastload.store.record import Record


class Store(ABC):
    """One split of a packed store: `len`, `get(i)`, `labels(i)`, `sizes`, `shard(rank, world)`.

    Handles are opened on first use in each process (and re-opened after a fork), so a Store can be
    created in the parent and pickled or forked into loader workers and DDP ranks.
    """

    format: str = ""
    one_class: bool = False  # YOLOv5's --single-cls view: every box class 0 (see single_class)

    def __init__(self, path: str, split: str, meta: dict) -> None:
        self.path = path
        self.split = split
        self.meta = meta
        self._pid: int | None = None
        self._cols: dict[str, np.ndarray] = {}

    # --- what a backend provides -------------------------------------------------------------
    @abstractmethod
    def _open(self) -> dict[str, np.ndarray]:
        """Open handles in this process and return the split's columns (see record.COLUMN_NAMES)."""

    @abstractmethod
    def _image(self, i: int) -> bytes | memoryview:
        """The encoded image of record i, without copying where the backend allows."""

    @abstractmethod
    def _column(self, name: str) -> np.ndarray | None:
        """A column that readers do not open (record.COLUMNS' stamps), read now; None when the store has none."""

    def read_groups(self) -> list[range]:
        """Contiguous record ranges that are cheap to read together (Zarr: one per shard)."""
        return [range(len(self))]

    # --- the interface -----------------------------------------------------------------------
    def _ready(self) -> dict[str, np.ndarray]:
        if self._pid != os.getpid():
            self._cols = self._open()
            self._pid = os.getpid()
        return self._cols

    def __len__(self) -> int:
        return int(self.meta["splits"][self.split]["count"])

    @property
    def names(self) -> list[str]:
        names = list(self.meta["names"])
        return (names if len(names) == 1 else ["item"]) if self.one_class else names

    def single_class(self) -> Store:
        """This split as YOLOv5's --single-cls sees it: every box of class 0, and one name ("item", or the store's
        only one). A view: the store is read as it is."""
        view = copy.copy(self)
        view.one_class = True
        return view

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    @property
    def image_bytes(self) -> float:
        """The split's mean encoded image size in bytes (what a loader's worker hands over per image)."""
        info = self.meta["splits"][self.split]
        return info["bytes"] / max(1, info["count"])

    @property
    def sizes(self) -> np.ndarray:
        """int32 [N, 2] of (h, w), memory-mapped where the backend allows."""
        return self._ready()["sizes"]

    def labels(self, i: int) -> np.ndarray:
        """float32 [n, 5] rows (cls, cx, cy, w, h) of record i, without reading the image."""
        cols = self._ready()
        off = cols["box_offsets"]
        return self._classes(cols["boxes"][off[i] : off[i + 1]])

    @property
    def boxes(self) -> np.ndarray:
        """float32 [M, 5] rows (cls, cx, cy, w, h) of every record, in record order, without reading an image."""
        return self._classes(self._ready()["boxes"])

    @property
    def box_counts(self) -> np.ndarray:
        """int64 [N]: the number of box rows of each record (`boxes` holds them in record order)."""
        return np.diff(self._ready()["box_offsets"]).astype(np.int64)

    def _classes(self, rows: np.ndarray) -> np.ndarray:
        """Box rows as this view reads them: as stored, or (single_class) a copy with every class 0."""
        if not self.one_class:
            return rows
        rows = rows.copy()
        rows[:, 0] = 0
        return rows

    @property
    def has_polygons(self) -> bool:
        """Whether any record of the split has polygon labels (format 2 stores packed from polygons)."""
        return bool(self.meta["splits"][self.split].get("polygons", 0))

    def polygons(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Record i's polygon labels as (points float32 [P, 2] normalised x, y; offsets int64 [n + 1] into them, one
        polygon per box row), or None when any of its boxes has none (YOLOv5 warps polygons only when all have)."""
        cols = self._ready()
        if "segment_offsets" not in cols:
            return None
        box = cols["box_offsets"]
        offsets = cols["segment_offsets"][box[i] : box[i + 1] + 1]
        if len(offsets) < 2 or (offsets[1:] == offsets[:-1]).any():
            return None
        return self._points(int(offsets[0]), int(offsets[-1])), offsets - offsets[0]

    def outlines(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Record i's object outlines, one per box row, for masks: its polygon where the row has one, else the box's
        four corners (x1 y1, x2 y1, x2 y2, x1 y2). As (points float32 [P, 2] normalised, offsets int64 [n + 1])."""
        rows = self.labels(i)
        cols = self._ready()
        counts = np.full(len(rows), 4, np.int64)
        points = [None] * len(rows)
        if "segment_offsets" in cols and len(rows):
            box = cols["box_offsets"]
            offsets = cols["segment_offsets"][box[i] : box[i + 1] + 1]
            found = self._points(int(offsets[0]), int(offsets[-1]))
            for k in np.flatnonzero(offsets[1:] > offsets[:-1]).tolist():
                points[k] = found[offsets[k] - offsets[0] : offsets[k + 1] - offsets[0]]
                counts[k] = len(points[k])
        for k in range(len(rows)):
            if points[k] is None:
                _, cx, cy, w, h = rows[k].tolist()
                x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
                points[k] = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
        flat = np.concatenate(points).astype(np.float32) if points else np.zeros((0, 2), np.float32)
        return flat, np.concatenate([[0], np.cumsum(counts)])

    def _points(self, a: int, b: int) -> np.ndarray:
        """Polygon points a..b of the split (float32 [b - a, 2]); a backend may read them lazily."""
        return self._cols["segments"][a:b]

    def stamps(self) -> np.ndarray | None:
        """int64 [N, 5]: each record's inputs as the packer found them (record.STAMPS), or None (a store packed
        before fastload kept them, or converted from one): what lets a later pack copy unchanged records."""
        return self._column("stamps")

    def path_of(self, i: int) -> str:
        cols = self._ready()
        off = cols["path_offsets"]
        return cols["paths"][off[i] : off[i + 1]].tobytes().decode()

    def get(self, i: int) -> Record:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"record {i} outside {self.split} split of {n}")
        i %= n
        cols = self._ready()
        h, w = cols["sizes"][i]
        rec = Record(self._image(i), self.labels(i), (int(h), int(w)), self.path_of(i), int(cols["crc32"][i]))
        polygons = self.polygons(i)
        if polygons is not None:
            points, offsets = polygons
            rec.segments = [points[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        return rec

    def image(self, i: int) -> bytes | memoryview:
        """The encoded image of record i (0 <= i < len), without its labels, path or CRC: what the loaders read."""
        self._ready()
        return self._image(i)

    def __getitem__(self, i: int) -> Record:
        return self.get(i)

    def shard(self, rank: int, world: int) -> StoreShard:
        """A contiguous, disjoint 1/world of the records; the shards of all ranks cover everything."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        n = len(self)
        return StoreShard(self, range(rank * n // world, (rank + 1) * n // world))

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["_pid"], state["_cols"] = None, {}
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, split={self.split!r}, records={len(self)})"


class StoreShard:
    """A contiguous slice of a Store's records, indexed from 0."""

    def __init__(self, store: Store, indices: range) -> None:
        self.store, self.indices = store, indices

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def names(self) -> list[str]:
        return self.store.names

    @property
    def image_bytes(self) -> float:
        return self.store.image_bytes

    def get(self, i: int) -> Record:
        return self.store.get(self.indices[i])

    def labels(self, i: int) -> np.ndarray:
        return self.store.labels(self.indices[i])

    def image(self, i: int) -> bytes | memoryview:
        return self.store.image(self.indices[i])

    def polygons(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        return self.store.polygons(self.indices[i])

    def outlines(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.store.outlines(self.indices[i])

    __getitem__ = get


def grouped_permutation(rng: np.random.Generator, groups: list[range], window: int = 1) -> np.ndarray:
    """Shuffle the groups, then the records inside each run of `window` consecutive shuffled groups: a random
    order that reads each group (Zarr shard) in one stretch."""
    shuffled = [groups[k] for k in rng.permutation(len(groups))]
    parts = [
        rng.permutation(np.concatenate([np.arange(g.start, g.stop) for g in shuffled[k : k + window]]))
        for k in range(0, len(shuffled), window)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def shuffled_order(store: Store, seed: int) -> np.ndarray:
    """A random order of all records that keeps reads local (for LMDB, one group: a plain permutation)."""
    return grouped_permutation(np.random.default_rng(seed), store.read_groups())
