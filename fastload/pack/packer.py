"""`fastload pack`: read → validate → (shrink and re-encode) → write, in parallel, into a store published
atomically. Bad inputs are reported in `skipped` with their path and reason; everything good is kept."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from tqdm import tqdm

from fastload import __version__
from fastload.errors import BadInput, FastloadError
from fastload.pack.images import pack_image
from fastload.pack.labels import parse_yolo_text, validate_rows
from fastload.pack.sources import Item, Source, find_source, label_rel
from fastload.pool import died_reading, ordered_map
from fastload.store import FORMAT_VERSION, open_store, open_writer, read_meta
from fastload.store.record import Record
from fastload.verify import record_path, record_problem

FIXED_LISTED = 1000  # the report lists this many fixed-up inputs; the count covers all


@dataclass(frozen=True)
class PackOptions:
    fmt: str = "lmdb"
    max_side: int | None = None  # shrink larger images to this long side and re-encode; never upscale
    quality: int = 95  # JPEG quality of re-encoded images
    workers: int = 1
    strict: bool = False  # stop at the first bad input
    coco_images: str | None = None
    split: str | None = None  # split name for a COCO JSON (default: from its file name)


@dataclass(slots=True)
class Prepared:
    """What a worker hands back for one input: a record, or the reason it was skipped."""

    record: Record | None
    skip: dict | None = None
    note: str = ""
    label: str = "ok"  # ok | missing | empty
    stamp: bytes = b""  # (path, size, mtime) of the inputs, for the source fingerprint


def _worker_died(item: Item, how: str) -> Prepared:
    """The input whose worker died on it (alone, and again: not the machine's doing) is skipped, the rest packed."""
    return Prepared(None, {"path": item.rel, "reason": died_reading(how)})


def _stamp(path: str, rel: str) -> bytes:
    try:
        st = os.stat(path)
        return f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
    except OSError:
        return f"{rel}\0-\n".encode()


def _label_rows(item: Item, size: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray] | None, str]:
    """(rows, polygons or None, label status) for one item, from its COCO annotations or its YOLO .txt."""
    if item.coco is not None:
        rows, (w, h), polygons = item.coco
        w, h = (w or size[1]), (h or size[0])
        xywh = rows[:, 1:] / np.array([w, h, w, h], np.float64)
        norm = np.concatenate([rows[:, :1], xywh[:, :2] + xywh[:, 2:] / 2, xywh[:, 2:]], axis=1)
        if polygons is not None:
            polygons = [p / np.array([w, h], np.float64) for p in polygons]
        return norm, polygons, "ok" if len(rows) else "empty"
    if not os.path.isfile(item.label):
        return np.zeros((0, 5)), None, "missing"
    with open(item.label, encoding="utf-8", errors="strict") as f:
        try:
            text = f.read()
        except UnicodeDecodeError:
            raise BadInput("label file is not UTF-8 text") from None
    rows, polygons = parse_yolo_text(text)
    return rows, polygons, "ok" if len(rows) else "empty"


def prepare(item: Item, nc: int | None, max_side: int | None, quality: int) -> Prepared:
    """Read, validate and convert one input (runs in a worker process)."""
    stamp = _stamp(item.image, item.rel)
    try:
        try:
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
        rows, polygons, status = _label_rows(item, img.size)
        if status != "missing" and item.label:
            stamp += _stamp(item.label, label_rel(item.rel))
        boxes, polygons, note = validate_rows(rows, nc, polygons)
    except BadInput as e:
        where = label_rel(item.rel) if item.label else item.rel
        return Prepared(None, {"path": where, "reason": str(e)}, stamp=stamp)
    rec = Record(img.data, boxes, img.size, item.rel, segments=polygons)
    rec.crc32 = rec.compute_crc()
    return Prepared(rec, note="; ".join(n for n in (img.note, note) if n), label=status, stamp=stamp)


@dataclass
class Report:
    """What `pack` did; becomes the store metadata and the `--json` output."""

    skipped: list[dict] = field(default_factory=list)
    fixed: list[dict] = field(default_factory=list)
    fixed_count: int = 0
    splits: dict = field(default_factory=dict)
    max_class: int = -1

    def fix(self, path: str, note: str) -> None:
        self.fixed_count += 1
        if len(self.fixed) < FIXED_LISTED:
            self.fixed.append({"path": path, "reason": note})


def _guard_target(out: str, src: str) -> None:
    if os.path.abspath(out) == os.path.abspath(src):
        raise FastloadError(f"{out}: output is the source")
    empty = (os.path.isfile(out) and os.path.getsize(out) == 0) or (os.path.isdir(out) and not os.listdir(out))
    if os.path.lexists(out) and not empty:
        try:
            read_meta(out)
        except FastloadError:
            raise FastloadError(f"{out}: exists and is not a fastload store; not overwriting it") from None


def _progress(total: int, desc: str, quiet: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", disable=quiet or None, dynamic_ncols=True, leave=False)


def pack(src: str, out: str, opts: PackOptions, quiet: bool = False, source: Source | None = None) -> dict:
    """Pack `src` (dataset or store) into the store `out`; returns the report (also stored as metadata). `source`:
    the dataset's listing when the caller already made it (find_source(src))."""
    if opts.fmt not in ("lmdb", "zarr"):
        raise FastloadError(f"unknown format {opts.fmt!r} (lmdb or zarr)")
    out = out.rstrip("/") or out  # "x.zarr/" names x.zarr, not a store inside it
    _guard_target(out, src)
    if is_store(src):
        return convert(src, out, opts, quiet)
    t0 = time.perf_counter()
    source = source or find_source(src, opts.coco_images, opts.split)
    nc = len(source.names) if source.names is not None else None
    report = Report(skipped=list(source.skipped))
    fingerprint = hashlib.sha256()
    writer = open_writer(out, opts.fmt, size_hint=_estimate_bytes(source))
    try:
        work = partial(prepare, nc=nc, max_side=opts.max_side, quality=opts.quality)
        for split in source.split_images:
            writer.begin_split(split)
            missing = empty = 0
            with _progress(source.count(split), f"pack {split}", quiet) as bar:
                for got in ordered_map(work, source.items(split), opts.workers, died=_worker_died):
                    bar.update()
                    fingerprint.update(got.stamp)
                    if got.record is None:
                        if opts.strict:
                            raise FastloadError(f"{got.skip['path']}: {got.skip['reason']} (--strict)")
                        report.skipped.append(got.skip)
                        continue
                    writer.add(got.record)
                    missing += got.label == "missing"
                    empty += got.label == "empty"
                    if got.note:
                        report.fix(got.record.path, got.note)
                    if len(got.record.boxes):
                        report.max_class = max(report.max_class, int(got.record.boxes[:, 0].max()))
            report.splits[split] = {**writer.end_split(), "missing_labels": missing, "empty_labels": empty}
        packed = sum(s["count"] for s in report.splits.values())
        if packed == 0:
            first = report.skipped[0] if report.skipped else None
            why = f" (first: {first['path']}: {first['reason']})" if first else ""
            raise FastloadError(f"{src}: nothing to pack: all {len(report.skipped)} inputs were skipped{why}")
        if opts.strict and report.skipped:  # inputs rejected while listing (e.g. COCO paths)
            s = report.skipped[0]
            raise FastloadError(f"{s['path']}: {s['reason']} (--strict)")
        names = source.names or [str(i) for i in range(report.max_class + 1)]
        meta = _meta(names, report, source.kind, src, opts, fingerprint.hexdigest(), time.perf_counter() - t0)
        writer.finish(meta)
    except BaseException:
        writer.abort()
        raise
    return meta


def _estimate_bytes(source) -> int:
    """Roughly the bytes the store will hold, from a sample of the inputs (sizes the LMDB map)."""
    paths = [p for ps in source.split_images.values() for p in ps]
    sample = [os.path.getsize(p) for p in paths[:: max(1, len(paths) // 200)] if os.path.isfile(p)]
    return int(np.mean(sample) * len(paths) * 1.2) if sample else 0


def is_store(path: str) -> bool:
    """True for a complete or partial fastload store (LMDB file or Zarr group), not a dataset."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "zarr.json"))
    if "://" in path:
        return True
    if not os.path.isfile(path) or path.endswith((".yaml", ".yml", ".json", ".txt")):
        return False
    try:
        read_meta(path)
    except FastloadError:
        return False
    return True


def _meta(names, report: Report, kind: str, src: str, opts: PackOptions, fingerprint: str, secs: float) -> dict:
    return {
        "format": "fastload",
        "version": FORMAT_VERSION,
        "store": opts.fmt,
        "names": list(names),
        "splits": report.splits,
        "skipped": report.skipped,
        "fixed": report.fixed,
        "fixed_count": report.fixed_count,
        "fingerprint": fingerprint,
        "pack": {
            "source": os.path.abspath(src) if "://" not in src else src,
            "source_kind": kind,
            "max_side": opts.max_side,
            "quality": opts.quality,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(secs, 3),
            "fastload": __version__,
        },
    }


def convert(src: str, out: str, opts: PackOptions, quiet: bool = False) -> dict:
    """Copy a store into the other format, record for record (bytes, boxes, sizes, paths, CRCs)."""
    t0 = time.perf_counter()
    _, meta = read_meta(src)
    writer = open_writer(out, opts.fmt, size_hint=sum(s["bytes"] for s in meta["splits"].values()))
    report = Report(skipped=list(meta.get("skipped", [])))
    try:
        for split, info in meta["splits"].items():
            store = open_store(src, split)
            writer.begin_split(split)
            with _progress(len(store), f"convert {split}", quiet) as bar:
                for i in range(len(store)):
                    bar.update()
                    problem = record_problem(store, i)  # damaged since it was packed: CRC, boxes, unreadable
                    if problem is not None:
                        path = record_path(store, i)
                        if opts.strict:
                            raise FastloadError(f"{src}: record {split}[{i}] ({path}): {problem} (--strict)")
                        report.skipped.append({"path": path, "reason": f"in the source store: {problem}"})
                        continue
                    writer.add(store.get(i))
            extra = {k: v for k, v in info.items() if k in ("missing_labels", "empty_labels")}
            report.splits[split] = {**writer.end_split(), **extra}
        report.fixed, report.fixed_count = meta.get("fixed", []), meta.get("fixed_count", 0)
        pack_info = dict(meta.get("pack", {}))
        new = _meta(meta["names"], report, "store", src, opts, meta["fingerprint"], time.perf_counter() - t0)
        new["pack"] = {**pack_info, "converted_from": os.path.abspath(src), "seconds": new["pack"]["seconds"]}
        writer.finish(new)
    except BaseException:
        writer.abort()
        raise
    return new
