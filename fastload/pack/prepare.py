"""One input of a pack read, validated and converted into a record: what the packer's worker processes run."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fastload.errors import BadInput
from fastload.pack.archive import read_member
from fastload.pack.class_folders import class_row
from fastload.pack.classes import ClassSelection
from fastload.pack.images import PackedImage, pack_image
from fastload.pack.labelme import labelme_rows
from fastload.pack.labels import parse_yolo_text, validate_rows
from fastload.pack.sources import Item
from fastload.pack.voc import voc_rows
from fastload.pool import died_reading
from fastload.store.record import EMPTY_LABEL, FIXED, MISSING_LABEL, Record

BY_NAME = ("voc", "labelme", "classify")  # sources whose labels name their classes (their ids: the places in the names)


@dataclass(slots=True)
class Prepared:
    """What a worker hands back for one input: a record, or the reason it was skipped."""

    record: Record | None
    skip: dict | None = None
    note: str = ""
    label: str = "ok"  # ok | missing | empty
    stamp: bytes = b""  # (path, size, mtime) of the inputs, for the source fingerprint
    inputs: tuple[int, int, int, int] = (-1, -1, -1, -1)  # image (bytes, mtime ns), label file's: the stamps column

    def stamps(self) -> tuple[int, ...]:
        """The record's row of the stamps column (record.STAMPS)."""
        label = MISSING_LABEL * (self.label == "missing") + EMPTY_LABEL * (self.label == "empty")
        return (*self.inputs, FIXED * bool(self.note) + label)


def worker_died(item: Item, how: str) -> Prepared:
    """The input whose worker died on it (alone, and again: not the machine's doing) is skipped, the rest packed."""
    return Prepared(None, {"path": item.rel, "reason": died_reading(how)})


def stat_of(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def stamp_of(rel: str, stat: tuple[int, int] | None) -> bytes:
    """The fingerprint's line for one input file (its path, size and modification time, or '-': unreadable)."""
    return (f"{rel}\0{stat[0]}\0{stat[1]}\n" if stat else f"{rel}\0-\n").encode()


def _label_rows(item: Item, img: PackedImage, class_ids: dict[str, int] | None, kind: str) -> tuple:
    """(rows, polygons or None, label status, note) for one item: from its COCO annotations, VOC XML or LabelMe
    JSON (`kind`; `class_ids`: the source's class ids by name) or YOLO .txt."""
    if item.coco is not None:
        rows, (w, h), polygons = item.coco
        w, h = (w or img.labelled[1]), (h or img.labelled[0])
        xywh = rows[:, 1:] / np.array([w, h, w, h], np.float64)
        norm = np.concatenate([rows[:, :1], xywh[:, :2] + xywh[:, 2:] / 2, xywh[:, 2:]], axis=1)
        if polygons is not None:
            polygons = [p / np.array([w, h], np.float64) for p in polygons]
        return norm, polygons, "ok" if len(rows) else "empty", ""
    if kind == "classify":
        return class_row(item.rel, class_ids), None, "ok", ""
    if not os.path.isfile(item.label):
        return np.zeros((0, 5)), None, "missing", ""
    with open(item.label, "rb") as f:
        data = f.read()
    if kind == "voc":
        rows, note = voc_rows(data, class_ids, img.labelled)
        return rows, None, "ok" if len(rows) else "empty", note
    if kind == "labelme":
        rows, polygons, note = labelme_rows(data, class_ids, img.labelled)
        return rows, polygons, "ok" if len(rows) else "empty", note
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("label file is not UTF-8 text") from None
    rows, polygons = parse_yolo_text(text)
    return rows, polygons, "ok" if len(rows) else "empty", ""


def prepare(
    item: Item,
    nc: int | None,
    max_side: int | None,
    quality: int,
    class_ids: dict[str, int] | None = None,
    selection: ClassSelection | None = None,
    kind: str = "yolo",
    members: dict[str, tuple] | None = None,
) -> Prepared:
    """Read, validate and convert one input (runs in a worker process) of a source of `kind` (its label format).
    `class_ids`: a VOC or LabelMe source's class ids by name; `selection`: the classes to keep (--classes);
    `members`: images read in place from an archive (fastload.pack.archive), by the path of their empty stand-in."""
    image_stat = stat_of(item.image)
    stamp = stamp_of(item.rel, image_stat)
    try:
        try:
            if item.data is not None:
                data = item.data
            elif members and item.image in members:
                data = read_member(members[item.image])
            else:
                with open(item.image, "rb") as f:
                    data = f.read()
        except FileNotFoundError:
            raise BadInput("file not found") from None
        except OSError as e:
            raise BadInput(f"cannot read ({e.strerror})") from None
        img = pack_image(data, max_side, quality)
    except BadInput as e:
        return Prepared(None, {"path": item.rel, "reason": str(e)}, stamp=stamp)
    try:
        rows, polygons, status, label_note = _label_rows(item, img, class_ids, kind)
        label_stat = None
        if status != "missing" and item.label:
            label_stat = stat_of(item.label)
            stamp += stamp_of(item.label_rel, label_stat)
        boxes, polygons, note = validate_rows(rows, nc, polygons)
        if selection is not None:
            boxes, polygons = selection.apply(boxes, polygons)
    except BadInput as e:
        return Prepared(None, {"path": item.label_rel or item.rel, "reason": str(e)}, stamp=stamp)
    rec = Record(img.data, boxes, img.size, item.rel, segments=polygons)
    rec.crc32 = rec.compute_crc()
    note = "; ".join(n for n in (img.note, label_note, note) if n)
    inputs = (*(image_stat or (-1, -1)), *(label_stat or (-1, -1)))
    return Prepared(rec, note=note, label=status, stamp=stamp, inputs=inputs)
