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
            try:
                rec = store.get(i)
                if rec.compute_crc() != rec.crc32:
                    raise ValueError(f"CRC32 mismatch (stored {rec.crc32:08x}, computed {rec.compute_crc():08x})")
                if not np.isfinite(rec.boxes).all() or (rec.boxes[:, 1:] < 0).any() or (rec.boxes[:, 1:] > 1).any():
                    raise ValueError("boxes not normalised")
                if decode:
                    with Image.open(io.BytesIO(rec.image)) as im:
                        im.load()
                        if (im.height, im.width) != rec.size:
                            raise ValueError(
                                f"decoded size {im.height}x{im.width} != stored {rec.size[0]}x{rec.size[1]}"
                            )
            except Exception as e:  # every failure of one record is reported, the rest still checked
                bad.append(
                    {
                        "split": split,
                        "index": i,
                        "path": store.path_of(i) if i < len(store) else "",
                        "reason": str(e) or type(e).__name__,
                    }
                )
    return {"ok": not bad, "checked": checked, "bad": bad, "decoded": decode, "format": fmt, "store": path}
