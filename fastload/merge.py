"""`fastload merge A.lmdb B.lmdb -o C.lmdb`: stores of several datasets joined into one, their classes matched by
name (a Roboflow export and your own labels, each packed from whatever layout it came in). Records are copied as
they are (image bytes untouched), with their class ids renumbered into the union of the names and their paths
under the name of the store they came from."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from fastload.errors import FastloadError
from fastload.pack.near_dedupe import LEVELS, drop_near_copies
from fastload.pack.packer import PackOptions, Report, guard_target, pack_meta, progress_bar
from fastload.pack.thinning import Thinning
from fastload.store import open_store, open_writer, read_meta
from fastload.verify import record_path, record_problem


def merged_names(metas: list[dict]) -> tuple[list[str], list[np.ndarray]]:
    """The union of the stores' class names, in the order first seen, and per store the new id of each of its
    classes."""
    names: list[str] = []
    for meta in metas:
        names += [n for n in meta["names"] if n not in names]
    return names, [np.array([names.index(n) for n in meta["names"]], np.int64) for meta in metas]


def _prefixes(stores: list[str]) -> list[str]:
    """Each store's name without its suffix, made unique (a.lmdb, a.zarr -> a, a_2): the folder its paths go under."""
    out: list[str] = []
    for path in stores:
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "store"
        name, k = stem, 2
        while name in out:
            name, k = f"{stem}_{k}", k + 1
        out.append(name)
    return out


def merge(
    stores: list[str],
    out: str,
    fmt: str = "lmdb",
    strict: bool = False,
    quiet: bool = False,
    dedupe: bool | str = False,
) -> dict:
    """Write the records of every split of `stores` into the store `out`, split by split in the order given; a
    record damaged since it was packed is left out and listed (or, with `strict`, stops the merge). With `dedupe`,
    an image whose bytes a record already written has is left out, the splits other than train first (as `pack
    --dedupe`: two exports of one dataset hold the same pictures; a val picture's train copy goes); "near" or "crops":
    then near copies too (fastload.pack.near_dedupe)."""
    if len(stores) < 2:
        raise FastloadError("merge needs two stores or more (to convert one, use fastload pack STORE -o OUT)")
    t0 = time.perf_counter()
    for s in stores:
        guard_target(out, s)
    metas = [read_meta(s)[1] for s in stores]
    tasks = [m.get("task", "detect") for m in metas]
    if len(set(tasks)) > 1:  # a classification store's one row an image is its class, not an object
        k = next(k for k, t in enumerate(tasks) if t != tasks[0])
        kind = {"detect": "detection", "classify": "classification"}
        raise FastloadError(f"{stores[k]}: a {kind[tasks[k]]} store, but {stores[0]} is a {kind[tasks[0]]} store: "
                            "they do not merge")  # fmt: skip
    names, tables = merged_names(metas)
    prefixes = _prefixes(stores)
    splits = list(dict.fromkeys(split for meta in metas for split in meta["splits"]))
    size = sum(info["bytes"] for meta in metas for info in meta["splits"].values())
    earlier = [{**s, "path": f"{p}/{s['path']}"} for p, m in zip(prefixes, metas, strict=True) for s in m["skipped"]]
    report = Report(skipped=earlier)  # inputs each pack skipped
    thinning = Thinning(None, dedupe)
    writer = open_writer(out, fmt, size_hint=size)
    try:
        for split in thinning.order(splits):
            writer.begin_split(split)
            counts = {"missing_labels": 0, "empty_labels": 0}
            dropped = 0
            for path, meta, table, prefix in zip(stores, metas, tables, prefixes, strict=True):
                if split not in meta["splits"]:
                    continue
                dropped += _copy_split(open_store(path, split), writer, table, prefix, report, strict, quiet, thinning)
                for key in counts:
                    counts[key] += meta["splits"][split].get(key, 0)
            report.splits[split] = {**writer.end_split(), **counts, **thinning.counted(split, {"duplicate": dropped})}
        report.splits = {split: report.splits[split] for split in splits}  # in the stores' order
        report.fixed_count = sum(m.get("fixed_count", 0) for m in metas)
        fingerprint = hashlib.sha256("".join(m["fingerprint"] for m in metas).encode()).hexdigest()
        meta = pack_meta(names, report, "stores", stores, PackOptions(fmt=fmt), fingerprint, time.perf_counter() - t0)
        sides = {m.get("pack", {}).get("max_side") for m in metas}
        meta["pack"]["max_side"] = sides.pop() if len(sides) == 1 else None  # as packed: shrunk alike, or not
        if dedupe:
            meta["pack"]["dedupe"] = dedupe
            meta["duplicates"] = thinning.duplicates
        if tasks[0] != "detect":
            meta["task"] = tasks[0]
        meta["pack"]["merged"] = [
            {"store": os.path.abspath(s), "prefix": p, "names": m["names"]}
            for s, p, m in zip(stores, prefixes, metas, strict=True)
        ]
        writer.finish(meta)
    except BaseException:
        writer.abort()
        raise
    return drop_near_copies(out, dedupe, min(8, os.cpu_count() or 1), quiet) if dedupe in LEVELS else meta


def _copy_split(store, writer, table: np.ndarray, prefix: str, report: Report, strict: bool, quiet: bool,
                thinning: Thinning) -> int:  # fmt: skip
    """Copy the split `store` into `writer`; returns how many records `thinning` left out."""
    dropped = 0
    with progress_bar(len(store), f"merge {prefix} {store.split}", quiet) as bar:
        for i in range(len(store)):
            bar.update()
            problem = record_problem(store, i)  # damaged since it was packed: CRC, boxes, unreadable
            if problem is not None:
                path = f"{prefix}/{record_path(store, i)}"
                if strict:
                    raise FastloadError(f"{store.path}: record {store.split}[{i}] ({path}): {problem} (--strict)")
                report.skipped.append({"path": path, "reason": f"in the source store: {problem}"})
                continue
            rec = store.get(i)
            rec.boxes = rec.boxes.copy()
            rec.boxes[:, 0] = table[rec.boxes[:, 0].astype(np.int64)]
            rec.path = f"{prefix}/{rec.path}"
            rec.crc32 = rec.compute_crc()  # the CRC covers the boxes and the path
            if thinning.drop(store.split, rec) is not None:
                dropped += 1
                continue
            writer.add(rec, None)  # not packed from files: no stamps to reuse by
    return dropped
