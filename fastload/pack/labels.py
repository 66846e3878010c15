"""Parse and validate YOLO label rows the way YOLOv5 does, with clear reasons when a file is unusable."""

from __future__ import annotations

import os

import numpy as np

from fastload.errors import BadInput

TOLERANCE = 0.01  # values this far outside [0, 1] are rounding noise: clipped; further out is nonsense


def img2label_path(path: str) -> str:
    """YOLOv5's rule: the last /images/ becomes /labels/ and the suffix becomes .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return os.path.splitext(sb.join(path.rsplit(sa, 1)))[0] + ".txt"


def parse_yolo_text(text: str) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """(rows, polygons) of a YOLO .txt: rows float64 [n, 5]; a polygon row (cls x1 y1 x2 y2 ...) becomes its bounding
    box, as YOLOv5's segments2boxes, and its points are kept. polygons: None when no row is a polygon, else one
    float64 [k, 2] array (normalised x, y) per row, a box row's being its four corners (YOLOv5 reads a box row of a
    file with polygons as a two-point polygon, which loses the box)."""
    rows, polygons = [], []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            raise BadInput(f"line {n}: not a number: {bad!r}") from None
        if len(values) == 5:
            rows.append(values)
            polygons.append(None)
        elif len(values) >= 7 and len(values) % 2 == 1:  # segment polygon, as YOLOv5's segments2boxes
            xy = np.asarray(values[1:]).reshape(-1, 2)
            (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
            rows.append([values[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
            polygons.append(xy)
        else:
            raise BadInput(
                f"line {n}: expected 5 values (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...), "
                f"got {len(values)}"
            )
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    if all(p is None for p in polygons):
        return rows, None
    return rows, [box_corners(r[1:]) if p is None else p for r, p in zip(rows, polygons, strict=True)]


def box_corners(xywh: np.ndarray) -> np.ndarray:
    """The four corners (clockwise from the top left) of a box (cx, cy, w, h) as a float64 [4, 2] polygon."""
    (cx, cy, w, h) = (float(v) for v in xywh)
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def validate_rows(
    rows: np.ndarray, nc: int | None, polygons: list[np.ndarray] | None = None
) -> tuple[np.ndarray, list[np.ndarray] | None, str]:
    """Check class ids and coordinates, clip boxes (and polygon points) to the image, drop duplicates.

    Returns float32 [n, 5] rows, their float32 [k, 2] polygons (None without), and a note of what was fixed. Raises
    BadInput for a file YOLOv5 would reject: a class id that is not an integer in [0, nc), or coordinates that are
    not normalised.
    """
    notes = []
    if len(rows) == 0:
        return np.zeros((0, 5), np.float32), None, ""
    if not np.isfinite(rows).all():
        raise BadInput("non-finite value in labels")
    cls = rows[:, 0]
    bad = (cls < 0) | (cls != np.round(cls)) | ((cls >= nc) if nc is not None else False)
    if bad.any():
        c = cls[bad][0]
        limit = f"0..{nc - 1}" if nc is not None else "a non-negative integer"
        raise BadInput(f"class {c:g} outside names ({limit})")
    xywh = rows[:, 1:]
    if (xywh < -TOLERANCE).any() or (xywh > 1 + TOLERANCE).any():
        v = xywh[(xywh < -TOLERANCE) | (xywh > 1 + TOLERANCE)][0]
        raise BadInput(f"coordinate {v:g} is not normalised to [0, 1]")
    x1y1 = np.clip(xywh[:, :2] - xywh[:, 2:] / 2, 0, 1)
    x2y2 = np.clip(xywh[:, :2] + xywh[:, 2:] / 2, 0, 1)
    clipped = np.concatenate([cls[:, None], (x1y1 + x2y2) / 2, x2y2 - x1y1], axis=1)
    if np.abs(clipped - rows).max() > 1e-6:
        notes.append("boxes clipped to the image")
    keep = (clipped[:, 3] > 0) & (clipped[:, 4] > 0)
    if not keep.all():
        notes.append(f"{int((~keep).sum())} empty boxes dropped")
    out = clipped[keep].astype(np.float32)
    if polygons is not None:
        if any(not np.isfinite(p).all() for p in polygons):
            raise BadInput("non-finite value in labels")
        polygons = [np.clip(p, 0, 1).astype(np.float32) for p, k in zip(polygons, keep, strict=True) if k]
    _, first = np.unique(out, axis=0, return_index=True)
    if len(first) < len(out):
        notes.append(f"{len(out) - len(first)} duplicate rows removed")
        first = np.sort(first)
        out = out[first]
        polygons = None if polygons is None else [polygons[k] for k in first]
    return out, polygons, "; ".join(notes)
