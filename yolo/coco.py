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
from fastload.store.tempfiles import partial_path


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


def rle_counts(counts: np.ndarray) -> str:
    """Run lengths as COCO's compressed RLE string (pycocotools' rleToString): each count from the third on as its
    difference to the one two before, in 5-bit groups with a continuation bit, offset by 48."""
    out = bytearray()
    for i, x in enumerate(counts.tolist()):
        x -= counts[i - 2] if i > 2 else 0
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append((c | 0x20 if more else c) + 48)
    return out.decode("ascii")


def rle(mask, size) -> dict:
    """A mask (yolo.segment.BoxMask: bool `pixels` at column `x`, row `y`) in an image of `size` (h, w) as COCO's
    compressed RLE ({"size": [h, w], "counts": str}, as pycocotools' encode of the dense mask), from its box's pixels
    alone: the runs of the column-major image, starting with the 0s."""
    h, w = (int(v) for v in size)
    pixels = np.asarray(mask.pixels, bool)
    edges = np.diff(np.pad(pixels.T.astype(np.int8), ((0, 0), (1, 1))), axis=1)  # per column: +1 a run starts, -1 ends
    col, row = np.nonzero(edges)  # column-major: by column, then row
    where = (mask.x + col).astype(np.int64) * h + mask.y + row  # the runs' ends, alternately 0 -> 1 and 1 -> 0
    keep = np.ones(len(where), bool)  # a run ending at a column's foot and the next starting at its top are one
    joined = np.nonzero(where[1:-1:2] == where[2::2])[0] * 2 + 1
    keep[joined], keep[joined + 1] = False, False
    counts = np.diff(np.concatenate([[0], where[keep], [h * w]]))
    counts = counts[:-1] if len(counts) > 1 and counts[-1] == 0 else counts  # ends in 1s: no empty run after
    return {"size": [h, w], "counts": rle_counts(counts)}


def coco_predictions(predictions: list[tuple[int, np.ndarray]], ids: CocoIds, segmentations=None):
    """(record index, detections [k, 6] xyxy, conf, cls in original pixels) -> COCO result dicts, one at a time:
    bbox as top-left x, y, w, h rounded to 3 decimals, score to 5, as YOLOv5's save_one_json; with `segmentations`
    (per image: its size [h, w] and its detections' RLE counts), each its `segmentation`, as YOLOv5's
    segment/val.py."""
    for k, (index, det) in enumerate(predictions):
        image_id = ids.image_id[int(index)]
        for j, (x1, y1, x2, y2, conf, cls) in enumerate(det.tolist()):
            box = [round(v, 3) for v in (x1, y1, x2 - x1, y2 - y1)]
            row = {"image_id": image_id, "category_id": ids.category_id[int(cls)], "bbox": box, "score": round(conf, 5)}
            if segmentations is not None:
                size, counts = segmentations[k]
                row["segmentation"] = {"size": size, "counts": counts[j]}
            yield row


def write_predictions(path: str, predictions, ids: CocoIds, segmentations=None) -> int:
    """The COCO predictions JSON, written a row at a time under a temporary name, then renamed; returns how many
    detections it holds."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp, n = partial_path(path), 0
    try:
        with open(tmp, "w") as f:
            f.write("[")
            for n, row in enumerate(coco_predictions(predictions, ids, segmentations), 1):
                f.write(("," if n > 1 else "") + json.dumps(row))
            f.write("]")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return n


def pycocotools_map(annotations: str, predictions: str, image_ids: list | None = None,
                    iou_type: str = "bbox") -> tuple[float, float]:  # fmt: skip
    """(mAP@0.5, mAP@0.5:0.95) of a predictions JSON by pycocotools' COCOeval, on `image_ids` (default: all), of its
    boxes (`iou_type` "bbox") or masks ("segm")."""
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
        ev = COCOeval(gt, gt.loadRes(rows), iou_type)
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])


def coco_annotations(data_yaml: str) -> str:
    """COCO's instances_val2017.json where YOLOv5's coco.yaml puts it (<path>/annotations/), or "" (said) when it
    is not there."""
    from fastload.pack.sources import data_yaml as read_data_yaml
    from yolo.run_data import say

    path = os.path.join(read_data_yaml(data_yaml).root, "annotations", "instances_val2017.json")
    if os.path.isfile(path):
        return path
    say(f"{path}: not there, so no pycocotools mAP (YOLOv5's coco.yaml download puts it there)")
    return ""


def split_annotations(dataset: str, split: str) -> str:
    """The COCO JSON of `split` when `dataset` is a COCO folder (fastload.pack.coco_folder), or "": its images'
    ids and categories, and pycocotools' mAP beside fastload's."""
    from fastload.pack.coco_folder import coco_jsons
    from yolo.run_data import say

    if not dataset or not os.path.isdir(dataset):
        return ""
    found = next((path for path, _, s in coco_jsons(dataset) if s == split), "")
    if found:
        say(f"{found}: the {split} split's COCO JSON: pycocotools scores the predictions too")
    return found
