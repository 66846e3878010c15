"""The commands on stores: `info`, `verify` (and `--duplicates`), `unpack` (a store back out as a dataset folder)
and `merge` (stores joined by class name)."""

from __future__ import annotations

import sys
import time

import click

from fastload.cli import DEDUPE_OPTION, default_workers, emit, main


@main.command()
@click.argument("stores", type=str, nargs=-1, required=True)
@click.option("-o", "--out", required=True, help="Store to write (LMDB file or Zarr directory/URL).")
@click.option(
    "--format", "fmt", type=click.Choice(["lmdb", "zarr"]), default=None,
    help="Default: zarr for *.zarr or a URL, else lmdb.",
)  # fmt: skip
@click.option("--strict", is_flag=True, help="Stop with exit 2 at the first damaged record.")
@DEDUPE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def merge(stores: tuple[str, ...], out: str, fmt: str | None, strict: bool, dedupe: bool | str, as_json: bool):
    """Join STORES into one store: their classes matched by name, each record under its store's name.

    \b
    Examples:
      fastload merge roboflow.lmdb mine.lmdb -o both.lmdb     # names: roboflow's, then mine's new ones
      fastload pack export.zip -o a.lmdb && fastload pack labelled/ -o b.lmdb && fastload merge a.lmdb b.lmdb -o ab.lmdb
      fastload merge v1.lmdb v2.lmdb -o all.lmdb --dedupe   # two exports of one dataset: each picture once
      fastload merge v1.lmdb v2.lmdb -o all.lmdb --dedupe near   # the same pictures re-encoded or resized too
    """
    from fastload.merge import merge as run_merge
    from fastload.pack.thinning import duplicate_lines
    from fastload.store import format_for

    t0 = time.perf_counter()
    meta = run_merge(list(stores), out, fmt or format_for(out), strict, dedupe=dedupe)
    count = sum(s["count"] for s in meta["splits"].values())
    per_split = ", ".join(f"{name} {split['count']}" for name, split in meta["splits"].items())
    lines = [f"merged {count} images ({per_split}) of {len(stores)} stores into {out} in "
             f"{time.perf_counter() - t0:.1f}s; names: {', '.join(meta['names'])}"]  # fmt: skip
    lines += [f"  {m['prefix']}/: {m['store']} ({len(m['names'])} classes)" for m in meta["pack"]["merged"]]
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in meta["skipped"][:20]]
    lines += duplicate_lines(meta)
    emit({"store": out, **meta}, as_json, lines)


@main.command()
@click.argument("store", type=str)
@click.option("-o", "--out", required=True, help="Folder to write (must not exist, or be empty).")
@click.option("--split", "splits", multiple=True, help="A split to write (repeat for several). Default: all.")
@click.option(
    "--format", "fmt", type=click.Choice(["yolo", "coco", "voc"]), default="yolo", show_default=True,
    help="yolo: labels/<split>/*.txt and data.yaml; coco: annotations/instances_<split>.json; voc: Annotations/*.xml, "
    "ImageSets/Main/<split>.txt.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def unpack(store: str, out: str, splits: tuple[str, ...], fmt: str, as_json: bool):
    """Write STORE back out as a dataset folder: images/<split>/*.jpg with YOLO labels and a data.yaml, or with
    COCO JSONs (--format coco); or Pascal VOC's layout (--format voc). A classification store: its class folders,
    <split>/<class>/*.jpg.

    \b
    Examples:
      fastload unpack voc.lmdb -o datasets/VOC-yolo          # VOC or COCO converted, for YOLOv5's train.py
      fastload unpack people.lmdb -o datasets/people --split val
      fastload unpack data.lmdb -o datasets/data-coco --format coco   # for frameworks that read COCO JSON
      fastload unpack data.lmdb -o datasets/data-voc --format voc     # Pascal VOC's layout
    """
    from fastload.unpack import unpack as run_unpack

    result = run_unpack(store, out, list(splits) or None, fmt=fmt)
    counts = ", ".join(f"{name} {s['images']}" for name, s in result["splits"].items())
    labels = {"yolo": f"its data.yaml: {result.get('data_yaml')}", "coco": "labels in annotations/instances_*.json",
              "voc": "labels in Annotations/*.xml, splits in ImageSets/Main/",
              "classify": "in class folders <split>/<class>/"}[result["format"]]  # fmt: skip
    lines = [f"unpacked {counts} images into {result['out']} in {result['seconds']:.1f}s; {labels}"]
    lines += [f"  skipped {s['split']}[{s['index']}] {s['path']}: {s['reason']}" for s in result["skipped"][:20]]
    emit(result, as_json, lines)


@main.command()
@click.argument("store", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info(store: str, as_json: bool):
    """Describe a store: format, splits, classes, skipped inputs, pack parameters.

    Example: fastload info coco128.lmdb
    """
    import numpy as np

    from fastload.store import disk_bytes, open_store, read_meta

    fmt, meta = read_meta(store)
    size = disk_bytes(store)
    result = {"store": store, **meta, "format": fmt, "disk_bytes": size}
    lines = [f"{store}: {fmt} store v{meta['version']}, {(size or 0) / 1e6:.1f} MB on disk"]
    lines.append(f"  names: {meta['names']}" + ("; a classification store (one class an image)" if
                 meta.get("task") == "classify" else ""))  # fmt: skip
    for k, v in meta["splits"].items():
        classes = open_store(store, k).boxes[:, 0].astype(np.int64)
        counts = np.bincount(classes, minlength=len(meta["names"])) if len(classes) else np.zeros(0, np.int64)
        v["instances"] = {name: int(n) for name, n in zip(meta["names"], counts, strict=False)}  # boxes per class
        shown = ", ".join(f"{name} {n}" for name, n in v["instances"].items())
        polygons = f", {v['polygons']} with polygons" if v.get("polygons") else ""
        boxes = "" if meta.get("task") == "classify" else f", {v.get('boxes', 0)} boxes{polygons}"  # one an image
        lines.append(f"  {k}: {v['count']} images, {v['bytes'] / 1e6:.1f} MB{boxes} ({shown})")
    lines.append(f"  skipped: {len(meta['skipped'])}, fixed: {meta.get('fixed_count', 0)}")
    packed = meta.get("pack", {})
    how = [f"{k} {packed[k]}" for k in ("max_side", "classes", "autosplit") if packed.get(k)]
    kind = packed.get("source_kind") + (f" in a {packed['archive']}" if packed.get("archive") else "")
    origin = packed.get("source")
    origin = " + ".join(origin) if isinstance(origin, list) else origin
    tile = packed.get("tile")
    if tile:  # the records are tiles of the pictures packed
        how.append(f"cut into tiles of {tile['size']} px (overlap {tile['overlap']:g}, objects showing "
                   f"{tile['min_visible']:g} of their area){', and kept whole' * bool(tile.get('whole'))}")  # fmt: skip
    lines.append(f"  packed from {origin} ({kind}) on {packed.get('created')}"
                 + "".join(f", {h}" for h in how))  # fmt: skip
    emit(result, as_json, lines)


@main.command()
@click.argument("store", type=str)
@click.option("--decode", is_flag=True, help="Also decode every image and check its size.")
@click.option("--duplicates", is_flag=True, help="Also find images stored twice (exactly or nearly), across splits.")
@click.option(
    "--distance", type=click.IntRange(0, 32), default=8, show_default=True, help="Near: dHash bits apart (of 128)."
)
@click.option(
    "--crops",
    is_flag=True,
    help="Also find cropped copies (implies --duplicates): each picture against 75 crops of every other.",
)
@click.option(
    "--draw",
    metavar="DIR",
    default=None,
    help="With --duplicates: draw each group (the first 100) into DIR, its images side by side.",
)
@click.option("--crop-distance", type=click.IntRange(0, 32), default=10, show_default=True,
              help="With --crops: dHash bits apart (of 128).")  # fmt: skip
@click.option("--labels", is_flag=True,
              help="Also find labels that look wrong: one object boxed twice (with one class or two), boxes too "
              "small or thin to train at --imgsz.")  # fmt: skip
@click.option("--imgsz", default=640, show_default=True, type=click.IntRange(min=32),
              help="With --labels: the training size the boxes are measured at.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=default_workers(), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def verify(store: str, decode: bool, duplicates: bool, distance: int, crops: bool, draw: str | None,
           crop_distance: int, labels: bool, imgsz: int, workers: int, as_json: bool):  # fmt: skip
    """Check every record's CRC32 (and with --decode, decode every image); exit 1 if any is bad. With --duplicates,
    also list the images stored more than once, byte for byte or nearly (re-encoded, resized), and warn of those in
    two splits (a val image also trained on). With --labels, also list labels that look wrong (warnings).

    \b
    Examples:
      fastload verify coco128.lmdb --decode
      fastload verify data.lmdb --duplicates
      fastload verify data.lmdb --duplicates --crops   # a crop-augmented export's copies too
      fastload verify data.lmdb --duplicates --draw dups/   # each group drawn, its images side by side
      fastload verify data.lmdb --labels --imgsz 640
      fastload verify datasets/export/ --duplicates   # a dataset: packed into the cache first (runs/stores/)
    """
    from fastload.pack.cache import STORES, ensure_store
    from fastload.pack.packer import is_store
    from fastload.verify import verify_store

    given, store = store, store if is_store(store) else ensure_store(store, STORES)[0]  # a dataset: packed once
    result = verify_store(store, decode)
    lines = [f"{store}: {result['checked']} records checked, {len(result['bad'])} bad"]
    lines += [f"  (packed from the dataset {given} into the cache)"] * (store != given)
    lines += [f"  {b['split']}[{b['index']}] {b['path']}: {b['reason']}" for b in result["bad"][:20]]
    if duplicates or crops or draw:
        from fastload.duplicates import find_duplicates

        found = result["duplicates"] = find_duplicates(
            store, distance, workers, crops=crops, crop_distance=crop_distance
        )
        lines.append(f"  duplicates: {found['groups']} groups of images stored more than once "
                     f"({found['images_in_groups']} images), {found['across_splits']} of them across "
                     "splits")  # fmt: skip
        for group in found["listed"][:20]:
            spans = f" across {' and '.join(group['splits'])}" if len(group["splits"]) > 1 else ""
            shown = " = ".join(f"{g['split']}/{g['path']}" for g in group["images"][:4])
            more = f" and {len(group['images']) - 4} more" if len(group["images"]) > 4 else ""
            lines.append(f"  {'warning: ' * bool(spans)}{group['kind']} duplicates{spans}: {shown}{more}")
        if draw:
            from fastload.duplicate_sheets import draw_groups

            found["drawn"] = draw_groups(store, found, draw)
            lines.append(f"  drew {len(found['drawn'])} groups into {draw}")
    if labels:
        from fastload.label_check import check_labels, report_lines
        from fastload.store import read_meta

        result["labels"] = check_labels(store, imgsz=imgsz)
        lines += report_lines(result["labels"], read_meta(store)[1]["names"])
    emit(result, as_json, lines)
    if not result["ok"]:
        sys.exit(1)
