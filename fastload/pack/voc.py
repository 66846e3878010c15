"""Pascal VOC datasets (VOCdevkit/VOC2007, VOC2012, or one folder in their layout: Annotations/*.xml,
JPEGImages/, ImageSets/Main/<set>.txt; or images/ and annotations/; or XML beside the images), listed and converted
as YOLOv5's data/VOC.yaml converts them."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from fastload.errors import BadInput
from fastload.pack.images import IMAGE_SUFFIXES
from fastload.pack.labels import TOLERANCE, img2label_path


class Folder(NamedTuple):
    """One folder of a VOC dataset: where its images and its annotations (<image's name>.xml) are."""

    root: str  # VOC2007/, ... (ImageSets/Main/ is under it)
    images: str
    annotations: str


def voc_folders(root: str) -> list[Folder]:
    """The VOC folders `root` is or holds (VOCdevkit/VOC2007, ...: directly, or under its VOCdevkit/), sorted; []
    for a folder that is not a VOC dataset. A folder is one when it has JPEGImages/ (or images/, without a YOLO
    labels/ beside) and Annotations/ (or annotations/) with XML in it, or XML beside its images and no YOLO .txt
    (LabelImg's default)."""
    if folder := _voc_folder(root):
        return [folder]
    for base in (root, os.path.join(root, "VOCdevkit")):
        if os.path.isdir(base):
            found = [f for d in sorted(os.listdir(base)) if (f := _voc_folder(os.path.join(base, d), flat=False))]
            if found:
                return found
    return []


def _voc_folder(folder: str, flat: bool = True) -> Folder | None:
    if not os.path.isdir(folder):
        return None
    entries = os.listdir(folder)
    images = next((os.path.join(folder, d) for d in ("JPEGImages", "images") if d in entries), None)
    notes = next((os.path.join(folder, d) for d in ("Annotations", "annotations") if d in entries), None)
    if images and notes and os.path.isdir(images) and os.path.isdir(notes) and "labels" not in entries:
        if any(f.endswith(".xml") for f in os.listdir(notes)):
            return Folder(folder, images, notes)
    if flat:  # XML beside the images: packed from XML only where none of them has a YOLO label (YOLOv5's rule)
        xml = {f[:-4] for f in entries if f.endswith(".xml")}
        labelled = [os.path.join(folder, f) for f in entries
                    if f.lower().endswith(IMAGE_SUFFIXES) and os.path.splitext(f)[0] in xml]  # fmt: skip
        if labelled and not any(os.path.isfile(img2label_path(p)) for p in labelled):
            return Folder(folder, folder, folder)
    return None


@dataclass
class Listing:
    splits: dict[str, list[str]] = field(default_factory=dict)  # absolute image paths, sorted
    labels: dict[str, str] = field(default_factory=dict)  # image path -> its annotation's path (which may not exist)
    skipped: list[dict] = field(default_factory=list)


def voc_listing(root: str, folders: list[Folder]) -> Listing:
    """Each VOC folder's image sets (ImageSets/Main/<set>.txt; a folder without them: every image, to train) as
    splits. As YOLOv5's VOC.yaml: when some folder has an annotated test set (VOC2007's), train is every train and
    val set and val the test sets; otherwise train and val as listed. trainval counts where train and val are absent;
    a set of another name (CVAT's `default`) goes to train; a test set without annotations is left out."""
    per_year = []
    for year in folders:
        images = _images_by_stem(year.images)  # listed once: the sets' ids are looked up in it
        per_year.append((year, images, _image_sets(year, images)))
    tested = [any(os.path.isfile(_annotation(year, i)) for i in sets.get("test", [])) for year, _, sets in per_year]
    listing = Listing()
    for (year, images, sets), annotated in zip(per_year, tested, strict=True):
        for name, ids in sets.items():
            split = _split_of(name, any(tested), annotated, set(sets))
            if split is None:
                continue
            for image_id in ids:
                path = images.get(image_id)
                if path is None:
                    where = os.path.relpath(os.path.join(year.root, "ImageSets", "Main", f"{name}.txt"), root)
                    lacks = os.path.basename(year.images)
                    listing.skipped.append({"path": where, "reason": f"lists {image_id}, which {lacks}/ lacks"})
                    continue
                listing.splits.setdefault(split, []).append(path)
                listing.labels[path] = _annotation(year, image_id)
    listing.splits = {s: sorted(set(listing.splits[s])) for s in ("train", "val") if s in listing.splits}
    return listing


def _split_of(name: str, tested: bool, annotated: bool, present: set[str]) -> str | None:
    """The split of image set `name` of a folder (`annotated`: its test set has annotations) in a dataset some of
    whose folders have an annotated test set (`tested`); None: left out."""
    if name == "test":
        return "val" if annotated else None  # a test set without annotations (VOC2012's): nothing to score
    if name == "val":
        return "train" if tested else "val"
    if name == "trainval":
        return None if present & {"train", "val"} else "train"
    return "train"


def _image_sets(year: Folder, images: dict[str, str]) -> dict[str, list[str]]:
    """{set: image ids} of ImageSets/Main (the per-class lists, <class>_<set>.txt, left out); a folder without
    them: {'train': the id of every one of `images` (its JPEGImages/, by id)}."""
    main = os.path.join(year.root, "ImageSets", "Main")
    sets = {}
    if os.path.isdir(main):
        for f in sorted(os.listdir(main)):
            stem, ext = os.path.splitext(f)
            if ext == ".txt" and "_" not in stem:
                with open(os.path.join(main, f), encoding="utf-8") as lines:
                    sets[stem] = [ln.split()[0] for ln in lines if ln.strip()]
    return sets or {"train": sorted(images)}


def _images_by_stem(folder: str) -> dict[str, str]:
    """{file name without its suffix: path} of the images in `folder` (VOC's are <id>.jpg)."""
    return {
        os.path.splitext(f)[0]: os.path.join(folder, f)
        for f in sorted(os.listdir(folder), reverse=True)  # two of one id: the first by name wins (.jpg before .png)
        if f.lower().endswith(IMAGE_SUFFIXES)
    }


def _annotation(year: Folder, image_id: str) -> str:
    return os.path.join(year.annotations, f"{image_id}.xml")


def voc_names(annotations) -> list[str]:
    """Every object class named in `annotations` (XML paths), sorted: VOC's own 20 classes are in that order, as
    YOLOv5's VOC.yaml names them. A missing or unreadable file is passed over here (packing it says why)."""
    names = set()
    for path in annotations:
        try:
            names.update(_text(obj, "name") for obj in ET.parse(path).getroot().iter("object"))
        except (OSError, ET.ParseError, BadInput):
            continue
    return sorted(names)


def voc_rows(data: bytes, classes: dict[str, int], image_size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """(rows float64 [n, 5] class, cx, cy, w, h normalised, note) of one VOC annotation, as YOLOv5's VOC.yaml
    converts it: `difficult` objects left out, pixel boxes to centres less one (VOC counts pixels from 1), divided by
    the <size> it gives (the image's own, `image_size` (h, w), where it gives none). Objects of a class `classes`
    lacks are left out and named in the note."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise BadInput(f"not a Pascal VOC annotation (XML: {e})") from None
    w, h = _size(root) or image_size[::-1]
    rows, unknown = [], set()
    for n, obj in enumerate(root.iter("object"), 1):
        name = _text(obj, "name")
        if _difficult(obj, n):
            continue
        if name not in classes:
            unknown.add(name)
            continue
        box = obj.find("bndbox")
        try:
            x1, x2, y1, y2 = (float(box.find(k).text) for k in ("xmin", "xmax", "ymin", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise BadInput(f"object {n} ({name}): no numeric bndbox xmin, ymin, xmax, ymax") from None
        row = [(x1 + x2) / 2 - 1, (y1 + y2) / 2 - 1, x2 - x1, y2 - y1] / np.array([w, h, w, h], np.float64)
        edges = np.array([row[0] - row[2] / 2, row[1] - row[3] / 2, row[0] + row[2] / 2, row[1] + row[3] / 2])
        if not np.isfinite(row).all() or (edges < -TOLERANCE).any() or (edges > 1 + TOLERANCE).any():
            raise BadInput(f"object {n} ({name}): box {x1:g},{y1:g},{x2:g},{y2:g} outside the {w}x{h} image")
        rows.append([classes[name], *row])
    note = f"objects of classes not in names left out: {', '.join(sorted(unknown))}" if unknown else ""
    return np.asarray(rows, np.float64).reshape(-1, 5), note


def _text(element, tag: str) -> str:
    text = element.findtext(tag)
    if text is None or not text.strip():
        raise BadInput(f"an <{element.tag}> without <{tag}>")
    return text.strip()


def _difficult(obj, n: int) -> bool:
    flag = (obj.findtext("difficult") or "0").strip()
    if flag not in ("0", "1"):
        raise BadInput(f"object {n}: <difficult> is {flag!r}, not 0 or 1")
    return flag == "1"


def _size(root) -> tuple[int, int] | None:
    """(width, height) of the annotation's <size>, or None where it has none (or gives 0, as some tools write)."""
    size = root.find("size")
    if size is None:
        return None
    try:
        w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
    except (TypeError, ValueError):
        raise BadInput("<size> without a numeric width and height") from None
    return (w, h) if w > 0 and h > 0 else None
