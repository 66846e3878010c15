"""One packed record and its CRC, plus the per-split columns that both store formats write."""

from __future__ import annotations

import struct
import zlib
from array import array
from dataclasses import dataclass

import numpy as np

FORMAT_VERSION = 1
BOX_COLUMNS = 5  # cls, cx, cy, w, h (normalised to [0, 1])


@dataclass(slots=True)
class Record:
    """An encoded image with its boxes, upright size (h, w), source path and CRC32."""

    image: bytes | memoryview
    boxes: np.ndarray  # float32 [n, 5]
    size: tuple[int, int]  # (h, w) after EXIF orientation
    path: str
    crc32: int = 0

    def compute_crc(self) -> int:
        crc = zlib.crc32(self.image)
        crc = zlib.crc32(np.ascontiguousarray(self.boxes, dtype="<f4").tobytes(), crc)
        crc = zlib.crc32(struct.pack("<ii", *self.size), crc)
        return zlib.crc32(self.path.encode(), crc)


class SplitColumns:
    """Compact, append-only columns of one split (no Python object per record)."""

    def __init__(self) -> None:
        self.sizes = array("i")
        self.crc32 = array("I")
        self.box_offsets = array("q", [0])
        self.boxes = bytearray()
        self.path_offsets = array("q", [0])
        self.paths = bytearray()
        self.image_bytes = 0

    def __len__(self) -> int:
        return len(self.crc32)

    def append(self, rec: Record) -> None:
        self.sizes.extend(rec.size)
        self.crc32.append(rec.crc32)
        self.boxes += np.ascontiguousarray(rec.boxes, dtype="<f4").tobytes()
        self.box_offsets.append(len(self.boxes) // (4 * BOX_COLUMNS))
        self.paths += rec.path.encode()
        self.path_offsets.append(len(self.paths))
        self.image_bytes += len(rec.image)

    def summary(self) -> dict:
        return {"count": len(self), "bytes": self.image_bytes, "boxes": int(self.box_offsets[-1])}

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as numpy arrays, named and shaped as both store formats keep them."""
        raw = {
            "sizes": self.sizes,
            "crc32": self.crc32,
            "box_offsets": self.box_offsets,
            "boxes": self.boxes,
            "path_offsets": self.path_offsets,
            "paths": self.paths,
        }
        return {name: column(name, bytes(data)) for name, data in raw.items()}


# name -> (dtype, shape) of each per-split column, in both store formats
COLUMNS = {
    "sizes": (np.dtype(np.int32), (-1, 2)),  # (h, w)
    "crc32": (np.dtype(np.uint32), (-1,)),
    "box_offsets": (np.dtype(np.int64), (-1,)),  # [N + 1] into boxes
    "boxes": (np.dtype("<f4"), (-1, BOX_COLUMNS)),
    "path_offsets": (np.dtype(np.int64), (-1,)),  # [N + 1] into paths
    "paths": (np.dtype(np.uint8), (-1,)),  # UTF-8
}
COLUMN_NAMES = tuple(COLUMNS)


def column(name: str, data) -> np.ndarray:
    """Column `name` from raw little-endian bytes (no copy) or from an array, with its dtype and shape."""
    dtype, shape = COLUMNS[name]
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    return np.asarray(data, dtype=dtype).reshape(shape)
