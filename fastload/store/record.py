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
        """The columns as numpy arrays, named as both store formats name them."""
        return {
            "sizes": np.frombuffer(self.sizes, dtype=np.int32).reshape(-1, 2),
            "crc32": np.frombuffer(self.crc32, dtype=np.uint32),
            "box_offsets": np.frombuffer(self.box_offsets, dtype=np.int64),
            "boxes": np.frombuffer(bytes(self.boxes), dtype="<f4").reshape(-1, BOX_COLUMNS),
            "path_offsets": np.frombuffer(self.path_offsets, dtype=np.int64),
            "paths": np.frombuffer(bytes(self.paths), dtype=np.uint8),
        }


COLUMN_NAMES = ("sizes", "crc32", "box_offsets", "boxes", "path_offsets", "paths")
