"""`fastload unpack STORE -o DIR`: a store written back out as a YOLOv5 dataset (images/<split>/, labels/<split>/,
data.yaml), for the tools that read only folders: YOLOv5's own train.py on a dataset fastload converted from COCO
or VOC, or picked classes of, or split anew. Packing the folder again gives the same images, boxes and polygons."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import yaml
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.store import open_store, read_meta
from fastload.store.record import MISSING_LABEL
from fastload.store.tempfiles import partial_path, remove_stale_partials
from fastload.verify import problem_of, record_path


def unpack(store: str, out: str, splits: list[str] | None = None, quiet: bool = False) -> dict:
    """Write the splits `splits` (default: all) of `store` into the folder `out` (which must not exist, or be empty),
    through `<out>.partial-<pid>` renamed into place; a damaged record is left out and listed in `skipped`."""
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
    report = {"store": store, "out": out, "splits": {}, "skipped": []}
    try:
        for split in splits:
            report["splits"][split] = _unpack_split(open_store(store, split), tmp, split, report["skipped"], quiet)
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
    report["data_yaml"] = os.path.join(out, "data.yaml")
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def _unpack_split(store, root: str, split: str, skipped: list, quiet: bool) -> dict:
    images, labels = os.path.join(root, "images", split), os.path.join(root, "labels", split)
    os.makedirs(images)
    os.makedirs(labels)
    stamps = store.stamps()
    taken: set[str] = set()
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
        with open(os.path.join(images, name + ".jpg"), "wb") as f:
            f.write(rec.image)  # a store's images are JPEGs (others were re-encoded when packed)
        counts["images"] += 1
        missing = stamps is not None and int(stamps[i, 4]) & MISSING_LABEL
        if len(rec.boxes) or not missing:  # an image packed without a label file gets none again
            with open(os.path.join(labels, name + ".txt"), "w") as f:
                f.write(label_text(rec.boxes, rec.segments))
            counts["labels"] += 1
        counts["boxes"] += len(rec.boxes)
        counts["polygons"] += len(rec.segments or ())
    return counts


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
