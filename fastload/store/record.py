"""One packed record and its CRC, plus the per-split columns that both store formats write."""

from __future__ import annotations

import struct
import zlib
from array import array
from dataclasses import dataclass

import numpy as np

FORMAT_VERSION = 2  # 2: the optional polygon columns (segment_offsets, segments), in the CRC where a record has them
BOX_COLUMNS = 5  # cls, cx, cy, w, h (normalised to [0, 1])


@dataclass(slots=True)
class Record:
    """An encoded image with its boxes, upright size (h, w), source path and CRC32; with polygon labels, one
    polygon per box (float32 [k, 2] normalised x, y), which the CRC covers too."""

    image: bytes | memoryview
    boxes: np.ndarray  # float32 [n, 5]
    size: tuple[int, int]  # (h, w) after EXIF orientation
    path: str
    crc32: int = 0
    segments: list[np.ndarray] | None = None  # None: boxes only

    def compute_crc(self) -> int:
        crc = zlib.crc32(self.image)
        crc = zlib.crc32(np.ascontiguousarray(self.boxes, dtype="<f4").tobytes(), crc)
        crc = zlib.crc32(struct.pack("<ii", *self.size), crc)
        crc = zlib.crc32(self.path.encode(), crc)
        for polygon in self.segments or ():  # none: the CRC of format 1
            crc = zlib.crc32(struct.pack("<i", len(polygon)), crc)
            crc = zlib.crc32(np.ascontiguousarray(polygon, dtype="<f4").tobytes(), crc)
        return crc


class SplitColumns:
    """Compact, append-only columns of one split (no Python object per record)."""

    def __init__(self) -> None:
        self.sizes = array("i")
        self.crc32 = array("I")
        self.box_offsets = array("q", [0])
        self.boxes = bytearray()
        self.path_offsets = array("q", [0])
        self.paths = bytearray()
        self.segment_offsets = array("q", [0])  # per box row, into segments
        self.segments = bytearray()
        self.stamps = array("q")  # per record: its inputs when packed (see STAMPS), where the packer knows them
        self.image_bytes = 0

    def __len__(self) -> int:
        return len(self.crc32)

    def append(self, rec: Record, stamp: tuple[int, ...] | None = None) -> None:
        if stamp is not None and len(self.stamps) == STAMP_FIELDS * len(self):
            self.stamps.extend(stamp)
        self.sizes.extend(rec.size)
        self.crc32.append(rec.crc32)
        self.boxes += np.ascontiguousarray(rec.boxes, dtype="<f4").tobytes()
        self.box_offsets.append(len(self.boxes) // (4 * BOX_COLUMNS))
        self.paths += rec.path.encode()
        self.path_offsets.append(len(self.paths))
        self.image_bytes += len(rec.image)
        if rec.segments is None:
            self.segment_offsets.extend([self.segment_offsets[-1]] * len(rec.boxes))
            return
        if len(rec.segments) != len(rec.boxes):
            raise ValueError(f"{rec.path}: {len(rec.segments)} polygons for {len(rec.boxes)} boxes")
        for polygon in rec.segments:
            self.segments += np.ascontiguousarray(polygon, dtype="<f4").tobytes()
            self.segment_offsets.append(len(self.segments) // 8)

    def summary(self) -> dict:
        polygons = int(np.count_nonzero(np.diff(np.frombuffer(self.segment_offsets, np.int64))))
        return {"count": len(self), "bytes": self.image_bytes, "boxes": int(self.box_offsets[-1]), "polygons": polygons}

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as numpy arrays, named and shaped as both store formats keep them."""
        raw = {
            "sizes": self.sizes,
            "crc32": self.crc32,
            "box_offsets": self.box_offsets,
            "boxes": self.boxes,
            "path_offsets": self.path_offsets,
            "paths": self.paths,
            "segment_offsets": self.segment_offsets,
            "segments": self.segments,
        }
        if len(self.stamps) == STAMP_FIELDS * len(self):  # every record's inputs known (a record without: none kept)
            raw["stamps"] = self.stamps
        return {name: column(name, bytes(data)) for name, data in raw.items()}


# The stamps column: an input's image (bytes, mtime in ns) and label file's (-1, -1: none) as the packer found them,
# and flags: what a later pack of the same dataset needs to copy the record instead of packing the input again.
STAMPS = ("image_bytes", "image_mtime_ns", "label_bytes", "label_mtime_ns", "flags")
STAMP_FIELDS = len(STAMPS)
FIXED, MISSING_LABEL, EMPTY_LABEL = 1, 2, 4  # flags

# name -> (dtype, shape) of each per-split column, in both store formats
COLUMNS = {
    "sizes": (np.dtype(np.int32), (-1, 2)),  # (h, w)
    "crc32": (np.dtype(np.uint32), (-1,)),
    "box_offsets": (np.dtype(np.int64), (-1,)),  # [N + 1] into boxes
    "boxes": (np.dtype("<f4"), (-1, BOX_COLUMNS)),
    "path_offsets": (np.dtype(np.int64), (-1,)),  # [N + 1] into paths
    "paths": (np.dtype(np.uint8), (-1,)),  # UTF-8
    "segment_offsets": (np.dtype(np.int64), (-1,)),  # [M + 1] into segments, per box row (format 2)
    "segments": (np.dtype("<f4"), (-1, 2)),  # polygon points (x, y) normalised (format 2)
    "stamps": (np.dtype("<i8"), (-1, STAMP_FIELDS)),  # per record, its inputs when packed; optional, read on demand
}
COLUMN_NAMES = tuple(name for name in COLUMNS if name != "stamps")  # what a reader opens
OPTIONAL_COLUMNS = ("segment_offsets", "segments")  # absent from format-1 stores: no polygons


def column(name: str, data) -> np.ndarray:
    """Column `name` from raw little-endian bytes (no copy) or from an array, with its dtype and shape."""
    dtype, shape = COLUMNS[name]
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    return np.asarray(data, dtype=dtype).reshape(shape)
