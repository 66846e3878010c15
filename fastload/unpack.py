"""`fastload unpack STORE -o DIR`: a store written back out as a dataset folder, for the tools that read only folders
(a classification store: its class folders, <split>/<class>/):
YOLOv5's layout (images/<split>/, labels/<split>/, data.yaml) for its own train.py on a dataset fastload converted
from COCO or VOC, picked classes of, or split anew; or COCO's (images/<split>/, annotations/instances_<split>.json)
for the frameworks that read COCO JSON; or Pascal VOC's (JPEGImages/, Annotations/, ImageSets/Main/). Packing the
folder again gives the same images, boxes and polygons (VOC: boxes only)."""

from __future__ import annotations

import json
import os
import shutil
import time
from xml.sax.saxutils import escape

import numpy as np
import yaml
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.store import open_store, read_meta
from fastload.store.record import MISSING_LABEL
from fastload.store.tempfiles import partial_path, remove_stale_partials
from fastload.verify import problem_of, record_path


def unpack(store: str, out: str, splits: list[str] | None = None, quiet: bool = False, fmt: str = "yolo") -> dict:
    """Write the splits `splits` (default: all) of `store` into the folder `out` (which must not exist, or be empty)
    in the layout `fmt` (yolo, coco or voc), through `<out>.partial-<pid>` renamed into place; a damaged record is left
    out and listed in `skipped`."""
    t0 = time.perf_counter()
    _, meta = read_meta(store)
    splits = splits or list(meta["splits"])
    unknown = [s for s in splits if s not in meta["splits"]]
    if unknown:
        raise FastloadError(f"{store}: no split {unknown[0]!r} (its splits: {', '.join(meta['splits'])})")
    out = os.path.abspath(out.rstrip("/") or out)
    if os.path.lexists(out) and not (os.path.isdir(out) and not os.listdir(out)):
        raise FastloadError(f"{out}: exists; not overwriting it (give a new folder)")
    remove_stale_partials(out)
    tmp = partial_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    if meta.get("task") == "classify":  # class folders, as it was packed from
        if fmt != "yolo":
            raise FastloadError(f"{store}: a classification store unpacks into class folders, not {fmt}'s layout")
        fmt = "classify"
    report = {"store": store, "out": out, "format": fmt, "splits": {}, "skipped": []}
    writer = {"yolo": YoloLabels, "coco": CocoLabels, "voc": VocLabels, "classify": ClassFolders}[fmt]
    taken: set[str] = set()  # file names given (VOC's splits share one folder: across them)
    try:
        for split in splits:
            labels = writer(tmp, split, meta["names"])
            taken = taken if fmt == "voc" else set()
            records = open_store(store, split)
            report["splits"][split] = _unpack_split(records, labels, taken, report["skipped"], quiet)
        if fmt == "yolo":
            config = {"path": out, **{s: f"images/{s}" for s in splits}, "nc": len(meta["names"])}
            config["names"] = dict(enumerate(meta["names"]))
            with open(os.path.join(tmp, "data.yaml"), "w") as f:
                yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)
        if os.path.isdir(out):
            os.rmdir(out)  # empty: its place is taken
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if fmt == "yolo":
        report["data_yaml"] = os.path.join(out, "data.yaml")
    elif fmt == "coco":
        report["annotations"] = {s: os.path.join(out, "annotations", f"instances_{s}.json") for s in splits}
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def _unpack_split(store, labels, taken: set[str], skipped: list, quiet: bool) -> dict:
    split, images = store.split, labels.images
    stamps = store.stamps()
    counts = {"images": 0, "labels": 0, "boxes": 0, "polygons": 0}
    for i in tqdm(range(len(store)), desc=f"unpack {split}", unit="img", disable=quiet or None, leave=False):
        try:
            rec = store.get(i)
            problem = problem_of(rec)
        except Exception as e:  # whatever reading it raises is the record's problem
            rec, problem = None, str(e) or type(e).__name__
        if problem is not None:
            skipped.append({"split": split, "index": i, "path": record_path(store, i), "reason": problem})
            continue
        name = _file_name(rec.path, taken, i)
        path = labels.image_path(rec, name) if isinstance(labels, ClassFolders) else os.path.join(images, name + ".jpg")
        with open(path, "wb") as f:
            f.write(rec.image)  # a store's images are JPEGs (others were re-encoded when packed)
        counts["images"] += 1
        missing = bool(stamps is not None and int(stamps[i, 4]) & MISSING_LABEL)
        counts["labels"] += labels.add(rec, name, missing)
        counts["boxes"] += len(rec.boxes)
        counts["polygons"] += len(rec.segments or ())
    labels.close()
    return counts


class ClassFolders:
    """A classification store's pictures in <split>/<class>/ (ImageNet's layout, as class folders pack); no labels."""

    def __init__(self, root: str, split: str, names: list[str]) -> None:
        self.images, self.names = os.path.join(root, split), names
        for name in names:
            os.makedirs(os.path.join(self.images, name))

    def image_path(self, rec, name: str) -> str:
        return os.path.join(self.images, self.names[int(rec.boxes[0, 0])], name + ".jpg")

    def add(self, rec, name: str, missing: bool) -> bool:
        return False

    def close(self) -> None:
        pass


class YoloLabels:
    """images/<split>/ and labels/<split>/<name>.txt per image: YOLO rows."""

    def __init__(self, root: str, split: str, names: list[str]) -> None:
        self.images, self.folder = os.path.join(root, "images", split), os.path.join(root, "labels", split)
        os.makedirs(self.images)
        os.makedirs(self.folder)

    def add(self, rec, name: str, missing: bool) -> bool:
        """Write the record's label file, unless it was packed without one and has no boxes; whether it wrote."""
        if missing and not len(rec.boxes):
            return False
        with open(os.path.join(self.folder, name + ".txt"), "w") as f:
            f.write(label_text(rec.boxes, rec.segments))
        return True

    def close(self) -> None:
        pass


class CocoLabels:
    """annotations/instances_<split>.json: COCO's images, annotations (pixel boxes, polygons) and categories (ids
    from 1). Its two lists are written to temporary files as the records come and joined at the end, so that a
    large split is never held in memory."""

    def __init__(self, root: str, split: str, names: list[str]) -> None:
        self.images = os.path.join(root, "images", split)
        os.makedirs(self.images)
        folder = os.path.join(root, "annotations")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"instances_{split}.json")
        self.parts = [open(f"{self.path}.{part}", "w+") for part in ("images", "annotations")]
        self.categories = [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(names)]
        self.image_id = self.annotation_id = 0

    def add(self, rec, name: str, missing: bool) -> bool:
        h, w = rec.size
        self.image_id += 1
        image = {"id": self.image_id, "file_name": name + ".jpg", "width": w, "height": h}
        self._write(0, image)
        for k, (c, cx, cy, bw, bh) in enumerate(rec.boxes.astype(np.float64).tolist()):
            self.annotation_id += 1
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            ann = {"id": self.annotation_id, "image_id": self.image_id, "category_id": int(c) + 1, "bbox": box}
            ann["area"], ann["iscrowd"] = box[2] * box[3], 0
            if rec.segments is not None:
                points = rec.segments[k].astype(np.float64) * (w, h)
                ann["segmentation"] = [points.ravel().tolist()]
                ann["area"] = _polygon_area(points)
            self._write(1, ann)
        return True

    def _write(self, part: int, item: dict) -> None:
        f = self.parts[part]
        f.write(("," if f.tell() else "") + json.dumps(item))

    def close(self) -> None:
        with open(self.path, "w") as out:
            out.write('{"info": {"description": "written by fastload unpack"}, "images": [')
            for k, key in enumerate(("images", "annotations")):
                self.parts[k].seek(0)
                shutil.copyfileobj(self.parts[k], out)
                out.write('], "annotations": [' if key == "images" else "], ")
            out.write(f'"categories": {json.dumps(self.categories)}}}')
        for f in self.parts:
            f.close()
            os.remove(f.name)


class VocLabels:
    """Pascal VOC's layout: JPEGImages/ (every split's images), Annotations/<name>.xml, ImageSets/Main/<split>.txt,
    and classes.txt (the store's names in order). Boxes in pixels as YOLOv5's VOC.yaml reads them back (its centres
    less one pixel: here one more); no polygons (VOC has none)."""

    def __init__(self, root: str, split: str, names: list[str]) -> None:
        self.images, self.folder = os.path.join(root, "JPEGImages"), os.path.join(root, "Annotations")
        os.makedirs(self.images, exist_ok=True)
        os.makedirs(self.folder, exist_ok=True)
        os.makedirs(os.path.join(root, "ImageSets", "Main"), exist_ok=True)
        with open(os.path.join(root, "classes.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
        self.names, self.ids = names, open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w")

    def add(self, rec, name: str, missing: bool) -> bool:
        self.ids.write(name + "\n")
        if missing and not len(rec.boxes):
            return False
        h, w = rec.size
        objects = []
        for c, cx, cy, bw, bh in rec.boxes.astype(np.float64).tolist():
            x1, y1, x2, y2 = (cx - bw / 2) * w + 1, (cy - bh / 2) * h + 1, (cx + bw / 2) * w + 1, (cy + bh / 2) * h + 1
            box = "".join(f"<{k}>{round(v, 6)!r}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"),
                                                                        (x1, y1, x2, y2), strict=True))  # fmt: skip
            objects.append(f"<object><name>{escape(self.names[int(c)])}</name><difficult>0</difficult>"
                           f"<bndbox>{box}</bndbox></object>")  # fmt: skip
        with open(os.path.join(self.folder, name + ".xml"), "w") as f:
            size = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            f.write(f"<annotation><folder>JPEGImages</folder><filename>{escape(name)}.jpg</filename>{size}"
                    f"{''.join(objects)}</annotation>\n")  # fmt: skip
        return True

    def close(self) -> None:
        self.ids.close()


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _file_name(path: str, taken: set[str], i: int) -> str:
    """The record's file name without its suffix; when a record of the split already took it (two folders'
    000001.jpg), its path with '/' as '_', then with its index."""
    stem = os.path.splitext(os.path.basename(path))[0] or f"{i:06d}"
    name = next(
        (n for n in (stem, os.path.splitext(path.strip("/"))[0].replace("/", "_")) if n not in taken), f"{stem}_{i}"
    )
    while name in taken:  # a file that was itself named so
        name += "_"
    taken.add(name)
    return name


def label_text(boxes: np.ndarray, polygons: list[np.ndarray] | None) -> str:
    """YOLO label rows: `cls cx cy w h`, or `cls x1 y1 x2 y2 ...` where the record has polygons; each number in the
    shortest text that reads back as the same float32, so that packing the file again gives the same labels."""
    lines = []
    for k, row in enumerate(boxes):
        coords = row[1:] if polygons is None else polygons[k].ravel()
        lines.append(" ".join([str(int(row[0])), *(_shortest(v) for v in coords)]))
    return "".join(line + "\n" for line in lines)


def _shortest(v: np.float32) -> str:
    return np.format_float_positional(np.float32(v), unique=True, trim="-")
