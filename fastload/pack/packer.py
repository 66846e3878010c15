"""`fastload pack`: read → validate → (shrink and re-encode) → write, in parallel, into a store published
atomically. Bad inputs are reported in `skipped` with their path and reason; everything good is kept."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
from tqdm import tqdm

from fastload import __version__
from fastload.errors import FastloadError
from fastload.pack.archive import Unpacked, archive_kind, archive_kinds, disk_use, several_archives, unpacked
from fastload.pack.autosplit import autosplit
from fastload.pack.class_folders import TASK, refuse_for_classes
from fastload.pack.classes import select_classes
from fastload.pack.near_dedupe import LEVELS, drop_near_copies
from fastload.pack.prepare import BY_NAME, Prepared, prepare, worker_died
from fastload.pack.reuse import Reuse
from fastload.pack.sources import Item, Source, find_source
from fastload.pack.tar_stream import TarStreams
from fastload.pack.thinning import Thinning
from fastload.pack.tiles import Tiling, pack_tiled
from fastload.pool import ordered_map
from fastload.store import FORMAT_VERSION, borrowed, open_store, open_writer, read_meta
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
    reuse: str | None = None  # an earlier store of this dataset: unchanged inputs' records are copied from it
    autosplit: tuple[float, ...] | None = None  # every image split anew: train, val (, test) weights
    classes: str | None = None  # only these classes, numbered anew: "person,car", "bag=suitcase+handbag"
    background: float | None = None  # the share of the train split's images without objects kept (None: all)
    dedupe: bool | str = False  # leave out images stored twice byte for byte (a val image's train copy); "near" or
    # "crops": near copies too (pack.near_dedupe)
    tile: Tiling | None = None  # cut images into overlapping tiles (fastload.pack.tiles)


@dataclass
class Report:
    """What `pack` did; becomes the store metadata and the `--json` output."""

    skipped: list[dict] = field(default_factory=list)
    fixed: list[dict] = field(default_factory=list)
    fixed_count: int = 0
    splits: dict = field(default_factory=dict)
    max_class: int = -1
    reused: int = 0  # records copied from an earlier store (PackOptions.reuse)

    def fix(self, path: str, note: str) -> None:
        self.fixed_count += 1
        if len(self.fixed) < FIXED_LISTED:
            self.fixed.append({"path": path, "reason": note})


def guard_target(out: str, src: str) -> None:
    if os.path.abspath(out) == os.path.abspath(src):
        raise FastloadError(f"{out}: output is the source")
    empty = (os.path.isfile(out) and os.path.getsize(out) == 0) or (os.path.isdir(out) and not os.listdir(out))
    if os.path.lexists(out) and not empty:
        try:
            read_meta(out)
        except FastloadError:
            raise FastloadError(f"{out}: exists and is not a fastload store; not overwriting it") from None


def progress_bar(total: int, desc: str, quiet: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", disable=quiet or None, dynamic_ncols=True, leave=False)


def pack(src: str | list[str], out: str, opts: PackOptions, quiet: bool = False, source: Source | None = None) -> dict:
    """Pack `src` (dataset, archive of one, or store; or several archives, unpacked into one folder) into the store
    `out`; returns the report (also stored as metadata). `source`: the dataset's listing when the caller already
    made it (find_source(src), split by opts.autosplit)."""
    if opts.fmt not in ("lmdb", "zarr"):
        raise FastloadError(f"unknown format {opts.fmt!r} (lmdb or zarr)")
    out = out.rstrip("/") or out  # "x.zarr/" names x.zarr, not a store inside it
    if opts.tile is not None:
        return pack_tiled(src, out, opts, quiet, source)
    if not isinstance(src, str):
        if len(src) > 1:
            return _pack_archives(list(src), out, opts, quiet)
        src = src[0]
    if archive_kind(src) is not None:
        return _pack_archives([src], out, opts, quiet)
    guard_target(out, src)
    if is_store(src):
        if opts.autosplit:
            raise FastloadError(f"{src}: a store converts record for record; --autosplit splits a dataset as it is "
                                "packed: give its folder or data.yaml")  # fmt: skip
        picks = ((opts.classes, "--classes picks classes of"), (opts.background, "--background thins"),
                 (opts.dedupe or None, "--dedupe thins"))  # fmt: skip
        for given, what in picks:
            if given is not None:
                raise FastloadError(f"{src}: a store converts record for record; {what} a dataset as it is packed: "
                                    "give its folder or data.yaml")  # fmt: skip
        return convert(src, out, opts, quiet)
    t0 = time.perf_counter()
    return _pack_source(src, out, opts, quiet, source or listed(src, opts), t0)


def _pack_archives(archives: list[str], out: str, opts: PackOptions, quiet: bool) -> dict:
    """Pack the dataset that the archives hold, unpacked one after another into one folder beside `out` (VOC's
    trainval and test tars; COCO's image zips and its annotations zip)."""
    t0 = time.perf_counter()
    stores = [a for a in archives if len(archives) > 1 and is_store(a)]
    if stores:
        raise FastloadError(f"{stores[0]}: a store; several stores join with `fastload merge {' '.join(archives)} "
                            f"-o {out}` (classes matched by name)")  # fmt: skip
    kinds = archive_kinds(archives)
    for a in archives:
        guard_target(out, a)
    src = archives[0] if len(archives) == 1 else archives
    with unpacked(archives, out, quiet) as got:
        source = listed(got.root, opts)
        got.adopt(source)
        kind = "+".join(dict.fromkeys(kinds))
        return _pack_source(src, out, opts, quiet, source, t0, archive=kind, unpacked_into=got)


def listed(src: str, opts: PackOptions) -> Source:
    """The listing of the dataset `src` as `opts` packs it (split anew by --autosplit)."""
    source = find_source(src, opts.coco_images, opts.split)
    if source.kind == TASK:
        refuse_for_classes(src, opts)
    return autosplit(source, opts.autosplit) if opts.autosplit else source


def _pack_source(
    src: str | list[str],
    out: str,
    opts: PackOptions,
    quiet: bool,
    source: Source,
    t0: float,
    archive: str | None = None,
    unpacked_into: Unpacked | None = None,
) -> dict:
    """Pack the listed dataset `source` (of `src`; `archive`: "zip" or "tar" when unpacked from one or more into
    `unpacked_into`, whose images are read from them) into `out`; returns the metadata the store keeps."""
    nc = len(source.names) if source.names is not None else None
    where = src if isinstance(src, str) else " + ".join(src)  # what messages name
    if source.kind == TASK:
        refuse_for_classes(where, opts)
    selection = select_classes(opts.classes, source.names, where) if opts.classes else None
    opts = replace(opts, classes=selection.spec) if selection else opts  # as the metadata keeps it
    report = Report(skipped=list(source.skipped))
    fingerprint = hashlib.sha256()
    reuse = Reuse(opts.reuse, source, opts) if opts.reuse else None
    writer = open_writer(out, opts.fmt, size_hint=_estimate_bytes(source))
    try:
        class_ids = {name: i for i, name in enumerate(source.names)} if source.kind in BY_NAME else None
        work = partial(
            prepare, nc=nc, max_side=opts.max_side, quality=opts.quality, class_ids=class_ids, selection=selection,
            kind=source.kind, members=unpacked_into.members if unpacked_into else None,
        )  # fmt: skip
        thinning = Thinning(opts.background, opts.dedupe)
        order = thinning.order(list(source.split_images))
        tars = TarStreams(unpacked_into, source, order) if unpacked_into and unpacked_into.tars else None
        for split in order:
            feed = tars.begin(split) if tars else None
            writer.begin_split(split)
            missing = empty = background = 0
            dropped: dict[str, int] = {}
            with progress_bar(source.count(split), f"pack {split}", quiet) as bar:
                for got in _prepared(source.items(split), work, opts.workers, reuse, nc, report, feed):
                    bar.update()
                    fingerprint.update(got.stamp)
                    if got.record is None:
                        if opts.strict:
                            raise FastloadError(f"{got.skip['path']}: {got.skip['reason']} (--strict)")
                        report.skipped.append(got.skip)
                        continue
                    why = thinning.drop(split, got.record)
                    if why is not None:
                        dropped[why] = dropped.get(why, 0) + 1
                        continue
                    writer.add(got.record, got.stamps())
                    missing += got.label == "missing"
                    empty += got.label == "empty"
                    background += selection is not None and got.label == "ok" and not len(got.record.boxes)
                    if got.note:
                        report.fix(got.record.path, got.note)
                    if len(got.record.boxes):
                        report.max_class = max(report.max_class, int(got.record.boxes[:, 0].max()))
            if tars:
                tars.end()
            report.splits[split] = {**writer.end_split(), "missing_labels": missing, "empty_labels": empty}
            if selection is not None:  # labelled images none of whose objects is of the chosen classes
                report.splits[split]["background"] = background
            report.splits[split] |= thinning.counted(split, dropped)
        report.splits = {split: report.splits[split] for split in source.split_images}  # in the listing's order
        packed = sum(s["count"] for s in report.splits.values())
        if packed == 0:
            first = report.skipped[0] if report.skipped else None
            why = f" (first: {first['path']}: {first['reason']})" if first else ""
            raise FastloadError(f"{where}: nothing to pack: all {len(report.skipped)} inputs were skipped{why}")
        if opts.strict and report.skipped:  # inputs rejected while listing (e.g. COCO paths)
            s = report.skipped[0]
            raise FastloadError(f"{s['path']}: {s['reason']} (--strict)")
        names = selection.names if selection else source.names or [str(i) for i in range(report.max_class + 1)]
        meta = pack_meta(names, report, source.kind, src, opts, fingerprint.hexdigest(), time.perf_counter() - t0)
        if source.kind == TASK:
            meta["task"] = TASK  # one row per image: its class over the whole picture
        if archive is not None:
            meta["pack"]["archive"] = archive
        if opts.autosplit:
            meta["pack"]["autosplit"] = list(opts.autosplit)
        if selection is not None:
            meta["pack"]["classes"] = selection.spec
        if opts.background is not None:
            meta["pack"]["background"] = opts.background
        if opts.dedupe:
            meta["pack"]["dedupe"] = opts.dedupe  # True (byte for byte), or a level of near_dedupe
            meta["duplicates"] = thinning.duplicates
        if reuse is not None:
            meta["pack"]["reused"] = {"from": os.path.abspath(opts.reuse), "records": report.reused}
            reuse.close()  # before the new store may take the earlier one's place
        if unpacked_into is not None:  # the disk its unpacking took (the most: the folder only grows)
            meta["pack"]["unpacked_mb"] = round(disk_use(unpacked_into.folder) / 1e6, 1)
        writer.finish(meta)
    except BaseException:
        writer.abort()
        raise
    finally:
        if reuse is not None:
            reuse.close()
    return drop_near_copies(out, opts.dedupe, opts.workers, quiet) if opts.dedupe in LEVELS else meta


def _prepared(items: Iterable[Item], work, workers: int, reuse: Reuse | None, nc, report,
              feed: Callable[[list[Item]], Iterator[Item]] | None = None) -> Iterator[Prepared]:  # fmt: skip
    """Each of a split's `items` prepared, in order: copied from `reuse` where its inputs are unchanged (counted in
    report.reused), else packed by the worker pool, which works ahead on those meanwhile; `feed` gives those their
    bytes as they go to the pool (a compressed tar's: pack.tar_stream)."""
    if reuse is None or not len(reuse):
        yield from ordered_map(work, feed(list(items)) if feed else items, workers, died=worker_died)
        return
    plan = [(item, reuse.match(item)) for item in items]  # the listing walked once
    fresh = [item for item, hit in plan if hit is None]
    fresh = ordered_map(work, feed(fresh) if feed else fresh, workers, died=worker_died)
    try:
        for item, hit in plan:
            if hit is None:
                yield next(fresh)
                continue
            got = reuse.take(item, hit, nc)
            report.reused += got is not None
            yield got or work(item)  # damaged, or a class the names no longer have: packed again
    finally:
        fresh.close()


def _estimate_bytes(source) -> int:
    """Roughly the bytes the store will hold, from a sample of the inputs (sizes the LMDB map)."""
    paths = [p for ps in source.split_images.values() for p in ps]
    sample = [os.path.getsize(p) for p in paths[:: max(1, len(paths) // 200)] if os.path.isfile(p)]
    return int(np.mean(sample) * len(paths) * 1.2) if sample else 0


def source_id(src: str | list[str]) -> str | list[str]:
    """What a store's metadata keeps as its source: the absolute path (a list of them for several archives), or
    the URL. Several archives given as one string, their paths joined by commas, stay one string."""
    if not isinstance(src, str):
        return [source_id(s) for s in src] if len(src) > 1 else source_id(src[0])
    several = several_archives(src)
    if several:
        return ",".join(source_id(several))
    return os.path.abspath(src) if "://" not in src else src


def packed_from(path: str, src: str | list[str], tile: dict | None = None) -> bool:
    """Whether `path` is a store of this format version packed from the dataset `src`, cut into tiles as `tile`
    says (Tiling's fields, or None: not tiled); its metadata read borrowed."""
    try:
        with borrowed(path):
            _, meta = read_meta(path)
    except FastloadError:  # nothing there, or not a store
        return False
    info = meta.get("pack", {})
    return meta.get("version") == FORMAT_VERSION and info.get("source") == source_id(src) and info.get("tile") == tile


def earlier_pack(out: str, src: str | list[str]) -> str | None:
    """`out` when it is a store packed from the dataset `src` (a pack again reuses its unchanged records), else None."""
    dataset = not isinstance(src, str) or archive_kind(src) is not None or ("://" not in src and not is_store(src))
    return out if dataset and packed_from(out, src) else None


def is_store(path: str) -> bool:
    """True for a complete or partial fastload store (LMDB file or Zarr group), not a dataset."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "zarr.json"))
    if archive_kind(path):
        return False
    if "://" in path:
        return True
    if not os.path.isfile(path) or path.endswith((".yaml", ".yml", ".json", ".txt")):
        return False
    try:
        read_meta(path)
    except FastloadError:
        return False
    return True


def pack_meta(names, report: Report, kind: str, src: str, opts: PackOptions, fingerprint: str, secs: float) -> dict:
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
            "source": source_id(src),
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
            stamps = store.stamps()
            writer.begin_split(split)
            with progress_bar(len(store), f"convert {split}", quiet) as bar:
                for i in range(len(store)):
                    bar.update()
                    problem = record_problem(store, i)  # damaged since it was packed: CRC, boxes, unreadable
                    if problem is not None:
                        path = record_path(store, i)
                        if opts.strict:
                            raise FastloadError(f"{src}: record {split}[{i}] ({path}): {problem} (--strict)")
                        report.skipped.append({"path": path, "reason": f"in the source store: {problem}"})
                        continue
                    writer.add(store.get(i), None if stamps is None else tuple(stamps[i].tolist()))
            extra = {k: v for k, v in info.items() if k in ("missing_labels", "empty_labels")}
            report.splits[split] = {**writer.end_split(), **extra}
        report.fixed, report.fixed_count = meta.get("fixed", []), meta.get("fixed_count", 0)
        pack_info = dict(meta.get("pack", {}))
        new = pack_meta(meta["names"], report, "store", src, opts, meta["fingerprint"], time.perf_counter() - t0)
        new["pack"] = {**pack_info, "converted_from": os.path.abspath(src), "seconds": new["pack"]["seconds"]}
        if meta.get("task"):
            new["task"] = meta["task"]  # a classification store's
        writer.finish(new)
    except BaseException:
        writer.abort()
        raise
    return new
