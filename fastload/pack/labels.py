"""Parse and validate YOLO label rows the way YOLOv5 does, with clear reasons when a file is unusable."""

from __future__ import annotations

import numpy as np

from fastload.errors import BadInput

TOLERANCE = 0.01  # values this far outside [0, 1] are rounding noise: clipped; further out is nonsense


def parse_yolo_text(text: str) -> np.ndarray:
    """Rows of a YOLO .txt as float64 [n, 5]; polygons (cls x1 y1 x2 y2 ...) become their bounding box."""
    rows = []
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
        elif len(values) >= 7 and len(values) % 2 == 1:  # segment polygon, as YOLOv5's segments2boxes
            xy = np.asarray(values[1:]).reshape(-1, 2)
            (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
            rows.append([values[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        else:
            raise BadInput(f"line {n}: expected 5 values (class cx cy w h), got {len(values)}")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def validate_rows(rows: np.ndarray, nc: int | None) -> tuple[np.ndarray, str]:
    """Check class ids and coordinates, clip boxes to the image, drop duplicates.

    Returns float32 [n, 5] rows and a note of what was fixed. Raises BadInput for a file YOLOv5 would
    reject: a class id that is not an integer in [0, nc), or coordinates that are not normalised.
    """
    notes = []
    if len(rows) == 0:
        return np.zeros((0, 5), np.float32), ""
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
    _, first = np.unique(out, axis=0, return_index=True)
    if len(first) < len(out):
        notes.append(f"{len(out) - len(first)} duplicate rows removed")
        out = out[np.sort(first)]
    return out, "; ".join(notes)
