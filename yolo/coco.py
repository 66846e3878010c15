"""COCO-format predictions of a validation, as YOLOv5's `val.py --save-json` writes them, and their evaluation by
pycocotools against a COCO instances JSON (the annotations the store was packed from, or any with the same images).

    ids = CocoIds.from_store(store)                            # image ids from file stems, category = class index
    ids = CocoIds.from_annotations("instances_val.json", store)  # that file's image and category ids
    write_predictions(path, metrics["predictions"], ids)
    map50, map50_95 = pycocotools_map("instances_val.json", path)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass

import numpy as np

from fastload.errors import FastloadError
from fastload.store.tempfiles import write_atomic


@dataclass
class CocoIds:
    image_id: list[int | str]  # record index -> COCO image id
    category_id: list[int]  # class index -> COCO category id

    @classmethod
    def from_store(cls, store) -> CocoIds:
        """YOLOv5's rule: the file's stem, as a number when it is one (COCO's 000000139.jpg is image 139); the
        class index as the category."""
        stems = (os.path.splitext(os.path.basename(store.path_of(i)))[0] for i in range(len(store)))
        return cls([int(s) if s.isnumeric() else s for s in stems], list(range(len(store.names))))

    @classmethod
    def from_annotations(cls, annotations: str, store) -> CocoIds:
        """The instances JSON's ids: images by file_name (or, when that is unique, its base name), categories by
        name. A record or class it lacks is a FastloadError naming the file."""
        data = load_annotations(annotations)
        by_name = {c["name"]: c["id"] for c in data["categories"]}
        missing = [n for n in store.names if n not in by_name]
        if missing:
            raise FastloadError(f"{annotations}: no category named {missing[0]!r} (the store's classes: "
                                f"{', '.join(store.names)})")  # fmt: skip
        files = {im["file_name"]: im["id"] for im in data["images"]}
        bases: dict[str, list] = {}
        for name, image_id in files.items():
            bases.setdefault(os.path.basename(name), []).append(image_id)
        ids = []
        for i in range(len(store)):
            path = store.path_of(i)
            found = files.get(path)
            if found is None and len(bases.get(os.path.basename(path), ())) == 1:
                found = bases[os.path.basename(path)][0]
            if found is None:
                raise FastloadError(f"{annotations}: no image for {path} (by file_name or base name)")
            ids.append(found)
        return cls(ids, [by_name[n] for n in store.names])


def load_annotations(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not (isinstance(data["images"], list) and isinstance(data["categories"], list)):
            raise TypeError("images and categories must be lists")
        return data
    except FileNotFoundError:
        raise FastloadError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FastloadError(f"{path}: not a COCO instances JSON ({type(e).__name__}: {e})") from None


def coco_predictions(predictions: list[tuple[int, np.ndarray]], ids: CocoIds) -> list[dict]:
    """(record index, detections [k, 6] xyxy, conf, cls in original pixels) -> COCO result dicts: bbox as top-left
    x, y, w, h rounded to 3 decimals, score to 5, as YOLOv5's save_one_json."""
    out = []
    for index, det in predictions:
        image_id = ids.image_id[int(index)]
        for x1, y1, x2, y2, conf, cls in det.tolist():
            box = [round(v, 3) for v in (x1, y1, x2 - x1, y2 - y1)]
            out.append({"image_id": image_id, "category_id": ids.category_id[int(cls)], "bbox": box,
                        "score": round(conf, 5)})  # fmt: skip
    return out


def write_predictions(path: str, predictions, ids: CocoIds) -> int:
    """The COCO predictions JSON, written atomically; returns how many detections it holds."""
    rows = coco_predictions(predictions, ids)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, json.dumps(rows).encode())
    return len(rows)


def pycocotools_map(annotations: str, predictions: str, image_ids: list | None = None) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) of a predictions JSON by pycocotools' COCOeval, on `image_ids` (default: all)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise FastloadError("pycocotools is not installed: pip install pycocotools") from None
    with open(predictions) as f:
        rows = json.load(f)
    if not rows:  # loadRes refuses an empty list
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines would break --json's stdout
        gt = COCO(annotations)
        ev = COCOeval(gt, gt.loadRes(rows), "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])
