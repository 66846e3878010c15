"""Pascal VOC against YOLOv5's own conversion: `fastload pack VOCdevkit` (the XML read as it is) against YOLOv5's
data/VOC.yaml download script (its convert_label and image moves, run as YOLOv5's check_dataset runs it, with the
archive download left out) followed by `fastload pack VOC.yaml`. Prints JSON: whether both give the same splits and
boxes, and how long each way takes. Needs the `compare` extra (`pip install -e .[compare]`).

    python benchmarks/voc_yolov5.py --images 2000 --repeats 3

A generated demo dataset (under runs/bench/) written as VOC2007 (train, val, test) and VOC2012 (train, val), its
three classes named as three of VOC's, every seventh object `difficult`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time

import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastload.demo_data import DemoConfig, generate  # noqa: E402
from fastload.pack import PackOptions, pack  # noqa: E402
from fastload.pack.labels import parse_yolo_text  # noqa: E402
from fastload.store import open_store  # noqa: E402

AS_VOC = {0: "car", 1: "dog", 2: "person"}  # the demo's classes under VOC names
SETS = (("2007", "train"), ("2007", "val"), ("2007", "test"), ("2012", "train"), ("2012", "val"))


def write_vocdevkit(demo: str, out: str) -> int:
    """The demo's images and labels as a VOCdevkit (integer pixel boxes counted from 1); returns the objects
    written."""
    from PIL import Image

    folder = os.path.join(demo, "images", "train")
    files = sorted(os.listdir(folder))
    listed = {s: [] for s in SETS}
    objects = 0
    for n, f in enumerate(files):
        year, image_set = SETS[n % len(SETS)]
        image_id = f"{year}_{n:06d}"
        voc = os.path.join(out, f"VOC{year}")
        os.makedirs(os.path.join(voc, "JPEGImages"), exist_ok=True)
        os.makedirs(os.path.join(voc, "Annotations"), exist_ok=True)
        shutil.copyfile(os.path.join(folder, f), os.path.join(voc, "JPEGImages", f"{image_id}.jpg"))
        w, h = Image.open(os.path.join(folder, f)).size
        with open(os.path.join(demo, "labels", "train", os.path.splitext(f)[0] + ".txt")) as lb:
            rows, _ = parse_yolo_text(lb.read())
        xml = [f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
        for cls, cx, cy, bw, bh in rows:
            x1, y1 = max(1, round((cx - bw / 2) * w) + 1), max(1, round((cy - bh / 2) * h) + 1)
            x2, y2 = min(w, round((cx + bw / 2) * w)), min(h, round((cy + bh / 2) * h))
            xml.append(f"<object><name>{AS_VOC[int(cls)]}</name><difficult>{int(objects % 7 == 6)}</difficult>"
                       f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
                       "</object>")  # fmt: skip
            objects += 1
        with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as a:
            a.write("".join(xml) + "</annotation>")
        listed[(year, image_set)].append(image_id)
    for (year, image_set), ids in listed.items():
        main = os.path.join(out, f"VOC{year}", "ImageSets", "Main")
        os.makedirs(main, exist_ok=True)
        with open(os.path.join(main, f"{image_set}.txt"), "w") as f:
            f.writelines(f"{i}\n" for i in ids)
    return objects


def yolov5_convert(voc_yaml: str, devkit: str, into: str) -> tuple[str, float]:
    """YOLOv5's VOC.yaml download script run on a copy of `devkit` under `into`/images (where its download would
    have unpacked the archives); returns the data.yaml to pack its result with, and the seconds it took."""
    import yolov5.utils.general as general

    general.download = lambda *args, **kw: None  # the archives are already there
    with open(voc_yaml) as f:
        cfg = yaml.safe_load(f)
    shutil.copytree(devkit, os.path.join(into, "images", "VOCdevkit"))
    cfg["path"] = into
    t0 = time.perf_counter()
    exec(cfg["download"], {"yaml": cfg})  # as YOLOv5's check_dataset runs it
    secs = time.perf_counter() - t0
    data = os.path.join(into, "VOC.yaml")
    with open(data, "w") as f:
        yaml.safe_dump({k: v for k, v in cfg.items() if k not in ("download", "test")}, f)  # test: val again
    return data, secs


def records(path: str) -> dict[str, dict[str, np.ndarray]]:
    """{split: {image file name: its boxes with class names, sorted}} of a store."""
    from fastload.store import read_meta

    names = read_meta(path)[1]["names"]
    out = {}
    for split in read_meta(path)[1]["splits"]:
        store = open_store(path, split)
        got = {}
        for i in range(len(store)):
            rec = store.get(i)
            rows = sorted((names[int(r[0])], *np.round(r[1:].astype(np.float64), 7)) for r in rec.boxes)
            got[os.path.basename(rec.path)] = rows
        out[split] = got
    return out


def compare(a: dict, b: dict) -> dict:
    same_images = {s: set(a[s]) == set(b.get(s, ())) for s in a}
    diff, unequal, boxes = 0.0, 0, 0
    for split, recs in a.items():
        for name, rows in recs.items():
            other = b.get(split, {}).get(name)
            if other is None or [r[0] for r in rows] != [r[0] for r in other]:
                unequal += 1
                continue
            boxes += len(rows)
            if rows:
                diff = max(diff, float(np.abs(np.array([r[1:] for r in rows]) - [r[1:] for r in other]).max()))
    return {"same_images_per_split": same_images, "images_with_other_classes": unequal, "boxes_compared": boxes,
            "max_box_difference": diff}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="runs/bench/voc")
    args = ap.parse_args()
    import yolov5

    shutil.rmtree(args.out, ignore_errors=True)
    demo, devkit = os.path.join(args.out, "demo"), os.path.join(args.out, "VOCdevkit")
    generate(demo, DemoConfig(images=args.images, seed=0, val_fraction=0.0))
    objects = write_vocdevkit(demo, devkit)
    voc_yaml = os.path.join(os.path.dirname(yolov5.__file__), "data", "VOC.yaml")
    data, convert_secs = yolov5_convert(voc_yaml, devkit, os.path.abspath(os.path.join(args.out, "yolov5")))
    opts = PackOptions(workers=args.workers)
    ways = {"voc": devkit, "yolov5_converted": data}
    secs = {w: [] for w in ways}
    for _ in range(args.repeats):
        for way, src in ways.items():
            out = os.path.join(args.out, f"{way}.lmdb")
            t0 = time.perf_counter()
            report = pack(src, out, PackOptions(workers=opts.workers, reuse=None), quiet=True)
            secs[way].append(time.perf_counter() - t0)
            assert not report["skipped"], report["skipped"][:3]
    result = {
        "benchmark": "voc_yolov5",
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
        "images": args.images,
        "objects": objects,
        "yolov5": yolov5.__version__,
        "parity": compare(
            records(os.path.join(args.out, "voc.lmdb")), records(os.path.join(args.out, "yolov5_converted.lmdb"))
        ),  # fmt: skip
        "splits": {s: len(r) for s, r in records(os.path.join(args.out, "voc.lmdb")).items()},
        "yolov5_conversion_s": round(convert_secs, 3),
        "pack_s_median": {w: round(statistics.median(v), 3) for w, v in secs.items()},
        "pack_s": {w: [round(x, 3) for x in v] for w, v in secs.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
