"""LabelMe folders: a `<image>.json` beside each image (`shapes`: rectangles, polygons, circles, each with its
`label`), as LabelMe saves them and as labelme2yolo converts them: rectangles to boxes, polygons to polygon labels
(with their bounding boxes), circles to 16-point polygons."""

from __future__ import annotations

import json
import os

import numpy as np

from fastload.errors import BadInput
from fastload.pack.labels import box_corners, img2label_path

IGNORED = ("__ignore__", "_background_")  # labelme's labels.txt conventions, not classes
CIRCLE_POINTS = 16


def labelme_images(images: list[str]) -> dict[str, str]:
    """{image: its LabelMe JSON (which may not exist)} when `images` are a LabelMe folder's: some image has a JSON
    beside it holding `shapes`, and none has a YOLO label (which wins, as YOLOv5 reads it); else {}."""
    beside = {p: os.path.splitext(p)[0] + ".json" for p in images}
    found = [p for p, j in beside.items() if os.path.isfile(j)]
    if not found or any(os.path.isfile(img2label_path(p)) for p in images):
        return {}
    try:
        with open(beside[found[0]], encoding="utf-8") as f:
            if not isinstance(json.load(f).get("shapes"), list):
                return {}
    except (OSError, ValueError, AttributeError):
        return {}
    return beside


def labelme_names(root: str, annotations: list[str]) -> list[str]:
    """The class names: `labels.txt` (LabelMe's own list, its `__ignore__` and `_background_` left out), else
    `classes.txt` or `names.txt`, else every label the JSONs name, sorted."""
    for name in ("labels.txt", "classes.txt", "names.txt"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return [ln.strip() for ln in f if ln.strip() and ln.strip() not in IGNORED]
    labels = set()
    for path in annotations:
        try:
            with open(path, encoding="utf-8") as f:
                labels.update(str(s.get("label")) for s in json.load(f).get("shapes", []) if isinstance(s, dict))
        except (OSError, ValueError, AttributeError):
            continue  # the worker that reads it names what is wrong
    return sorted(labels - set(IGNORED))


def labelme_rows(data: bytes, classes: dict[str, int], image_size: tuple[int, int]) -> tuple:
    """(rows float64 [n, 5] class, cx, cy, w, h normalised, polygons normalised or None, note) of one LabelMe JSON:
    normalised by its imageWidth and imageHeight (the image's own, `image_size` (h, w), where it gives none).
    Every object gets a polygon when one of them is a polygon or a circle (a rectangle its four corners), else
    none. Shapes of classes `classes` lacks, and lines and points, are left out and named in the note."""
    try:
        doc = json.loads(data)
        shapes = doc["shapes"]
        w = float(doc.get("imageWidth") or image_size[1])
        h = float(doc.get("imageHeight") or image_size[0])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BadInput(f"not a LabelMe annotation ({type(e).__name__}: {e})") from None
    rows, polygons, left_out = [], [], set()
    for n, shape in enumerate(shapes, 1):
        label, kind = str(shape.get("label")), shape.get("shape_type") or "polygon"
        if label not in classes or kind not in ("rectangle", "polygon", "circle"):
            left_out.add(label if label not in classes else f"{kind}s")
            continue
        try:
            points = np.asarray(shape["points"], np.float64).reshape(-1, 2)
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"shape {n} ({label}): its points are not x, y pairs") from None
        if kind == "rectangle" and len(points) == 2:
            (x1, y1), (x2, y2) = points.min(0), points.max(0)
            points = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        elif kind == "circle" and len(points) == 2:
            r = float(np.hypot(*(points[1] - points[0])))
            angle = np.linspace(0, 2 * np.pi, CIRCLE_POINTS, endpoint=False)
            points = points[0] + r * np.stack([np.cos(angle), np.sin(angle)], 1)
        elif kind != "polygon" or len(points) < 3:
            raise BadInput(f"shape {n} ({label}): a {kind} of {len(points)} points")
        norm = points / (w, h)
        (x1, y1), (x2, y2) = norm.min(0), norm.max(0)
        rows.append([classes[label], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        polygons.append(norm if kind != "rectangle" else None)
    if all(p is None for p in polygons):
        polygons = None
    else:  # rectangles among polygons: their corners, as a YOLO file's box row among polygon rows
        polygons = [box_corners(np.asarray(r[1:])) if p is None else p for r, p in zip(rows, polygons, strict=True)]
    note = f"shapes left out (not in names, or lines and points): {', '.join(sorted(left_out))}" if left_out else ""
    return np.asarray(rows, np.float64).reshape(-1, 5), polygons, note
