"""`fastload verify`: recompute every record's CRC32 (and optionally decode every image) and name the bad ones."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from tqdm import tqdm

from fastload.store import open_store, read_meta


def _check_columns(store) -> str | None:
    """Structural checks on the columns; a reason string if they are inconsistent."""
    n = len(store)
    sizes = store.sizes
    if len(sizes) != n:
        return f"sizes column has {len(sizes)} rows for {n} records"
    if n and (sizes <= 0).any():
        return "non-positive image size"
    return None


def record_problem(store, i: int, decode: bool = False) -> str | None:
    """Why record i of `store` (as packed: not a --single-cls view) cannot be used, or None: its CRC32, its boxes,
    and with `decode` its pixels and their size."""
    try:
        return problem_of(store.get(i), decode)
    except Exception as e:  # whatever reading it raises is the record's problem
        return str(e) or type(e).__name__


def problem_of(rec, decode: bool = False) -> str | None:
    """Why a record read from a store cannot be used, or None (see record_problem)."""
    try:
        crc = rec.compute_crc()
        if crc != rec.crc32:
            return f"CRC32 mismatch (stored {rec.crc32:08x}, computed {crc:08x})"
        if not np.isfinite(rec.boxes).all() or (rec.boxes[:, 1:] < 0).any() or (rec.boxes[:, 1:] > 1).any():
            return "boxes not normalised"
        if rec.segments is not None and not all(
            np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all() for p in rec.segments
        ):
            return "polygons not normalised"
        if decode:
            with Image.open(io.BytesIO(rec.image)) as im:
                im.load()
                if (im.height, im.width) != rec.size:
                    return f"decoded size {im.height}x{im.width} != stored {rec.size[0]}x{rec.size[1]}"
    except Exception as e:  # whatever reading or decoding it raises is the record's problem
        return str(e) or type(e).__name__
    return None


def first_bad_record(store, indices: np.ndarray) -> tuple[int, str, bool] | None:
    """(index, reason, whether it took a decode to find) of the first bad record among `indices`, or None: every
    CRC first (cheap), then decodes."""
    for decode in (False, True):
        for i in indices:
            reason = record_problem(store, int(i), decode)
            if reason is not None:
                return int(i), reason, decode
    return None


def record_path(store, i: int) -> str:
    """Record i's source path, or "" if even that cannot be read."""
    try:
        return store.path_of(i)
    except Exception:  # the path column itself may be what is damaged
        return ""


def verify_store(path: str, decode: bool = False, quiet: bool = False) -> dict:
    fmt, meta = read_meta(path)
    checked, bad = 0, []
    for split in meta["splits"]:
        store = open_store(path, split)
        problem = _check_columns(store)
        if problem:
            bad.append({"split": split, "index": -1, "path": "", "reason": problem})
            continue
        bar = tqdm(range(len(store)), desc=f"verify {split}", unit="rec", disable=quiet or None, leave=False)
        for i in bar:
            checked += 1
            reason = record_problem(store, i, decode)
            if reason is not None:  # every bad record is reported, the rest still checked
                bad.append({"split": split, "index": i, "path": record_path(store, i), "reason": reason})
    return {"ok": not bad, "checked": checked, "bad": bad, "decoded": decode, "format": fmt, "store": path}
